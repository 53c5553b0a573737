// engine/pos_encoding: DINOv3's RoPE tables and rope_apply, and the CA-MAE 2D sin-cos table, against the authors'
// own functions (weights_tools/reference/newvit_fixtures.py op_cases writes tests/fixtures/newvit/ops.*). Here
// rather than in tests/engine because rope_apply's input is models_fixtures.hash_input, replayed by
// tests/models/model_fixtures.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "engine/ops.h"
#include "engine/pos_encoding.h"
#include "engine/validate.h"
#include "tests/models/model_fixtures.h"
#include "tests/test_util.h"
#include "util/npy.h"

using namespace tabula;

namespace {

Tensor load(const std::string& name, const Shape& shape) {
  NpyArray a = read_npy(test::fixture("newvit/ops." + name + ".npy").string());
  return Tensor::from_vector(shape, a.to_f32());
}

// Largest distance in units in the last place (f32) between two tensors of equal shape.
int64_t max_ulp(const Tensor& got, const Tensor& want) {
  const Tensor g = got.contiguous(), w = want.contiguous();
  int64_t worst = 0;
  for (int64_t i = 0; i < g.numel(); ++i) {
    const float a = g.data<float>()[i], b = w.data<float>()[i];
    if (a == b) continue;
    const float step = std::nextafter(std::fabs(b), INFINITY) - std::fabs(b);
    worst = std::max<int64_t>(worst, static_cast<int64_t>(std::ceil(std::fabs(a - b) / step)));
  }
  return worst;
}

struct RopeCase {
  const char* name;
  int64_t dim, heads, h, w;
  RopeNormalize norm;
  double base;
};
const RopeCase kRope[] = {{"rope_d32_h2_4x4_separate_b100", 32, 2, 4, 4, RopeNormalize::separate, 100},
                          {"rope_d64_h4_4x6_separate_b100", 64, 4, 4, 6, RopeNormalize::separate, 100},
                          {"rope_d64_h2_3x5_max_b100", 64, 2, 3, 5, RopeNormalize::max, 100},
                          {"rope_d48_h3_5x2_min_b10000", 48, 3, 5, 2, RopeNormalize::min, 10000},
                          // base 0 here: min_period 0.5, max_period 40 instead of a base
                          {"rope_d96_h2_3x4_separate_p0.5-40", 96, 2, 3, 4, RopeNormalize::separate, 0}};

std::vector<float> periods_of(const RopeCase& c) {
  const int64_t hd = c.dim / c.heads;
  return c.base > 0 ? rope_periods(hd, c.base) : rope_periods(hd, std::nullopt, 0.5, 40.0);
}

}  // namespace

TEST(PosEncoding, SinCosTableMatchesMaesMicroscopy) {
  struct Case {
    const char* name;
    int64_t dim, length, mods;
    bool cls;
  };
  for (const Case c : {Case{"sincos_d32_l4_m3_c1", 32, 4, 3, true}, Case{"sincos_d384_l16_m1_c1", 384, 16, 1, true},
                       Case{"sincos_d64_l3_m2_c0", 64, 3, 2, false}}) {
    const Tensor got = sincos_2d_pos_embed(c.dim, c.length, 10000.0, c.cls, c.mods);
    const Tensor want = load(c.name, got.shape());
    // torch's sin/cos/pow are Sleef's vectorised ones (<= 1 ULP from the correctly rounded value) on this build
    EXPECT_LE(max_ulp(got, want), 2) << c.name;
    EXPECT_TRUE(validate::compare(got, want, {2e-7, 0}).ok) << c.name;
  }
}

TEST(PosEncoding, RopeTablesMatchDinov3) {
  for (const RopeCase& c : kRope) {
    const int64_t hd = c.dim / c.heads;
    const auto [sin, cos] = rope_sin_cos(periods_of(c), c.h, c.w, c.norm);
    ASSERT_EQ(sin.shape(), (Shape{c.h * c.w, hd}));
    const std::string n = c.name;
    EXPECT_TRUE(validate::compare(sin, load(n + ".sin", sin.shape()), {1e-6, 0}).ok) << n;
    EXPECT_TRUE(validate::compare(cos, load(n + ".cos", cos.shape()), {1e-6, 0}).ok) << n;
  }
}

TEST(PosEncoding, RopeApplyMatchesDinov3AndTheReference) {
  for (const RopeCase& c : kRope) {
    const int64_t hd = c.dim / c.heads, prefix = 5, n = prefix + c.h * c.w;
    const std::string name = c.name;
    // the fixture applies rope to the authors' own tables: use those, so only rope_apply is compared here
    const Tensor sin = load(name + ".sin", {c.h * c.w, hd}), cos = load(name + ".cos", {c.h * c.w, hd});
    const Tensor x = test::hash_input({2, c.heads, n, hd}, 77);
    const Tensor want = load(name + ".apply", x.shape());
    const Tensor fast = ops::rope_apply(x, sin, cos), ref = ref::rope_apply(x, sin, cos);
    EXPECT_EQ(max_ulp(fast, want), 0) << name << ": the fast path rounds as torch does";
    // the reference rounds once from double: it differs where x cos and rot sin nearly cancel
    EXPECT_TRUE(validate::compare(ref, want, {1e-6, 1e-6}).ok) << name;
  }
}

TEST(PosEncoding, RopeApplyReadsStridedQueries) {
  // q as the attention sees it: [B, H, N, hd] viewed out of the qkv output [B, N, 3, H, hd]
  std::mt19937_64 rng(3);
  const int64_t B = 2, N = 13, H = 3, hd = 8;
  const Tensor qkv = validate::random_tensor({B, N, 3, H, hd}, rng);
  const Tensor q = qkv.permute({2, 0, 3, 1, 4}).select(0, 0);
  const auto [sin, cos] = rope_sin_cos(rope_periods(hd, 100.0), 3, 4, RopeNormalize::separate);
  const Tensor got = ops::rope_apply(q, sin, cos), want = ref::rope_apply(q.contiguous(), sin, cos);
  EXPECT_TRUE(got.is_contiguous());
  EXPECT_TRUE(validate::compare(got, want, {1e-6, 1e-6}).ok);
  // prefix tokens (N - HW = 1) pass unchanged
  for (int64_t d = 0; d < hd; ++d) EXPECT_EQ(got.contiguous().data<float>()[d], q.contiguous().data<float>()[d]);
}

TEST(PosEncoding, BadShapesNameTheOp) {
  const auto [sin, cos] = rope_sin_cos(rope_periods(8, 100.0), 2, 2, RopeNormalize::separate);
  EXPECT_THROW(ops::rope_apply(Tensor::zeros({1, 1, 3, 8}), sin, cos), std::invalid_argument);  // 3 < 4 tokens
  EXPECT_THROW(ops::rope_apply(Tensor::zeros({1, 1, 4, 6}), sin, cos), std::invalid_argument);  // head dim
  try {
    ref::rope_apply(Tensor::zeros({4}), sin, cos);
    ADD_FAILURE();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("ref::rope_apply"), std::string::npos) << e.what();
  }
  EXPECT_THROW(rope_periods(6, 100.0), std::invalid_argument);
  EXPECT_THROW(rope_periods(8, 100.0, 1.0, 10.0), std::invalid_argument);
  EXPECT_THROW(sincos_2d_pos_embed(30, 4), std::invalid_argument);
}
