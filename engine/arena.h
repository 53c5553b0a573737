// Activation arena: one block sized once per (model, batch, taps), handed out by bumping a pointer and reset
// between batches, so a forward pass makes no heap allocations once the arena has its size.
//
// Sizing without a separate planner: the first batch runs with whatever capacity the arena has; a request that
// does not fit is served from the heap and counted. high_water() then says how many bytes that batch needed;
// reserve(high_water()) makes every later batch of the same shape fit.
#pragma once
#include <cstddef>
#include <memory>

#include "engine/tensor.h"

namespace tabula {

// While alive, every Tensor::empty on this thread (so every op output) comes from `arena`; nests, restores the
// previous arena on destruction. ArenaScope(nullptr) suspends arena allocation (used for results that must
// outlive the batch, e.g. hook captures).
//
//   Arena arena;                        // per (model, batch size, taps)
//   for (each batch) {
//     arena.reset();
//     { ArenaScope scope(&arena); y = model.forward(x, taps); y = heap_copy(y); }
//     if (arena.overflow_bytes()) arena.reserve(arena.high_water());   // sized once, after the first batch
//   }
class ArenaScope {
 public:
  explicit ArenaScope(Arena* arena) : prev_(detail::thread_arena()) { detail::thread_arena() = arena; }
  ~ArenaScope() { detail::thread_arena() = prev_; }
  ArenaScope(const ArenaScope&) = delete;
  ArenaScope& operator=(const ArenaScope&) = delete;

 private:
  Arena* prev_;
};

class Arena {
 public:
  explicit Arena(size_t capacity_bytes = 0) { reserve(capacity_bytes); }

  // (Re)allocates the block; tensors handed out earlier keep the old block alive through their storage.
  void reserve(size_t bytes);
  // A 64-byte-aligned tensor from the block (or from the heap when the block is full, counted in overflow).
  Tensor alloc(const Shape& shape, DType dtype = DType::f32);
  // Starts a new batch: everything allocated before is free again. Tensors from the previous batch must no
  // longer be used (they alias new allocations), as with any arena.
  void reset();

  // Scoped reuse inside a forward: mark() before temporaries, release(m) when they are dead.
  size_t mark() const { return used_; }
  void release(size_t m);

  size_t capacity() const { return capacity_; }
  size_t used() const { return used_; }
  size_t high_water() const { return high_water_; }        // bytes the largest batch so far needed
  size_t overflow_bytes() const { return overflow_bytes_; }  // served from the heap since reset()

 private:
  std::shared_ptr<Storage> block_;
  size_t capacity_ = 0, used_ = 0, high_water_ = 0, overflow_bytes_ = 0;
};

// A heap copy of `t` (leaves the arena): for results kept after the batch.
Tensor heap_copy(const Tensor& t);

}  // namespace tabula
