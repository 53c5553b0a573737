#include "engine/ops_common.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace tabula {

std::string_view pool_name(Pool p) {
  switch (p) {
    case Pool::avg: return "avg";
    case Pool::cls: return "cls";
    case Pool::mean: return "mean";
    case Pool::cls_mean: return "cls+mean";
    case Pool::max: return "max";
    case Pool::gem: return "gem";
    case Pool::none: return "none";
  }
  return "?";
}

std::optional<Pool> pool_from_name(std::string_view s) {
  for (Pool p : {Pool::avg, Pool::cls, Pool::mean, Pool::cls_mean, Pool::max, Pool::gem, Pool::none})
    if (s == pool_name(p)) return p;
  if (s == "cls_mean") return Pool::cls_mean;
  return std::nullopt;
}

int64_t pooling_output_size(int64_t in, int64_t kernel, int64_t pad, int64_t stride, int64_t dilation,
                            bool ceil_mode) {
  // aten/src/ATen/native/Pool.h pooling_output_shape_pad_lr
  int64_t num = in + 2 * pad - dilation * (kernel - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  int64_t out = (num >= 0 ? num / stride : -((-num + stride - 1) / stride)) + 1;  // div_rtn
  // With ceil_mode the last window must start inside the input or the left padding.
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

std::pair<Tensor, Tensor> fold_batch_norm(const Tensor& conv_weight, const Tensor& conv_bias, const Tensor& bn_weight,
                                          const Tensor& bn_bias, const Tensor& running_mean,
                                          const Tensor& running_var, double eps) {
  const char* op = "fold_batch_norm";
  check_f32_cpu(op, conv_weight, "conv weight");
  const int64_t Cout = conv_weight.size(0);
  for (auto [t, name] : {std::pair{&bn_weight, "bn weight"}, std::pair{&bn_bias, "bn bias"},
                         std::pair{&running_mean, "running_mean"}, std::pair{&running_var, "running_var"}}) {
    check_f32_cpu(op, *t, name);
    if (t->numel() != Cout)
      op_error(op, std::string(name) + " has " + std::to_string(t->numel()) + " elements, conv has " +
                       std::to_string(Cout) + " output channels");
  }
  if (conv_bias.defined() && conv_bias.numel() != Cout) op_error(op, "conv bias size mismatch");
  Tensor w = conv_weight.clone();
  Tensor b = Tensor::empty({Cout});
  const int64_t per = w.numel() / std::max<int64_t>(Cout, 1);
  auto g = bn_weight.contiguous(), be = bn_bias.contiguous(), m = running_mean.contiguous(),
       v = running_var.contiguous();
  Tensor cb = conv_bias.defined() ? conv_bias.contiguous() : Tensor();
  for (int64_t o = 0; o < Cout; ++o) {
    double s = g.data<float>()[o] / std::sqrt(static_cast<double>(v.data<float>()[o]) + eps);
    float* wo = w.data<float>() + o * per;
    for (int64_t i = 0; i < per; ++i) wo[i] = static_cast<float>(wo[i] * s);
    double cbo = cb.defined() ? cb.data<float>()[o] : 0.0;
    b.data<float>()[o] = static_cast<float>((cbo - m.data<float>()[o]) * s + be.data<float>()[o]);
  }
  return {w, b};
}

namespace detail {

Shape broadcast_shape(std::string_view op, const Shape& a, const Shape& b) {
  size_t n = std::max(a.size(), b.size());
  Shape s(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1)
      op_error(op, "shapes " + shape_str(a) + " and " + shape_str(b) + " do not broadcast");
    s[i] = da == 1 ? db : da;
  }
  return s;
}

std::tuple<int64_t, int64_t, int64_t, int64_t> check_4d(std::string_view op, const Tensor& x) {
  check_f32_cpu(op, x, "input");
  if (x.dim() != 4) op_error(op, "expects input [N, C, H, W], got " + x.str());
  return {x.size(0), x.size(1), x.size(2), x.size(3)};
}

ConvShapes conv2d_shapes(std::string_view op, const Tensor& x, const Tensor& w, const Tensor& b,
                         const Conv2dOptions& o, const Tensor& residual) {
  auto [N, C, H, W] = check_4d(op, x);
  check_f32_cpu(op, w, "weight");
  if (w.dim() != 4) op_error(op, "weight must be [Cout, Cin/groups, kh, kw], got " + w.str());
  if (o.groups < 1 || C % o.groups || w.size(0) % o.groups)
    op_error(op, "groups=" + std::to_string(o.groups) + " must divide input channels " + std::to_string(C) +
                     " and output channels " + std::to_string(w.size(0)));
  if (w.size(1) != C / o.groups)
    op_error(op, "weight " + w.str() + " expects " + std::to_string(w.size(1) * o.groups) + " input channels, input " +
                     x.str() + " has " + std::to_string(C));
  for (int i = 0; i < 2; ++i)
    if (o.stride[i] < 1 || o.dilation[i] < 1 || o.padding[i] < 0)
      op_error(op, "stride and dilation must be >= 1 and padding >= 0");
  ConvShapes s{N, C, H, W, w.size(0), w.size(2), w.size(3), 0, 0};
  s.Ho = (H + 2 * o.padding[0] - o.dilation[0] * (s.kh - 1) - 1) / o.stride[0] + 1;
  s.Wo = (W + 2 * o.padding[1] - o.dilation[1] * (s.kw - 1) - 1) / o.stride[1] + 1;
  if (H + 2 * o.padding[0] < o.dilation[0] * (s.kh - 1) + 1 || W + 2 * o.padding[1] < o.dilation[1] * (s.kw - 1) + 1)
    op_error(op, "kernel larger than the padded input " + x.str());
  if (b.defined()) {
    check_f32_cpu(op, b, "bias");
    if (b.numel() != s.Cout)
      op_error(op, "bias " + b.str() + " does not match " + std::to_string(s.Cout) + " output channels");
  }
  if (residual.defined()) {
    check_f32_cpu(op, residual, "residual");
    if (residual.shape() != Shape{N, s.Cout, s.Ho, s.Wo})
      op_error(op, "residual " + residual.str() + " does not match the output " + shape_str({N, s.Cout, s.Ho, s.Wo}));
  }
  return s;
}

void check_pool_args(std::string_view op, std::array<int64_t, 2> k, std::array<int64_t, 2> s,
                     std::array<int64_t, 2> p, std::array<int64_t, 2> d) {
  for (int i = 0; i < 2; ++i) {
    if (k[i] < 1 || s[i] < 1 || d[i] < 1 || p[i] < 0)
      op_error(op, "kernel, stride, dilation must be >= 1, padding >= 0");
    if (p[i] * 2 > k[i]) op_error(op, "pad should be at most half of effective kernel size");  // torch's check
  }
}

std::pair<int64_t, int64_t> pool_output_hw(std::string_view op, int64_t H, int64_t W, std::array<int64_t, 2> k,
                                           std::array<int64_t, 2> s, std::array<int64_t, 2> p,
                                           std::array<int64_t, 2> d, bool ceil_mode) {
  const int64_t Ho = pooling_output_size(H, k[0], p[0], s[0], d[0], ceil_mode);
  const int64_t Wo = pooling_output_size(W, k[1], p[1], s[1], d[1], ceil_mode);
  if (Ho <= 0 || Wo <= 0)
    op_error(op, "output size " + std::to_string(Ho) + "x" + std::to_string(Wo) + " is too small for input " +
                     std::to_string(H) + "x" + std::to_string(W) + " and kernel " + std::to_string(k[0]) + "x" +
                     std::to_string(k[1]));
  return {Ho, Wo};
}

void check_linear(std::string_view op, const Tensor& x, const Tensor& w, const Tensor& b) {
  check_f32_cpu(op, x, "input");
  check_f32_cpu(op, w, "weight");
  if (x.dim() < 1 || w.dim() != 2 || w.size(1) != x.size(-1))
    op_error(op, "input " + x.str() + " and weight " + w.str() + " (expects [out, " +
                     std::to_string(x.dim() ? x.size(-1) : 0) + "])");
  if (b.defined()) {
    check_f32_cpu(op, b, "bias");
    if (b.numel() != w.size(0)) op_error(op, "bias " + b.str() + " does not match weight " + w.str());
  }
}

Tensor linear_residual(std::string_view op, const Tensor& residual, const Shape& out) {
  if (!residual.defined()) return {};
  check_f32_cpu(op, residual, "residual");
  if (residual.shape() != out) op_error(op, "residual must be " + shape_str(out) + ", got " + residual.str());
  return residual.contiguous();
}

MatmulShapes matmul_shapes(std::string_view op, const Tensor& a, const Tensor& b) {
  check_f32_cpu(op, a, "a");
  check_f32_cpu(op, b, "b");
  if (a.dim() < 2 || b.dim() < 2) op_error(op, "operands must be at least 2-D, got " + a.str() + " and " + b.str());
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  if (b.size(-2) != K) op_error(op, "inner dims differ: " + a.str() + " @ " + b.str());
  Shape batch_a(a.shape().begin(), a.shape().end() - 2), batch_b(b.shape().begin(), b.shape().end() - 2);
  if (b.dim() != 2 && batch_a != batch_b)
    op_error(op, "batch dims must match (or b be 2-D): " + a.str() + " @ " + b.str());
  Shape out = batch_a;
  out.push_back(M);
  out.push_back(N);
  return {shape_numel(batch_a), M, K, N, out};
}

RopeShapes rope_shapes(std::string_view op, const Tensor& x, const Tensor& sin, const Tensor& cos) {
  if (!x.defined() || !sin.defined() || !cos.defined()) op_error(op, "input, sin and cos must all be defined");
  if (x.dim() < 2) op_error(op, "input must be [..., N, head_dim], got " + x.str());
  const int64_t n = x.size(-2), hd = x.size(-1);
  if (sin.dim() != 2 || sin.shape() != cos.shape() || sin.size(1) != hd || hd % 2 != 0)
    op_error(op, "sin and cos must both be [HW, head_dim] with an even head_dim matching the input " + x.str() +
                     ", got " + sin.str() + " and " + cos.str());
  if (sin.size(0) > n)
    op_error(op, "sin/cos cover " + std::to_string(sin.size(0)) + " positions but the input has " +
                     std::to_string(n) + " tokens");
  return {x.numel() / std::max<int64_t>(n * hd, 1), n, hd, sin.size(0), n - sin.size(0)};
}

SdpaShapes sdpa_shapes(std::string_view op, const Tensor& q, const Tensor& k, const Tensor& v) {
  for (auto [t, name] : {std::pair{&q, "query"}, std::pair{&k, "key"}, std::pair{&v, "value"}}) {
    check_f32_cpu(op, *t, name);
    if (t->dim() != 4) op_error(op, std::string(name) + " must be [B, heads, N, head_dim], got " + t->str());
  }
  if (k.size(0) != q.size(0) || k.size(1) != q.size(1) || k.size(3) != q.size(3) || v.size(0) != q.size(0) ||
      v.size(1) != q.size(1) || v.size(2) != k.size(2))
    op_error(op, "query " + q.str() + ", key " + k.str() + ", value " + v.str() + " are inconsistent");
  return {q.size(0), q.size(1), q.size(2), k.size(2), q.size(3), v.size(3)};
}

std::pair<SdpaShapes, int64_t> biased_attention_shapes(std::string_view op, const Tensor& q, const Tensor& k,
                                                       const Tensor& v, const Tensor& bias, const Tensor& mask) {
  for (auto [t, name] : {std::pair{&q, "query"}, std::pair{&k, "key"}, std::pair{&v, "value"}})
    if (t->dim() != 4) op_error(op, std::string(name) + " must be [B, heads, N, head_dim], got " + t->str());
  if (k.size(0) != q.size(0) || k.size(1) != q.size(1) || k.size(3) != q.size(3) || v.size(0) != q.size(0) ||
      v.size(1) != q.size(1) || v.size(2) != k.size(2) || k.size(2) != q.size(2))
    op_error(op, "query " + q.str() + ", key " + k.str() + ", value " + v.str() + " are inconsistent");
  const int64_t B = q.size(0), H = q.size(1), N = q.size(2);
  if (bias.defined() && bias.shape() != Shape{H, N, N})
    op_error(op, "bias must be [heads, N, N] = [" + std::to_string(H) + ", " + std::to_string(N) + ", " +
                     std::to_string(N) + "], got " + bias.str());
  int64_t nW = 1;
  if (mask.defined()) {
    if (mask.dim() != 3 || mask.size(1) != N || mask.size(2) != N || mask.size(0) < 1 || B % mask.size(0) != 0)
      op_error(op, "mask must be [windows, N, N] with the batch " + std::to_string(B) +
                       " a multiple of the windows, got " + mask.str() + " for N=" + std::to_string(N));
    nW = mask.size(0);
  }
  return {{B, H, N, N, q.size(3), v.size(3)}, nW};
}

Shape cat_shape(std::string_view op, const std::vector<Tensor>& xs, int64_t dim) {
  if (xs.empty()) op_error(op, "needs at least one tensor");
  Shape out = xs[0].shape();
  int64_t d = xs[0].wrap_dim(dim);
  out[d] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    check_f32_cpu(op, xs[i], "tensor " + std::to_string(i));
    if (xs[i].dim() != xs[0].dim())
      op_error(op, "tensor " + std::to_string(i) + " " + xs[i].str() + " has a different rank");
    for (int64_t j = 0; j < xs[i].dim(); ++j)
      if (j != d && xs[i].size(j) != xs[0].size(j))
        op_error(op, "tensor " + std::to_string(i) + " " + xs[i].str() + " differs from " + xs[0].str() +
                         " outside dim " + std::to_string(d));
    out[d] += xs[i].size(d);
  }
  return out;
}

std::pair<int64_t, int64_t> interpolate_size(std::string_view op, int64_t H, int64_t W, const InterpolateOptions& o) {
  if (o.size.has_value() == o.scale_factor.has_value()) op_error(op, "give exactly one of size and scale_factor");
  if (o.mode == InterpMode::nearest && (o.align_corners || o.antialias))
    op_error(op, "align_corners/antialias apply to bilinear and bicubic only");
  int64_t Ho, Wo;
  if (o.size) {
    Ho = (*o.size)[0], Wo = (*o.size)[1];
  } else {
    // F.interpolate: floor(float(in) * scale)
    Ho = static_cast<int64_t>(std::floor(static_cast<double>(H) * (*o.scale_factor)[0]));
    Wo = static_cast<int64_t>(std::floor(static_cast<double>(W) * (*o.scale_factor)[1]));
  }
  if (Ho <= 0 || Wo <= 0)
    op_error(op, "output size must be positive, got " + std::to_string(Ho) + "x" + std::to_string(Wo));
  return {Ho, Wo};
}

}  // namespace detail
}  // namespace tabula
