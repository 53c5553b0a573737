// The CPU bf16 path (--precision bf16): the AVX512-BF16 micro-kernel bit for bit against a scalar emulation of
// `vdpbf16ps`, the activation rounding against torch's (dtype.h), and packed convs / linears with bf16 weights
// against the reference run on bf16-rounded inputs and weights (the bf16-rounding reference GEMM), on every A
// path (1x1 GEMM with odd Cin padded to a pair, per-tap pointers, im2col for < 16 or odd channels, the fused
// max-pool, the output over the residual), thread-count determinism and the precision switch's errors. Skipped
// on CPUs without AVX512-BF16.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "engine/cpu/fma_peak.h"
#include "engine/cpu/gemm_kernels.h"
#include "engine/cpu/packed.h"
#include "engine/dtype.h"
#include "engine/ops.h"
#include "engine/system.h"
#include "engine/threads.h"
#include "engine/validate.h"
#include "tests/engine/op_test_util.h"

using namespace tabula;
using test::pick;
using test::rng_for;
using test::uni;
using test::WinogradOff;
using test::expect_same_bits_across_threads;
using validate::random_tensor;

namespace {

#define SKIP_WITHOUT_BF16() \
  if (!detail::gemm_bf16_kernel()) GTEST_SKIP() << "no AVX512-BF16 on this CPU"

Tensor rounded(const Tensor& t) { return t.defined() ? t.to(DType::bf16).to(DType::f32) : t; }

// fp32 sum as vdpbf16ps rounds it: subnormal results flushed to (signed) zero.
float ftz(float v) { return std::fabs(v) < std::numeric_limits<float>::min() ? std::copysign(0.f, v) : v; }
float bf16_daz(uint16_t h) { return (h & 0x7f80) == 0 ? 0.f : bf16_to_f32(h); }

}  // namespace

TEST(GemmBf16, KernelMatchesScalarEmulationBitForBit) {
  SKIP_WITHOUT_BF16();
  const detail::GemmBf16KernelInfo& k = *detail::gemm_bf16_kernel();
  auto g = rng_for("bf16_kernel");
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  const int64_t MR = k.mr, NR = k.nr, nseg = 3, len = 38, ldc = NR + 5, ldr = NR + 3;
  std::vector<uint16_t> rows(static_cast<size_t>(nseg * MR * len)), zero(static_cast<size_t>(len), 0);
  std::vector<uint16_t> bp(static_cast<size_t>(nseg * len * NR));
  std::vector<float> c0(static_cast<size_t>(MR * ldc)), scale(static_cast<size_t>(NR)),
      shift(static_cast<size_t>(NR)), res(static_cast<size_t>(MR * ldr));
  for (auto* v : {&rows, &bp})
    for (uint16_t& x : *v) x = f32_to_bf16(u(g) * 4.f);
  for (auto* v : {&c0, &scale, &shift, &res})
    for (float& x : *v) x = u(g);
  std::vector<const uint16_t*> a(static_cast<size_t>(nseg * MR));
  for (int64_t s = 0; s < nseg; ++s)
    for (int64_t i = 0; i < MR; ++i)
      a[static_cast<size_t>(s * MR + i)] = (s == 1 && i == 2) ? zero.data() : rows.data() + (s * MR + i) * len;
  for (int variant = 0; variant < 3; ++variant) {  // store; accumulate; accumulate + full epilogue
    const bool accumulate = variant > 0, with_ep = variant == 2;
    std::vector<float> c = c0;
    detail::TileEpilogue ep;
    ep.scale = scale.data(), ep.shift = shift.data(), ep.residual = res.data(), ep.ldr = ldr, ep.relu = true;
    k.fn(nseg, len, a.data(), bp.data(), c.data(), ldc, accumulate, with_ep ? &ep : nullptr);
    for (int64_t i = 0; i < MR; ++i)
      for (int64_t j = 0; j < NR; ++j) {
        float acc = 0.f;  // per pair: the odd product added first, then the even one, each sum rounded
        for (int64_t s = 0; s < nseg; ++s)
          for (int64_t kk = 0; kk < len; kk += 2) {
            const uint16_t* ar = a[static_cast<size_t>(s * MR + i)];
            const uint16_t* bpair = bp.data() + (s * len + kk) * NR + j * 2;
            acc = ftz(acc + bf16_daz(ar[kk + 1]) * bf16_daz(bpair[1]));
            acc = ftz(acc + bf16_daz(ar[kk]) * bf16_daz(bpair[0]));
          }
        float want = accumulate ? c0[static_cast<size_t>(i * ldc + j)] + acc : acc;
        if (with_ep) {
          want = std::fma(want, scale[static_cast<size_t>(j)], shift[static_cast<size_t>(j)]);
          want += res[static_cast<size_t>(i * ldr + j)];
          want = want > 0.f ? want : 0.f;
        }
        EXPECT_EQ(f32_bits(c[static_cast<size_t>(i * ldc + j)]), f32_bits(want))
            << "variant " << variant << " (" << i << ", " << j << "): " << c[static_cast<size_t>(i * ldc + j)]
            << " vs " << want;
      }
    for (int64_t i = 0; i < MR; ++i)  // columns past the tile are never written
      for (int64_t j = NR; j < ldc; ++j)
        EXPECT_EQ(c[static_cast<size_t>(i * ldc + j)], c0[static_cast<size_t>(i * ldc + j)]);
  }
}

TEST(GemmBf16, ActivationRoundingIsTorchs) {
  SKIP_WITHOUT_BF16();
  const detail::RoundRowsBf16 round = detail::gemm_bf16_kernel()->round_rows;
  auto g = rng_for("bf16_round");
  std::uniform_int_distribution<uint32_t> bits;
  std::vector<float> src(3 * 41);
  for (float& v : src) v = f32_from_bits(bits(g));
  const float specials[] = {0.f, -0.f, 1.f, 1.00390625f /* tie: 1 + 2^-8 */, 1.01171875f /* tie up */,
                            std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::denorm_min(),
                            -1e-40f, 3.4e38f, f32_from_bits(0x7f7fffff), f32_from_bits(0x7f800001)};
  std::memcpy(src.data(), specials, sizeof specials);
  const int64_t rows = 3, cols = 37, lds = 41, ldd = 38;
  std::vector<uint16_t> dst(static_cast<size_t>(rows * ldd), 0xffff);
  round(rows, cols, src.data(), lds, dst.data(), ldd);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < ldd; ++j) {
      const uint16_t want = j < cols ? f32_to_bf16(src[static_cast<size_t>(r * lds + j)]) : 0;
      EXPECT_EQ(dst[static_cast<size_t>(r * ldd + j)], want) << "row " << r << " col " << j;
    }
}

TEST(GemmBf16, PackedLayoutAndWeights) {
  SKIP_WITHOUT_BF16();
  auto g = rng_for("bf16_pack");
  const Tensor w = random_tensor({37, 19}, g);  // odd K: the last pair completed with a zero row
  const PackedLinear p(w, PackedType::bf16);
  EXPECT_EQ(p.b.type(), PackedType::bf16);
  EXPECT_EQ(p.b.stored_rows(), 20);
  const Tensor back = p.weight(), want = rounded(w);
  EXPECT_EQ(std::memcmp(back.raw(), want.contiguous().raw(), want.nbytes()), 0);
  EXPECT_EQ(p.b.panel_bf16(0)[19 / 2 * 2 * p.b.nr() + 1], 0);  // (k = 19, n = 0): the pad
  EXPECT_LT(p.b.nbytes(), PackedLinear(w, PackedType::f32).b.nbytes());
}

// pack_b_panels_bf16's three source layouts (rows contiguous, columns contiguous, neither) against the layout's
// definition element by element: f32_to_bf16 of element (k, n), zero past K and N; odd K, N past a panel, and
// values on rounding ties, NaN and subnormals.
TEST(GemmBf16, PackMatchesLayoutDefinitionBitForBit) {
  SKIP_WITHOUT_BF16();
  auto g = rng_for("bf16_pack_layouts");
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  const int64_t nr = detail::gemm_bf16_kernel()->nr;
  for (const auto& [K, N] : {std::pair<int64_t, int64_t>{37, 45}, {64, 197}, {197, 64}, {1, 3}, {70, 32}}) {
    std::vector<float> m(static_cast<size_t>(K * N + 5));
    for (float& x : m) x = u(g);
    const uint32_t specials[] = {0x3f808000u, 0x3f818000u, 0x7fc00001u, 0x00000123u, 0x807fffffu, 0x7f7fffffu};
    for (size_t i = 0; i < std::size(specials); ++i) std::memcpy(&m[i * 7 % m.size()], &specials[i], 4);
    // (sk, sn): rows contiguous; columns contiguous; a column stride of N + 1 and k stride 1 is covered by the
    // second, so the third reads every other element of a wider row
    for (const auto& [sk, sn] : {std::pair<int64_t, int64_t>{N, 1}, {1, K}, {2 * N, 2}}) {
      const int64_t span = (K - 1) * sk + (N - 1) * sn + 1;
      if (span > static_cast<int64_t>(m.size())) m.resize(static_cast<size_t>(span), 1.5f);
      std::vector<uint16_t> got(static_cast<size_t>(detail::packed_b_bf16_elems(K, N)), 0xffff);
      detail::pack_b_panels_bf16(K, N, m.data(), sk, sn, got.data());
      const int64_t Kp = (K + 1) / 2 * 2, panels = (N + nr - 1) / nr;
      ASSERT_EQ(static_cast<int64_t>(got.size()), panels * Kp * nr);
      for (int64_t p = 0; p < panels; ++p)
        for (int64_t k = 0; k < Kp; ++k)
          for (int64_t j = 0; j < nr; ++j) {
            const int64_t n = p * nr + j;
            const uint16_t want = k < K && n < N ? f32_to_bf16(m[static_cast<size_t>(k * sk + n * sn)]) : 0;
            ASSERT_EQ(got[static_cast<size_t>(p * Kp * nr + (k / 2) * 2 * nr + j * 2 + k % 2)], want)
                << "K " << K << " N " << N << " sk " << sk << " sn " << sn << " at (" << k << ", " << n << ")";
          }
    }
  }
}

TEST(GemmBf16, LinearAgainstRoundedReference) {
  SKIP_WITHOUT_BF16();
  auto g = rng_for("bf16_linear");
  for (int c = 0; c < 16; ++c) {
    const int64_t B = pick(g, {1, 2, 3}), Ntok = pick(g, {1, 7, 197, 257, uni(g, 1, 300)});
    const int64_t in = pick(g, {8, 19, 64, 100, 301, 384}), out = pick(g, {1, 17, 48, 96, 200});
    Tensor x = random_tensor({B, Ntok, in}, g);
    Tensor w = random_tensor({out, in}, g, 0.2f);
    Tensor b = c % 3 ? random_tensor({out}, g) : Tensor();
    Tensor r = c % 4 == 1 ? random_tensor({B, Ntok, out}, g) : Tensor();
    const Activation act = static_cast<Activation>(c % 5);
    const PackedLinear pw(w, PackedType::bf16);
    EXPECT_VALID(validate::check([&] { return ops::linear(x, pw, b, act, r); },
                                 [&] { return ref::linear(rounded(x), rounded(w), b, act, r); }, {1e-5, 1e-4}),
                 "bf16 linear x=" << x.str() << " w=" << w.str() << " act=" << static_cast<int>(act));
  }
}

TEST(GemmBf16, Conv2dEveryPathAgainstRoundedReference) {
  SKIP_WITHOUT_BF16();
  const WinogradOff direct_paths;
  auto g = rng_for("bf16_conv2d");
  for (int c = 0; c < 20; ++c) {
    const int64_t N = pick(g, {1, 1, 2});
    // 3, 5: im2col (K padded to a pair); 19: odd, im2col; 16, 32, 64: taps; 300: two chunks per tap
    int64_t cin = pick(g, {3, 5, 16, 19, 32, 64});
    const int64_t cout = pick(g, {1, 7, 32, 37, 64, 70});
    int64_t k = pick(g, {1, 1, 3, 3, 7});
    Conv2dOptions o;
    o.stride = {pick(g, {1, 1, 2}), pick(g, {1, 2})};
    o.dilation = {pick(g, {1, 1, 2}), pick(g, {1, 1, 3})};
    o.padding = {uni(g, 0, k / 2 + 1), uni(g, 0, k / 2)};
    if (c % 5 == 0) o = {}, k = 1;      // 1x1 stride 1: the dense GEMM (odd Cin padded to a pair)
    if (c == 1) cin = 300, k = 3;       // K in more than one 256-block
    if (c == 2) cin = 301, k = 1, o = {};
    int64_t H = pick(g, {7, 9, 14, uni(g, 5, 16)}), W = pick(g, {7, 8, 13, uni(g, 5, 16)});
    H = std::max(H, o.dilation[0] * (k - 1) + 1), W = std::max(W, o.dilation[1] * (k - 1) + 1);
    Tensor x = random_tensor({N, cin, H, W}, g);
    if (c % 2) x = to_channels_last(x);
    Tensor w = random_tensor({cout, cin, k, k}, g, 0.5f);
    const PackedConv2d pw(w, o, PackedType::bf16);
    ASSERT_EQ(pw.b.type(), PackedType::bf16);
    Tensor scale = c % 3 == 0 ? Tensor() : random_tensor({cout}, g);
    Tensor shift = c % 4 == 0 ? Tensor() : random_tensor({cout}, g);
    const Activation act = static_cast<Activation>(c % 5);
    const int64_t Ho = (H + 2 * o.padding[0] - o.dilation[0] * (k - 1) - 1) / o.stride[0] + 1;
    const int64_t Wo = (W + 2 * o.padding[1] - o.dilation[1] * (k - 1) - 1) / o.stride[1] + 1;
    Tensor res = c % 4 == 1 ? random_tensor({N, cout, Ho, Wo}, g) : Tensor();
    EXPECT_VALID(
        validate::check([&] { return ops::conv2d(x, pw, scale, shift, act, res); },
                        [&] { return test::reference_packed_conv(rounded(x), rounded(w), o, scale, shift, act, res); },
                        {1e-4, 1e-4}),
        "bf16 conv2d x=" << x.str() << " w=" << w.str() << " stride=" << o.stride[0] << "," << o.stride[1]
                         << " pad=" << o.padding[0] << "," << o.padding[1] << " dil=" << o.dilation[0] << ","
                         << o.dilation[1]);
  }
}

// The fused stem (conv + BN + ReLU + max-pool in bands) and the output over the residual keep the bits of the plain
// bf16 conv; a 3x3 conv that Winograd takes stays fp32 (its weights too).
TEST(GemmBf16, FusedFormsSameBitsAndWinogradStaysFp32) {
  SKIP_WITHOUT_BF16();
  auto g = rng_for("bf16_fused");
  const Tensor rgb = random_tensor({2, 3, 40, 40}, g), w7 = random_tensor({64, 3, 7, 7}, g);
  const Tensor s = random_tensor({64}, g), h = random_tensor({64}, g);
  const PackedConv2d p7(w7, test::conv_options(2, 3), PackedType::bf16);
  const Tensor x = to_channels_last(random_tensor({2, 64, 9, 9}, g));
  const PackedConv2d p1(random_tensor({64, 64, 1, 1}, g), {}, PackedType::bf16);
  const Tensor r = to_channels_last(random_tensor({2, 64, 9, 9}, g));
  test::expect_fused_forms_keep_the_bits(p7, rgb, p1, x, r, s, h);

  const Conv2dOptions pad1 = test::conv_options(1, 1);
  const PackedConv2d p3(random_tensor({64, 64, 3, 3}, g), pad1, PackedType::bf16);
  ASSERT_TRUE(p3.wino.defined());
  EXPECT_EQ(p3.b.type(), PackedType::f32);
}

TEST(GemmBf16, DeterministicAcrossThreadCounts) {
  SKIP_WITHOUT_BF16();
  const WinogradOff direct_paths;
  auto g = rng_for("bf16_determinism");
  const Conv2dOptions pad1 = test::conv_options(1, 1);
  const Tensor x = random_tensor({2, 32, 15, 15}, g), rgb = random_tensor({2, 3, 30, 30}, g);
  const Tensor tok = random_tensor({2, 197, 300}, g), lb = random_tensor({200}, g);
  const PackedConv2d p3(random_tensor({37, 32, 3, 3}, g), pad1, PackedType::bf16);
  const PackedConv2d p1(random_tensor({70, 32, 1, 1}, g), {}, PackedType::bf16);
  const PackedConv2d p7(random_tensor({64, 3, 7, 7}, g), test::conv_options(2, 3), PackedType::bf16);
  const PackedLinear pl(random_tensor({200, 300}, g), PackedType::bf16);
  auto run_all = [&] {
    return std::vector<Tensor>{ops::conv2d(x, p3, Tensor(), Tensor(), Activation::relu),
                               ops::conv2d(x, p1, Tensor(), Tensor()),
                               ops::conv2d(rgb, p7, Tensor(), Tensor(), Activation::relu),
                               ops::linear(tok, pl, lb, Activation::gelu)};
  };
  expect_same_bits_across_threads(run_all);
}

TEST(GemmBf16, PrecisionSwitch) {
  EXPECT_EQ(ops::cpu_precision(), Precision::fp32);
  EXPECT_EQ(default_packed_type(), PackedType::f32);
  EXPECT_THROW(ops::set_cpu_precision(Precision::tf32), std::invalid_argument);
  EXPECT_THROW(ops::set_cpu_precision(Precision::fp16), std::invalid_argument);
  if (!detail::gemm_bf16_kernel()) {
    EXPECT_THROW(ops::set_cpu_precision(Precision::bf16), std::invalid_argument);
    return;
  }
  ops::set_cpu_precision(Precision::bf16);
  EXPECT_EQ(default_packed_type(), PackedType::bf16);
  EXPECT_EQ(PackedLinear(Tensor::zeros({4, 6})).b.type(), PackedType::bf16);
  ops::set_cpu_precision(Precision::fp32);
  EXPECT_EQ(PackedLinear(Tensor::zeros({4, 6})).b.type(), PackedType::f32);
}

// The vdpbf16ps peak probe (bench_ops' "% of bf16 peak"): a positive rate where the bf16 kernel exists, 0 elsewhere.
TEST(GemmBf16, PeakProbe) {
  const double peak = measure_bf16_peak_gflops_per_core(0.02);
  if (!detail::gemm_bf16_kernel()) {
    EXPECT_EQ(peak, 0.0);
    return;
  }
  EXPECT_GT(peak, 1.0);
}

namespace {
struct Bf16Precision {
  Bf16Precision() { ops::set_cpu_precision(Precision::bf16); }
  ~Bf16Precision() { ops::set_cpu_precision(Precision::fp32); }
  Bf16Precision(const Bf16Precision&) = delete;
  Bf16Precision& operator=(const Bf16Precision&) = delete;
};

// Attention as --precision bf16 defines it, in double: S = bf16(Q) bf16(K)^T, P = exp(S * scale - max) rounded to
// bf16, O = P bf16(V) / sum(unrounded P). [B, H, N, D] contiguous inputs.
// [BH, N, C] rows minus their mean over N per bh (the mean in double, then fp32, as detail::centre_rows), rounded
// to bf16; mean: the means [BH, C].
Tensor centred_rounded(const Tensor& t, std::vector<float>& mean) {
  const int64_t BH = t.size(0) * t.size(1), N = t.size(2), C = t.size(3);
  Tensor c = t.contiguous().clone();
  float* p = c.data<float>();
  mean.assign(static_cast<size_t>(BH * C), 0.f);
  for (int64_t bh = 0; bh < BH; ++bh)
    for (int64_t e = 0; e < C; ++e) {
      double m = 0;
      for (int64_t j = 0; j < N; ++j) m += p[(bh * N + j) * C + e];
      const float mf = static_cast<float>(m / double(N));
      mean[static_cast<size_t>(bh * C + e)] = mf;
      for (int64_t j = 0; j < N; ++j) p[(bh * N + j) * C + e] -= mf;
    }
  return rounded(c);
}

std::vector<double> attention_bf16_emulated(const Tensor& q, const Tensor& k, const Tensor& v, float scale) {
  const int64_t BH = q.size(0) * q.size(1), Nq = q.size(2), Nk = k.size(2), D = q.size(3), Dv = v.size(3);
  std::vector<float> kmean, vmean;
  const Tensor qr = rounded(q), kr = centred_rounded(k, kmean), vr = centred_rounded(v, vmean);
  const float *qp = qr.data<float>(), *kp = kr.data<float>(), *vp = vr.data<float>();
  std::vector<double> out(static_cast<size_t>(BH * Nq * Dv)), p(static_cast<size_t>(Nk));
  for (int64_t bh = 0; bh < BH; ++bh)
    for (int64_t i = 0; i < Nq; ++i) {
      double mx = -1e300, sum = 0;
      for (int64_t j = 0; j < Nk; ++j) {
        double sc = 0;
        for (int64_t d = 0; d < D; ++d) sc += double(qp[(bh * Nq + i) * D + d]) * kp[(bh * Nk + j) * D + d];
        p[static_cast<size_t>(j)] = static_cast<float>(sc) * scale;
        mx = std::max(mx, p[static_cast<size_t>(j)]);
      }
      for (double& x : p) x = std::exp(x - mx), sum += x;
      for (int64_t e = 0; e < Dv; ++e) {
        double o = 0;
        for (int64_t j = 0; j < Nk; ++j)
          o += double(bf16_to_f32(f32_to_bf16(static_cast<float>(p[static_cast<size_t>(j)])))) *
               vp[(bh * Nk + j) * Dv + e];
        out[static_cast<size_t>((bh * Nq + i) * Dv + e)] = o / sum + vmean[static_cast<size_t>(bh * Dv + e)];
      }
    }
  return out;
}
}  // namespace

// With --precision bf16 the CPU attention runs Q K^T and P V on the bf16 kernel (Q, P rounded as the CUDA bf16
// path; K and V as deviations from their means over the keys, bf16_centres.h centre_rows): against the double
// emulation above (two query blocks, odd D / Dv / Nk padded to a pair), not the fp32 path's
// result, and the same bits for 1, 2 and 3 threads. With a hook asking for the probabilities it stays fp32.
TEST(GemmBf16, AttentionInBf16) {
  SKIP_WITHOUT_BF16();
  auto g = rng_for("bf16_attention");
  struct Case {
    int64_t B, H, Nq, Nk, D, Dv;
  };
  for (const Case& c : {Case{2, 3, 101, 101, 64, 64}, Case{1, 2, 13, 37, 7, 9}}) {
    const Tensor q = random_tensor({c.B, c.H, c.Nq, c.D}, g), k = random_tensor({c.B, c.H, c.Nk, c.D}, g),
                 v = random_tensor({c.B, c.H, c.Nk, c.Dv}, g);
    const float scale = 1.f / std::sqrt(static_cast<float>(c.D));
    const Tensor fp32 = ops::scaled_dot_product_attention(q, k, v).contiguous();
    Tensor probs;
    const Tensor hooked32 = ops::scaled_dot_product_attention(q, k, v, std::nullopt, &probs).contiguous();
    const Bf16Precision bf16;
    const Tensor got = ops::scaled_dot_product_attention(q, k, v).contiguous();
    const std::vector<double> want = attention_bf16_emulated(q, k, v, scale);
    double worst = 0, mean = 0, from_fp32 = 0;
    for (int64_t i = 0; i < got.numel(); ++i) {
      const double e = std::fabs(got.data<float>()[i] - want[static_cast<size_t>(i)]);
      worst = std::max(worst, e), mean += e / static_cast<double>(got.numel());
      from_fp32 = std::max(from_fp32, double(std::fabs(got.data<float>()[i] - fp32.data<float>()[i])));
    }
    // an fp32 score one ulp off the double one can move a probability across a bf16 rounding boundary (one bf16
    // ulp, 2^-8 relative, of one term): rare and small; everything else is fp32 accumulation order
    EXPECT_LT(worst, 2e-3) << "D " << c.D;
    EXPECT_LT(mean, 2e-5) << "D " << c.D;
    EXPECT_GT(from_fp32, 1e-5) << "D " << c.D << ": the bf16 path did not run";
    const Tensor hooked = ops::scaled_dot_product_attention(q, k, v, std::nullopt, &probs).contiguous();
    EXPECT_EQ(std::memcmp(hooked.raw(), hooked32.raw(), hooked32.nbytes()), 0) << "D " << c.D;
    expect_same_bits_across_threads([&] { return std::vector<Tensor>{ops::scaled_dot_product_attention(q, k, v)}; },
                                    {2, 3}, "attention (D " + std::to_string(c.D) + ")");
  }
}
