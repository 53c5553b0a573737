// Reference-centred bf16 rounding (packed.h Bf16Centres): inputs that share a large common part with a recorded
// reference come out far closer to the exact fp32 product than with plain rounding (W c uses the fp32 weights),
// on the linear, the 1x1 GEMM, the per-tap conv and the im2col stem (whose padding pixels must read -c), the
// fused forms keep the plain op's bits, a row far from every centre keeps plain rounding's bits, and the result
// of an image depends neither on the rest of the batch nor on the thread count. Skipped without AVX512-BF16.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/cpu/gemm_kernels.h"
#include "engine/cpu/packed.h"
#include "engine/ops.h"
#include "engine/threads.h"
#include "engine/validate.h"
#include "tests/engine/op_test_util.h"

using namespace tabula;
using test::rng_for;
using test::WinogradOff;
using validate::random_tensor;

namespace {

#define SKIP_WITHOUT_BF16() \
  if (!detail::gemm_bf16_kernel()) GTEST_SKIP() << "no AVX512-BF16 on this CPU"

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const Tensor x = a.contiguous(), y = b.contiguous();
  EXPECT_EQ(x.shape(), y.shape());
  double m = 0;
  for (int64_t i = 0; i < x.numel(); ++i) m = std::max(m, std::fabs(double(x.data<float>()[i]) - y.data<float>()[i]));
  return m;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  const Tensor x = a.contiguous(), y = b.contiguous();
  return x.shape() == y.shape() && std::memcmp(x.raw(), y.raw(), x.nbytes()) == 0;
}

// common + noise * N(0, 1) elementwise; common broadcasts over the leading dimensions (a feature vector or a map).
Tensor around(const Tensor& common, const Shape& shape, float noise, std::mt19937_64& g) {
  Tensor t = random_tensor(shape, g, noise);
  const Tensor c = common.contiguous();
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] += c.data<float>()[i % c.numel()];
  return t;
}

Tensor slice_batch(const Tensor& x, int64_t n) { return x.slice(0, n, n + 1).contiguous(); }

}  // namespace

// Tokens that share a common vector 100x their spread (an untrained ViT's class token after attention): the
// centred result is >= 30x closer to the exact product than plain rounding, and rows far from every centre
// (plain rounding is then the nearest choice) keep plain rounding's bits.
TEST(Bf16Centres, LinearNearItsReferenceIsFarMoreAccurate) {
  SKIP_WITHOUT_BF16();
  auto g = rng_for("bf16_centres_linear");
  const int64_t T = 50, in = 201, out = 96;  // odd in: rows padded to a pair
  const Tensor w = random_tensor({out, in}, g, 0.1f), b = random_tensor({out}, g);
  const Tensor common = random_tensor({in}, g, 5.f);
  const PackedLinear centred(w, PackedType::bf16), plain(w, PackedType::bf16);
  {
    const ops::Bf16CentreRecording recording;
    ops::linear(around(common, {1, T, in}, 0.05f, g), centred, b);
  }
  ASSERT_EQ(centred.b.centres()->count(), 3);
  EXPECT_EQ(plain.b.centres()->count(), 0);
  const Tensor x = around(common, {3, T, in}, 0.05f, g);
  const Tensor exact = ref::linear(x, w, b, Activation::gelu);
  const double e_centred = max_abs_diff(ops::linear(x, centred, b, Activation::gelu), exact);
  const double e_plain = max_abs_diff(ops::linear(x, plain, b, Activation::gelu), exact);
  EXPECT_LT(e_centred * 30, e_plain) << "centred " << e_centred << " plain " << e_plain;

  const Tensor far = random_tensor({2, 7, in}, g, 0.5f);  // nearer to zero than to the common vector
  EXPECT_TRUE(same_bits(ops::linear(far, centred, b), ops::linear(far, plain, b)));
}

// Maps near a constant reference map (a dark microscopy image): every direct A path, borders included (a padding
// pixel that read zero instead of -c would be off by W_tap c there; a border pixel given all taps' W_lo c, or none,
// by W_lo c), against the exact conv with the fp32 weights: stride 1 and 2, 3x3 / 5x5 / the 7x7 stem with pad 3,
// 1x1 with stride 1 and 2, a dilated 3x3.
TEST(Bf16Centres, ConvNearItsReferenceIsFarMoreAccurateAtTheBordersToo) {
  SKIP_WITHOUT_BF16();
  const WinogradOff direct_paths;
  auto g = rng_for("bf16_centres_conv");
  struct Case {
    int64_t cin, cout, k, stride, pad, dilation = 1;
  };
  for (const Case c : {Case{32, 40, 3, 1, 1}, Case{3, 64, 7, 2, 3}, Case{64, 70, 1, 1, 0}, Case{33, 16, 3, 2, 1},
                       Case{64, 48, 1, 2, 0}, Case{16, 32, 5, 1, 2}, Case{32, 40, 3, 1, 2, 2}, Case{3, 24, 3, 1, 1}}) {
    Conv2dOptions o;
    o.stride = {c.stride, c.stride};
    o.padding = {c.pad, c.pad};
    o.dilation = {c.dilation, c.dilation};
    const Tensor w = random_tensor({c.cout, c.cin, c.k, c.k}, g, 0.2f);
    const Tensor scale = random_tensor({c.cout}, g), shift = random_tensor({c.cout}, g);
    const PackedConv2d centred(w, o, PackedType::bf16), plain(w, o, PackedType::bf16);
    Tensor level = Tensor::empty({c.cin});
    for (int64_t i = 0; i < c.cin; ++i) level.data<float>()[i] = -2.f + 0.01f * static_cast<float>(i);
    {
      const ops::Bf16CentreRecording recording;
      ops::conv2d(around(level, {1, 12, 12, c.cin}, 0.f, g).permute({0, 3, 1, 2}), centred, scale, shift);
    }
    ASSERT_EQ(centred.b.centres()->count(), 3);
    const Tensor x = around(level, {2, 12, 12, c.cin}, 0.01f, g).permute({0, 3, 1, 2});
    const Tensor exact = test::reference_packed_conv(x, w, o, scale, shift, Activation::none, {});
    const double e_centred = max_abs_diff(ops::conv2d(x, centred, scale, shift), exact);
    const double e_plain = max_abs_diff(ops::conv2d(x, plain, scale, shift), exact);
    EXPECT_LT(e_centred * 30, e_plain) << "cin " << c.cin << " k " << c.k << ": centred " << e_centred << " plain "
                                       << e_plain;
  }
}

// The stem's conv + max-pool in bands and the output over the residual keep the centred conv's bits.
TEST(Bf16Centres, FusedFormsKeepTheBits) {
  SKIP_WITHOUT_BF16();
  auto g = rng_for("bf16_centres_fused");
  const PackedConv2d p7(random_tensor({64, 3, 7, 7}, g), test::conv_options(2, 3), PackedType::bf16);
  const Tensor s = random_tensor({64}, g), h = random_tensor({64}, g);
  const PackedConv2d p1(random_tensor({64, 64, 1, 1}, g), {}, PackedType::bf16);
  const Tensor common = random_tensor({64}, g, 3.f);
  {
    const ops::Bf16CentreRecording recording;
    ops::conv2d(around(Tensor::full({3}, -2.f), {1, 40, 40, 3}, 0.01f, g).permute({0, 3, 1, 2}), p7, s, h);
    ops::conv2d(to_channels_last(around(common, {1, 9, 9, 64}, 0.01f, g).permute({0, 3, 1, 2})), p1, s, h);
  }
  const Tensor rgb = around(Tensor::full({3}, -2.f), {2, 40, 40, 3}, 0.02f, g).permute({0, 3, 1, 2});
  const Tensor x = to_channels_last(around(common, {2, 9, 9, 64}, 0.01f, g).permute({0, 3, 1, 2}));
  const Tensor r = to_channels_last(random_tensor({2, 64, 9, 9}, g));
  test::expect_fused_forms_keep_the_bits(p7, rgb, p1, x, r, s, h);
}

// An image's result is the same alone or in a batch, with 1, 2 or 3 threads.
TEST(Bf16Centres, BatchAndThreadCountIndependent) {
  SKIP_WITHOUT_BF16();
  const WinogradOff direct_paths;
  auto g = rng_for("bf16_centres_batch");
  const Conv2dOptions pad1 = test::conv_options(1, 1);
  const PackedConv2d p3(random_tensor({37, 32, 3, 3}, g), pad1, PackedType::bf16);
  const PackedLinear pl(random_tensor({200, 300}, g), PackedType::bf16);
  const Tensor level = random_tensor({32}, g, 2.f), common = random_tensor({300}, g, 4.f);
  {
    const ops::Bf16CentreRecording recording;
    ops::conv2d(around(level, {1, 15, 15, 32}, 0.01f, g).permute({0, 3, 1, 2}), p3, Tensor(), Tensor());
    ops::linear(around(common, {1, 197, 300}, 0.05f, g), pl);
  }
  // image 0 near the references, image 1 unrelated, image 2 near again
  Tensor x = around(level, {3, 15, 15, 32}, 0.01f, g).permute({0, 3, 1, 2}).contiguous();
  Tensor tok = around(common, {3, 197, 300}, 0.05f, g);
  std::memcpy(x.data<float>() + 32 * 225, random_tensor({32 * 225}, g).data<float>(), 32 * 225 * sizeof(float));
  std::memcpy(tok.data<float>() + 197 * 300, random_tensor({197 * 300}, g).data<float>(), 197 * 300 * 4);
  auto run_all = [&] {
    return std::vector<Tensor>{ops::conv2d(x, p3, Tensor(), Tensor(), Activation::relu).contiguous(),
                               ops::linear(tok, pl, Tensor(), Activation::gelu)};
  };
  const int saved = get_num_threads();
  set_num_threads(1);
  const auto one = run_all();
  for (int t : {2, 3}) {
    set_num_threads(t);
    const auto many = run_all();
    for (size_t i = 0; i < one.size(); ++i) EXPECT_TRUE(same_bits(one[i], many[i])) << "op " << i << ", " << t;
  }
  set_num_threads(saved);
  for (int64_t n = 0; n < 3; ++n) {
    EXPECT_TRUE(same_bits(slice_batch(one[0], n),
                          ops::conv2d(slice_batch(x, n), p3, Tensor(), Tensor(), Activation::relu)))
        << "conv image " << n;
    EXPECT_TRUE(same_bits(slice_batch(one[1], n), ops::linear(slice_batch(tok, n), pl, Tensor(), Activation::gelu)))
        << "linear image " << n;
  }
}

// fp32 packed weights have no centres: recording changes nothing there.
TEST(Bf16Centres, Fp32WeightsUnaffected) {
  auto g = rng_for("bf16_centres_fp32");
  const PackedLinear pl(random_tensor({20, 30}, g), PackedType::f32);
  EXPECT_EQ(pl.b.centres(), nullptr);
  const Tensor x = random_tensor({2, 5, 30}, g);
  const Tensor before = ops::linear(x, pl);
  {
    const ops::Bf16CentreRecording recording;
    EXPECT_TRUE(same_bits(ops::linear(x, pl), before));
  }
  EXPECT_TRUE(same_bits(ops::linear(x, pl), before));
}

// Attention in bf16 on keys and values that share a common part 60x their spread (an untrained ViT's): rounded as
// deviations from their means, the output stays within a small fraction of the spread of fp32's (plain rounding:
// the common part's rounding error, 2^-9 of it, is as large as the tokens' differences), and an image's output is
// the same alone or in a batch.
TEST(Bf16Centres, AttentionRoundsKeysAndValuesAroundTheirMeans) {
  SKIP_WITHOUT_BF16();
  auto g = rng_for("bf16_centres_attention");
  const int64_t B = 2, H = 3, N = 50, D = 32;
  const Tensor common = random_tensor({H, 1, D}, g, 3.f);
  auto tokens = [&] {
    Tensor t = random_tensor({B, H, N, D}, g, 0.05f);
    for (int64_t i = 0; i < t.numel(); ++i)
      t.data<float>()[i] += common.data<float>()[(i / (N * D)) % H * D + i % D];
    return t;
  };
  const Tensor q = random_tensor({B, H, N, D}, g), k = tokens(), v = tokens();
  const Tensor fp32 = ops::scaled_dot_product_attention(q, k, v).contiguous();
  ops::set_cpu_precision(Precision::bf16);
  const Tensor bf16 = ops::scaled_dot_product_attention(q, k, v).contiguous();
  const Tensor alone = ops::scaled_dot_product_attention(slice_batch(q, 1), slice_batch(k, 1), slice_batch(v, 1));
  ops::set_cpu_precision(Precision::fp32);
  EXPECT_LT(max_abs_diff(bf16, fp32), 1e-3);
  EXPECT_TRUE(same_bits(slice_batch(bf16, 1), alone));
}
