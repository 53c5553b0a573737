#include "engine/arena.h"

#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <new>

namespace tabula {

static constexpr size_t kAlign = 64;
static size_t round_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

void Arena::reserve(size_t bytes) {
  bytes = round_up(bytes);
  if (bytes == capacity_ && block_) return;
  block_.reset();  // tensors still using the old block keep it alive (reuse mode: their ranges stay taken)
  capacity_ = 0;
  if (mode_ == Mode::bump) used_ = 0;
  if (bytes == 0) return;
  void* p = std::aligned_alloc(kAlign, bytes);
  if (!p) throw std::bad_alloc();
  auto st = std::make_shared<Storage>();
  st->data = p;
  st->bytes = bytes;
  st->owner = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  st->kind = Storage::Kind::arena;
  block_ = std::move(st);
  capacity_ = bytes;
}

// Free byte ranges [offset, offset + size) of the reuse arena's offset space (unbounded above), coalesced.
struct Arena::FreeList {
  std::mutex mu;
  std::map<size_t, size_t> ranges{{0, std::numeric_limits<size_t>::max()}};
  size_t live = 0;  // bytes handed out and not yet returned

  size_t take(size_t bytes) {
    std::lock_guard<std::mutex> lk(mu);
    for (auto it = ranges.begin(); it != ranges.end(); ++it) {
      if (it->second < bytes) continue;
      const size_t off = it->first, rest = it->second - bytes;
      ranges.erase(it);
      if (rest) ranges.emplace(off + bytes, rest);
      live += bytes;
      return off;
    }
    throw std::bad_alloc();  // unreachable: the last range is unbounded
  }
  void give(size_t off, size_t bytes) {
    std::lock_guard<std::mutex> lk(mu);
    live -= bytes;
    auto next = ranges.lower_bound(off);
    if (next != ranges.end() && off + bytes == next->first) {
      bytes = next->second == std::numeric_limits<size_t>::max() ? next->second : bytes + next->second;
      next = ranges.erase(next);
    }
    if (next != ranges.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == off) {
        prev->second = bytes == std::numeric_limits<size_t>::max() ? bytes : prev->second + bytes;
        return;
      }
    }
    ranges.emplace(off, bytes);
  }
};

Arena::~Arena() = default;

size_t Arena::used() const {
  if (mode_ == Mode::reuse) {
    if (!free_) return 0;
    std::lock_guard<std::mutex> lk(free_->mu);
    return free_->live;
  }
  return used_;
}

Tensor Arena::alloc_reuse(size_t bytes, const Shape& shape, DType dtype) {
  if (!free_) free_ = std::make_shared<FreeList>();
  const size_t off = free_->take(bytes);
  if (off + bytes > high_water_) high_water_ = off + bytes;
  used_ = free_->live;
  auto st = std::make_shared<Storage>();
  st->bytes = bytes;
  std::shared_ptr<FreeList> fl = free_;
  if (block_ && off + bytes <= capacity_) {
    st->data = static_cast<char*>(block_->data) + off;
    st->kind = Storage::Kind::arena;
    // the deleter keeps the block alive and returns the range when the last view dies
    st->owner = std::shared_ptr<void>(st->data, [fl, block = block_, off, bytes](void*) { fl->give(off, bytes); });
  } else {
    overflow_bytes_ += bytes;
    void* p = std::aligned_alloc(kAlign, bytes);
    if (!p) {
      fl->give(off, bytes);
      throw std::bad_alloc();
    }
    st->data = p;
    st->kind = Storage::Kind::heap;
    st->owner = std::shared_ptr<void>(p, [fl, off, bytes](void* q) {
      std::free(q);
      fl->give(off, bytes);
    });
  }
  if (poison_allocations()) std::memset(st->data, 0xff, bytes);
  return Tensor::from_storage(std::move(st), 0, shape, dtype);
}

Tensor Arena::alloc(const Shape& shape, DType dtype) {
  size_t bytes = round_up(static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype));
  if (mode_ == Mode::reuse) return alloc_reuse(std::max<size_t>(bytes, kAlign), shape, dtype);
  size_t end = used_ + overflow_bytes_ + bytes;
  if (end > high_water_) high_water_ = end;
  if (block_ && used_ + bytes <= capacity_) {
    Tensor t = Tensor::from_storage(block_, used_, shape, dtype);
    if (poison_allocations()) std::memset(t.raw(), 0xff, bytes);
    used_ += bytes;
    return t;
  }
  overflow_bytes_ += bytes;
  Tensor t = Tensor::heap(shape, dtype);
  return t;
}

Tensor heap_copy(const Tensor& t) {
  Tensor h = Tensor::heap(t.shape(), t.dtype());
  h.copy_(t);
  return h;
}

void Arena::reset() {
  if (mode_ == Mode::bump) used_ = 0;
  overflow_bytes_ = 0;
}

void Arena::release(size_t m) {
  if (mode_ == Mode::reuse) op_error("Arena::release", "a reuse arena frees tensors when they die");
  if (m > used_) op_error("Arena::release", "mark beyond the current position");
  used_ = m;
}

}  // namespace tabula
