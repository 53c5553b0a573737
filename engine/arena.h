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

//
// Mode::reuse (what a model forward uses): a tensor's bytes return to the arena when its last view dies. A batch
// is the sequence of allocations between two reset() calls; the arena records each one's size and lifetime, and
// at reset() lays the batch out offline (greedy by size: largest first, each at the lowest offset that no tensor
// alive at the same time uses) and grows its block to that layout. The next batches of the same shapes replay the
// layout (the i-th allocation gets the i-th offset), so the block is the batch's peak of live activation bytes
// with little fragmentation, is touched once, and stays resident: no page faults per op, and peak RSS near
// weights + the largest live set. An allocation that does not match the recorded sequence (other taps, other
// shapes), or whose planned range is still in use, falls back to first fit and the batch is re-planned at the
// next reset(); a request beyond the block is served from the heap and counted in overflow_bytes().
// mark()/release() are for Mode::bump only.
class Arena {
 public:
  enum class Mode { bump, reuse };
  explicit Arena(size_t capacity_bytes = 0, Mode mode = Mode::bump) : mode_(mode) { reserve(capacity_bytes); }
  ~Arena();

  // (Re)allocates the block; tensors handed out earlier keep the old block alive through their storage.
  void reserve(size_t bytes);
  // A 64-byte-aligned tensor from the block (or from the heap when the block is full, counted in overflow).
  Tensor alloc(const Shape& shape, DType dtype = DType::f32);
  // Starts a new batch: everything allocated before is free again. Tensors from the previous batch must no
  // longer be used (they alias new allocations), as with any arena.
  // Bump: starts a new batch (everything allocated before is free again). Reuse: ends a batch (see above).
  void reset();

  // Scoped reuse inside a forward: mark() before temporaries, release(m) when they are dead.
  size_t mark() const { return used_; }
  void release(size_t m);

  size_t capacity() const { return capacity_; }
  size_t used() const;  // bytes handed out and still live (bump: up to the current position)
  size_t high_water() const { return high_water_; }        // bytes the largest batch so far needed
  size_t overflow_bytes() const { return overflow_bytes_; }  // served from the heap since reset()

 private:
  struct FreeList;  // Mode::reuse: free ranges + the batch's record and plan, shared with the tensors' deleters
  Tensor alloc_reuse(size_t bytes, const Shape& shape, DType dtype);
  Mode mode_;
  std::shared_ptr<Storage> block_;
  std::shared_ptr<FreeList> free_;
  size_t capacity_ = 0, used_ = 0, high_water_ = 0, overflow_bytes_ = 0;
};

// A heap copy of `t` (leaves the arena): for results kept after the batch.
Tensor heap_copy(const Tensor& t);

}  // namespace tabula
