// Helpers shared by the op test files (tests/engine): a random stream per op name (seeded from the run seed, so
// TABULA_TEST_SEED replays a failure), shape pickers, the validator's report as a gtest expectation, the direct
// conv paths on demand and the same-bits-for-any-thread-count check.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "engine/cpu/packed.h"
#include "engine/ops.h"
#include "engine/threads.h"
#include "engine/validate.h"

namespace tabula::test {

inline std::mt19937_64 rng_for(const char* op) {
  std::seed_seq seq{validate::run_seed(), static_cast<uint64_t>(std::hash<std::string>{}(op))};
  return std::mt19937_64(seq);
}
inline int64_t pick(std::mt19937_64& g, std::initializer_list<int64_t> v) {
  return *(v.begin() + std::uniform_int_distribution<size_t>(0, v.size() - 1)(g));
}
inline int64_t uni(std::mt19937_64& g, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(g);
}

// The specification of a packed conv (direct or Winograd): act(ref::conv2d(x, w) * scale + shift + residual) per
// output channel; scale/shift/residual may be undefined.
inline Tensor reference_packed_conv(const Tensor& x, const Tensor& w, const Conv2dOptions& o, const Tensor& scale,
                                    const Tensor& shift, Activation act, const Tensor& residual) {
  Tensor y = ref::conv2d(x, w, Tensor(), o);
  const int64_t C = w.size(0);
  if (scale.defined()) y = ref::mul(y, scale.reshape({1, C, 1, 1}));
  if (shift.defined()) y = ref::add(y, shift.reshape({1, C, 1, 1}));
  if (residual.defined()) y = ref::add(y, residual);
  return ref::activation(y, act);
}

// While it lives, the direct (tap / GEMM / im2col) paths: 3x3 stride-1 convs are packed without the Winograd copy
// (that path has its own tests in test_winograd.cpp).
struct WinogradOff {
  WinogradOff() { ops::set_winograd_enabled(false); }
  ~WinogradOff() { ops::set_winograd_enabled(true); }
  WinogradOff(const WinogradOff&) = delete;
  WinogradOff& operator=(const WinogradOff&) = delete;
};

// A conv's stride and padding, the same on both axes (ResNet's 7x7 stem: 2, 3).
inline Conv2dOptions conv_options(int64_t stride, int64_t padding) {
  Conv2dOptions o;
  o.stride = {stride, stride};
  o.padding = {padding, padding};
  return o;
}

// The fused forms of packed convs keep the plain ops' bits: the stem's conv + ReLU + 3x3/2 max-pool in bands
// (`stem` on `rgb`) and a 1x1 conv + ReLU written over its residual (`pointwise` on the channels-last `x` with `r`),
// both with per-channel scale s and shift h.
inline void expect_fused_forms_keep_the_bits(const PackedConv2d& stem, const Tensor& rgb, const PackedConv2d& pointwise,
                                             const Tensor& x, const Tensor& r, const Tensor& s, const Tensor& h) {
  auto same_bits = [](const Tensor& a, const Tensor& b) {
    return a.shape() == b.shape() && std::memcmp(a.contiguous().raw(), b.contiguous().raw(), a.nbytes()) == 0;
  };
  const Tensor fused = ops::conv2d_max_pool2d(rgb, stem, s, h, Activation::relu, {3, 3}, {2, 2}, {1, 1});
  const Tensor plain = ops::max_pool2d(ops::conv2d(rgb, stem, s, h, Activation::relu), {3, 3}, {2, 2}, {1, 1});
  EXPECT_TRUE(same_bits(fused, plain)) << "stem conv + max-pool";
  const Tensor want = ops::conv2d(x, pointwise, s, h, Activation::relu, r);
  EXPECT_TRUE(same_bits(ops::conv2d_into_residual(x, pointwise, s, h, Activation::relu, r.clone()), want))
      << "1x1 conv over its residual";
}

// Runs `run` with one thread, then with each count in `threads`, and expects every output to have the bits of the
// one-thread run (the engine's rule: the thread count never changes a bit). The thread count is restored.
inline void expect_same_bits_across_threads(const std::function<std::vector<Tensor>()>& run,
                                            std::initializer_list<int> threads = {2, 3},
                                            const std::string& what = "op") {
  struct Restore {
    int saved = get_num_threads();
    ~Restore() { set_num_threads(saved); }
  } restore;
  set_num_threads(1);
  const std::vector<Tensor> one = run();
  for (int t : threads) {
    set_num_threads(t);
    const std::vector<Tensor> many = run();
    ASSERT_EQ(many.size(), one.size()) << what << "s with " << t << " threads";
    for (size_t i = 0; i < one.size(); ++i) {
      ASSERT_EQ(many[i].shape(), one[i].shape()) << what << " #" << i << " with " << t << " threads";
      EXPECT_EQ(std::memcmp(one[i].contiguous().raw(), many[i].contiguous().raw(), one[i].nbytes()), 0)
          << what << " #" << i << " with " << t << " threads";
    }
  }
}

}  // namespace tabula::test

#define EXPECT_VALID(report, what)                                                                           \
  do {                                                                                                       \
    auto r_ = (report);                                                                                      \
    EXPECT_TRUE(r_.ok) << what << ": " << r_.message << " (seed " << tabula::validate::run_seed()           \
                       << "; replay with TABULA_TEST_SEED)";                                                 \
  } while (0)
