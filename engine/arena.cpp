#include "engine/arena.h"

#include <cstdlib>
#include <cstring>
#include <new>

namespace tabula {

static constexpr size_t kAlign = 64;
static size_t round_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

void Arena::reserve(size_t bytes) {
  bytes = round_up(bytes);
  if (bytes == capacity_ && block_) return;
  block_.reset();
  capacity_ = 0;
  used_ = 0;
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

Tensor Arena::alloc(const Shape& shape, DType dtype) {
  size_t bytes = round_up(static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype));
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
  used_ = 0;
  overflow_bytes_ = 0;
}

void Arena::release(size_t m) {
  if (m > used_) op_error("Arena::release", "mark beyond the current position");
  used_ = m;
}

}  // namespace tabula
