// Packed weights (engine/cpu/packed.h) against the unpacked reference, through the one validator: the batched
// channels-last conv on all three A paths (1x1 GEMM, per-tap pointers, im2col for < 16 input channels) with the
// BatchNorm scale/shift + residual + activation epilogue, the packed linear, the channels-last pools, the layout
// conversion, thread-count determinism and the error messages. Shapes include the odd ones models meet: 7x7 maps,
// 197/257/261 tokens, channel counts that are not multiples of 16 or of the 32-wide panels, K above one 256-block,
// batch 1.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <tuple>

#include "engine/cpu/gemm_kernels.h"
#include "engine/ops.h"
#include "engine/system.h"
#include "engine/cpu/packed.h"
#include "engine/threads.h"
#include "engine/validate.h"
#include "tests/engine/op_test_util.h"

using namespace tabula;
using validate::random_tensor;
using test::pick;
using test::rng_for;
using test::uni;
using test::WinogradOff;
using test::expect_same_bits_across_threads;

namespace {

constexpr int kCases = 24;

}  // namespace

TEST(Packed, Conv2dEveryPathAgainstReference) {
  const WinogradOff direct_paths;
  auto g = rng_for("packed_conv2d");
  for (int c = 0; c < kCases; ++c) {
    const int64_t N = pick(g, {1, 1, 2, 3});
    // < 16 input channels: im2col rows; >= 16: one pointer per tap; 300: two channel chunks per tap (256 + 44)
    int64_t cin = pick(g, {3, 5, 16, 19, 32, 64, 70});
    const int64_t cout = pick(g, {1, 7, 32, 37, 64, 70});
    int64_t k = pick(g, {1, 1, 3, 3, 5, 7});
    Conv2dOptions o;
    o.stride = {pick(g, {1, 1, 2}), pick(g, {1, 2})};
    o.dilation = {pick(g, {1, 1, 2}), pick(g, {1, 1, 3})};
    o.padding = {uni(g, 0, k / 2 + 1), uni(g, 0, k / 2)};
    if (c % 6 == 0) o = {};  // 1x1 stride 1: the map is the GEMM's A operand as it is
    if (c % 6 == 0) k = 1;
    if (c == 1) cin = 300, k = 3;  // K in more than one 256-block, chunks of unequal length
    if (c == 2) cin = 300, k = 1, o = {};  // 1x1 with K = 300: two dense blocks
    int64_t H = pick(g, {7, 7, 9, 14, uni(g, 5, 16)}), W = pick(g, {7, 8, 13, uni(g, 5, 16)});
    H = std::max(H, o.dilation[0] * (k - 1) + 1), W = std::max(W, o.dilation[1] * (k - 1) + 1);
    Tensor x = random_tensor({N, cin, H, W}, g);
    if (c % 2) x = to_channels_last(x);  // both input layouts
    Tensor w = random_tensor({cout, cin, k, k}, g, 0.5f);
    const PackedConv2d pw(w, o);
    Tensor scale = c % 3 == 0 ? Tensor() : random_tensor({cout}, g);
    Tensor shift = c % 4 == 0 ? Tensor() : random_tensor({cout}, g);
    const Activation act = static_cast<Activation>(c % 5);
    const int64_t Ho = (H + 2 * o.padding[0] - o.dilation[0] * (k - 1) - 1) / o.stride[0] + 1;
    const int64_t Wo = (W + 2 * o.padding[1] - o.dilation[1] * (k - 1) - 1) / o.stride[1] + 1;
    Tensor res = c % 4 == 1 ? random_tensor({N, cout, Ho, Wo}, g) : Tensor();
    if (res.defined() && c % 8 == 1) res = to_channels_last(res);
    Tensor got;
    EXPECT_VALID(
        validate::check([&] { return got = ops::conv2d(x, pw, scale, shift, act, res); },
                        [&] { return test::reference_packed_conv(x, w, o, scale, shift, act, res); }, {1e-4, 1e-4}),
        "packed conv2d x=" << x.str() << " w=" << w.str() << " stride=" << o.stride[0] << "," << o.stride[1]
                           << " pad=" << o.padding[0] << "," << o.padding[1] << " dil=" << o.dilation[0] << ","
                           << o.dilation[1] << " act=" << static_cast<int>(act));
    EXPECT_TRUE(is_channels_last(got));
  }
}

// The output written over the residual has the bits of the fresh-output conv: in place when K is one block (1x1 with
// Cin <= 256, 3x3 over 16 channels: 144 k) and for Winograd; a fresh tensor (the residual untouched) when K takes
// several blocks (Cin 300; 3x3 over 32 channels: 288 k) or the residual is the input; a residual that had to be
// converted to channels-last first is converted into a private copy, which is written.
TEST(Packed, Conv2dIntoResidualSameBitsInPlace) {
  auto g = rng_for("packed_into_residual");
  struct Case {
    int64_t cin, cout, k, H;
    bool winograd, in_place;
  };
  for (const Case& c : {Case{64, 96, 1, 9, false, true}, Case{256, 37, 1, 7, false, true},
                        Case{300, 40, 1, 6, false, false}, Case{16, 32, 3, 7, false, true},
                        Case{32, 32, 3, 7, false, false},
                        Case{24, 40, 3, 9, true, true}}) {
    ops::set_winograd_enabled(c.winograd);
    Conv2dOptions o;
    o.padding = {c.k / 2, c.k / 2};
    const PackedConv2d pw(random_tensor({c.cout, c.cin, c.k, c.k}, g, 0.3f), o);
    ops::set_winograd_enabled(true);
    ASSERT_EQ(pw.wino.defined(), c.winograd);
    const Tensor x = to_channels_last(random_tensor({2, c.cin, c.H, c.H}, g));
    const Tensor sc = random_tensor({c.cout}, g), sh = random_tensor({c.cout}, g);
    const Tensor res = to_channels_last(random_tensor({2, c.cout, c.H, c.H}, g));
    const Tensor want = ops::conv2d(x, pw, sc, sh, Activation::relu, res);
    Tensor given = to_channels_last(res.clone());  // (clone() is contiguous: back to channels-last)
    ASSERT_TRUE(is_channels_last(given));
    const Tensor kept = to_channels_last(given.clone());
    const float* const given_data = given.data<float>();
    const Tensor got = ops::conv2d_into_residual(x, pw, sc, sh, Activation::relu, given);
    EXPECT_EQ(got.data<float>() == given_data, c.in_place) << "cin " << c.cin << " k " << c.k;
    ASSERT_TRUE(is_channels_last(got));
    EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << "cin " << c.cin << " k " << c.k;
    if (!c.in_place) {
      EXPECT_EQ(std::memcmp(given.raw(), kept.raw(), kept.nbytes()), 0) << "residual changed";
    }
  }
  // a residual in the default layout is converted into a private copy, which is written; the caller's stays as it was
  const PackedConv2d p1(random_tensor({32, 16, 1, 1}, g), {});
  const Tensor x = to_channels_last(random_tensor({1, 16, 5, 5}, g));
  const Tensor nchw = random_tensor({1, 32, 5, 5}, g), kept = nchw.clone();
  const Tensor got = ops::conv2d_into_residual(x, p1, Tensor(), Tensor(), Activation::none, nchw);
  EXPECT_EQ(std::memcmp(nchw.raw(), kept.raw(), kept.nbytes()), 0);
  const Tensor want = ops::conv2d(x, p1, Tensor(), Tensor(), Activation::none, nchw);
  EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0);
  // the input as its own residual (1x1, Cin = Cout): never written over while it is read
  const PackedConv2d sq(random_tensor({16, 16, 1, 1}, g), {});
  const Tensor xs = to_channels_last(x.clone()),
               want_sq = ops::conv2d(xs, sq, Tensor(), Tensor(), Activation::none, xs);
  const Tensor got_sq = ops::conv2d_into_residual(xs, sq, Tensor(), Tensor(), Activation::none, xs);
  EXPECT_NE(got_sq.data<float>(), xs.data<float>());
  EXPECT_EQ(std::memcmp(got_sq.raw(), want_sq.raw(), want_sq.nbytes()), 0);
}

// The stem's conv + max-pool in bands of rows has the bits of conv, then pool: odd map sizes (bands that end early,
// windows in the padding), several bands per image (a wide map and many channels), 1x1 and 3x3 convs, batch 1-2,
// 1-3 threads.
TEST(Packed, Conv2dMaxPoolSameBitsAsConvThenPool) {
  const WinogradOff direct_paths;
  auto g = rng_for("packed_conv_maxpool");
  struct Case {
    int64_t N, cin, cout, k, stride, H, W;
    std::array<int64_t, 2> pk, ps, pp;
  };
  const int saved = get_num_threads();
  for (const Case& c : {Case{2, 3, 64, 7, 2, 37, 29, {3, 3}, {2, 2}, {1, 1}},    // the stem, odd sizes
                        Case{1, 3, 32, 7, 2, 224, 224, {3, 3}, {2, 2}, {1, 1}},  // 112 rows x 32 ch: several bands
                        Case{1, 20, 40, 3, 1, 11, 13, {2, 3}, {2, 1}, {0, 1}},   // taps, asymmetric pool
                        Case{2, 16, 24, 1, 1, 9, 9, {3, 3}, {3, 3}, {0, 0}}}) {   // 1x1, non-overlapping windows
    Conv2dOptions o;
    o.stride = {c.stride, c.stride};
    o.padding = {c.k / 2, c.k / 2};
    const PackedConv2d pw(random_tensor({c.cout, c.cin, c.k, c.k}, g, 0.3f), o);
    const Tensor x = random_tensor({c.N, c.cin, c.H, c.W}, g);
    const Tensor sc = random_tensor({c.cout}, g), sh = random_tensor({c.cout}, g);
    const Tensor want =
        to_channels_last(ops::max_pool2d(ops::conv2d(x, pw, sc, sh, Activation::relu), c.pk, c.ps, c.pp));
    for (int t : {1, 2, 3}) {
      set_num_threads(t);
      const Tensor got = ops::conv2d_max_pool2d(x, pw, sc, sh, Activation::relu, c.pk, c.ps, c.pp);
      ASSERT_EQ(got.shape(), want.shape());
      ASSERT_TRUE(is_channels_last(got));
      EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0)
          << "x " << x.str() << " k " << c.k << " pool " << c.pk[0] << "x" << c.pk[1] << ", " << t << " threads";
    }
  }
  set_num_threads(saved);
}

// ResNet's BatchNorm as the epilogue's scale/shift agrees with conv -> ops::batch_norm (the tapped path).
TEST(Packed, BatchNormScaleShiftMatchesBatchNorm) {
  auto g = rng_for("packed_bn");
  Tensor x = random_tensor({2, 24, 9, 9}, g), w = random_tensor({40, 24, 3, 3}, g, 0.3f);
  Tensor gm = random_tensor({40}, g), bt = random_tensor({40}, g), mu = random_tensor({40}, g);
  Tensor var = validate::uniform_tensor({40}, g, 0.1f, 2.f);
  Conv2dOptions o;
  o.padding = {1, 1};
  const PackedConv2d pw(w, o);
  auto [scale, shift] = batch_norm_scale_shift(gm, bt, mu, var, 1e-5);
  EXPECT_VALID(
      validate::check([&] { return ops::conv2d(x, pw, scale, shift, Activation::relu); },
                      [&] { return ref::relu(ref::batch_norm(ref::conv2d(x, w, Tensor(), o), gm, bt, mu, var, 1e-5)); },
                      {1e-4, 1e-4}),
      "conv + bn + relu");
}

TEST(Packed, LinearAgainstReference) {
  auto g = rng_for("packed_linear");
  for (int c = 0; c < kCases; ++c) {
    const int64_t B = pick(g, {1, 2, 3}), Ntok = pick(g, {1, 7, 197, 257, 261, uni(g, 1, 300)});
    const int64_t in = pick(g, {8, 19, 64, 100, 300, 384}), out = pick(g, {1, 17, 48, 96, 200});
    Tensor x = random_tensor({B, Ntok, in}, g);
    Tensor w = random_tensor({out, in}, g, 0.2f);
    Tensor b = c % 3 ? random_tensor({out}, g) : Tensor();
    const Activation act = static_cast<Activation>(c % 5);
    const PackedLinear pw(w);
    EXPECT_VALID(validate::check([&] { return ops::linear(x, pw, b, act); },
                                 [&] { return ref::linear(x, w, b, act); }, {1e-5, 1e-4}),
                 "packed linear x=" << x.str() << " w=" << w.str() << " act=" << static_cast<int>(act));
  }
}

// ConvNeXt's fc2 + LayerScale + residual: (x W^T + b) * gamma + r with scale and shift in the epilogue.
TEST(Packed, LinearScaleShiftIsLinearThenLayerScaleThenAdd) {
  auto g = rng_for("packed_linear_scale_shift");
  for (int c = 0; c < 12; ++c) {
    const int64_t rows = pick(g, {1, 7, 49, 196, uni(g, 1, 300)});
    const int64_t in = pick(g, {8, 19, 384}), out = pick(g, {1, 17, 96});
    Tensor x = random_tensor({2, rows, in}, g);
    Tensor w = random_tensor({out, in}, g, 0.2f);
    Tensor b = random_tensor({out}, g), gamma = random_tensor({out}, g);
    Tensor r = c % 2 ? random_tensor({2, rows, out}, g) : Tensor();
    const PackedLinear pw(w);
    const Tensor shift = ops::mul(b, gamma);
    EXPECT_VALID(validate::check([&] { return ops::linear_scale_shift(x, pw, gamma, shift, r); },
                                 [&] {
                                   Tensor y = ref::layer_scale(ref::linear(x, w, b), gamma);
                                   return r.defined() ? ref::add(y, r) : y;
                                 },
                                 {1e-5, 1e-4}),
                 "linear_scale_shift x=" << x.str() << " w=" << w.str());
  }
  EXPECT_THROW(ops::linear_scale_shift(random_tensor({2, 4}, g), PackedLinear(random_tensor({3, 4}, g)), Tensor(),
                                       Tensor()),
               std::invalid_argument);
}

TEST(Packed, ChannelsLastPoolsAndLayout) {
  auto g = rng_for("packed_pools");
  for (int c = 0; c < kCases; ++c) {
    const int64_t N = pick(g, {1, 2}), C = pick(g, {1, 3, 17, 64}), H = pick(g, {7, 8, 15, uni(g, 2, 30)});
    const int64_t W = pick(g, {7, 9, 15, uni(g, 2, 30)});
    Tensor x0 = random_tensor({N, C, H, W}, g);
    Tensor x = to_channels_last(x0);
    ASSERT_TRUE(is_channels_last(x));
    EXPECT_VALID(validate::compare(x.contiguous(), x0, {0, 0}), "to_channels_last round trip");
    const int64_t k = std::min<int64_t>(pick(g, {1, 2, 3, 3}), std::min(H, W));
    std::array<int64_t, 2> s{pick(g, {1, 2, 2}), pick(g, {1, 2})}, p{uni(g, 0, k / 2), uni(g, 0, k / 2)};
    const bool ceil_mode = c % 2;
    EXPECT_VALID(validate::check([&] { return ops::max_pool2d(x, {k, k}, s, p, {1, 1}, ceil_mode); },
                                 [&] { return ref::max_pool2d(x0, {k, k}, s, p, {1, 1}, ceil_mode); }, {0, 0}),
                 "channels-last max_pool2d " << x.str() << " k=" << k);
    std::array<int64_t, 2> os{pick(g, {1, 1, 3, 7}), pick(g, {1, 2, 7})};
    EXPECT_VALID(validate::check([&] { return ops::adaptive_avg_pool2d(x, os); },
                                 [&] { return ref::adaptive_avg_pool2d(x0, os); }, {1e-6, 1e-5}),
                 "channels-last adaptive_avg_pool2d " << x.str());
    EXPECT_VALID(validate::check([&] { return ops::adaptive_max_pool2d(x, os); },
                                 [&] { return ref::adaptive_max_pool2d(x0, os); }, {0, 0}),
                 "channels-last adaptive_max_pool2d " << x.str());
    // the NCHW fast path and the channels-last one sum in the same order: same bits
    Tensor a = ops::adaptive_avg_pool2d(x, {1, 1}), b = ops::adaptive_avg_pool2d(x0, {1, 1});
    EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0);
  }
}

// Attention reads q/k/v in place as the strided [B, H, N, hd] views of a qkv projection (timm's reshape +
// permute), and its [B, H, N, hd] result is a view of [B, N, H, hd] memory.
TEST(Packed, AttentionOnQkvViews) {
  auto g = rng_for("packed_attention");
  for (int64_t N : {7, 197, 261}) {
    const int64_t B = 2, H = 3, hd = 16;
    Tensor qkv = random_tensor({B, N, 3 * H * hd}, g).reshape({B, N, 3, H, hd}).permute({2, 0, 3, 1, 4});
    Tensor q = qkv.select(0, 0), k = qkv.select(0, 1), v = qkv.select(0, 2);
    Tensor got;
    EXPECT_VALID(validate::check([&] { return got = ops::scaled_dot_product_attention(q, k, v); },
                                 [&] { return ref::scaled_dot_product_attention(q, k, v); }, {1e-5, 1e-4}),
                 "attention on qkv views, N=" << N);
    EXPECT_TRUE(got.transpose(1, 2).is_contiguous());
  }
}

// Every indirect micro-kernel this CPU can run (not only the dispatched one: the AVX2 and generic kernels are the
// fast path elsewhere), against a double-precision dot product: several segments of row pointers (one of them the
// zero row), accumulate into C, and the register epilogue (scale, shift, residual, ReLU keeping NaN).
TEST(Packed, EveryIndirectKernelAgainstScalar) {
  auto g = rng_for("packed_kernels");
  std::vector<detail::GemmIndirectKernelInfo> kernels{detail::gemm_indirect_kernel_generic()};
  if (cpu_features().has_avx2_fma()) kernels.push_back(detail::gemm_indirect_kernel_avx2());
  if (cpu_features().has_avx512()) kernels.push_back(detail::gemm_indirect_kernel_avx512());
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (const auto& k : kernels) {
    const int64_t MR = k.mr, NR = k.nr, nseg = 3, len = 37, ldc = NR + 5, ldr = NR + 3;
    std::vector<float> rows(static_cast<size_t>(nseg * MR * len)), zero(static_cast<size_t>(len), 0.f);
    std::vector<float> bp(static_cast<size_t>(nseg * len * NR)), c0(static_cast<size_t>(MR * ldc));
    std::vector<float> scale(static_cast<size_t>(NR)), shift(static_cast<size_t>(NR)),
        res(static_cast<size_t>(MR * ldr));
    for (auto* v : {&rows, &bp, &c0, &scale, &shift, &res})
      for (float& x : *v) x = u(g);
    std::vector<const float*> a(static_cast<size_t>(nseg * MR));
    for (int64_t s = 0; s < nseg; ++s)
      for (int64_t i = 0; i < MR; ++i)
        a[static_cast<size_t>(s * MR + i)] = (s == 1 && i == 2) ? zero.data() : rows.data() + (s * MR + i) * len;
    c0[static_cast<size_t>(ldc + 1)] = std::numeric_limits<float>::quiet_NaN();  // row 1, col 1: ReLU keeps NaN
    for (int variant = 0; variant < 3; ++variant) {  // store; accumulate; accumulate + full epilogue
      const bool accumulate = variant > 0, with_ep = variant == 2;
      std::vector<float> c = c0;
      detail::TileEpilogue ep;
      ep.scale = scale.data(), ep.shift = shift.data(), ep.residual = res.data(), ep.ldr = ldr, ep.relu = true;
      k.fn(nseg, len, a.data(), bp.data(), c.data(), ldc, accumulate, with_ep ? &ep : nullptr);
      for (int64_t i = 0; i < MR; ++i)
        for (int64_t j = 0; j < NR; ++j) {
          double want = 0;
          for (int64_t s = 0; s < nseg; ++s)
            for (int64_t kk = 0; kk < len; ++kk)
              want += static_cast<double>(a[static_cast<size_t>(s * MR + i)][kk]) *
                      bp[static_cast<size_t>((s * len + kk) * NR + j)];
          if (accumulate) want += c0[static_cast<size_t>(i * ldc + j)];
          if (with_ep) {
            want = want * scale[static_cast<size_t>(j)] + shift[static_cast<size_t>(j)] +
                   res[static_cast<size_t>(i * ldr + j)];
            if (!(want > 0) && !std::isnan(want)) want = 0;
          }
          const float got = c[static_cast<size_t>(i * ldc + j)];
          if (std::isnan(want)) {
            EXPECT_TRUE(std::isnan(got)) << k.name << " variant " << variant << " (" << i << ", " << j << ")";
          } else {
            EXPECT_NEAR(got, want, 1e-4 * (1 + std::fabs(want)))
                << k.name << " variant " << variant << " (" << i << ", " << j << ")";
          }
        }
      for (int64_t i = 0; i < MR; ++i)  // columns past the tile are never written
        for (int64_t j = NR; j < ldc; ++j)
          EXPECT_EQ(c[static_cast<size_t>(i * ldc + j)], c0[static_cast<size_t>(i * ldc + j)]);
    }
  }
}

TEST(Packed, DeterministicAcrossThreadCounts) {
  const WinogradOff direct_paths;
  auto g = rng_for("packed_determinism");
  Tensor x = random_tensor({2, 19, 15, 15}, g), w3 = random_tensor({37, 19, 3, 3}, g);
  Tensor w1 = random_tensor({70, 19, 1, 1}, g), rgb = random_tensor({2, 3, 30, 30}, g);
  Tensor w7 = random_tensor({64, 3, 7, 7}, g), s = random_tensor({70}, g), h = random_tensor({70}, g);
  Tensor tok = random_tensor({2, 197, 300}, g), lw = random_tensor({200, 300}, g), lb = random_tensor({200}, g);
  Conv2dOptions pad1, stem;
  pad1.padding = {1, 1};
  stem.stride = {2, 2};
  stem.padding = {3, 3};
  const PackedConv2d p3(w3, pad1), p1(w1, {}), p7(w7, stem);
  // ResNet layer4-like: 2 x 7x7 = 98 rows, K = 9 * 32, 320 columns (split into blocks of >= 128 columns)
  const Tensor small = random_tensor({2, 32, 7, 7}, g);
  const PackedConv2d p4(random_tensor({320, 32, 3, 3}, g), pad1);
  const PackedLinear pl(lw);
  auto run_all = [&] {
    std::vector<Tensor> r;
    r.push_back(ops::conv2d(x, p3, Tensor(), s.narrow(0, 0, 37), Activation::relu));  // taps
    r.push_back(ops::conv2d(x, p1, s, h, Activation::none, ops::conv2d(x, p1, Tensor(), Tensor())));  // 1x1
    r.push_back(ops::conv2d(rgb, p7, Tensor(), Tensor(), Activation::relu));  // im2col (3 channels)
    r.push_back(ops::linear(tok, pl, lb, Activation::gelu));
    r.push_back(ops::max_pool2d(r[2], {3, 3}, {2, 2}, {1, 1}));
    r.push_back(ops::conv2d(small, p4, Tensor(), Tensor(), Activation::relu));  // few rows: columns split first
    return r;
  };
  expect_same_bits_across_threads(run_all);
}

TEST(Packed, ErrorsNameTheOpAndArgument) {
  auto g = rng_for("packed_errors");
  const PackedConv2d pw(random_tensor({8, 4, 3, 3}, g), {});
  auto msg = [](auto&& f) {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg([&] {
              ops::conv2d(random_tensor({1, 5, 8, 8}, g), pw, Tensor(), Tensor());
            }).find("ops::conv2d(packed)"),
            std::string::npos);
  EXPECT_NE(msg([&] {
              ops::conv2d(random_tensor({1, 4, 8, 8}, g), pw, random_tensor({7}, g), Tensor());
            }).find("scale"),
            std::string::npos);
  EXPECT_NE(msg([&] { ops::conv2d(random_tensor({1, 4, 8, 8}, g), PackedConv2d(), Tensor(), Tensor()); })
                .find("not packed"),
            std::string::npos);
  // the fused conv + max-pool: the conv's checks and the pool's, under its own name
  const std::string pool_msg = msg([&] {
    ops::conv2d_max_pool2d(random_tensor({1, 4, 8, 8}, g), pw, Tensor(), Tensor(), Activation::relu, {9, 9}, {2, 2},
                           {0, 0});
  });
  EXPECT_NE(pool_msg.find("ops::conv2d_max_pool2d"), std::string::npos) << pool_msg;
  EXPECT_NE(msg([&] {
              ops::conv2d_max_pool2d(random_tensor({1, 5, 8, 8}, g), pw, Tensor(), Tensor(), Activation::relu, {3, 3},
                                     {2, 2}, {1, 1});
            }).find("ops::conv2d_max_pool2d"),
            std::string::npos);
  Conv2dOptions grouped;
  grouped.groups = 2;
  EXPECT_NE(msg([&] { PackedConv2d(random_tensor({8, 2, 3, 3}, g), grouped); }).find("grouped"), std::string::npos);
  const PackedLinear pl(random_tensor({5, 6}, g));
  EXPECT_NE(msg([&] { ops::linear(random_tensor({2, 7}, g), pl); }).find("6 features"), std::string::npos);
}

TEST(Packed, WeightsUnpackExactly) {
  // Model::to_device uploads the torch layout recovered from the packed copy: it must be the same floats.
  std::mt19937 g(5);
  std::normal_distribution<float> nd;
  for (auto [co, ci, k] : {std::tuple<int64_t, int64_t, int64_t>{5, 3, 7}, {64, 33, 3}, {70, 16, 1}}) {
    Tensor w = Tensor::empty({co, ci, k, k});
    for (int64_t i = 0; i < w.numel(); ++i) w.data<float>()[i] = nd(g);
    Conv2dOptions o;
    Tensor back = PackedConv2d(w, o).weight();
    ASSERT_EQ(back.shape(), w.shape());
    EXPECT_EQ(0, std::memcmp(back.raw(), w.raw(), w.nbytes()));
  }
  Tensor lw = Tensor::empty({37, 45});
  for (int64_t i = 0; i < lw.numel(); ++i) lw.data<float>()[i] = nd(g);
  Tensor lback = PackedLinear(lw).weight();
  ASSERT_EQ(lback.shape(), lw.shape());
  EXPECT_EQ(0, std::memcmp(lback.raw(), lw.raw(), lw.nbytes()));
}
