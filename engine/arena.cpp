#include "engine/arena.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>
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

// Mode::reuse state. Free byte ranges [offset, offset + size) of the offset space (unbounded above), coalesced;
// the current batch's record (size, lifetime in allocation/free events, offset) and the plan replayed from it.
struct Arena::FreeList {
  static constexpr size_t kInf = std::numeric_limits<size_t>::max();
  struct Record {
    size_t bytes, t0, t1 = kInf, off;
  };
  struct Planned {
    size_t bytes, off;
  };
  std::mutex mu;
  std::map<size_t, size_t> ranges{{0, kInf}};
  size_t live = 0;  // bytes handed out and not yet returned
  uint64_t generation = 0;  // batch counter: frees of tensors from earlier batches do not touch the record
  size_t clock = 0;
  std::vector<Record> record;
  std::vector<Planned> plan;
  size_t plan_bytes = 0;
  bool on_plan = true;  // every allocation of this batch so far matched the plan

  // [off, off + bytes) lies inside one free range: take exactly it.
  bool take_at(size_t off, size_t bytes) {
    auto it = ranges.upper_bound(off);
    if (it == ranges.begin()) return false;
    --it;
    const size_t r0 = it->first, rs = it->second;
    const size_t r1 = rs == kInf ? kInf : r0 + rs;
    if (off + bytes > r1) return false;
    ranges.erase(it);
    if (off > r0) ranges.emplace(r0, off - r0);
    if (r1 == kInf) ranges.emplace(off + bytes, kInf);
    else if (r1 > off + bytes) ranges.emplace(off + bytes, r1 - off - bytes);
    return true;
  }
  size_t take_first_fit(size_t bytes) {
    for (auto it = ranges.begin(); it != ranges.end(); ++it) {
      if (it->second < bytes) continue;
      const size_t off = it->first;
      take_at(off, bytes);
      return off;
    }
    throw std::bad_alloc();  // unreachable: the last range is unbounded
  }
  // Offset for the next allocation of this batch, recorded. (Caller holds mu.)
  std::pair<size_t, size_t> take(size_t bytes) {
    const size_t idx = record.size();
    size_t off = kInf;
    if (on_plan && idx < plan.size() && plan[idx].bytes == bytes && take_at(plan[idx].off, bytes)) off = plan[idx].off;
    if (off == kInf) {
      on_plan = false;
      off = take_first_fit(bytes);
    }
    record.push_back({bytes, clock++, kInf, off});
    live += bytes;
    return {off, idx};
  }
  void give(size_t off, size_t bytes, uint64_t gen, size_t idx) {
    std::lock_guard<std::mutex> lk(mu);
    if (gen == generation && idx < record.size()) record[idx].t1 = clock++;
    live -= bytes;
    auto next = ranges.lower_bound(off);
    if (next != ranges.end() && off + bytes == next->first) {
      bytes = next->second == kInf ? kInf : bytes + next->second;
      next = ranges.erase(next);
    }
    if (next != ranges.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == off) {
        prev->second = bytes == kInf ? kInf : prev->second + bytes;
        return;
      }
    }
    ranges.emplace(off, bytes);
  }
  // End of a batch: re-plan when it left the plan (or there was none). Greedy by size: largest tensors first, each
  // at the lowest offset not used by an already placed tensor whose lifetime overlaps. Returns the plan's size.
  size_t end_batch() {
    std::lock_guard<std::mutex> lk(mu);
    if (!record.empty() && (!on_plan || record.size() != plan.size())) {
      std::vector<size_t> order(record.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = i;
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t a, size_t b) { return record[a].bytes > record[b].bytes; });
      std::vector<size_t> placed;
      plan.assign(record.size(), {0, 0});
      plan_bytes = 0;
      for (size_t i : order) {
        const Record& r = record[i];
        std::vector<std::pair<size_t, size_t>> busy;  // [off, end) of placed tensors alive at the same time
        for (size_t j : placed)
          if (r.t0 < record[j].t1 && record[j].t0 < r.t1) busy.push_back({plan[j].off, plan[j].off + record[j].bytes});
        std::sort(busy.begin(), busy.end());
        size_t off = 0;
        for (const auto& [b0, b1] : busy) {
          if (b0 >= off + r.bytes) break;
          off = std::max(off, b1);
        }
        plan[i] = {r.bytes, off};
        plan_bytes = std::max(plan_bytes, off + r.bytes);
        placed.push_back(i);
      }
    }
    record.clear();
    clock = 0;
    on_plan = true;
    ++generation;
    return plan_bytes;
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
  size_t off, idx;
  uint64_t gen;
  {
    std::lock_guard<std::mutex> lk(free_->mu);
    std::tie(off, idx) = free_->take(bytes);
    gen = free_->generation;
  }
  if (off + bytes > high_water_) high_water_ = off + bytes;
  auto st = std::make_shared<Storage>();
  st->bytes = bytes;
  std::shared_ptr<FreeList> fl = free_;
  if (block_ && off + bytes <= capacity_) {
    st->data = static_cast<char*>(block_->data) + off;
    st->kind = Storage::Kind::arena;
    // the deleter keeps the block alive and returns the range when the last view dies
    st->owner = std::shared_ptr<void>(st->data, [fl, block = block_, off, bytes, gen, idx](void*) {
      fl->give(off, bytes, gen, idx);
    });
  } else {
    overflow_bytes_ += bytes;
    void* p = std::aligned_alloc(kAlign, bytes);
    if (!p) {
      fl->give(off, bytes, gen, idx);
      throw std::bad_alloc();
    }
    st->data = p;
    st->kind = Storage::Kind::heap;
    st->owner = std::shared_ptr<void>(p, [fl, off, bytes, gen, idx](void* q) {
      std::free(q);
      fl->give(off, bytes, gen, idx);
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
  overflow_bytes_ = 0;
  if (mode_ == Mode::bump) {
    used_ = 0;
    return;
  }
  if (!free_) return;
  // the planned layout of the batch that just ended is what every later batch of the same shapes needs
  const size_t need = free_->end_batch();
  high_water_ = need;
  if (need > capacity_) reserve(need);
}

void Arena::release(size_t m) {
  if (mode_ == Mode::reuse) op_error("Arena::release", "a reuse arena frees tensors when they die");
  if (m > used_) op_error("Arena::release", "mark beyond the current position");
  used_ = m;
}

}  // namespace tabula
