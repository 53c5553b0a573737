// The reference ops (and their fast paths) against outputs torch produced: weights_tools/reference/engine_ops.py
// writes tests/fixtures/engine/<case>.<array>.npy; the parameters below mirror that script case by case.
#include <gtest/gtest.h>

#include "util/npy.h"
#include "engine/ops.h"
#include "engine/validate.h"
#include "tests/test_util.h"

using namespace tabula;

namespace {

Tensor load(const std::string& name, const std::string& key) {
  NpyArray a = read_npy(test::fixture("engine/" + name + "." + key + ".npy").string());
  return Tensor::from_vector(a.shape, a.to_f32());
}

void expect_close(const Tensor& got, const std::string& name, validate::Tolerance tol = {1e-5, 1e-5}) {
  auto r = validate::compare(got, load(name, "y"), tol);
  EXPECT_TRUE(r.ok) << name << ": " << r.message;
}

InterpolateOptions sized(int64_t h, int64_t w, InterpMode m, bool aa, bool ac = false) {
  InterpolateOptions o;
  o.size = std::array<int64_t, 2>{h, w};
  o.mode = m;
  o.antialias = aa;
  o.align_corners = ac;
  return o;
}

}  // namespace

TEST(OpsTorch, Interpolate) {
  struct Case {
    const char* name;
    InterpolateOptions o;
  };
  InterpolateOptions sf_cubic, sf_lin, sf_nearest, sf_cubic_aa;
  sf_nearest.scale_factor = std::array<double, 2>{1.5, 0.7};
  sf_nearest.mode = InterpMode::nearest;
  sf_cubic_aa.scale_factor = std::array<double, 2>{0.45, 0.6};
  sf_cubic_aa.mode = InterpMode::bicubic;
  sf_cubic_aa.antialias = true;
  sf_cubic.scale_factor = std::array<double, 2>{(7 + 0.1) / 8, (7 + 0.1) / 8};
  sf_cubic.mode = InterpMode::bicubic;
  sf_lin.scale_factor = std::array<double, 2>{1.7, 0.6};
  sf_lin.mode = InterpMode::bilinear;
  const Case cases[] = {
      {"interp_bicubic_aa_down", sized(5, 7, InterpMode::bicubic, true)},
      {"interp_bilinear_aa_down", sized(6, 4, InterpMode::bilinear, true)},
      {"interp_bilinear_down", sized(6, 4, InterpMode::bilinear, false)},
      {"interp_bicubic_aa_up", sized(9, 13, InterpMode::bicubic, true)},
      {"interp_bicubic_up", sized(9, 13, InterpMode::bicubic, false)},
      {"interp_bilinear_align_corners", sized(9, 13, InterpMode::bilinear, false, true)},
      {"interp_bicubic_align_corners", sized(4, 10, InterpMode::bicubic, false, true)},
      {"interp_bicubic_scale_factor", sf_cubic},
      {"interp_bilinear_scale_factor", sf_lin},
      {"interp_nearest", sized(7, 4, InterpMode::nearest, false)},
      {"interp_nearest_scale", sf_nearest},
      {"interp_bicubic_aa_scale", sf_cubic_aa},
  };
  for (const Case& c : cases) {
    Tensor x = load(c.name, "x");
    expect_close(ref::interpolate(x, c.o), c.name);
    expect_close(ops::interpolate(x, c.o), c.name);
  }
}

TEST(OpsTorch, ConvBatchNormRowOps) {
  Conv2dOptions o;
  o.stride = {2, 1};
  o.padding = {2, 1};
  o.dilation = {2, 3};
  o.groups = 3;
  const std::string conv = "conv_groups_dilation";
  for (auto* f : {&ref::conv2d, &ops::conv2d})
    expect_close(f(load(conv, "x"), load(conv, "w"), load(conv, "b"), o, Activation::none, {}), conv, {1e-5, 1e-4});
  const std::string bn = "batch_norm";
  for (auto* f : {&ref::batch_norm, &ops::batch_norm})
    expect_close(f(load(bn, "x"), load(bn, "w"), load(bn, "b"), load(bn, "mean"), load(bn, "var"), 1e-5), bn);
  for (auto* f : {&ref::layer_norm, &ops::layer_norm})
    expect_close(f(load("layer_norm", "x"), load("layer_norm", "w"), load("layer_norm", "b"), 1e-6), "layer_norm");
  for (auto* f : {&ref::softmax, &ops::softmax}) expect_close(f(load("softmax_dim1", "x"), 1), "softmax_dim1");
  Tensor xa = load("gelu", "x");
  expect_close(ref::gelu(xa, false), "gelu", {1e-6, 1e-6});
  expect_close(ops::gelu(xa, false), "gelu", {1e-6, 1e-6});
  expect_close(ref::gelu(xa, true), "gelu_tanh", {1e-6, 1e-6});
  expect_close(ops::gelu(xa, true), "gelu_tanh", {1e-6, 1e-6});
  expect_close(ref::silu(xa), "silu", {1e-6, 1e-6});
  expect_close(ops::silu(xa), "silu", {1e-6, 1e-6});
}

TEST(OpsTorch, Pools) {
  Tensor x = load("max_pool_ceil", "x");
  for (auto* f : {&ref::max_pool2d, &ops::max_pool2d}) {
    expect_close(f(x, {3, 3}, {2, 2}, {1, 1}, {1, 1}, true), "max_pool_ceil", {0, 0});
    expect_close(f(x, {2, 3}, {2, 1}, {1, 1}, {2, 1}, false), "max_pool_dilation", {0, 0});
  }
  for (auto* f : {&ref::avg_pool2d, &ops::avg_pool2d}) {
    expect_close(f(x, {3, 3}, {2, 2}, {1, 1}, true, false), "avg_pool_ceil_nopad");
    expect_close(f(x, {3, 3}, {2, 2}, {1, 1}, true, true), "avg_pool_ceil_pad");
  }
  for (auto* f : {&ref::adaptive_avg_pool2d, &ops::adaptive_avg_pool2d}) expect_close(f(x, {3, 4}), "adaptive_avg");
  for (auto* f : {&ref::adaptive_max_pool2d, &ops::adaptive_max_pool2d})
    expect_close(f(x, {4, 3}), "adaptive_max", {0, 0});
}

TEST(OpsTorch, Attention261Tokens) {
  Tensor q = load("sdpa", "q"), k = load("sdpa", "k"), v = load("sdpa", "v");
  expect_close(ref::scaled_dot_product_attention(q, k, v), "sdpa");
  expect_close(ops::scaled_dot_product_attention(q, k, v), "sdpa");
}

// fold_batch_norm against torch.nn.utils.fusion.fuse_conv_bn_weights.
TEST(OpsTorch, FoldBatchNorm) {
  auto [w, b] = fold_batch_norm(load("fold_bn", "w"), load("fold_bn", "b"), load("fold_bn", "bn_w"),
                                load("fold_bn", "bn_b"), load("fold_bn", "mean"), load("fold_bn", "var"), 1e-5);
  auto rw = validate::compare(w, load("fold_bn", "fw"), {1e-6, 1e-6});
  auto rb = validate::compare(b, load("fold_bn", "fb"), {1e-6, 1e-6});
  EXPECT_TRUE(rw.ok) << rw.message;
  EXPECT_TRUE(rb.ok) << rb.message;
}
