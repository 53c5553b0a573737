// Winograd F(4x4, 3x3) behind the packed conv (engine/cpu/winograd.h, packed.cpp) against the reference convolution
// (double accumulation) through the one validator: odd maps (tiles cut at the right / bottom edge: 7x7, 13x13, a
// 1x1 output), padding 0/1/2, channel counts that are not multiples of the 16-lane transforms or the 32-wide
// panels, batch 1, both input layouts, and every epilogue (BatchNorm scale/shift, bias only, residual, ReLU,
// GELU). Then: the same bits for 1, 2 and 3 threads (also across tile chunks), agreement with the direct path
// on a shape that needs several chunks, which convs get the path, and the error bound stated in RESULTS_engine.md.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "engine/ops.h"
#include "engine/cpu/packed.h"
#include "engine/system.h"
#include "engine/cpu/winograd.h"
#include "engine/threads.h"
#include "engine/validate.h"
#include "tests/engine/op_test_util.h"

using namespace tabula;
using test::pick;
using test::rng_for;
using test::uni;
using test::expect_same_bits_across_threads;
using validate::random_tensor;

namespace {

Conv2dOptions padded(int64_t p) {
  Conv2dOptions o;
  o.padding = {p, p};
  return o;
}

// Packed without the Winograd copy: the direct paths, the baseline Winograd is compared with.
PackedConv2d packed_direct(const Tensor& w, const Conv2dOptions& o) {
  const test::WinogradOff direct_paths;
  return PackedConv2d(w, o);
}

}  // namespace

TEST(Winograd, AgainstReferenceOnRandomShapes) {
  auto g = rng_for("winograd_f43");
  constexpr int kCases = 28;
  for (int c = 0; c < kCases; ++c) {
    int64_t N = pick(g, {1, 1, 2, 3});
    const int64_t cin = pick(g, {16, 19, 32, 40, 64, 70}), cout = pick(g, {16, 17, 33, 48, 64});
    const int64_t pad = pick(g, {0, 1, 1, 1, 2});
    int64_t H = pick(g, {7, 7, 13, 14, 8, uni(g, 3, 20)}), W = pick(g, {7, 13, 9, uni(g, 3, 20)});
    if (c == 0) H = W = 3, N = 1;  // pad 0 gives a 1x1 output: one tile, 15 of its 16 outputs dropped
    if (c == 1) H = W = 7;    // ResNet layer4's map: 2x2 tiles covering 8x8
    if (c == 2) H = W = 13;   // odd: the last tile row and column are partial
    const Conv2dOptions o = padded(c == 0 ? 0 : pad);
    H = std::max<int64_t>(H, 3 - 2 * o.padding[0]), W = std::max<int64_t>(W, 3 - 2 * o.padding[1]);
    Tensor x = random_tensor({N, cin, H, W}, g);
    if (c % 2) x = to_channels_last(x);
    // weights of a trained conv's scale (He init: std sqrt(2 / (9 Cin))), so outputs are O(1) like the inputs
    Tensor w =
        random_tensor({cout, cin, 3, 3}, g, static_cast<float>(std::sqrt(6.0 / (9.0 * static_cast<double>(cin)))));
    const PackedConv2d pw(w, o);
    ASSERT_TRUE(pw.wino.defined()) << "a " << cin << " -> " << cout << " 3x3 stride-1 conv takes Winograd";
    Tensor scale = c % 3 == 0 ? Tensor() : random_tensor({cout}, g);
    Tensor shift = c % 4 == 0 ? Tensor() : random_tensor({cout}, g);
    const Activation act = c % 7 == 3 ? Activation::gelu : (c % 2 ? Activation::relu : Activation::none);
    const int64_t Ho = H + 2 * o.padding[0] - 2, Wo = W + 2 * o.padding[1] - 2;
    Tensor res = c % 3 == 1 ? random_tensor({N, cout, Ho, Wo}, g) : Tensor();
    if (res.defined() && c % 2) res = to_channels_last(res);
    Tensor got;
    const auto report = validate::check([&] { return got = ops::conv2d(x, pw, scale, shift, act, res); },
                                        [&] { return test::reference_packed_conv(x, w, o, scale, shift, act, res); },
                                        {1e-4, 1e-4});
    EXPECT_VALID(report, "winograd conv x=" << x.str() << " w=" << w.str() << " pad=" << o.padding[0]
                                            << " act=" << static_cast<int>(act) << " res=" << res.defined());
    EXPECT_TRUE(is_channels_last(got));
  }
}

// The error bound quoted in bench/RESULTS_engine.md: at ResNet-like channel counts (K = 9 * Cin up to 2304) and
// He-scaled weights, max |winograd - reference| measured 4e-6 .. 1.4e-5 of the output's largest magnitude over 30
// seeds (the direct path: 3-5e-7), i.e. the transforms' coefficients (up to 8 per dimension in A^T) amplify fp32
// rounding 10-40x. Bound checked: 4e-5 of max |y| and 100x the direct path's error.
TEST(Winograd, ErrorAtResNetChannelCounts) {
  auto g = rng_for("winograd_error");
  for (int64_t cin : {64, 128, 256}) {
    const Conv2dOptions o = padded(1);
    Tensor x = random_tensor({1, cin, 14, 14}, g);
    Tensor w = random_tensor({32, cin, 3, 3}, g, static_cast<float>(std::sqrt(6.0 / (9.0 * static_cast<double>(cin)))));
    const Tensor want = ref::conv2d(x, w, Tensor(), o);
    const PackedConv2d direct = packed_direct(w, o);
    const PackedConv2d wino(w, o);
    ASSERT_FALSE(direct.wino.defined());
    ASSERT_TRUE(wino.wino.defined());
    const Tensor a = ops::conv2d(x, wino, Tensor(), Tensor()).contiguous();
    const Tensor d = ops::conv2d(x, direct, Tensor(), Tensor()).contiguous();
    double peak = 0, err_w = 0, err_d = 0;
    for (int64_t i = 0; i < want.numel(); ++i) {
      const double r = want.data<float>()[i];
      peak = std::max(peak, std::fabs(r));
      err_w = std::max(err_w, std::fabs(a.data<float>()[i] - r));
      err_d = std::max(err_d, std::fabs(d.data<float>()[i] - r));
    }
    EXPECT_LT(err_w / peak, 4e-5) << "Cin " << cin << ": winograd max error " << err_w << " of peak " << peak;
    EXPECT_LT(err_w, 100 * err_d + 1e-7) << "Cin " << cin << ": direct path's error " << err_d;
    std::printf("  Cin %4lld: max |err| / max |y|: winograd %.2e, direct %.2e\n", static_cast<long long>(cin),
                err_w / peak, err_d / peak);
  }
}

TEST(Winograd, DeterministicAcrossThreadCountsAndChunks) {
  auto g = rng_for("winograd_determinism");
  // 256 -> 256 channels on 2 x 32x32: 128 tiles, more than one chunk of tiles (packed.cpp, kWinoChunkBytes)
  Tensor xb = to_channels_last(random_tensor({2, 256, 32, 32}, g));
  Tensor wb = random_tensor({256, 256, 3, 3}, g, 0.03f), sb = random_tensor({256}, g);
  Tensor xs = random_tensor({3, 19, 13, 11}, g), ws = random_tensor({37, 19, 3, 3}, g), ss = random_tensor({37}, g);
  const PackedConv2d pb(wb, padded(1)), ps(ws, padded(1));
  ASSERT_TRUE(pb.wino.defined() && ps.wino.defined());
  auto run_all = [&] {
    return std::vector<Tensor>{ops::conv2d(xb, pb, Tensor(), sb, Activation::relu),
                               ops::conv2d(xs, ps, ss, ss, Activation::none)};
  };
  expect_same_bits_across_threads(run_all, {2, 3}, "conv");
  // the multi-chunk conv agrees with the direct path (itself checked against the reference in test_packed)
  const PackedConv2d direct = packed_direct(wb, padded(1));
  EXPECT_VALID(validate::compare(ops::conv2d(xb, pb, Tensor(), sb, Activation::relu),
                                 ops::conv2d(xb, direct, Tensor(), sb, Activation::relu), {1e-4, 1e-4}),
               "multi-chunk winograd vs direct");
}

TEST(Winograd, WhichConvsTakeIt) {
  Conv2dOptions s1 = padded(1), s2 = padded(1), dil = padded(2), grp = padded(1);
  s2.stride = {2, 2};
  dil.dilation = {2, 2};
  grp.groups = 2;
  EXPECT_TRUE(winograd_conv_eligible(64, 64, 3, 3, s1));
  EXPECT_TRUE(winograd_conv_eligible(256, 256, 3, 3, padded(0)));
  EXPECT_FALSE(winograd_conv_eligible(128, 128, 3, 3, s2));   // stride 2 (ResNet layer2-4 block 0)
  EXPECT_FALSE(winograd_conv_eligible(64, 64, 3, 3, dil));    // dilation
  EXPECT_FALSE(winograd_conv_eligible(64, 64, 3, 3, grp));    // groups
  EXPECT_FALSE(winograd_conv_eligible(64, 64, 1, 1, {}));     // 1x1
  EXPECT_FALSE(winograd_conv_eligible(64, 3, 3, 3, s1));      // RGB input: im2col rows
  EXPECT_FALSE(winograd_conv_eligible(8, 64, 3, 3, s1));      // too few output channels to fill the panels
  EXPECT_FALSE(winograd_conv_eligible(512, 512, 3, 3, s1));   // ResNet layer4: 4x the weight memory for ~2 % time
  EXPECT_TRUE(winograd_conv_eligible(256, 256, 3, 3, s1));    // ResNet layer3
  // switched off (the tests' WinogradOff, op_test_util.h): packed without the transformed copy, and with it again
  // once the switch is back; the torch-layout weight comes back exactly either way
  auto g = rng_for("winograd_switch");
  Tensor w = random_tensor({24, 20, 3, 3}, g);
  const PackedConv2d off = packed_direct(w, s1);
  const PackedConv2d on(w, s1);
  EXPECT_FALSE(off.wino.defined());
  EXPECT_TRUE(on.wino.defined());
  EXPECT_EQ(on.wino.rows(), 36 * 20);
  EXPECT_EQ(std::memcmp(on.weight().raw(), w.raw(), w.nbytes()), 0);
}

// Every transform body this CPU can run (generic, AVX2, AVX-512: only one is dispatched here, the others are the
// fast path elsewhere) against B^T d B and A^T m A evaluated in double from the matrices in winograd.h, including
// padding, partial tiles at the map's edge, a channel tail (19 / 21 channels) and the full epilogue.
TEST(Winograd, EveryTransformBodyAgainstDouble) {
  static constexpr double BT[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                      {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
  static constexpr double AT[4][6] = {
      {1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
  auto g = rng_for("winograd_bodies");
  detail::WinogradGeometry geo;
  geo.N = 2, geo.H = 9, geo.W = 7, geo.C = 19, geo.Cout = 21, geo.pad_h = 1, geo.pad_w = 1;
  geo.Ho = 9, geo.Wo = 7, geo.th = 3, geo.tw = 2;
  const int64_t T = geo.tiles(), C = geo.C, Co = geo.Cout;
  const Tensor x = random_tensor({geo.N * geo.H * geo.W * C}, g), m = random_tensor({36 * T * Co}, g);
  const Tensor sc = random_tensor({Co}, g), sh = random_tensor({Co}, g);
  const Tensor res = random_tensor({geo.N * geo.Ho * geo.Wo * Co}, g);
  std::vector<std::pair<const char*, detail::WinogradKernels>> bodies{{"generic", detail::winograd_kernels_generic()}};
  if (cpu_features().has_avx2_fma()) bodies.emplace_back("avx2", detail::winograd_kernels_avx2());
  if (cpu_features().has_avx512()) bodies.emplace_back("avx512", detail::winograd_kernels_avx512());
  const float* xp = x.data<float>();
  for (const auto& [name, k] : bodies) {
    std::vector<float> v(static_cast<size_t>(36 * T * C), std::nanf(""));
    k.input(geo, xp, 0, T, v.data(), T * C);
    std::vector<float> y(static_cast<size_t>(geo.N * geo.Ho * geo.Wo * Co), std::nanf(""));
    detail::WinogradEpilogue ep;
    ep.scale = sc.data<float>(), ep.shift = sh.data<float>(), ep.residual = res.data<float>(),
    ep.act = Activation::relu;
    k.output(geo, m.data<float>(), T * Co, 0, T, ep, y.data());
    int bad = 0;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t n = t / 6, ty = (t % 6) / 2, tx = t % 2;
      for (int64_t c = 0; c < C; ++c) {
        double d[6][6], u[6][6];
        for (int i = 0; i < 6; ++i)
          for (int j = 0; j < 6; ++j) {
            const int64_t ih = ty * 4 - 1 + i, iw = tx * 4 - 1 + j;
            d[i][j] =
                ih < 0 || ih >= geo.H || iw < 0 || iw >= geo.W ? 0.0 : xp[((n * geo.H + ih) * geo.W + iw) * C + c];
          }
        for (int i = 0; i < 6; ++i)
          for (int j = 0; j < 6; ++j) {
            u[i][j] = 0;
            for (int a = 0; a < 6; ++a)
              for (int b = 0; b < 6; ++b) u[i][j] += BT[i][a] * d[a][b] * BT[j][b];
            const float got = v[static_cast<size_t>((i * 6 + j) * T * C + t * C + c)];
            if (!(std::fabs(got - u[i][j]) <= 1e-5 * (1 + std::fabs(u[i][j])))) ++bad;
          }
      }
      for (int64_t c = 0; c < Co; ++c)
        for (int io = 0; io < 4; ++io)
          for (int jo = 0; jo < 4; ++jo) {
            const int64_t oh = ty * 4 + io, ow = tx * 4 + jo;
            if (oh >= geo.Ho || ow >= geo.Wo) continue;
            double want = 0;
            for (int a = 0; a < 6; ++a)
              for (int b = 0; b < 6; ++b)
                want += AT[io][a] * m.data<float>()[(a * 6 + b) * T * Co + t * Co + c] * AT[jo][b];
            const int64_t p = (n * geo.Ho + oh) * geo.Wo + ow;
            want = want * sc.data<float>()[c] + sh.data<float>()[c] + res.data<float>()[p * Co + c];
            want = std::max(want, 0.0);
            const float got = y[static_cast<size_t>(p * Co + c)];
            if (!(std::fabs(got - want) <= 1e-5 * (1 + std::fabs(want)))) ++bad;
          }
    }
    EXPECT_EQ(bad, 0) << name << " transforms";
    EXPECT_TRUE(std::none_of(y.begin(), y.end(), [](float f) { return std::isnan(f); }))
        << name << ": unwritten output";
  }
}
