// The CPU backend's own machinery beyond the op table (op_cases.cpp runs every op against its reference): the
// GEMM with its epilogues, bit-identical results across thread counts, BatchNorm folding, error messages, the
// validator itself, and the vectorised math of every ISA. A failing case prints the run seed: rerun with
// TABULA_TEST_SEED=<seed> to replay it.
#include <gtest/gtest.h>
#include <gtest/gtest-spi.h>

#include <cstring>
#include <limits>
#include <random>

#include "engine/ops.h"
#include "engine/threads.h"
#include "engine/validate.h"
#include "tests/engine/op_test_util.h"

using namespace tabula;
using validate::random_tensor;
using test::pick;
using test::rng_for;
using test::uni;
using test::expect_same_bits_across_threads;

namespace {
constexpr int kCases = 24;
}  // namespace

TEST(Ops, GemmAllTranspositionsAndEpilogues) {
  auto g = rng_for("gemm");
  for (int c = 0; c < kCases; ++c) {
    const int64_t M = c == 0 ? 1 : pick(g, {1, 7, 13, 49, 64, 97, 197, uni(g, 1, 300)});
    const int64_t N = pick(g, {1, 15, 16, 33, 64, 197, 261, uni(g, 1, 600)});
    const int64_t K = pick(g, {1, 3, 27, 64, 255, 256, 257, 600, uni(g, 1, 700)});
    const bool ta = uni(g, 0, 1), tb = uni(g, 0, 1);
    Tensor a = random_tensor(ta ? Shape{K, M} : Shape{M, K}, g);
    Tensor b = random_tensor(tb ? Shape{N, K} : Shape{K, N}, g);
    Tensor br = random_tensor({M}, g), bc = random_tensor({N}, g), res = random_tensor({M, N}, g);
    ops::GemmEpilogue ep;
    const int variant = c % 4;
    if (variant >= 1) ep.bias_col = bc.data<float>();
    if (variant >= 2) ep.bias_row = br.data<float>(), ep.residual = res.data<float>(), ep.ldr = N;
    if (variant == 3) ep.act = c % 8 == 3 ? Activation::gelu : Activation::relu;
    auto fast = [&] {
      Tensor y = Tensor::empty({M, N});
      ops::gemm(M, N, K, a.data<float>(), ta ? M : K, ta, b.data<float>(), tb ? K : N, tb, y.data<float>(), N, ep);
      return y;
    };
    auto reference = [&] {
      Tensor at = ta ? a.transpose(0, 1) : a, bt = tb ? b.transpose(0, 1) : b;
      Tensor y = ref::matmul(at, bt);
      Tensor pre = y;
      if (ep.bias_col) pre = ref::add(pre, bc);
      if (ep.bias_row) pre = ref::add(ref::add(pre, br.view({M, 1})), res);
      return ref::activation(pre, ep.act);
    };
    EXPECT_VALID(validate::check(fast, reference, {1e-4, 1e-4}),
                 "gemm M=" << M << " N=" << N << " K=" << K << " ta=" << ta << " tb=" << tb << " variant=" << variant);
  }
}

// Same bits whatever the thread count: 1 vs 2 (and 3, an odd split) for every parallel op.
TEST(Ops, DeterministicAcrossThreadCounts) {
  auto g = rng_for("determinism");
  Tensor x = random_tensor({2, 19, 15, 15}, g), w = random_tensor({37, 19, 3, 3}, g), b = random_tensor({37}, g);
  Tensor tok = random_tensor({2, 197, 96}, g), lw = random_tensor({200, 96}, g), lb = random_tensor({200}, g);
  Tensor q = random_tensor({2, 3, 261, 32}, g), k = random_tensor({2, 3, 261, 32}, g),
         v = random_tensor({2, 3, 261, 32}, g);
  Tensor big_a = random_tensor({300, 700}, g), big_b = random_tensor({700, 520}, g);
  Conv2dOptions o;
  o.padding = {1, 1};
  auto run_all = [&] {
    std::vector<Tensor> r;
    r.push_back(ops::conv2d(x, w, b, o, Activation::relu));  // im2col + GEMM, two images per GEMM
    r.push_back(ops::linear(tok, lw, lb, Activation::gelu));
    r.push_back(ops::matmul(big_a, big_b));
    r.push_back(ops::scaled_dot_product_attention(q, k, v));
    r.push_back(ops::layer_norm(tok, {}, {}, 1e-6));
    r.push_back(ops::softmax(tok, -1));
    r.push_back(ops::max_pool2d(x, {3, 3}, {2, 2}, {1, 1}, {1, 1}, true));
    r.push_back(ops::pool(tok, Pool::cls_mean, 1));
    InterpolateOptions io;
    io.size = std::array<int64_t, 2>{16, 16};
    io.mode = InterpMode::bicubic;
    io.antialias = true;
    r.push_back(ops::interpolate(x, io));
    r.push_back(ops::cat({tok, tok.narrow(1, 0, 5)}, 1));
    return r;
  };
  expect_same_bits_across_threads(run_all);
}

// The check above (op_test_util.h) fails on a bit or a shape that depends on the thread count, and leaves the
// thread count as it found it.
TEST(Ops, TestHelperSameBitsAcrossThreadsCatchesThreadDependentOutputs) {
  set_num_threads(2);
  expect_same_bits_across_threads([] { return std::vector<Tensor>{Tensor::full({3}, 1.5f)}; });
  EXPECT_EQ(get_num_threads(), 2);
  EXPECT_NONFATAL_FAILURE(expect_same_bits_across_threads([] {
    return std::vector<Tensor>{Tensor::full({3}, 1.5f), Tensor::full({5}, static_cast<float>(get_num_threads()))};
  }, {3}), "op #1 with 3 threads");
  EXPECT_FATAL_FAILURE(expect_same_bits_across_threads([] {
    return std::vector<Tensor>{Tensor::zeros({get_num_threads()})};
  }, {3}, "map"), "map #0 with 3 threads");
  EXPECT_EQ(get_num_threads(), 2);
  set_num_threads(0);
}

TEST(Ops, FoldBatchNormMatchesConvThenBatchNorm) {
  auto g = rng_for("fold");
  for (int c = 0; c < kCases; ++c) {
    const int64_t cin = pick(g, {3, 8, 17}), cout = pick(g, {4, 19}), k = pick(g, {1, 3});
    Tensor x = random_tensor({1, cin, 9, 7}, g), w = random_tensor({cout, cin, k, k}, g);
    Tensor cb = c % 2 ? random_tensor({cout}, g) : Tensor();
    Tensor gm = random_tensor({cout}, g), bt = random_tensor({cout}, g), mu = random_tensor({cout}, g);
    Tensor var = validate::uniform_tensor({cout}, g, 0.05f, 3.f);
    Conv2dOptions o;
    o.padding = {k / 2, k / 2};
    auto [wf, bf] = fold_batch_norm(w, cb, gm, bt, mu, var, 1e-5);
    EXPECT_VALID(
        validate::check([&] { return ops::conv2d(x, wf, bf, o, Activation::relu); },
                        [&] { return ref::relu(ref::batch_norm(ref::conv2d(x, w, cb, o), gm, bt, mu, var, 1e-5)); },
                        {1e-4, 1e-4}),
        "folded conv+bn+relu " << w.str());
  }
}

TEST(Ops, ErrorsNameTheOpAndArgument) {
  Tensor x = Tensor::zeros({1, 3, 8, 8}), w = Tensor::zeros({4, 2, 3, 3});
  try {
    ops::conv2d(x, w, {});
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("ops::conv2d"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ref::conv2d(x, w, {}), std::invalid_argument);
  EXPECT_THROW(ops::linear(Tensor::zeros({2, 5}), Tensor::zeros({3, 4})), std::invalid_argument);
  EXPECT_THROW(ops::layer_norm(Tensor::zeros({2, 5}), Tensor::zeros({4}), {}), std::invalid_argument);
  EXPECT_THROW(ops::add(Tensor::zeros({2, 5}), Tensor::zeros({3})), std::invalid_argument);
  EXPECT_THROW(ops::pool(Tensor::zeros({2, 3, 4, 4}), Pool::cls), std::invalid_argument);
  EXPECT_THROW(ops::conv2d(Tensor::zeros({1, 3, 8, 8}, DType::f16), Tensor::zeros({4, 3, 3, 3}), {}),
               std::invalid_argument);
  EXPECT_THROW(ops::interpolate(x, {}), std::invalid_argument);  // neither size nor scale_factor
  EXPECT_THROW(ops::max_pool2d(Tensor::zeros({1, 1, 2, 2}), {3, 3}, {1, 1}), std::invalid_argument);
  EXPECT_THROW(ref::avg_pool2d(Tensor::zeros({1, 1, 2, 2}), {3, 3}, {1, 1}), std::invalid_argument);
  EXPECT_THROW(ops::pool(Tensor::zeros({1, 4, 3}), Pool::mean, -1), std::invalid_argument);
  EXPECT_THROW(ops::pool(Tensor::zeros({1, 4, 3}), Pool::mean, 4), std::invalid_argument);  // no patch tokens
  EXPECT_THROW(ops::scaled_dot_product_attention(Tensor::zeros({1, 2, 3, 4}), Tensor::zeros({1, 2, 3, 5}),
                                                 Tensor::zeros({1, 2, 3, 4})),
               std::invalid_argument);
  // biased_attention: the bias must be [heads, N, N], the mask [windows, N, N] with the batch a multiple of windows
  const Tensor q = Tensor::zeros({4, 2, 9, 8});
  for (auto [bias, mask] : {std::pair{Tensor::zeros({3, 9, 9}), Tensor()},
                            std::pair{Tensor::zeros({2, 9, 9}), Tensor::zeros({3, 9, 9})},
                            std::pair{Tensor(), Tensor::zeros({2, 9, 8})}}) {
    try {
      ops::biased_attention(q, q, q, bias, mask);
      ADD_FAILURE() << bias.str() << " " << mask.str();
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("ops::biased_attention"), std::string::npos) << e.what();
    }
    EXPECT_THROW(ref::biased_attention(q, q, q, bias, mask), std::invalid_argument);
  }
  EXPECT_NO_THROW(ops::biased_attention(q, q, q, Tensor::zeros({2, 9, 9}), Tensor::zeros({2, 9, 9})));
}

// The validator itself must catch what it exists to catch.
TEST(Validator, CatchesUnwrittenElementsAndErrors) {
  auto g = rng_for("validator");
  Tensor want = random_tensor({4, 5}, g);
  auto forgets_last = [&] {
    Tensor y = Tensor::empty({4, 5});  // poisoned inside check()
    std::memcpy(y.raw(), want.raw(), (want.numel() - 1) * sizeof(float));
    return y;
  };
  auto r = validate::check(forgets_last, [&] { return want; });
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.unwritten, 1);
  Tensor off = want.clone();
  off.data<float>()[7] += 1e-2f;
  auto r2 = validate::compare(off, want, {1e-5, 1e-4});
  EXPECT_FALSE(r2.ok);
  EXPECT_EQ(r2.worst, 7);
  EXPECT_NEAR(r2.max_abs, 1e-2, 1e-6);
  EXPECT_TRUE(validate::compare(want, want, {0, 0}).ok);
  EXPECT_FALSE(validate::compare(want, want.view({5, 4})).ok);
  for (float v : random_tensor({1000}, g).to_vector()) EXPECT_GE(std::fabs(v), 1.0f / 64);
}

// The vectorised math behind softmax / attention / GELU / SiLU, for every ISA this CPU can run, against double
// precision over a dense grid: exp within 2 ulp, SiLU / tanh-GELU within a few ulp, GELU within 5e-6 relative
// down to x = -6 (the erfc form avoids float's 1 + erf(x) cancellation; the rest is exp's argument rounding).
#include "engine/cpu/rowops.h"
#include "engine/system.h"

TEST(Ops, VectorMathAccuracyEveryIsa) {
  std::vector<detail::RowKernels> isas = {detail::row_kernels_generic()};
  if (cpu_features().has_avx2_fma()) isas.push_back(detail::row_kernels_avx2());
  if (cpu_features().has_avx512()) isas.push_back(detail::row_kernels_avx512());
  const int n = 400001;
  std::vector<float> xs(n);
  for (int i = 0; i < n; ++i) xs[i] = -20.f + 40.f * static_cast<float>(i) / (n - 1);
  for (const auto& k : isas) {
    double worst_exp = 0, worst_gelu = 0, worst_gelu_tail = 0, worst_silu = 0, worst_tanh = 0;
    std::vector<float> e(xs), gl(xs), sl(xs), th(xs);
    k.exp_sum(e.data(), n, 0.f);
    k.activation(gl.data(), n, Activation::gelu);
    k.activation(sl.data(), n, Activation::silu);
    k.activation(th.data(), n, Activation::gelu_tanh);
    for (int i = 0; i < n; ++i) {
      const double x = xs[i];
      auto rel = [](double got, double want) { return std::fabs(got - want) / std::max(std::fabs(want), 1e-30); };
      worst_exp = std::max(worst_exp, rel(e[i], std::exp(x)));
      const double g = 0.5 * x * std::erfc(-x / std::sqrt(2.0));
      if (x >= -6) worst_gelu = std::max(worst_gelu, rel(gl[i], g));
      else worst_gelu_tail = std::max(worst_gelu_tail, std::fabs(gl[i] - g));
      worst_silu = std::max(worst_silu, rel(sl[i], x / (1 + std::exp(-x))));
      const double gt = x / (1 + std::exp(-2 * std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));  // = 0.5x(1+tanh)
      worst_tanh = std::max(worst_tanh, rel(th[i], gt));
    }
    EXPECT_LT(worst_exp, 2.5e-7) << k.name;
    EXPECT_LT(worst_gelu, 5e-6) << k.name;
    EXPECT_LT(worst_gelu_tail, 1e-12) << k.name;  // x < -6 (|gelu| < 1e-8): absolute
    EXPECT_LT(worst_silu, 1e-6) << k.name;
    EXPECT_LT(worst_tanh, 2e-5) << k.name;  // exp of a cubic argument: its rounding dominates on the tail
    std::printf("[ %s ] max rel err: exp %.3g, gelu %.3g, silu %.3g, gelu_tanh %.3g\n", k.name, worst_exp, worst_gelu,
                worst_silu, worst_tanh);
  }
}

// The max-pool step of every ISA keeps exactly the scalar rule's values (a NaN wins, ties keep the running max, so
// +0 / -0 stay as they came), on lengths that leave vector tails.
TEST(Ops, MaxIntoEveryIsaSameBits) {
  std::vector<detail::RowKernels> isas = {detail::row_kernels_generic()};
  if (cpu_features().has_avx2_fma()) isas.push_back(detail::row_kernels_avx2());
  if (cpu_features().has_avx512()) isas.push_back(detail::row_kernels_avx512());
  std::mt19937_64 g(11);
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), 0.f, -0.f};
  for (int64_t n : {1, 7, 16, 37, 64, 100}) {
    std::vector<float> best0(static_cast<size_t>(n)), v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      best0[static_cast<size_t>(i)] = i % 9 == 0 ? specials[i % 5] : u(g);
      v[static_cast<size_t>(i)] = i % 7 == 0 ? specials[(i / 7) % 5] : u(g);
    }
    std::vector<float> want(best0);
    for (int64_t i = 0; i < n; ++i) {
      const float a = v[static_cast<size_t>(i)], b = want[static_cast<size_t>(i)];
      if (a > b || std::isnan(a)) want[static_cast<size_t>(i)] = a;
    }
    for (const auto& k : isas) {
      std::vector<float> got(best0);
      k.max_into(got.data(), v.data(), n);
      EXPECT_EQ(std::memcmp(got.data(), want.data(), sizeof(float) * static_cast<size_t>(n)), 0)
          << k.name << " n " << n;
    }
  }
}
