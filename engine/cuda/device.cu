#include "engine/cuda/device.h"

#include <cuda_runtime.h>

#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "engine/cuda/runtime.h"
#include "engine/staging_ring.h"

namespace tabula::cuda {

namespace {

constexpr int kMaxDevices = 64;

void check_index(int device) {
  if (device < 0 || device >= kMaxDevices)
    throw std::invalid_argument("cuda: device index " + std::to_string(device) + " out of range");
}

// Caching allocator: blocks are rounded up (512 B granularity below 1 MiB, 2 MiB above) and kept per exact
// rounded size, so the same sequence of shapes - a forward at a fixed batch size - is served from the cache from
// the second batch on. All work is on the device's single stream, so a block released by a tensor may be handed
// to the next allocation immediately: any later kernel runs after every earlier kernel that used it.
struct Cache {
  std::mutex mu;
  std::multimap<size_t, void*> free_blocks;
  std::map<void*, size_t> live;
  AllocatorStats stats;
  void* stream = nullptr;
  bool capturing = false;           // a Graph is being captured on this device
  std::vector<void*> capture_freed;  // blocks released while capturing (the graph's kernels may use them)
};

Cache& cache(int device) {
  check_index(device);
  static Cache caches[kMaxDevices];
  return caches[device];
}

int g_current_device = 0;

size_t round_size(size_t bytes) {
  if (bytes == 0) bytes = 1;
  const size_t g = bytes < (size_t{1} << 20) ? 512 : (size_t{2} << 20);
  return (bytes + g - 1) / g * g;
}

void* cache_alloc(int device, size_t bytes) {
  Cache& c = cache(device);
  const size_t sz = round_size(bytes);
  std::lock_guard<std::mutex> lock(c.mu);
  void* p = nullptr;
  auto it = c.free_blocks.find(sz);
  if (it != c.free_blocks.end()) {
    p = it->second;
    c.free_blocks.erase(it);
    ++c.stats.cache_hits;
  } else {
    TABULA_CUDA_CHECK(cudaSetDevice(device));
    cudaError_t e = cudaMalloc(&p, sz);
    if (e == cudaErrorMemoryAllocation && !c.free_blocks.empty()) {
      cudaGetLastError();  // out of memory with blocks cached: give them back and retry once
      for (auto& [s, q] : c.free_blocks) {
        cudaFree(q);
        c.stats.bytes_reserved -= s;
      }
      c.free_blocks.clear();
      e = cudaMalloc(&p, sz);
    }
    TABULA_CUDA_CHECK(e);
    ++c.stats.device_mallocs;
    c.stats.bytes_reserved += sz;
  }
  c.live[p] = sz;
  c.stats.bytes_in_use += sz;
  c.stats.peak_bytes_in_use = std::max(c.stats.peak_bytes_in_use, c.stats.bytes_in_use);
  return p;
}

void cache_free(int device, void* p) {
  Cache& c = cache(device);
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.live.find(p);
  if (it == c.live.end()) return;  // not ours (cannot happen through empty()); never free foreign memory
  c.stats.bytes_in_use -= it->second;
  if (c.capturing) c.capture_freed.push_back(p);
  c.free_blocks.emplace(it->second, p);
  c.live.erase(it);
}

// Ends capture bookkeeping: every block released during capture that is still cached is taken back out (marked
// live, owned by the graph) so that nothing allocated later can alias memory the graph writes on replay.
std::vector<void*> end_capture(int device) {
  Cache& c = cache(device);
  std::lock_guard<std::mutex> lock(c.mu);
  c.capturing = false;
  std::vector<void*> held;
  for (void* p : c.capture_freed) {
    for (auto it = c.free_blocks.begin(); it != c.free_blocks.end(); ++it) {
      if (it->second != p) continue;
      c.live[p] = it->first;
      c.stats.bytes_in_use += it->first;
      c.free_blocks.erase(it);
      held.push_back(p);
      break;
    }
  }
  c.capture_freed.clear();
  return held;
}

}  // namespace

void* stream_for(int device) {
  Cache& c = cache(device);
  std::lock_guard<std::mutex> lock(c.mu);
  if (!c.stream) {
    TABULA_CUDA_CHECK(cudaSetDevice(device));
    cudaStream_t s;
    TABULA_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    c.stream = s;  // lives for the process (destroying streams at exit races the driver's own teardown)
  }
  return c.stream;
}

void synchronize(int device) {
  TABULA_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_for(device))));
}

int current_device() { return g_current_device; }
void set_current_device(int device) {
  check_index(device);
  TABULA_CUDA_CHECK(cudaSetDevice(device));
  g_current_device = device;
}

AllocatorStats allocator_stats(int device) {
  Cache& c = cache(device);
  std::lock_guard<std::mutex> lock(c.mu);
  return c.stats;
}

void empty_cache(int device) {
  synchronize(device);
  Cache& c = cache(device);
  std::lock_guard<std::mutex> lock(c.mu);
  for (auto& [s, p] : c.free_blocks) {
    TABULA_CUDA_CHECK(cudaFree(p));
    c.stats.bytes_reserved -= s;
  }
  c.free_blocks.clear();
}

namespace {
__global__ void fill_u32(uint32_t* p, size_t n, uint32_t v) {
  size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (i < n) p[i] = v;
}
}  // namespace

Tensor empty(const Shape& shape, int device, DType dtype) {
  const size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  void* p = cache_alloc(device, bytes);
  std::shared_ptr<void> owner(p, [device](void* q) { cache_free(device, q); });
  if (poison_allocations() && bytes >= 4) {
    const size_t n = bytes / 4;
    fill_u32<<<static_cast<unsigned>((n + 255) / 256), 256, 0, static_cast<cudaStream_t>(stream_for(device))>>>(
        static_cast<uint32_t*>(p), n, 0x7fc00000u);  // f32 quiet NaN
    TABULA_CUDA_CHECK(cudaGetLastError());
  }
  Tensor t = Tensor::from_external(p, shape, dtype, std::move(owner), Device::cuda);
  return t;
}

int device_of(std::string_view op, const Tensor& t) {
  if (!t.defined() || t.device() != Device::cuda)
    op_error(op, "expected a cuda tensor, got " +
                     (t.defined() ? t.str() + " on the cpu" : std::string("an undefined tensor")));
  cudaPointerAttributes a{};
  TABULA_CUDA_CHECK(cudaPointerGetAttributes(&a, t.raw()));
  return a.device;
}

namespace {
// The ring's device side: copies and events on the device's one stream.
class StreamCopyEngine final : public StagingCopyEngine {
 public:
  StreamCopyEngine(int device, int slots) : stream_(static_cast<cudaStream_t>(stream_for(device))), events_(slots) {
    int current = 0;  // events belong to the device current at creation; the caller's current device is kept
    TABULA_CUDA_CHECK(cudaGetDevice(&current));
    TABULA_CUDA_CHECK(cudaSetDevice(device));
    for (cudaEvent_t& e : events_) TABULA_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    TABULA_CUDA_CHECK(cudaSetDevice(current));
  }
  void copy_async(void* device_dst, const void* pinned_src, size_t bytes) override {
    TABULA_CUDA_CHECK(cudaMemcpyAsync(device_dst, pinned_src, bytes, cudaMemcpyHostToDevice, stream_));
  }
  void record(int slot) override { TABULA_CUDA_CHECK(cudaEventRecord(events_[static_cast<size_t>(slot)], stream_)); }
  void wait(int slot) override { TABULA_CUDA_CHECK(cudaEventSynchronize(events_[static_cast<size_t>(slot)])); }

 private:
  cudaStream_t stream_;
  std::vector<cudaEvent_t> events_;
};

// 4 x 8 MiB of pinned memory per device, made on its first upload and kept for the process (freeing pinned
// memory and events at exit races the driver's own teardown, as for the streams).
struct UploadRing {
  static constexpr int kSlots = 4;
  static constexpr size_t kSlotBytes = size_t{8} << 20;
  explicit UploadRing(int device) : engine(device, kSlots), ring(engine, allocate(), kSlotBytes) {}
  static std::vector<void*> allocate() {
    std::vector<void*> slots(kSlots);
    for (void*& p : slots) TABULA_CUDA_CHECK(cudaMallocHost(&p, kSlotBytes));
    return slots;
  }
  StreamCopyEngine engine;
  StagingRing ring;
};

StagingRing& upload_ring(int device) {
  check_index(device);
  static std::mutex mu;
  static UploadRing* rings[kMaxDevices] = {};
  std::lock_guard<std::mutex> lock(mu);
  if (!rings[device]) rings[device] = new UploadRing(device);
  return rings[device]->ring;
}
}  // namespace

Tensor to_device(const Tensor& host_in, int device) {
  if (!host_in.defined()) return {};
  if (host_in.device() != Device::cpu)
    op_error("cuda::to_device", "expected a cpu tensor, got " + host_in.str() + " on cuda");
  Tensor host = host_in.contiguous();
  Tensor d = empty(host.shape(), device, host.dtype());
  // Through the pinned ring: a weight in a file mapping is read once into reused page-locked slots, never staged
  // whole; the stream is still synchronised, so to_device stays a blocking copy for its callers.
  if (host.nbytes()) upload_ring(device).upload(d.raw(), host.raw(), host.nbytes());
  TABULA_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_for(device))));
  return d;
}

Tensor to_host(const Tensor& dev) {
  if (!dev.defined()) return {};
  const int device = device_of("cuda::to_host", dev);
  if (!dev.is_contiguous())
    op_error("cuda::to_host", "expected a contiguous cuda tensor, got " + dev.str() + " (use cuda::contiguous)");
  Tensor h = Tensor::heap(dev.shape(), dev.dtype());
  cudaStream_t s = static_cast<cudaStream_t>(stream_for(device));
  if (dev.nbytes()) TABULA_CUDA_CHECK(cudaMemcpyAsync(h.raw(), dev.raw(), dev.nbytes(), cudaMemcpyDeviceToHost, s));
  TABULA_CUDA_CHECK(cudaStreamSynchronize(s));
  return h;
}

PinnedBuffer::PinnedBuffer(size_t bytes) : bytes_(bytes) { TABULA_CUDA_CHECK(cudaMallocHost(&ptr_, bytes)); }
PinnedBuffer::~PinnedBuffer() {
  if (ptr_) cudaFreeHost(ptr_);
}

void upload_async(const Tensor& host_in, PinnedBuffer& pinned, Tensor& dst) {
  const int device = device_of("cuda::upload_async", dst);
  Tensor host = host_in.contiguous();
  if (host.nbytes() != dst.nbytes() || !dst.is_contiguous())
    op_error("cuda::upload_async", "host " + host.str() + " does not fit the contiguous destination " + dst.str());
  if (host.nbytes() > pinned.size())
    op_error("cuda::upload_async",
             std::to_string(host.nbytes()) + " bytes into a pinned buffer of " + std::to_string(pinned.size()));
  std::memcpy(pinned.data(), host.raw(), host.nbytes());
  TABULA_CUDA_CHECK(cudaMemcpyAsync(dst.raw(), pinned.data(), host.nbytes(), cudaMemcpyHostToDevice,
                                    static_cast<cudaStream_t>(stream_for(device))));
}

Graph::Graph(int device, const std::function<Tensor()>& forward) : device_(device) {
  cudaStream_t s = static_cast<cudaStream_t>(stream_for(device));
  TABULA_CUDA_CHECK(cudaSetDevice(device));
  TABULA_CUDA_CHECK(cudaStreamSynchronize(s));
  {
    Cache& c = cache(device);
    std::lock_guard<std::mutex> lock(c.mu);
    c.capturing = true;
    c.capture_freed.clear();
  }
  // Relaxed mode: a cache miss may still cudaMalloc (not a stream operation) instead of failing the capture.
  TABULA_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
  cudaGraph_t graph = nullptr;
  try {
    out_ = forward();
  } catch (...) {
    cudaStreamEndCapture(s, &graph);
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    held_ = end_capture(device);
    throw;
  }
  const cudaError_t e = cudaStreamEndCapture(s, &graph);
  held_ = end_capture(device);
  TABULA_CUDA_CHECK(e);
  cudaGraphExec_t exec = nullptr;
  const cudaError_t ei = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  TABULA_CUDA_CHECK(ei);
  exec_ = exec;
  if (!out_.defined() || out_.device() != Device::cuda)
    op_error("cuda::Graph", "the captured forward must return a cuda tensor");
}

Graph::~Graph() {
  if (exec_) {
    cudaStreamSynchronize(static_cast<cudaStream_t>(stream_for(device_)));  // a replay may still be running
    cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
  }
  for (void* p : held_) cache_free(device_, p);
}

void Graph::replay() {
  TABULA_CUDA_CHECK(
      cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), static_cast<cudaStream_t>(stream_for(device_))));
}

}  // namespace tabula::cuda
