// Winograd F(4x4, 3x3) behind the packed conv (engine/winograd.h, packed.cpp) against the reference convolution
// (double accumulation) through the one validator: odd maps (tiles cut at the right / bottom edge: 7x7, 13x13, a
// 1x1 output), padding 0/1/2, channel counts that are not multiples of the 16-lane transforms or the 32-wide
// panels, batch 1, both input layouts, and every epilogue (BatchNorm scale/shift, bias only, residual, ReLU,
// GELU). Then: the same bits for 1, 2 and 3 threads (also across tile chunks), agreement with the direct path
// on a shape that needs several chunks, which convs get the path, and the error bound stated in RESULTS_engine.md.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/ops.h"
#include "engine/packed.h"
#include "engine/threads.h"
#include "engine/validate.h"
#include "tests/engine/op_test_util.h"

using namespace tabula;
using test::pick;
using test::rng_for;
using test::uni;
using validate::random_tensor;

namespace {

// The specification, as for every packed conv: act(ref::conv2d(x, w) * scale + shift + residual).
Tensor reference_conv(const Tensor& x, const Tensor& w, const Conv2dOptions& o, const Tensor& scale,
                      const Tensor& shift, Activation act, const Tensor& residual) {
  Tensor y = ref::conv2d(x, w, Tensor(), o);
  const int64_t C = w.size(0);
  if (scale.defined()) y = ref::mul(y, scale.reshape({1, C, 1, 1}));
  if (shift.defined()) y = ref::add(y, shift.reshape({1, C, 1, 1}));
  if (residual.defined()) y = ref::add(y, residual);
  return ref::activation(y, act);
}

Conv2dOptions padded(int64_t p) {
  Conv2dOptions o;
  o.padding = {p, p};
  return o;
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
    const Conv2dOptions o = padded(c == 0 ? 0 : pad);
    H = std::max<int64_t>(H, 3 - 2 * o.padding[0]), W = std::max<int64_t>(W, 3 - 2 * o.padding[1]);
    Tensor x = random_tensor({N, cin, H, W}, g);
    if (c % 2) x = to_channels_last(x);
    // weights of a trained conv's scale (He init: std sqrt(2 / (9 Cin))), so outputs are O(1) like the inputs
    Tensor w = random_tensor({cout, cin, 3, 3}, g, static_cast<float>(std::sqrt(6.0 / (9.0 * static_cast<double>(cin)))));
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
                                        [&] { return reference_conv(x, w, o, scale, shift, act, res); },
                                        {1e-4, 1e-4});
    EXPECT_VALID(report, "winograd conv x=" << x.str() << " w=" << w.str() << " pad=" << o.padding[0]
                                            << " act=" << static_cast<int>(act) << " res=" << res.defined());
    EXPECT_TRUE(is_channels_last(got));
  }
}

// The error bound quoted in bench/RESULTS_engine.md: at ResNet-like channel counts (K = 9 * Cin up to 2304) and
// He-scaled weights, max |winograd - reference| measured 5e-6 .. 1.2e-5 of the output's largest magnitude (the
// direct path: ~4e-7), i.e. the transforms' coefficients (up to 8 per dimension in A^T) amplify fp32 rounding
// 13-32x. Bound checked: 3e-5 of max |y| and 50x the direct path's error.
TEST(Winograd, ErrorAtResNetChannelCounts) {
  auto g = rng_for("winograd_error");
  for (int64_t cin : {64, 128, 256}) {
    const Conv2dOptions o = padded(1);
    Tensor x = random_tensor({1, cin, 14, 14}, g);
    Tensor w = random_tensor({32, cin, 3, 3}, g, static_cast<float>(std::sqrt(6.0 / (9.0 * static_cast<double>(cin)))));
    const Tensor want = ref::conv2d(x, w, Tensor(), o);
    ops::set_winograd_enabled(false);
    const PackedConv2d direct(w, o);
    ops::set_winograd_enabled(true);
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
    EXPECT_LT(err_w / peak, 3e-5) << "Cin " << cin << ": winograd max error " << err_w << " of peak " << peak;
    EXPECT_LT(err_w, 50 * err_d + 1e-7) << "Cin " << cin << ": direct path's error " << err_d;
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
  const int saved = get_num_threads();
  set_num_threads(1);
  const auto one = run_all();
  for (int t : {2, 3}) {
    set_num_threads(t);
    const auto many = run_all();
    for (size_t i = 0; i < one.size(); ++i)
      EXPECT_EQ(std::memcmp(one[i].contiguous().raw(), many[i].contiguous().raw(), one[i].nbytes()), 0)
          << "conv #" << i << " with " << t << " threads";
  }
  set_num_threads(saved);
  // the multi-chunk conv agrees with the direct path (itself checked against the reference in test_packed)
  ops::set_winograd_enabled(false);
  const PackedConv2d direct(wb, padded(1));
  ops::set_winograd_enabled(true);
  EXPECT_VALID(validate::compare(one[0], ops::conv2d(xb, direct, Tensor(), sb, Activation::relu), {1e-4, 1e-4}),
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
  // switched off: packed without the transformed copy; the torch-layout weight comes back exactly either way
  auto g = rng_for("winograd_switch");
  Tensor w = random_tensor({24, 20, 3, 3}, g);
  ops::set_winograd_enabled(false);
  const PackedConv2d off(w, s1);
  ops::set_winograd_enabled(true);
  const PackedConv2d on(w, s1);
  EXPECT_FALSE(off.wino.defined());
  EXPECT_TRUE(on.wino.defined());
  EXPECT_EQ(on.wino.rows(), 36 * 20);
  EXPECT_EQ(std::memcmp(on.weight().raw(), w.raw(), w.nbytes()), 0);
}
