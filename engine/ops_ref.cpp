// Reference implementations: the specification of every op. Plain loops over logical indices, written to be read
// next to the torch source they mirror; sums accumulate in double. Speed is irrelevant here.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "engine/ops.h"
#include "engine/ops_common.h"

namespace tabula::ref {

using detail::broadcast_shape;
using detail::check_4d;

static float apply_act(double v, Activation act) {
  switch (act) {
    case Activation::none: return static_cast<float>(v);
    case Activation::relu: return static_cast<float>(v < 0 ? 0.0 : v);  // torch: NaN and -0.0 pass through
    case Activation::gelu: return static_cast<float>(0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))));
    case Activation::gelu_tanh: {
      const double k = std::sqrt(2.0 / M_PI);
      // 0.5 v (1 + tanh(u)) written as v / (1 + exp(-2u)): equal, without cancellation for v << 0
      return static_cast<float>(v / (1.0 + std::exp(-2.0 * k * (v + 0.044715 * v * v * v))));
    }
    case Activation::silu: return static_cast<float>(v / (1.0 + std::exp(-v)));
  }
  return 0;
}

Tensor conv2d(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, const Conv2dOptions& o, Activation act,
              const Tensor& residual) {
  auto [N, C, H, W, Cout, kh, kw, Ho, Wo] = detail::conv2d_shapes("ref::conv2d", x_in, w_in, b_in, o, residual);
  Tensor x = x_in.contiguous(), w = w_in.contiguous();
  const float* xp = x.data<float>();
  const float* wp = w.data<float>();
  Tensor bias = b_in.defined() ? b_in.contiguous() : Tensor();
  Tensor res = residual.defined() ? residual.contiguous() : Tensor();
  Tensor y = Tensor::empty({N, Cout, Ho, Wo});
  float* yp = y.data<float>();
  const int64_t cin_g = C / o.groups, cout_g = Cout / o.groups;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oc = 0; oc < Cout; ++oc) {
      const int64_t g = oc / cout_g;
      for (int64_t oh = 0; oh < Ho; ++oh)
        for (int64_t ow = 0; ow < Wo; ++ow) {
          double acc = bias.defined() ? bias.data<float>()[oc] : 0.0;
          for (int64_t ic = 0; ic < cin_g; ++ic)
            for (int64_t i = 0; i < kh; ++i) {
              int64_t ih = oh * o.stride[0] - o.padding[0] + i * o.dilation[0];
              if (ih < 0 || ih >= H) continue;
              for (int64_t j = 0; j < kw; ++j) {
                int64_t iw = ow * o.stride[1] - o.padding[1] + j * o.dilation[1];
                if (iw < 0 || iw >= W) continue;
                acc += static_cast<double>(xp[((n * C + g * cin_g + ic) * H + ih) * W + iw]) *
                       wp[((oc * cin_g + ic) * kh + i) * kw + j];
              }
            }
          int64_t oi = ((n * Cout + oc) * Ho + oh) * Wo + ow;
          if (res.defined()) acc += res.data<float>()[oi];
          yp[oi] = apply_act(acc, act);
        }
    }
  return y;
}

Tensor batch_norm(const Tensor& x_in, const Tensor& weight, const Tensor& bias, const Tensor& mean,
                  const Tensor& var, double eps) {
  check_f32_cpu("ref::batch_norm", x_in, "input");
  if (x_in.dim() < 2) op_error("ref::batch_norm", "input must have a channel dim, got " + x_in.str());
  const int64_t C = x_in.size(1);
  for (const Tensor* t : {&mean, &var})
    if (!t->defined() || t->numel() != C)
      op_error("ref::batch_norm", "running stats must have " + std::to_string(C) + " elements");
  Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty(x.shape());
  const int64_t N = x.size(0), inner = x.numel() / std::max<int64_t>(N * C, 1);
  auto m = mean.contiguous(), v = var.contiguous();
  Tensor w = weight.defined() ? weight.contiguous() : Tensor(), b = bias.defined() ? bias.contiguous() : Tensor();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      double inv = 1.0 / std::sqrt(static_cast<double>(v.data<float>()[c]) + eps);
      double g = w.defined() ? w.data<float>()[c] : 1.0, be = b.defined() ? b.data<float>()[c] : 0.0;
      for (int64_t i = 0; i < inner; ++i) {
        int64_t k = (n * C + c) * inner + i;
        y.data<float>()[k] = static_cast<float>((x.data<float>()[k] - m.data<float>()[c]) * inv * g + be);
      }
    }
  return y;
}

static Tensor map1(std::string_view op, const Tensor& x_in, Activation act) {
  check_f32_cpu(op, x_in, "input");
  Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty(x.shape());
  for (int64_t i = 0; i < x.numel(); ++i) y.data<float>()[i] = apply_act(x.data<float>()[i], act);
  return y;
}
Tensor relu(const Tensor& x) { return map1("ref::relu", x, Activation::relu); }
Tensor gelu(const Tensor& x, bool tanh_approximation) {
  return map1("ref::gelu", x, tanh_approximation ? Activation::gelu_tanh : Activation::gelu);
}
Tensor silu(const Tensor& x) { return map1("ref::silu", x, Activation::silu); }
Tensor activation(const Tensor& x, Activation act) { return map1("ref::activation", x, act); }

// torch.nn.functional.hardswish: x * min(max(x + 3, 0), 6) / 6
Tensor hardswish(const Tensor& x_in) {
  check_f32_cpu("ref::hardswish", x_in, "input");
  Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty(x.shape());
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double v = x.data<float>()[i];
    y.data<float>()[i] = static_cast<float>(v * std::min(std::max(v + 3.0, 0.0), 6.0) / 6.0);
  }
  return y;
}

Tensor swiglu(const Tensor& x_in) {
  check_f32_cpu("ref::swiglu", x_in, "input");
  const int64_t C2 = x_in.size(-1);
  if (C2 % 2) op_error("ref::swiglu", "last dim must be even, got " + x_in.str());
  Tensor x1 = ref::silu(x_in.slice(-1, 0, C2 / 2));
  Tensor x2 = x_in.slice(-1, C2 / 2, C2).contiguous();
  Tensor y = Tensor::empty(x1.shape());
  for (int64_t i = 0; i < y.numel(); ++i)
    y.data<float>()[i] = x1.data<float>()[i] * x2.data<float>()[i];
  return y;
}

Tensor max_pool2d(const Tensor& x_in, std::array<int64_t, 2> k, std::array<int64_t, 2> s, std::array<int64_t, 2> p,
                  std::array<int64_t, 2> d, bool ceil_mode) {
  auto [N, C, H, W] = check_4d("ref::max_pool2d", x_in);
  detail::check_pool_args("ref::max_pool2d", k, s, p, d);
  auto [Ho, Wo] = detail::pool_output_hw("ref::max_pool2d", H, W, k, s, p, d, ceil_mode);
  Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty({N, C, Ho, Wo});
  for (int64_t nc = 0; nc < N * C; ++nc)
    for (int64_t oh = 0; oh < Ho; ++oh)
      for (int64_t ow = 0; ow < Wo; ++ow) {
        float best = -std::numeric_limits<float>::infinity();
        for (int64_t i = 0; i < k[0]; ++i)
          for (int64_t j = 0; j < k[1]; ++j) {
            int64_t ih = oh * s[0] - p[0] + i * d[0], iw = ow * s[1] - p[1] + j * d[1];
            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
            float v = x.data<float>()[(nc * H + ih) * W + iw];
            if (v > best || std::isnan(v)) best = v;  // torch propagates NaN
          }
        y.data<float>()[(nc * Ho + oh) * Wo + ow] = best;
      }
  return y;
}

Tensor avg_pool2d(const Tensor& x_in, std::array<int64_t, 2> k, std::array<int64_t, 2> s, std::array<int64_t, 2> p,
                  bool ceil_mode, bool count_include_pad) {
  auto [N, C, H, W] = check_4d("ref::avg_pool2d", x_in);
  detail::check_pool_args("ref::avg_pool2d", k, s, p, {1, 1});
  auto [Ho, Wo] = detail::pool_output_hw("ref::avg_pool2d", H, W, k, s, p, {1, 1}, ceil_mode);
  Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty({N, C, Ho, Wo});
  for (int64_t nc = 0; nc < N * C; ++nc)
    for (int64_t oh = 0; oh < Ho; ++oh)
      for (int64_t ow = 0; ow < Wo; ++ow) {
        // torch's AvgPoolKernel: the divisor counts padding cells inside [.., in + pad) but not beyond it.
        int64_t h0 = oh * s[0] - p[0], w0 = ow * s[1] - p[1];
        int64_t h1 = std::min(h0 + k[0], H + p[0]), w1 = std::min(w0 + k[1], W + p[1]);
        int64_t pool_size = (h1 - h0) * (w1 - w0);
        h0 = std::max<int64_t>(h0, 0), w0 = std::max<int64_t>(w0, 0);
        h1 = std::min(h1, H), w1 = std::min(w1, W);
        double sum = 0;
        for (int64_t ih = h0; ih < h1; ++ih)
          for (int64_t iw = w0; iw < w1; ++iw) sum += x.data<float>()[(nc * H + ih) * W + iw];
        int64_t divisor = count_include_pad ? pool_size : (h1 - h0) * (w1 - w0);
        y.data<float>()[(nc * Ho + oh) * Wo + ow] =
            (h0 >= h1 || w0 >= w1) ? 0.f : static_cast<float>(sum / static_cast<double>(divisor));
      }
  return y;
}

// torch's adaptive pooling windows: [floor(o * in / out), ceil((o + 1) * in / out)).
static int64_t adaptive_start(int64_t o, int64_t out, int64_t in) { return (o * in) / out; }
static int64_t adaptive_end(int64_t o, int64_t out, int64_t in) { return ((o + 1) * in + out - 1) / out; }

template <bool kMax>
static Tensor adaptive_pool(std::string_view op, const Tensor& x_in, std::array<int64_t, 2> os) {
  auto [N, C, H, W] = check_4d(op, x_in);
  if (os[0] <= 0 || os[1] <= 0) op_error(op, "output size must be positive");
  Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty({N, C, os[0], os[1]});
  for (int64_t nc = 0; nc < N * C; ++nc)
    for (int64_t oh = 0; oh < os[0]; ++oh)
      for (int64_t ow = 0; ow < os[1]; ++ow) {
        int64_t h0 = adaptive_start(oh, os[0], H), h1 = adaptive_end(oh, os[0], H);
        int64_t w0 = adaptive_start(ow, os[1], W), w1 = adaptive_end(ow, os[1], W);
        double acc = kMax ? -std::numeric_limits<double>::infinity() : 0.0;
        for (int64_t ih = h0; ih < h1; ++ih)
          for (int64_t iw = w0; iw < w1; ++iw) {
            double v = x.data<float>()[(nc * H + ih) * W + iw];
            if (kMax) acc = (v > acc || std::isnan(v)) ? v : acc;
            else acc += v;
          }
        if (!kMax) acc /= static_cast<double>((h1 - h0) * (w1 - w0));
        y.data<float>()[(nc * os[0] + oh) * os[1] + ow] = static_cast<float>(acc);
      }
  return y;
}
Tensor adaptive_avg_pool2d(const Tensor& x, std::array<int64_t, 2> os) {
  return adaptive_pool<false>("ref::adaptive_avg_pool2d", x, os);
}
Tensor adaptive_max_pool2d(const Tensor& x, std::array<int64_t, 2> os) {
  return adaptive_pool<true>("ref::adaptive_max_pool2d", x, os);
}

Tensor linear(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, Activation act, const Tensor& residual) {
  detail::check_linear("ref::linear", x_in, w_in, b_in);
  const int64_t K = x_in.size(-1), Nout = w_in.size(0), M = x_in.numel() / std::max<int64_t>(K, 1);
  Tensor x = x_in.contiguous(), w = w_in.contiguous();
  Tensor b = b_in.defined() ? b_in.contiguous() : Tensor();
  Shape ys = x.shape();
  ys.back() = Nout;
  const Tensor r = detail::linear_residual("ref::linear", residual, ys);
  Tensor y = Tensor::empty(ys);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < Nout; ++j) {
      double acc = b.defined() ? b.data<float>()[j] : 0.0;
      for (int64_t k = 0; k < K; ++k)
        acc += static_cast<double>(x.data<float>()[i * K + k]) * w.data<float>()[j * K + k];
      if (r.defined()) acc += r.data<float>()[i * Nout + j];
      y.data<float>()[i * Nout + j] = apply_act(acc, act);
    }
  return y;
}

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  auto [batch, M, K, N, out_shape] = detail::matmul_shapes("ref::matmul", a_in, b_in);
  Tensor a = a_in.contiguous(), b = b_in.contiguous();
  const bool b_shared = b.dim() == 2;
  Tensor y = Tensor::empty(out_shape);
  for (int64_t p = 0; p < batch; ++p)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double acc = 0;
        const float* bp = b.data<float>() + (b_shared ? 0 : p * K * N);
        for (int64_t k = 0; k < K; ++k)
          acc += static_cast<double>(a.data<float>()[(p * M + i) * K + k]) * bp[k * N + j];
        y.data<float>()[(p * M + i) * N + j] = static_cast<float>(acc);
      }
  return y;
}

Tensor layer_norm(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, double eps) {
  check_f32_cpu("ref::layer_norm", x_in, "input");
  const int64_t C = x_in.size(-1), rows = x_in.numel() / std::max<int64_t>(C, 1);
  for (const Tensor* t : {&w_in, &b_in})
    if (t->defined() && t->numel() != C)
      op_error("ref::layer_norm", "weight/bias must have " + std::to_string(C) + " elements, got " + t->str());
  Tensor x = x_in.contiguous(), y = Tensor::empty(x.shape());
  Tensor w = w_in.defined() ? w_in.contiguous() : Tensor(), b = b_in.defined() ? b_in.contiguous() : Tensor();
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x.data<float>() + r * C;
    double mean = 0, var = 0;
    for (int64_t c = 0; c < C; ++c) mean += xr[c];
    mean /= static_cast<double>(C);
    for (int64_t c = 0; c < C; ++c) var += (xr[c] - mean) * (xr[c] - mean);
    var /= static_cast<double>(C);  // biased, as torch
    double rstd = 1.0 / std::sqrt(var + eps);
    for (int64_t c = 0; c < C; ++c) {
      double v = (xr[c] - mean) * rstd;
      if (w.defined()) v *= w.data<float>()[c];
      if (b.defined()) v += b.data<float>()[c];
      y.data<float>()[r * C + c] = static_cast<float>(v);
    }
  }
  return y;
}

Tensor softmax(const Tensor& x_in, int64_t dim) {
  check_f32_cpu("ref::softmax", x_in, "input");
  dim = x_in.wrap_dim(dim);
  // Move `dim` last, work on rows, move it back.
  Tensor x = x_in.transpose(dim, -1).contiguous();
  const int64_t C = x.size(-1), rows = x.numel() / std::max<int64_t>(C, 1);
  Tensor y = Tensor::empty(x.shape());
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x.data<float>() + r * C;
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t c = 0; c < C; ++c) mx = std::max<double>(mx, xr[c]);
    double sum = 0;
    for (int64_t c = 0; c < C; ++c) sum += std::exp(xr[c] - mx);
    for (int64_t c = 0; c < C; ++c) y.data<float>()[r * C + c] = static_cast<float>(std::exp(xr[c] - mx) / sum);
  }
  return y.transpose(dim, -1).contiguous();
}

Tensor scaled_dot_product_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                                    std::optional<double> scale_opt, Tensor* attn_probs) {
  auto [B, H, Nq, Nk, D, Dv] = detail::sdpa_shapes("ref::scaled_dot_product_attention", q_in, k_in, v_in);
  const double scale = scale_opt ? *scale_opt : 1.0 / std::sqrt(static_cast<double>(D));
  Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
  Tensor out = Tensor::empty({B, H, Nq, Dv});
  Tensor probs = Tensor::empty({B, H, Nq, Nk});
  std::vector<double> s(static_cast<size_t>(Nk));
  for (int64_t bh = 0; bh < B * H; ++bh)
    for (int64_t i = 0; i < Nq; ++i) {
      const float* qi = q.data<float>() + (bh * Nq + i) * D;
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < Nk; ++j) {
        const float* kj = k.data<float>() + (bh * Nk + j) * D;
        double acc = 0;
        for (int64_t d = 0; d < D; ++d) acc += static_cast<double>(qi[d]) * kj[d];
        s[j] = acc * scale;
        mx = std::max(mx, s[j]);
      }
      double sum = 0;
      for (int64_t j = 0; j < Nk; ++j) sum += (s[j] = std::exp(s[j] - mx));
      float* pr = probs.data<float>() + (bh * Nq + i) * Nk;
      for (int64_t j = 0; j < Nk; ++j) pr[j] = static_cast<float>(s[j] / sum);
      for (int64_t d = 0; d < Dv; ++d) {
        double acc = 0;
        for (int64_t j = 0; j < Nk; ++j) acc += s[j] / sum * v.data<float>()[(bh * Nk + j) * Dv + d];
        out.data<float>()[(bh * Nq + i) * Dv + d] = static_cast<float>(acc);
      }
    }
  if (attn_probs) *attn_probs = probs;
  return out;
}

// timm WindowAttention's unfused path: (q * scale) @ k^T + bias + mask, softmax, @ v (in double here).
Tensor biased_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const Tensor& bias_in,
                        const Tensor& mask_in, std::optional<double> scale_opt, Tensor* attn_probs) {
  const char* op = "ref::biased_attention";
  for (auto [t, name] : {std::pair{&q_in, "query"}, std::pair{&k_in, "key"}, std::pair{&v_in, "value"}})
    check_f32_cpu(op, *t, name);
  if (bias_in.defined()) check_f32_cpu(op, bias_in, "bias");
  if (mask_in.defined()) check_f32_cpu(op, mask_in, "mask");
  const auto [sh, nW] = detail::biased_attention_shapes(op, q_in, k_in, v_in, bias_in, mask_in);
  const auto [B, H, N, Nk, D, Dv] = sh;
  const double scale = scale_opt ? *scale_opt : 1.0 / std::sqrt(static_cast<double>(D));
  Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
  const Tensor bias = bias_in.defined() ? bias_in.contiguous() : Tensor();
  const Tensor mask = mask_in.defined() ? mask_in.contiguous() : Tensor();
  Tensor out = Tensor::empty({B, H, N, Dv});
  Tensor probs = Tensor::empty({B, H, N, N});
  std::vector<double> s(static_cast<size_t>(N));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < N; ++i) {
        const int64_t bh = b * H + h;
        const float* qi = q.data<float>() + (bh * N + i) * D;
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < N; ++j) {
          const float* kj = k.data<float>() + (bh * N + j) * D;
          double acc = 0;
          for (int64_t d = 0; d < D; ++d) acc += static_cast<double>(qi[d]) * kj[d];
          s[j] = acc * scale;
          if (bias.defined()) s[j] += bias.data<float>()[(h * N + i) * N + j];
          if (mask.defined()) s[j] += mask.data<float>()[((b % nW) * N + i) * N + j];
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j < N; ++j) sum += (s[j] = std::exp(s[j] - mx));
        float* pr = probs.data<float>() + (bh * N + i) * N;
        for (int64_t j = 0; j < N; ++j) pr[j] = static_cast<float>(s[j] / sum);
        for (int64_t d = 0; d < Dv; ++d) {
          double acc = 0;
          for (int64_t j = 0; j < N; ++j) acc += s[j] / sum * v.data<float>()[(bh * N + j) * Dv + d];
          out.data<float>()[(bh * N + i) * Dv + d] = static_cast<float>(acc);
        }
      }
  if (attn_probs) *attn_probs = probs;
  return out;
}

template <class F>
static Tensor binary(std::string_view op, const Tensor& a, const Tensor& b, F f) {
  check_f32_cpu(op, a, "a");
  check_f32_cpu(op, b, "b");
  Shape s = broadcast_shape(op, a.shape(), b.shape());
  Tensor ae = a.expand(s).contiguous(), be = b.expand(s).contiguous();
  Tensor y = Tensor::empty(s);
  for (int64_t i = 0; i < y.numel(); ++i) y.data<float>()[i] = f(ae.data<float>()[i], be.data<float>()[i]);
  return y;
}
Tensor add(const Tensor& a, const Tensor& b) {
  return binary("ref::add", a, b, [](float u, float v) { return u + v; });
}
Tensor mul(const Tensor& a, const Tensor& b) {
  return binary("ref::mul", a, b, [](float u, float v) { return u * v; });
}
Tensor mul(const Tensor& a, float s) {
  check_f32_cpu("ref::mul", a, "a");
  Tensor x = a.contiguous(), y = Tensor::empty(a.shape());
  for (int64_t i = 0; i < y.numel(); ++i) y.data<float>()[i] = x.data<float>()[i] * s;
  return y;
}

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  Shape out = detail::cat_shape("ref::cat", xs, dim);
  dim = xs[0].wrap_dim(dim);
  Tensor y = Tensor::empty(out);
  int64_t at = 0;
  for (const Tensor& x : xs) {
    y.narrow(dim, at, x.size(dim)).copy_(x);
    at += x.size(dim);
  }
  return y;
}

Tensor layer_scale(const Tensor& x, const Tensor& gamma) {
  if (!gamma.defined() || gamma.dim() != 1 || gamma.numel() != x.size(-1))
    op_error("ref::layer_scale", "gamma must be [" + std::to_string(x.size(-1)) + "], got " + gamma.str());
  return ref::mul(x, gamma);
}

// ---- interpolate (torch/aten/src/ATen/native/UpSample.h, cpu/UpSampleKernel.cpp) ----

// Keys' cubic convolution kernel with parameter A (torch: A = -0.75 without antialias, -0.5 with it, as PIL).
static double cubic_weight(double x, double A) {
  x = std::fabs(x);
  if (x <= 1) return ((A + 2) * x - (A + 3)) * x * x + 1;
  if (x < 2) return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
  return 0;
}

// One axis of a separable resampling: out[i] = sum_t weight[i][t] * in[index[i][t]].
struct Taps {
  std::vector<std::vector<int64_t>> index;
  std::vector<std::vector<double>> weight;
};

static Taps axis_taps(int64_t in, int64_t out, std::optional<double> scale_factor, const InterpolateOptions& o) {
  Taps t;
  t.index.resize(out);
  t.weight.resize(out);
  // area_pixel_compute_scale
  double scale;
  if (o.align_corners) scale = out > 1 ? static_cast<double>(in - 1) / static_cast<double>(out - 1) : 0.0;
  else scale = (scale_factor && *scale_factor > 0) ? 1.0 / *scale_factor : static_cast<double>(in) / out;
  if (o.mode == InterpMode::nearest) {
    // legacy 'nearest' (nearest_idx): floorf(dst * scale) in float, scale = in/out or 1/scale_factor as float
    const float s = (scale_factor && *scale_factor > 0) ? static_cast<float>(1.0 / *scale_factor)
                                                        : static_cast<float>(in) / static_cast<float>(out);
    for (int64_t i = 0; i < out; ++i) {
      t.index[i] = {std::min<int64_t>(static_cast<int64_t>(std::floor(static_cast<float>(i) * s)), in - 1)};
      t.weight[i] = {1.0};
    }
    return t;
  }
  const bool cubic = o.mode == InterpMode::bicubic;
  if (o.antialias) {
    // _compute_indices_min_size_weights_aa: a filter stretched by the downscale factor, PIL style.
    const double interp_size = cubic ? 4 : 2;
    const double support = scale >= 1.0 ? interp_size * 0.5 * scale : interp_size * 0.5;
    const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
    const int64_t max_size = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
    for (int64_t i = 0; i < out; ++i) {
      double center = scale * (i + 0.5);
      int64_t xmin = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5), 0);
      int64_t xsize = std::clamp<int64_t>(std::min<int64_t>(static_cast<int64_t>(center + support + 0.5), in) - xmin,
                                          0, max_size);
      double total = 0;
      for (int64_t j = 0; j < xsize; ++j) {
        double x = (j + xmin - center + 0.5) * invscale;
        double w = cubic ? cubic_weight(x, -0.5) : std::max(0.0, 1.0 - std::fabs(x));
        t.index[i].push_back(xmin + j);
        t.weight[i].push_back(w);
        total += w;
      }
      if (total != 0)
        for (double& w : t.weight[i]) w /= total;
    }
    return t;
  }
  for (int64_t i = 0; i < out; ++i) {
    // area_pixel_compute_source_index
    double src = o.align_corners ? scale * i : scale * (i + 0.5) - 0.5;
    if (!cubic) {
      if (src < 0) src = 0;
      int64_t i0 = std::min<int64_t>(static_cast<int64_t>(std::floor(src)), in - 1);  // guard_index_and_lambda
      double l1 = std::clamp(src - i0, 0.0, 1.0);
      int64_t i1 = i0 + (i0 < in - 1 ? 1 : 0);
      t.index[i] = {i0, i1};
      t.weight[i] = {1.0 - l1, l1};
    } else {
      int64_t i0 = static_cast<int64_t>(std::floor(src));
      double f = src - i0;
      for (int64_t k = -1; k <= 2; ++k) {
        t.index[i].push_back(std::clamp<int64_t>(i0 + k, 0, in - 1));  // upsample_get_value_bounded
        t.weight[i].push_back(cubic_weight(f - k, -0.75));
      }
    }
  }
  return t;
}

Tensor interpolate(const Tensor& x_in, const InterpolateOptions& o) {
  auto [N, C, H, W] = check_4d("ref::interpolate", x_in);
  auto [Ho, Wo] = detail::interpolate_size("ref::interpolate", H, W, o);
  std::optional<double> sh, sw;
  if (o.scale_factor) sh = (*o.scale_factor)[0], sw = (*o.scale_factor)[1];
  Taps th = axis_taps(H, Ho, sh, o), tw = axis_taps(W, Wo, sw, o);
  Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty({N, C, Ho, Wo});
  for (int64_t nc = 0; nc < N * C; ++nc)
    for (int64_t oh = 0; oh < Ho; ++oh)
      for (int64_t ow = 0; ow < Wo; ++ow) {
        double acc = 0;
        for (size_t a = 0; a < th.index[oh].size(); ++a)
          for (size_t b = 0; b < tw.index[ow].size(); ++b)
            acc +=
                th.weight[oh][a] * tw.weight[ow][b] * x.data<float>()[(nc * H + th.index[oh][a]) * W + tw.index[ow][b]];
        y.data<float>()[(nc * Ho + oh) * Wo + ow] = static_cast<float>(acc);
      }
  return y;
}

// ---- pooling to one vector per image ----

Tensor pool(const Tensor& x_in, Pool p, int64_t num_prefix) {
  check_f32_cpu("ref::pool", x_in, "input");
  if (p == Pool::none) return x_in;
  Tensor x = x_in.contiguous();
  // View both layouts as [B, L, C] with the pooled positions [first, L).
  int64_t B, L, C, first;
  std::function<float(int64_t, int64_t, int64_t)> at;
  if (x.dim() == 4) {
    if (p == Pool::cls || p == Pool::mean || p == Pool::cls_mean)
      op_error("ref::pool",
               std::string(pool_name(p)) + " pooling needs tokens [B, N, C], got a feature map " + x.str());
    B = x.size(0), C = x.size(1), L = x.size(2) * x.size(3), first = 0;
    at = [&](int64_t b, int64_t l, int64_t c) { return x.data<float>()[(b * C + c) * L + l]; };
  } else if (x.dim() == 3) {
    B = x.size(0), L = x.size(1), C = x.size(2), first = num_prefix;
    if (num_prefix < 0) op_error("ref::pool", "negative number of prefix tokens");
    if (p != Pool::cls && first >= L)
      op_error("ref::pool",
               "no patch tokens to pool: " + std::to_string(L) + " tokens, " + std::to_string(num_prefix) + " prefix");
    if ((p == Pool::cls || p == Pool::cls_mean) && num_prefix < 1)
      op_error("ref::pool", "cls pooling needs a prefix (class) token");
    at = [&](int64_t b, int64_t l, int64_t c) { return x.data<float>()[(b * L + l) * C + c]; };
  } else {
    op_error("ref::pool", "expects [B, C, H, W] or [B, N, C], got " + x.str());
  }
  const int64_t D = p == Pool::cls_mean ? 2 * C : C;
  Tensor y = Tensor::empty({B, D});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c) {
      double mean = 0, mx = -std::numeric_limits<double>::infinity(), gem = 0;
      for (int64_t l = first; l < L; ++l) {
        double v = at(b, l, c);
        mean += v;
        mx = (v > mx || std::isnan(v)) ? v : mx;
        gem += std::pow(std::max(v, detail::kGemEps), detail::kGemP);
      }
      const double n = static_cast<double>(L - first);
      float* yr = y.data<float>() + b * D;
      switch (p) {
        case Pool::avg: case Pool::mean: yr[c] = static_cast<float>(mean / n); break;
        case Pool::max: yr[c] = static_cast<float>(mx); break;
        case Pool::gem: yr[c] = static_cast<float>(std::pow(gem / n, 1.0 / detail::kGemP)); break;
        case Pool::cls: yr[c] = at(b, 0, c); break;
        case Pool::cls_mean: yr[c] = at(b, 0, c), yr[C + c] = static_cast<float>(mean / n); break;
        case Pool::none: break;
      }
    }
  return y;
}

// DINOv3 apply_rope on one of q / k, in double, rounded once: y = x * cos + rotate_half(x) * sin.
Tensor rope_apply(const Tensor& x_in, const Tensor& sin_in, const Tensor& cos_in) {
  check_f32_cpu("ref::rope_apply", x_in, "input");
  check_f32_cpu("ref::rope_apply", sin_in, "sin");
  check_f32_cpu("ref::rope_apply", cos_in, "cos");
  const detail::RopeShapes s = detail::rope_shapes("ref::rope_apply", x_in, sin_in, cos_in);
  const Tensor x = x_in.contiguous(), sn = sin_in.contiguous(), cs = cos_in.contiguous();
  Tensor y = Tensor::empty(x.shape());
  const float* xp = x.data<float>();
  const float* sp = sn.data<float>();
  const float* cp = cs.data<float>();
  float* yp = y.data<float>();
  const int64_t half = s.hd / 2;
  for (int64_t r = 0; r < s.rows; ++r)
    for (int64_t t = 0; t < s.n; ++t) {
      const float* xr = xp + (r * s.n + t) * s.hd;
      float* yr = yp + (r * s.n + t) * s.hd;
      if (t < s.prefix) {
        std::copy(xr, xr + s.hd, yr);
        continue;
      }
      const float* sr = sp + (t - s.prefix) * s.hd;
      const float* cr = cp + (t - s.prefix) * s.hd;
      for (int64_t d = 0; d < s.hd; ++d) {
        const double rot = d < half ? -static_cast<double>(xr[d + half]) : static_cast<double>(xr[d - half]);
        yr[d] = static_cast<float>(static_cast<double>(xr[d]) * cr[d] + rot * sr[d]);
      }
    }
  return y;
}

}  // namespace tabula::ref

namespace tabula::detail {
InterpTaps interpolate_taps(int64_t in, int64_t out, std::optional<double> scale_factor, const InterpolateOptions& o) {
  ref::Taps t = ref::axis_taps(in, out, scale_factor, o);
  return {std::move(t.index), std::move(t.weight)};
}
}  // namespace tabula::detail
