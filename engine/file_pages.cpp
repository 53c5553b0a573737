#include "engine/file_pages.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>

namespace tabula {

namespace {
std::atomic<uint64_t> g_releases{0}, g_bytes{0};

uintptr_t page_size() {
  static const uintptr_t size = [] {
    const long s = ::sysconf(_SC_PAGESIZE);
    return static_cast<uintptr_t>(s > 0 ? s : 4096);
  }();
  return size;
}
}  // namespace

Tensor file_mapped_view(const void* data, const Shape& shape, DType dtype, std::shared_ptr<void> owner) {
  Tensor t = Tensor::from_external(const_cast<void*>(data), shape, dtype, std::move(owner));
  t.storage()->file_mapped = true;
  return t;
}

size_t release_mapped_range(const void* p, size_t n) {
  if (!p || n == 0) return 0;
  const uintptr_t ps = page_size();
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + ps - 1) & ~(ps - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n) & ~(ps - 1);
  if (end <= begin) return 0;
  // A failure (not a mapping, say) only means the pages stay: nothing a reader sees depends on it.
  if (::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED) != 0) return 0;
  g_releases.fetch_add(1, std::memory_order_relaxed);
  g_bytes.fetch_add(end - begin, std::memory_order_relaxed);
  return end - begin;
}

size_t release_file_pages(const Tensor& t) {
  if (!t.defined() || !t.storage()->file_mapped || t.device() != Device::cpu || t.numel() == 0) return 0;
  // The span of bytes the view reaches (strides may be any; negative ones do not occur in tabula).
  size_t extent = 1;
  for (int64_t d = 0; d < t.dim(); ++d) extent += static_cast<size_t>((t.size(d) - 1) * t.stride(d));
  return release_mapped_range(t.raw(), extent * dtype_size(t.dtype()));
}

PageReleaseStats page_release_stats() {
  return {g_releases.load(std::memory_order_relaxed), g_bytes.load(std::memory_order_relaxed)};
}

}  // namespace tabula
