#include <gtest/gtest.h>

#include <atomic>
#include <numeric>

#include "engine/arena.h"
#include "engine/tensor.h"
#include "engine/threads.h"

using namespace tabula;

static Tensor iota(const Shape& s) {
  std::vector<float> v(static_cast<size_t>(shape_numel(s)));
  std::iota(v.begin(), v.end(), 0.f);
  return Tensor::from_vector(s, v);
}

TEST(Tensor, ViewsShareStorageWithoutCopy) {
  Tensor t = iota({2, 3, 4});
  EXPECT_TRUE(t.is_contiguous());
  Tensor tr = t.transpose(0, 2);
  EXPECT_TRUE(tr.shares_storage_with(t));
  EXPECT_FALSE(tr.is_contiguous());
  EXPECT_EQ(tr.shape(), (Shape{4, 3, 2}));
  EXPECT_EQ(tr.at({3, 2, 1}), t.at({1, 2, 3}));
  Tensor s = t.slice(2, 1, 4, 2);  // columns 1, 3
  EXPECT_EQ(s.shape(), (Shape{2, 3, 2}));
  EXPECT_EQ(s.at({1, 2, 1}), 23.f);
  EXPECT_EQ(t.select(1, 2).at({1, 0}), 20.f);
  Tensor p = t.permute({1, 2, 0});
  EXPECT_EQ(p.at({2, 3, 1}), t.at({1, 2, 3}));
  EXPECT_EQ(t.view({6, -1}).shape(), (Shape{6, 4}));
  EXPECT_THROW(tr.view({24}), std::invalid_argument);
  Tensor r = tr.reshape({24});  // copy, since the layout requires it
  EXPECT_FALSE(r.shares_storage_with(t));
  EXPECT_EQ(r.at({1}), t.at({1, 0, 0}));
  EXPECT_EQ(t.unsqueeze(0).shape(), (Shape{1, 2, 3, 4}));
  EXPECT_EQ(t.flatten(1).shape(), (Shape{2, 12}));
  EXPECT_EQ(t.slice(0, -1, 100).shape(), (Shape{1, 3, 4}));  // python-style clamping
  Tensor c = tr.contiguous();
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_EQ(c.to_vector(), tr.to_vector());
  Tensor e = Tensor::from_vector({3}, {1, 2, 3}).unsqueeze(0).expand({4, 3});
  EXPECT_EQ(e.stride(0), 0);
  EXPECT_EQ(e.at({3, 2}), 3.f);
  EXPECT_THROW(t.select(1, 3), std::invalid_argument);
  EXPECT_THROW(t.data<double>(), std::invalid_argument);
}

TEST(Tensor, DtypesConvertAsTorch) {
  Tensor t = Tensor::from_vector({4}, {1.5f, -2.7f, 65519.f, 1e-8f});
  Tensor h = t.to(DType::f16), b = t.to(DType::bf16), i = t.to(DType::i32), u = t.to(DType::u8);
  EXPECT_EQ(h.at({2}), 65504.f);  // rounds to the largest half
  EXPECT_EQ(b.at({0}), 1.5f);
  EXPECT_EQ(i.at({1}), -2.f);     // truncation toward zero
  EXPECT_EQ(u.at({0}), 1.f);
  EXPECT_EQ(h.to(DType::f32).at({1}), f16_to_f32(f32_to_f16(-2.7f)));
  // Out of range and negative values into narrow integers, as torch 2.15 on x86 gives them (printed by
  // torch.tensor([...]).to(dtype)): no undefined behaviour (the sanitizer build checks).
  Tensor w = Tensor::from_vector({5}, {-2.7f, 65519.f, 300.7f, -300.2f, 1e10f});
  const std::vector<float> u8 = {254, 239, 44, 212, 0}, i8 = {-2, -17, 44, -44, 0},
                           i32 = {-2, 65519, 300, -300, -2147483648.f};
  for (int64_t k = 0; k < 5; ++k) {
    EXPECT_EQ(w.to(DType::u8).at({k}), u8[size_t(k)]) << k;
    EXPECT_EQ(w.to(DType::i8).at({k}), i8[size_t(k)]) << k;
    EXPECT_EQ(w.to(DType::i32).at({k}), i32[size_t(k)]) << k;
  }
  Tensor u16 = Tensor::zeros({2}, DType::u16);
  u16.fill_(7);
  EXPECT_EQ(u16.data<uint16_t>()[1], 7);
}

TEST(Tensor, ExternalStorageKeepsItsOwnerAlive) {
  auto buffer = std::make_shared<std::vector<float>>(std::vector<float>{1, 2, 3, 4, 5, 6});
  std::weak_ptr<std::vector<float>> watch = buffer;
  Tensor v;
  {
    Tensor t = Tensor::from_external(buffer->data(), {2, 3}, DType::f32, buffer);
    buffer.reset();
    v = t.transpose(0, 1);
  }
  EXPECT_FALSE(watch.expired());
  EXPECT_EQ(v.at({2, 1}), 6.f);
  EXPECT_EQ(v.storage()->kind, Storage::Kind::external);
  v = Tensor();
  EXPECT_TRUE(watch.expired());
  EXPECT_THROW(Tensor::from_storage(std::make_shared<Storage>(), 0, {4}, DType::f32), std::invalid_argument);
}

TEST(Arena, SizedOnceThenReusedPerBatch) {
  Arena arena;
  auto batch = [&] {
    arena.reset();
    Tensor a = arena.alloc({100, 3});
    Tensor b = arena.alloc({7}, DType::u8);
    size_t m = arena.mark();
    Tensor tmp = arena.alloc({50});
    arena.release(m);
    Tensor c = arena.alloc({50});  // reuses tmp's bytes
    return std::tuple{a, b, c, tmp};
  };
  batch();
  EXPECT_GT(arena.overflow_bytes(), 0u);  // no capacity yet: served from the heap, measured
  arena.reserve(arena.high_water());
  auto [a, b, c, tmp] = batch();
  EXPECT_EQ(arena.overflow_bytes(), 0u);
  EXPECT_EQ(a.storage()->kind, Storage::Kind::arena);
  EXPECT_EQ(c.raw(), tmp.raw());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.raw()) % 64, 0u);
  EXPECT_LE(arena.used(), arena.capacity());
}

// Reuse mode: tensors give their bytes back when they die; the first batch is recorded and laid out at reset(),
// later batches replay the layout inside one block of the batch's peak live size (here the ResNet stem/bottleneck
// pattern that fragments a first-fit heap), and a batch that deviates stays correct and is re-planned.
TEST(Arena, ReuseModeReplaysAPlannedLayout) {
  Arena arena(0, Arena::Mode::reuse);
  const size_t MB = 1 << 20;
  auto overlap = [](const Tensor& a, const Tensor& b) {
    auto pa = static_cast<const char*>(a.raw()), pb = static_cast<const char*>(b.raw());
    return pa < pb + b.nbytes() && pb < pa + a.nbytes();
  };
  auto mb = [&](size_t n) { return arena.alloc({static_cast<int64_t>(n * MB / 4)}); };
  size_t peak = 0;
  auto batch = [&](bool deviate) {
    auto note = [&](const std::vector<Tensor>& live) {  // (a temporary list: must not extend lifetimes)
      size_t bytes = 0;
      for (const Tensor& t : live) bytes += t.nbytes();
      peak = std::max(peak, bytes);
      for (size_t i = 0; i < live.size(); ++i)
        for (size_t j = i + 1; j < live.size(); ++j) EXPECT_FALSE(overlap(live[i], live[j])) << i << " " << j;
    };
    Tensor in = mb(2);                   // input, channels-last copy
    Tensor stem = mb(8);                 // conv1
    in = Tensor();
    Tensor x = mb(deviate ? 3 : 2);      // maxpool
    stem = Tensor();
    Tensor identity = mb(8), h = mb(2);  // downsample, conv1
    x = Tensor();
    Tensor h2 = mb(2);                   // conv2
    note({identity, h, h2});
    h = Tensor();
    Tensor out = mb(8);                  // conv3 (+ identity)
    note({identity, h2, out});
    return out.storage()->kind;
  };
  batch(false);
  EXPECT_GT(arena.overflow_bytes(), 0u);  // first batch: no block yet, served from the heap and recorded
  arena.reset();
  EXPECT_EQ(arena.capacity(), 18 * MB);  // the peak live set (identity + conv2 + out), no fragmentation
  EXPECT_EQ(batch(false), Storage::Kind::arena);
  EXPECT_EQ(arena.overflow_bytes(), 0u);
  EXPECT_EQ(peak, 18 * MB);
  arena.reset();
  batch(true);  // other shapes: correct (no overlap, checked inside), then re-planned
  arena.reset();
  EXPECT_EQ(batch(true), Storage::Kind::arena);
  EXPECT_EQ(arena.overflow_bytes(), 0u);
  EXPECT_EQ(arena.used(), 0u);
  EXPECT_THROW(arena.release(0), std::invalid_argument);
}

TEST(Threads, ChunksCoverEveryIndexOnceAndErrorsPropagate) {
  const int saved = get_num_threads();
  for (int t : {1, 2, 5}) {
    set_num_threads(t);
    std::vector<std::atomic<int>> hits(1003);
    parallel_for(1003, 10, [&](int64_t a, int64_t b) {
      EXPECT_EQ(a % 10, 0);  // boundaries depend on the grain only
      for (int64_t i = a; i < b; ++i) hits[i]++;
      parallel_for(3, 1, [](int64_t, int64_t) {});  // nested: runs inline
    });
    for (auto& h : hits) EXPECT_EQ(h.load(), 1);
    EXPECT_THROW(parallel_for(100, 1, [](int64_t a, int64_t) { if (a == 57) throw std::runtime_error("x"); }),
                 std::runtime_error);
  }
  set_num_threads(saved);
  EXPECT_EQ(grain_for(1000, 1 << 20), 1);
}

// A forward run inside an ArenaScope: op outputs come from the arena, the first batch measures, reserve() sizes
// the arena once, later batches allocate nothing from the heap and give the same results; hook captures and
// heap_copy() results survive the arena's reset.
#include <random>

#include "engine/hooks.h"
#include "engine/ops.h"
#include "engine/validate.h"

TEST(Arena, ScopeServesOpOutputsAndCapturesStayOnTheHeap) {
  std::mt19937_64 g(11);
  Tensor x = validate::random_tensor({2, 3, 9, 9}, g), w = validate::random_tensor({8, 3, 3, 3}, g);
  Tensor lw = validate::random_tensor({5, 8}, g);
  auto forward = [&](TapSet& taps) {
    Conv2dOptions o;
    o.padding = {1, 1};
    Tensor y = ops::conv2d(x, w, {}, o, Activation::relu);
    taps.tap("conv", y);
    Tensor t = ops::linear(y.flatten(2).transpose(1, 2), lw);  // [2, 81, 5]
    taps.tap("head", t);
    return ops::pool(t, Pool::mean, 0);
  };
  TapSet plain_taps;
  plain_taps.capture("conv", Pool::avg);
  Tensor want = forward(plain_taps);
  Tensor want_cap = plain_taps.captured().at("conv");

  Arena arena;
  for (int batch = 0; batch < 3; ++batch) {
    arena.reset();
    TapSet taps;
    taps.capture("conv", Pool::avg);
    Tensor out;
    {
      ArenaScope scope(&arena);
      Tensor y = forward(taps);
      EXPECT_EQ(y.storage()->kind, batch == 0 ? Storage::Kind::heap : Storage::Kind::arena);
      out = heap_copy(y);
    }
    if (batch == 0) {
      EXPECT_GT(arena.overflow_bytes(), 0u);
      arena.reserve(arena.high_water());
    } else {
      EXPECT_EQ(arena.overflow_bytes(), 0u) << "batch " << batch;
    }
    arena.reset();  // the arena's bytes are now free: captures and heap copies must not live there
    EXPECT_EQ(out.storage()->kind, Storage::Kind::heap);
    EXPECT_NE(taps.captured().at("conv").storage()->kind, Storage::Kind::arena);
    EXPECT_TRUE(validate::compare(out, want, {0, 0}).ok);
    EXPECT_TRUE(validate::compare(taps.captured().at("conv"), want_cap, {0, 0}).ok);
  }
  EXPECT_EQ(Tensor::empty({4}).storage()->kind, Storage::Kind::heap);  // scope ended
}
