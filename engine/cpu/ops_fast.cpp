// The CPU backend's ops (engine/cpu/backend.h): what ops::<op> runs on CPU tensors. Same signatures and semantics
// as tabula::ref (the specification); tests/engine/op_cases.cpp checks each against its reference. Parallel loops
// split work with parallel_for's thread-count-independent chunks and never reduce across chunks, so the bits do not
// depend on --threads.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "engine/cpu/backend.h"
#include "engine/cpu/depthwise.h"
#include "engine/cpu/bf16_centres.h"
#include "engine/cpu/gemm_kernels.h"
#include "engine/ops.h"
#include "engine/ops_common.h"
#include "engine/cpu/packed.h"
#include "engine/cpu/rowops.h"
#include "engine/threads.h"

namespace tabula {

using detail::check_4d;
using ops::gemm;
using ops::GemmEpilogue;

namespace ops {

// ---------------------------------------------------------------------------------------------------------------
// conv2d as GEMM: out[Cout_g, P] = W[Cout_g, Cin_g*kh*kw] @ col[Cin_g*kh*kw, P] per group, P = Ho*Wo, with bias
// (folded BN), residual and activation fused into the GEMM epilogue. 1x1 stride-1 convs use the input itself as
// `col` (no copy). Small maps (P < 256: ResNet's 14x14 and 7x7 stages) fold several images into the GEMM's N
// dimension, so the micro-kernel's 32-wide panels are not mostly padding; their epilogue then runs in the pass
// that scatters the [Cout, images * P] result back to NCHW.

namespace {
// read by PackedConv2d at construction (ops.h); TABULA_WINOGRAD=0 starts the process with it off
std::atomic<bool> g_winograd{[] {
  const char* e = std::getenv("TABULA_WINOGRAD");
  return !(e && std::string_view(e) == "0");
}()};
}  // namespace
void set_winograd_enabled(bool on) { g_winograd.store(on); }
bool winograd_enabled() { return g_winograd.load(std::memory_order_relaxed); }
}  // namespace ops

namespace {
// im2col of one image's group: row r = (ic, i, j) of `dst` (row stride ldd) holds
// x[ic, oh*sh - ph + i*dh, ow*sw - pw + j*dw] over (oh, ow), 0 outside the input.
void im2col(const float* xg, const detail::ConvShapes& s, const Conv2dOptions& o, int64_t cin_g, float* dst,
            int64_t ldd) {
  const int64_t K = cin_g * s.kh * s.kw, HW = s.H * s.W;
  parallel_for(K, grain_for(K, s.Ho * s.Wo, 1 << 14), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t ic = r / (s.kh * s.kw), i = (r / s.kw) % s.kh, j = r % s.kw;
      const float* src = xg + ic * HW;
      for (int64_t oh = 0; oh < s.Ho; ++oh) {
        const int64_t ih = oh * o.stride[0] - o.padding[0] + i * o.dilation[0];
        float* d = dst + r * ldd + oh * s.Wo;
        if (ih < 0 || ih >= s.H) {
          std::fill_n(d, s.Wo, 0.f);
          continue;
        }
        const float* srow = src + ih * s.W;
        const int64_t off = j * o.dilation[1] - o.padding[1];
        if (o.stride[1] == 1) {  // one contiguous run of valid columns [lo, hi)
          const int64_t lo = std::clamp<int64_t>(-off, 0, s.Wo), hi = std::clamp<int64_t>(s.W - off, lo, s.Wo);
          std::fill_n(d, lo, 0.f);
          std::memcpy(d + lo, srow + lo + off, static_cast<size_t>(hi - lo) * sizeof(float));
          std::fill_n(d + hi, s.Wo - hi, 0.f);
        } else {  // strided: valid ow are those with 0 <= ow * sw + off < W, i.e. [lo, hi)
          const int64_t sw = o.stride[1];
          const int64_t lo = std::clamp<int64_t>(off >= 0 ? 0 : (-off + sw - 1) / sw, 0, s.Wo);
          const int64_t hi = std::clamp<int64_t>(s.W - off <= 0 ? 0 : (s.W - off + sw - 1) / sw, lo, s.Wo);
          std::fill_n(d, lo, 0.f);
          for (int64_t ow = lo; ow < hi; ++ow) d[ow] = srow[ow * sw + off];
          std::fill_n(d + hi, s.Wo - hi, 0.f);
        }
      }
    }
  });
}
}  // namespace

Tensor CpuBackend::conv2d(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, const Conv2dOptions& o,
                          Activation act, const Tensor& residual) {
  auto s = detail::conv2d_shapes("ops::conv2d", x_in, w_in, b_in, o, residual);
  // depthwise (groups = C_in = C_out): a window sum per pixel across channels, channels-last in and out
  if (o.groups > 1 && o.groups == s.C && s.Cout == s.C)
    return detail::depthwise_conv2d(x_in, w_in, b_in, o, act, residual);
  Tensor x = x_in.contiguous(), w = w_in.contiguous();
  Tensor bias = b_in.defined() ? b_in.contiguous() : Tensor();
  Tensor res = residual.defined() ? residual.contiguous() : Tensor();
  Tensor y = Tensor::empty({s.N, s.Cout, s.Ho, s.Wo});
  const int64_t G = o.groups, cin_g = s.C / G, cout_g = s.Cout / G;
  const int64_t K = cin_g * s.kh * s.kw, P = s.Ho * s.Wo, HW = s.H * s.W;
  const bool direct = s.kh == 1 && s.kw == 1 && o.stride[0] == 1 && o.stride[1] == 1 && o.padding[0] == 0 &&
                      o.padding[1] == 0;
  // images per GEMM (a fixed function of the shapes: part of the deterministic definition of the result)
  const int64_t nb = P < 256 ? std::min<int64_t>(s.N, (512 + P - 1) / P) : 1;
  // Scratch reused across calls (fresh multi-MB buffers would page-fault on every conv). Raw pointers below:
  // the parallel_for workers must use this thread's buffers.
  thread_local std::vector<float> col_buf, tmp_buf;
  const size_t col_n = direct && nb == 1 ? 0 : static_cast<size_t>(K * P * nb);
  const size_t tmp_n = nb > 1 ? static_cast<size_t>(cout_g * P * nb) : 0;
  if (col_buf.size() < col_n) col_buf.resize(col_n);
  if (tmp_buf.size() < tmp_n) tmp_buf.resize(tmp_n);
  float* const col = col_buf.data();
  float* const tmp = tmp_buf.data();
  for (int64_t n0 = 0; n0 < s.N; n0 += nb) {
    const int64_t nbb = std::min(nb, s.N - n0), cols = nbb * P;
    for (int64_t g = 0; g < G; ++g) {
      const float* bmat = nullptr;
      for (int64_t n = 0; n < nbb; ++n) {
        const float* xg = x.data<float>() + ((n0 + n) * s.C + g * cin_g) * HW;
        if (direct && nbb == 1) {
          bmat = xg;
        } else if (direct) {
          for (int64_t r = 0; r < K; ++r)
            std::memcpy(col + r * cols + n * P, xg + r * HW, static_cast<size_t>(P) * sizeof(float));
        } else {
          im2col(xg, s, o, cin_g, col + n * P, cols);
        }
      }
      if (!bmat) bmat = col;
      const float* bias_g = bias.defined() ? bias.data<float>() + g * cout_g : nullptr;
      const float* wg = w.data<float>() + g * cout_g * K;
      if (nbb == 1) {
        GemmEpilogue ep;
        ep.bias_row = bias_g;
        ep.residual = res.defined() ? res.data<float>() + (n0 * s.Cout + g * cout_g) * P : nullptr;
        ep.ldr = P;
        ep.act = act;
        gemm(cout_g, P, K, wg, K, false, bmat, cols, false, y.data<float>() + (n0 * s.Cout + g * cout_g) * P, P, ep);
        continue;
      }
      GemmEpilogue ep;
      ep.bias_row = bias_g;
      ep.act = res.defined() ? Activation::none : act;
      gemm(cout_g, cols, K, wg, K, false, bmat, cols, false, tmp, cols, ep);
      // scatter [cout_g, (n, p)] -> y[n, g*cout_g + co, p], adding the residual then the activation
      parallel_for(nbb * cout_g, grain_for(nbb * cout_g, P), [&](int64_t q0, int64_t q1) {
        for (int64_t q = q0; q < q1; ++q) {
          const int64_t n = q / cout_g, co = q % cout_g;
          const int64_t yo = ((n0 + n) * s.Cout + g * cout_g + co) * P;
          float* yp = y.data<float>() + yo;
          const float* tp = tmp + co * cols + n * P;
          if (res.defined()) {
            const float* rp = res.data<float>() + yo;
            for (int64_t p = 0; p < P; ++p) yp[p] = tp[p] + rp[p];
            detail::activation_inplace(yp, P, act);
          } else {
            std::memcpy(yp, tp, static_cast<size_t>(P) * sizeof(float));
          }
        }
      });
    }
  }
  return y;
}

Tensor CpuBackend::batch_norm(const Tensor& x_in, const Tensor& weight, const Tensor& bias, const Tensor& mean,
                              const Tensor& var, double eps) {
  check_f32_cpu("ops::batch_norm", x_in, "input");
  if (x_in.dim() < 2) op_error("ops::batch_norm", "input must have a channel dim, got " + x_in.str());
  const int64_t N = x_in.size(0), C = x_in.size(1);
  for (const Tensor* t : {&mean, &var})
    if (!t->defined() || t->numel() != C)
      op_error("ops::batch_norm", "running stats must have " + std::to_string(C) + " elements");
  // y = x * scale + shift with scale, shift computed once per channel in double (as the folded conv would)
  std::vector<float> scale(C), shift(C);
  Tensor m = mean.contiguous(), v = var.contiguous();
  Tensor w = weight.defined() ? weight.contiguous() : Tensor(), b = bias.defined() ? bias.contiguous() : Tensor();
  for (int64_t c = 0; c < C; ++c) {
    double sc = (w.defined() ? w.data<float>()[c] : 1.0) / std::sqrt(static_cast<double>(v.data<float>()[c]) + eps);
    scale[c] = static_cast<float>(sc);
    shift[c] = static_cast<float>((b.defined() ? b.data<float>()[c] : 0.0) - m.data<float>()[c] * sc);
  }
  Tensor x = x_in.contiguous(), y = Tensor::empty(x.shape());
  const int64_t inner = x.numel() / std::max<int64_t>(N * C, 1);
  parallel_for(N * C, grain_for(N * C, inner), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const float sc = scale[p % C], sh = shift[p % C];
      const float* xp = x.data<float>() + p * inner;
      float* yp = y.data<float>() + p * inner;
      for (int64_t i = 0; i < inner; ++i) yp[i] = xp[i] * sc + sh;
    }
  });
  return y;
}

static Tensor map_act(std::string_view op, const Tensor& x_in, Activation act) {
  check_f32_cpu(op, x_in, "input");
  Tensor x = x_in.contiguous();
  Tensor y = x.clone();
  const int64_t n = y.numel();
  parallel_for(n, 1 << 14, [&](int64_t a, int64_t b) { detail::activation_inplace(y.data<float>() + a, b - a, act); });
  return y;
}
Tensor CpuBackend::relu(const Tensor& x) {
  return map_act("ops::relu", x, Activation::relu);
}
Tensor CpuBackend::gelu(const Tensor& x, bool tanh_approximation) {
  return map_act("ops::gelu", x, tanh_approximation ? Activation::gelu_tanh : Activation::gelu);
}
Tensor CpuBackend::silu(const Tensor& x) {
  return map_act("ops::silu", x, Activation::silu);
}
Tensor CpuBackend::activation(const Tensor& x, Activation act) {
  return map_act("ops::activation", x, act);
}

// torch's CPU kernel in float: x * min(max(x + 3, 0), 6) / 6
Tensor CpuBackend::hardswish(const Tensor& x_in) {
  check_f32_cpu("ops::hardswish", x_in, "input");
  Tensor y = x_in.contiguous().clone();
  float* yp = y.data<float>();
  parallel_for(y.numel(), 1 << 15, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) yp[i] = yp[i] * std::min(std::max(yp[i] + 3.f, 0.f), 6.f) / 6.f;
  });
  return y;
}

Tensor CpuBackend::swiglu(const Tensor& x_in) {
  check_f32_cpu("ops::swiglu", x_in, "input");
  const int64_t C2 = x_in.size(-1), C = C2 / 2;
  if (C2 % 2) op_error("ops::swiglu", "last dim must be even, got " + x_in.str());
  Tensor x = x_in.contiguous();
  const int64_t rows = x.numel() / std::max<int64_t>(C2, 1);
  Shape ys = x.shape();
  ys.back() = C;
  Tensor y = Tensor::empty(ys);
  parallel_for(rows, grain_for(rows, C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* a = x.data<float>() + r * C2;
      float* yr = y.data<float>() + r * C;
      detail::row_kernels().silu_mul(a, a + C, yr, C);
    }
  });
  return y;
}

// ---------------------------------------------------------------------------------------------------------------
// Pooling: one (n, c) plane per work item.
Tensor CpuBackend::max_pool2d(const Tensor& x_in, std::array<int64_t, 2> k, std::array<int64_t, 2> s,
                              std::array<int64_t, 2> p, std::array<int64_t, 2> d, bool ceil_mode) {
  auto [N, C, H, W] = check_4d("ops::max_pool2d", x_in);
  detail::check_pool_args("ops::max_pool2d", k, s, p, d);
  auto [Ho, Wo] = detail::pool_output_hw("ops::max_pool2d", H, W, k, s, p, d, ceil_mode);
  if (is_channels_last(x_in)) {
    // Channels-last in, channels-last out (the ResNet stem's maxpool between two channels-last convs): per output
    // pixel, a running max over the window's input pixels, vectorised across channels. Same comparisons in the
    // same window order as below, so the same bits.
    Tensor y = empty_channels_last(N, C, Ho, Wo);
    const float* xp = x_in.data<float>();
    float* yp = y.data<float>();
    parallel_for(N * Ho, grain_for(N * Ho, Wo * C * k[0] * k[1]), [&](int64_t q0, int64_t q1) {
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t n = q / Ho, oh = q % Ho;
        detail::max_pool_rows_channels_last(xp + n * H * W * C, 0, H, W, C, yp + (n * Ho + oh) * Wo * C, oh, oh + 1,
                                            Wo, k, s, p, d);
      }
    });
    return y;
  }
  Tensor x = x_in.contiguous(), y = Tensor::empty({N, C, Ho, Wo});
  parallel_for(N * C, grain_for(N * C, Ho * Wo * k[0] * k[1]), [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) {
      const float* xp = x.data<float>() + q * H * W;
      float* yp = y.data<float>() + q * Ho * Wo;
      for (int64_t oh = 0; oh < Ho; ++oh)
        for (int64_t ow = 0; ow < Wo; ++ow) {
          float best = -std::numeric_limits<float>::infinity();
          for (int64_t i = 0; i < k[0]; ++i) {
            const int64_t ih = oh * s[0] - p[0] + i * d[0];
            if (ih < 0 || ih >= H) continue;
            for (int64_t j = 0; j < k[1]; ++j) {
              const int64_t iw = ow * s[1] - p[1] + j * d[1];
              if (iw < 0 || iw >= W) continue;
              const float v = xp[ih * W + iw];
              if (v > best || std::isnan(v)) best = v;
            }
          }
          yp[oh * Wo + ow] = best;
        }
    }
  });
  return y;
}

Tensor CpuBackend::avg_pool2d(const Tensor& x_in, std::array<int64_t, 2> k, std::array<int64_t, 2> s,
                              std::array<int64_t, 2> p, bool ceil_mode, bool count_include_pad) {
  auto [N, C, H, W] = check_4d("ops::avg_pool2d", x_in);
  detail::check_pool_args("ops::avg_pool2d", k, s, p, {1, 1});
  auto [Ho, Wo] = detail::pool_output_hw("ops::avg_pool2d", H, W, k, s, p, {1, 1}, ceil_mode);
  Tensor x = x_in.contiguous(), y = Tensor::empty({N, C, Ho, Wo});
  parallel_for(N * C, grain_for(N * C, Ho * Wo * k[0] * k[1]), [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) {
      const float* xp = x.data<float>() + q * H * W;
      float* yp = y.data<float>() + q * Ho * Wo;
      for (int64_t oh = 0; oh < Ho; ++oh)
        for (int64_t ow = 0; ow < Wo; ++ow) {
          int64_t h0 = oh * s[0] - p[0], w0 = ow * s[1] - p[1];
          int64_t h1 = std::min(h0 + k[0], H + p[0]), w1 = std::min(w0 + k[1], W + p[1]);
          const int64_t pool_size = (h1 - h0) * (w1 - w0);
          h0 = std::max<int64_t>(h0, 0), w0 = std::max<int64_t>(w0, 0);
          h1 = std::min(h1, H), w1 = std::min(w1, W);
          float sum = 0.f;
          for (int64_t ih = h0; ih < h1; ++ih)
            for (int64_t iw = w0; iw < w1; ++iw) sum += xp[ih * W + iw];
          const int64_t divisor = count_include_pad ? pool_size : (h1 - h0) * (w1 - w0);
          yp[oh * Wo + ow] = (h0 >= h1 || w0 >= w1) ? 0.f : sum / static_cast<float>(divisor);
        }
    }
  });
  return y;
}

template <bool kMax>
static Tensor adaptive_pool(std::string_view op, const Tensor& x_in, std::array<int64_t, 2> os) {
  auto [N, C, H, W] = check_4d(op, x_in);
  if (os[0] <= 0 || os[1] <= 0) op_error(op, "output size must be positive");
  if (is_channels_last(x_in)) {
    // Channels-last input (ResNet's head and layer taps): per (image, output cell), sums / maxima over the
    // window's pixels in the same order as below, vectorised across channels. Output in NCHW order.
    Tensor y = Tensor::empty({N, C, os[0], os[1]});
    const float* xp = x_in.data<float>();
    float* yp = y.data<float>();
    parallel_for(N, 1, [&](int64_t n0, int64_t n1) {
      std::vector<float> acc(static_cast<size_t>(C));
      for (int64_t n = n0; n < n1; ++n)
        for (int64_t oh = 0; oh < os[0]; ++oh)
          for (int64_t ow = 0; ow < os[1]; ++ow) {
            const int64_t h0 = oh * H / os[0], h1 = ((oh + 1) * H + os[0] - 1) / os[0];
            const int64_t w0 = ow * W / os[1], w1 = ((ow + 1) * W + os[1] - 1) / os[1];
            std::fill(acc.begin(), acc.end(), kMax ? -std::numeric_limits<float>::infinity() : 0.f);
            for (int64_t ih = h0; ih < h1; ++ih)
              for (int64_t iw = w0; iw < w1; ++iw) {
                const float* v = xp + ((n * H + ih) * W + iw) * C;
                if (kMax)
                  for (int64_t c = 0; c < C; ++c) acc[c] = (v[c] > acc[c] || v[c] != v[c]) ? v[c] : acc[c];
                else
                  for (int64_t c = 0; c < C; ++c) acc[c] += v[c];
              }
            const float cnt = static_cast<float>((h1 - h0) * (w1 - w0));
            for (int64_t c = 0; c < C; ++c)
              yp[((n * C + c) * os[0] + oh) * os[1] + ow] = kMax ? acc[c] : acc[c] / cnt;
          }
    });
    return y;
  }
  Tensor x = x_in.contiguous(), y = Tensor::empty({N, C, os[0], os[1]});
  parallel_for(N * C, grain_for(N * C, H * W), [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) {
      const float* xp = x.data<float>() + q * H * W;
      float* yp = y.data<float>() + q * os[0] * os[1];
      for (int64_t oh = 0; oh < os[0]; ++oh)
        for (int64_t ow = 0; ow < os[1]; ++ow) {
          const int64_t h0 = oh * H / os[0], h1 = ((oh + 1) * H + os[0] - 1) / os[0];
          const int64_t w0 = ow * W / os[1], w1 = ((ow + 1) * W + os[1] - 1) / os[1];
          float acc = kMax ? -std::numeric_limits<float>::infinity() : 0.f;
          for (int64_t ih = h0; ih < h1; ++ih)
            for (int64_t iw = w0; iw < w1; ++iw) {
              const float v = xp[ih * W + iw];
              if (kMax) acc = (v > acc || std::isnan(v)) ? v : acc;
              else acc += v;
            }
          yp[oh * os[1] + ow] = kMax ? acc : acc / static_cast<float>((h1 - h0) * (w1 - w0));
        }
    }
  });
  return y;
}
Tensor CpuBackend::adaptive_avg_pool2d(const Tensor& x, std::array<int64_t, 2> os) {
  return adaptive_pool<false>("ops::adaptive_avg_pool2d", x, os);
}
Tensor CpuBackend::adaptive_max_pool2d(const Tensor& x, std::array<int64_t, 2> os) {
  return adaptive_pool<true>("ops::adaptive_max_pool2d", x, os);
}

// ---------------------------------------------------------------------------------------------------------------
Tensor CpuBackend::linear(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, Activation act,
                          const Tensor& residual) {
  detail::check_linear("ops::linear", x_in, w_in, b_in);
  const int64_t K = x_in.size(-1), Nout = w_in.size(0), M = x_in.numel() / std::max<int64_t>(K, 1);
  Tensor x = x_in.contiguous(), w = w_in.contiguous();
  Tensor b = b_in.defined() ? b_in.contiguous() : Tensor();
  Shape ys = x.shape();
  ys.back() = Nout;
  const Tensor r = detail::linear_residual("ops::linear", residual, ys);
  Tensor y = Tensor::empty(ys);
  GemmEpilogue ep;
  ep.bias_col = b.defined() ? b.data<float>() : nullptr;
  ep.residual = r.defined() ? r.data<float>() : nullptr;
  ep.ldr = Nout;
  ep.act = act;
  gemm(M, Nout, K, x.data<float>(), K, false, w.data<float>(), K, /*trans_b=*/true, y.data<float>(), Nout, ep);
  return y;
}

Tensor CpuBackend::matmul(const Tensor& a_in, const Tensor& b_in) {
  auto [batch, M, K, N, out_shape] = detail::matmul_shapes("ops::matmul", a_in, b_in);
  Tensor a = a_in.contiguous(), b = b_in.contiguous();
  Tensor y = Tensor::empty(out_shape);
  if (b.dim() == 2) {  // one GEMM with the batch folded into M
    gemm(batch * M, N, K, a.data<float>(), K, false, b.data<float>(), N, false, y.data<float>(), N);
    return y;
  }
  for (int64_t p = 0; p < batch; ++p)
    gemm(M, N, K, a.data<float>() + p * M * K, K, false, b.data<float>() + p * K * N, N, false,
         y.data<float>() + p * M * N, N);
  return y;
}

// ---------------------------------------------------------------------------------------------------------------
// Row ops: 16 partial sums (vectorisable without -ffast-math), combined in a fixed order.

Tensor CpuBackend::layer_norm(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, double eps) {
  check_f32_cpu("ops::layer_norm", x_in, "input");
  const int64_t C = x_in.size(-1), rows = x_in.numel() / std::max<int64_t>(C, 1);
  for (const Tensor* t : {&w_in, &b_in})
    if (t->defined() && t->numel() != C)
      op_error("ops::layer_norm", "weight/bias must have " + std::to_string(C) + " elements, got " + t->str());
  Tensor x = x_in.contiguous(), y = Tensor::empty(x.shape());
  Tensor w = w_in.defined() ? w_in.contiguous() : Tensor(), b = b_in.defined() ? b_in.contiguous() : Tensor();
  const float* wp = w.defined() ? w.data<float>() : nullptr;
  const float* bp = b.defined() ? b.data<float>() : nullptr;
  parallel_for(rows, grain_for(rows, C * 4), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x.data<float>() + r * C;
      float* yr = y.data<float>() + r * C;
      detail::row_kernels().layer_norm(xr, yr, C, wp, bp, eps);
    }
  });
  return y;
}

static void softmax_row(float* r, int64_t C) { detail::row_kernels().softmax(r, C); }

Tensor CpuBackend::softmax(const Tensor& x_in, int64_t dim) {
  check_f32_cpu("ops::softmax", x_in, "input");
  dim = x_in.wrap_dim(dim);
  const bool last = dim == x_in.dim() - 1;
  Tensor y = last ? x_in.contiguous().clone() : x_in.transpose(dim, -1).contiguous();
  const int64_t C = y.size(-1), rows = y.numel() / std::max<int64_t>(C, 1);
  parallel_for(rows, grain_for(rows, C * 8), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) softmax_row(y.data<float>() + r * C, C);
  });
  return last ? y : y.transpose(dim, -1).contiguous();
}

// ---------------------------------------------------------------------------------------------------------------
namespace {
// The two precisions of the attention's GEMMs, as sdpa_blocks reads them: the element type of the GEMM operands,
// K^T and V packed into the micro-kernel's panels (engine/cpu/packed.h), an fp32 block turned into a GEMM's A rows
// (`len` = their length: K, padded to a pair in bf16), and the GEMM into fp32.
struct AttentionFp32 {
  using Elem = float;
  static constexpr bool kCentreKV = false;
  static int64_t len(int64_t cols) { return cols; }
  static int64_t packed_elems(int64_t K, int64_t N) { return detail::packed_b_floats(K, N); }
  static void pack(int64_t K, int64_t N, const float* src, int64_t sk, int64_t sn, float* dst) {
    detail::pack_b_panels(K, N, src, sk, sn, dst);
  }
  // fp32 rows are read where they are: no scratch
  static int64_t scratch_elems(int64_t, int64_t) { return 0; }
  static const float* a_rows(int64_t, int64_t, const float* src, int64_t lds, float*, int64_t& lda) {
    lda = lds;
    return src;
  }
  static void gemm(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, const float* b, float* c,
                   int64_t ldc) {
    detail::gemm_packed_b(M, N, K, a, lda, b, c, ldc);
  }
};

// --precision bf16: Q rounded to bf16, K and V rounded as deviations from their means over the keys
// (detail::centre_rows: K's mean cancels in the softmax, V's is added back after the normalisation), S = Q K^T
// accumulated in fp32, the softmax in fp32, its unnormalised probabilities rounded to bf16 for O = P V (fp32
// accumulation), then O scaled by 1 / (the fp32 sum). Odd D or Nk get the zero that completes the last k pair.
struct AttentionBf16 {
  using Elem = uint16_t;
  static constexpr bool kCentreKV = true;
  static int64_t len(int64_t cols) { return (cols + 1) / 2 * 2; }
  static int64_t packed_elems(int64_t K, int64_t N) { return detail::packed_b_bf16_elems(K, N); }
  static void pack(int64_t K, int64_t N, const float* src, int64_t sk, int64_t sn, uint16_t* dst) {
    detail::pack_b_panels_bf16(K, N, src, sk, sn, dst);
  }
  static int64_t scratch_elems(int64_t rows, int64_t cols) { return rows * len(cols); }
  static const uint16_t* a_rows(int64_t rows, int64_t cols, const float* src, int64_t lds, uint16_t* scratch,
                                int64_t& lda) {
    lda = len(cols);
    detail::gemm_bf16_kernel()->round_rows(rows, cols, src, lds, scratch, lda);
    return scratch;
  }
  static void gemm(int64_t M, int64_t N, int64_t K, const uint16_t* a, int64_t lda, const uint16_t* b, float* c,
                   int64_t ldc) {
    detail::gemm_packed_b_bf16(M, N, K, a, lda, b, c, ldc);
  }
};

// Per (batch, head): K^T and V packed once, then query blocks of kBQ rows: S = Q_blk K^T (a full row of Nk scores
// per query: kBQ x Nk, never Nq x Nk), the row softmax's exponentials, O_blk = P V, and the rows scaled by 1 / sum.
// Exact (one pass over all keys per row). q, k, v: rows of D / Dv contiguous; out: [B, Nq, H, Dv].
template <class Prec>
void sdpa_blocks(const Tensor& q, const Tensor& k, const Tensor& v, int64_t B, int64_t H, int64_t Nq, int64_t Nk,
                 int64_t D, int64_t Dv, float scale, float* outp, int64_t kBQ) {
  using Elem = typename Prec::Elem;
  const detail::RowKernels& rk = detail::row_kernels();
  const int64_t ldo = H * Dv;
  parallel_for(B * H, 1, [&](int64_t t0, int64_t t1) {
    std::vector<Elem> kt(static_cast<size_t>(Prec::packed_elems(D, Nk))),
        vp(static_cast<size_t>(Prec::packed_elems(Nk, Dv))), qa(static_cast<size_t>(Prec::scratch_elems(kBQ, D))),
        pa(static_cast<size_t>(Prec::scratch_elems(kBQ, Nk)));
    std::vector<float> s(static_cast<size_t>(kBQ * Nk)), inv(static_cast<size_t>(kBQ));
    std::vector<float> kc(Prec::kCentreKV ? static_cast<size_t>(Nk * D) : 0),
        vc(Prec::kCentreKV ? static_cast<size_t>(Nk * Dv) : 0), vmean(static_cast<size_t>(Dv), 0.f);
    for (int64_t bh = t0; bh < t1; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const float* qb = q.data<float>() + b * q.stride(0) + h * q.stride(1);
      const float* kb = k.data<float>() + b * k.stride(0) + h * k.stride(1);
      const float* vb = v.data<float>() + b * v.stride(0) + h * v.stride(1);
      if constexpr (Prec::kCentreKV) {
        detail::centre_rows(Nk, D, kb, k.stride(2), kc.data(), nullptr);
        detail::centre_rows(Nk, Dv, vb, v.stride(2), vc.data(), vmean.data());
        Prec::pack(D, Nk, kc.data(), 1, D, kt.data());  // B[d, j] = K[j, d]
        Prec::pack(Nk, Dv, vc.data(), Dv, 1, vp.data());
      } else {
        Prec::pack(D, Nk, kb, 1, k.stride(2), kt.data());  // B[d, j] = K[j, d]
        Prec::pack(Nk, Dv, vb, v.stride(2), 1, vp.data());
      }
      for (int64_t i0 = 0; i0 < Nq; i0 += kBQ) {
        const int64_t nq = std::min(kBQ, Nq - i0);
        int64_t lda = 0;
        const Elem* qr = Prec::a_rows(nq, D, qb + i0 * q.stride(2), q.stride(2), qa.data(), lda);
        Prec::gemm(nq, Nk, Prec::len(D), qr, lda, kt.data(), s.data(), Nk);
        for (int64_t i = 0; i < nq; ++i) {
          float* si = s.data() + i * Nk;
          const float mx = rk.scale_max(si, Nk, scale);
          inv[static_cast<size_t>(i)] = 1.f / rk.exp_sum(si, Nk, mx);
        }
        const Elem* pr = Prec::a_rows(nq, Nk, s.data(), Nk, pa.data(), lda);
        float* o = outp + (b * Nq + i0) * ldo + h * Dv;
        Prec::gemm(nq, Dv, Prec::len(Nk), pr, lda, vp.data(), o, ldo);
        for (int64_t i = 0; i < nq; ++i)
          for (int64_t d = 0; d < Dv; ++d) {
            if constexpr (Prec::kCentreKV)
              o[i * ldo + d] = o[i * ldo + d] * inv[static_cast<size_t>(i)] + vmean[static_cast<size_t>(d)];
            else
              o[i * ldo + d] *= inv[static_cast<size_t>(i)];
          }
      }
    }
  });
}
}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// softmax(q k^T * scale) v. With attn_probs (a hook asked for the map) the probabilities are materialised; else
// sdpa_blocks keeps one block of kBQ query rows' scores at a time.
Tensor CpuBackend::scaled_dot_product_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                                                std::optional<double> scale_opt, Tensor* attn_probs) {
  auto [B, H, Nq, Nk, D, Dv] = detail::sdpa_shapes("ops::scaled_dot_product_attention", q_in, k_in, v_in);
  const float scale = static_cast<float>(scale_opt ? *scale_opt : 1.0 / std::sqrt(static_cast<double>(D)));
  if (attn_probs) {
    Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
    Tensor out = Tensor::empty({B, H, Nq, Dv});
    // A hook asked for the attention map: materialise it (scores by GEMM, row softmax), then P @ V.
    Tensor probs = Tensor::empty({B, H, Nq, Nk});
    for (int64_t bh = 0; bh < B * H; ++bh) {
      GemmEpilogue none;
      gemm(Nq, Nk, D, q.data<float>() + bh * Nq * D, D, false, k.data<float>() + bh * Nk * D, D, true,
           probs.data<float>() + bh * Nq * Nk, Nk, none);
    }
    const int64_t rows = B * H * Nq;
    parallel_for(rows, grain_for(rows, Nk * 8), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        float* pr = probs.data<float>() + r * Nk;
        for (int64_t j = 0; j < Nk; ++j) pr[j] *= scale;
        softmax_row(pr, Nk);
      }
    });
    for (int64_t bh = 0; bh < B * H; ++bh)
      gemm(Nq, Dv, Nk, probs.data<float>() + bh * Nq * Nk, Nk, false, v.data<float>() + bh * Nk * Dv, Dv, false,
           out.data<float>() + bh * Nq * Dv, Dv);
    *attn_probs = probs;
    return out;
  }
  // q, k, v are read in place when their rows are contiguous, as the [B, H, N, hd] views of a ViT's qkv output
  // are; the output is written as [B, Nq, H, Dv] (what the caller's transpose(1, 2).reshape wants: then a view)
  // and returned as its [B, H, Nq, Dv] permutation.
  const Tensor q = q_in.stride(3) == 1 ? q_in : q_in.contiguous();
  const Tensor k = k_in.stride(3) == 1 ? k_in : k_in.contiguous();
  const Tensor v = v_in.stride(3) == 1 ? v_in : v_in.contiguous();
  Tensor out_bnhd = Tensor::empty({B, Nq, H, Dv});
  // a multiple of the micro-kernel rows (12, AVX2: 6): only the last block has a partial panel
  constexpr int64_t kBQ = 96;
  if (ops::cpu_precision() == Precision::bf16)
    sdpa_blocks<AttentionBf16>(q, k, v, B, H, Nq, Nk, D, Dv, scale, out_bnhd.data<float>(), kBQ);
  else
    sdpa_blocks<AttentionFp32>(q, k, v, B, H, Nq, Nk, D, Dv, scale, out_bnhd.data<float>(), kBQ);
  return out_bnhd.permute({0, 2, 1, 3});
}

// ---------------------------------------------------------------------------------------------------------------
// Window attention (Swin): windows of a few dozen tokens, so per (window, head) the whole N x N score block fits in
// cache: S = Q K^T by the packed GEMM, then per row s * scale + bias + mask, softmax, O = P V; each task writes its
// own rows (the bits do not depend on the thread count).
Tensor CpuBackend::biased_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const Tensor& bias_in,
                                    const Tensor& mask_in, std::optional<double> scale_opt, Tensor* attn_probs) {
  const char* op = "ops::biased_attention";
  for (auto [t, name] : {std::pair{&q_in, "query"}, std::pair{&k_in, "key"}, std::pair{&v_in, "value"}})
    check_f32_cpu(op, *t, name);
  if (bias_in.defined()) check_f32_cpu(op, bias_in, "bias");
  if (mask_in.defined()) check_f32_cpu(op, mask_in, "mask");
  const auto [sh, nW] = detail::biased_attention_shapes(op, q_in, k_in, v_in, bias_in, mask_in);
  const auto [B, H, N, Nk, D, Dv] = sh;
  const float scale = static_cast<float>(scale_opt ? *scale_opt : 1.0 / std::sqrt(static_cast<double>(D)));
  const Tensor q = q_in.stride(3) == 1 ? q_in : q_in.contiguous();
  const Tensor k = k_in.stride(3) == 1 ? k_in : k_in.contiguous();
  const Tensor v = v_in.stride(3) == 1 ? v_in : v_in.contiguous();
  const Tensor bias = bias_in.defined() ? bias_in.contiguous() : Tensor();
  const Tensor mask = mask_in.defined() ? mask_in.contiguous() : Tensor();
  // [B, N, H, Dv] storage, returned as its [B, H, N, Dv] permutation (the caller's transpose(1, 2) is then a view)
  Tensor out_bnhd = Tensor::empty({B, N, H, Dv});
  Tensor probs = attn_probs ? Tensor::empty({B, H, N, N}) : Tensor();
  float* const outp = out_bnhd.data<float>();
  const int64_t ldo = H * Dv;
  const detail::RowKernels& rk = detail::row_kernels();
  parallel_for(B * H, std::max<int64_t>(1, 4096 / std::max<int64_t>(N * N, 1)), [&](int64_t t0, int64_t t1) {
    std::vector<float> kt(static_cast<size_t>(detail::packed_b_floats(D, N))),
        vp(static_cast<size_t>(detail::packed_b_floats(N, Dv))), s(static_cast<size_t>(N * N)), inv(N);
    for (int64_t bh = t0; bh < t1; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const float* qb = q.data<float>() + b * q.stride(0) + h * q.stride(1);
      const float* kb = k.data<float>() + b * k.stride(0) + h * k.stride(1);
      const float* vb = v.data<float>() + b * v.stride(0) + h * v.stride(1);
      detail::pack_b_panels(D, N, kb, 1, k.stride(2), kt.data());  // B[d, j] = K[j, d]
      detail::pack_b_panels(N, Dv, vb, v.stride(2), 1, vp.data());
      detail::gemm_packed_b(N, N, D, qb, q.stride(2), kt.data(), s.data(), N);
      const float* bh_bias = bias.defined() ? bias.data<float>() + h * N * N : nullptr;
      const float* bh_mask = mask.defined() ? mask.data<float>() + (b % nW) * N * N : nullptr;
      for (int64_t i = 0; i < N; ++i) {
        float* si = s.data() + i * N;
        if (bh_bias) {
          const float* bi = bh_bias + i * N;
          for (int64_t j = 0; j < N; ++j) si[j] = si[j] * scale + bi[j];
        } else {
          for (int64_t j = 0; j < N; ++j) si[j] *= scale;
        }
        if (bh_mask) {
          const float* mi = bh_mask + i * N;
          for (int64_t j = 0; j < N; ++j) si[j] += mi[j];
        }
        const float mx = rk.scale_max(si, N, 1.0f);
        inv[static_cast<size_t>(i)] = 1.f / rk.exp_sum(si, N, mx);
      }
      if (probs.defined()) {
        float* pr = probs.data<float>() + bh * N * N;
        for (int64_t i = 0; i < N; ++i) {
          const float r = inv[static_cast<size_t>(i)];
          for (int64_t j = 0; j < N; ++j) pr[i * N + j] = s[static_cast<size_t>(i * N + j)] * r;
        }
      }
      float* o = outp + b * N * ldo + h * Dv;
      detail::gemm_packed_b(N, Dv, N, s.data(), N, vp.data(), o, ldo);
      for (int64_t i = 0; i < N; ++i)
        for (int64_t d = 0; d < Dv; ++d) o[i * ldo + d] *= inv[static_cast<size_t>(i)];
    }
  });
  if (attn_probs) *attn_probs = probs;
  return out_bnhd.permute({0, 2, 1, 3});
}

// ---------------------------------------------------------------------------------------------------------------
// Elementwise binary ops: same shape, or b broadcast along leading dims (bias / LayerScale / residual); other
// broadcasts take the reference path.
template <class F>
static Tensor binary(std::string_view op, const Tensor& a_in, const Tensor& b_in, F f) {
  check_f32_cpu(op, a_in, "a");
  check_f32_cpu(op, b_in, "b");
  Shape s = detail::broadcast_shape(op, a_in.shape(), b_in.shape());
  if (s != a_in.shape()) return op == "ops::add" ? ref::add(a_in, b_in) : ref::mul(a_in, b_in);
  // b's shape must be a suffix of a's (after dropping leading 1s) for the fast path
  Shape bs = b_in.shape();
  while (!bs.empty() && bs.front() == 1) bs.erase(bs.begin());
  const bool suffix =
      bs.size() <= s.size() && std::equal(bs.begin(), bs.end(), s.end() - static_cast<int64_t>(bs.size()));
  if (!suffix) return op == "ops::add" ? ref::add(a_in, b_in) : ref::mul(a_in, b_in);
  Tensor a = a_in.contiguous(), b = b_in.contiguous();
  Tensor y = Tensor::empty(s);
  const int64_t n = y.numel(), period = std::max<int64_t>(b.numel(), 1);
  const float* ap = a.data<float>();
  const float* bp = b.data<float>();
  float* yp = y.data<float>();
  parallel_for((n + period - 1) / period, grain_for(n / period, period), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t i = 0; i < period; ++i) yp[r * period + i] = f(ap[r * period + i], bp[i]);
  });
  return y;
}
Tensor CpuBackend::add(const Tensor& a, const Tensor& b) {
  return binary("ops::add", a, b, [](float u, float v) { return u + v; });
}
Tensor CpuBackend::mul(const Tensor& a, const Tensor& b) {
  return binary("ops::mul", a, b, [](float u, float v) { return u * v; });
}
Tensor CpuBackend::mul(const Tensor& a_in, float s) {
  check_f32_cpu("ops::mul", a_in, "a");
  Tensor y = a_in.contiguous().clone();
  float* yp = y.data<float>();
  parallel_for(y.numel(), 1 << 15, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) yp[i] *= s;
  });
  return y;
}

Tensor CpuBackend::layer_scale(const Tensor& x, const Tensor& gamma) {
  if (!gamma.defined() || gamma.dim() != 1 || gamma.numel() != x.size(-1))
    op_error("ops::layer_scale", "gamma must be [" + std::to_string(x.size(-1)) + "], got " + gamma.str());
  return ops::mul(x, gamma);
}

// torch.cat: every input is a run of `rows` contiguous blocks (one per index of the dims before `dim`); the output
// row r is the inputs' blocks r side by side. One memcpy per (row, input); rows split across threads.
Tensor CpuBackend::cat(const std::vector<Tensor>& xs, int64_t dim) {
  const Shape out = detail::cat_shape("ops::cat", xs, dim);
  dim = xs[0].wrap_dim(dim);
  int64_t rows = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) rows *= out[static_cast<size_t>(d)];
  for (size_t d = static_cast<size_t>(dim) + 1; d < out.size(); ++d) inner *= out[d];
  std::vector<Tensor> xc;
  std::vector<int64_t> width, offset;  // per input: floats per row, and where they go in the output row
  int64_t at = 0;
  for (const Tensor& x : xs) {
    xc.push_back(x.contiguous());
    width.push_back(x.size(dim) * inner);
    offset.push_back(at);
    at += width.back();
  }
  Tensor y = Tensor::empty(out);
  float* yp = y.data<float>();
  parallel_for(rows, grain_for(rows, at), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (size_t i = 0; i < xc.size(); ++i)
        if (width[i])
          std::memcpy(yp + r * at + offset[i], xc[i].data<float>() + r * width[i],
                      static_cast<size_t>(width[i]) * sizeof(float));
  });
  return y;
}

// F.interpolate, separable: the reference's taps (detail::interpolate_taps), applied along W into a double
// buffer, then along H, per (n, c) plane. The reference sums the same products in double in one 2-D loop; both
// round once to f32 at the end, so the two agree to within an ulp or so.
Tensor CpuBackend::interpolate(const Tensor& x_in, const InterpolateOptions& o) {
  auto [N, C, H, W] = check_4d("ops::interpolate", x_in);
  auto [Ho, Wo] = detail::interpolate_size("ops::interpolate", H, W, o);
  std::optional<double> sh, sw;
  if (o.scale_factor) sh = (*o.scale_factor)[0], sw = (*o.scale_factor)[1];
  const detail::InterpTaps th = detail::interpolate_taps(H, Ho, sh, o), tw = detail::interpolate_taps(W, Wo, sw, o);
  const Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty({N, C, Ho, Wo});
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  parallel_for(N * C, grain_for(N * C, H * Wo * 8 + Ho * Wo * 8), [&](int64_t q0, int64_t q1) {
    std::vector<double> tmp(static_cast<size_t>(H * Wo));
    for (int64_t q = q0; q < q1; ++q) {
      const float* plane = xp + q * H * W;
      for (int64_t ih = 0; ih < H; ++ih)
        for (int64_t ow = 0; ow < Wo; ++ow) {
          double acc = 0;
          const auto& idx = tw.index[static_cast<size_t>(ow)];
          const auto& wt = tw.weight[static_cast<size_t>(ow)];
          for (size_t b = 0; b < idx.size(); ++b) acc += wt[b] * plane[ih * W + idx[b]];
          tmp[static_cast<size_t>(ih * Wo + ow)] = acc;
        }
      float* out = yp + q * Ho * Wo;
      for (int64_t oh = 0; oh < Ho; ++oh) {
        const auto& idx = th.index[static_cast<size_t>(oh)];
        const auto& wt = th.weight[static_cast<size_t>(oh)];
        for (int64_t ow = 0; ow < Wo; ++ow) {
          double acc = 0;
          for (size_t a = 0; a < idx.size(); ++a) acc += wt[a] * tmp[static_cast<size_t>(idx[a] * Wo + ow)];
          out[oh * Wo + ow] = static_cast<float>(acc);
        }
      }
    }
  });
  return y;
}

// ---------------------------------------------------------------------------------------------------------------
Tensor CpuBackend::pool(const Tensor& x_in, Pool p, int64_t num_prefix) {
  check_f32_cpu("ops::pool", x_in, "input");
  if (p == Pool::none) return x_in;
  if (x_in.dim() == 4) {
    if (p == Pool::avg) return adaptive_avg_pool2d(x_in, {1, 1}).flatten(1);
    if (p == Pool::max) return adaptive_max_pool2d(x_in, {1, 1}).flatten(1);
    return ref::pool(x_in, p, num_prefix);  // gem on maps and the errors: the reference
  }
  if (x_in.dim() != 3 || p == Pool::gem || p == Pool::max || num_prefix < 0) return ref::pool(x_in, p, num_prefix);
  const int64_t B = x_in.size(0), L = x_in.size(1), C = x_in.size(2);
  if (p != Pool::cls && num_prefix >= L) return ref::pool(x_in, p, num_prefix);  // the reference's error
  if ((p == Pool::cls || p == Pool::cls_mean) && num_prefix < 1) return ref::pool(x_in, p, num_prefix);
  Tensor x = x_in.contiguous();
  const int64_t D = p == Pool::cls_mean ? 2 * C : C;
  Tensor y = Tensor::empty({B, D});
  parallel_for(B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<double> sum(C);
    for (int64_t b = b0; b < b1; ++b) {
      const float* xb = x.data<float>() + b * L * C;
      float* yb = y.data<float>() + b * D;
      if (p == Pool::cls) {
        std::memcpy(yb, xb, C * sizeof(float));
        continue;
      }
      std::fill(sum.begin(), sum.end(), 0.0);
      for (int64_t l = num_prefix; l < L; ++l)
        for (int64_t c = 0; c < C; ++c) sum[c] += xb[l * C + c];
      float* mean = p == Pool::cls_mean ? yb + C : yb;
      for (int64_t c = 0; c < C; ++c) mean[c] = static_cast<float>(sum[c] / static_cast<double>(L - num_prefix));
      if (p == Pool::cls_mean) std::memcpy(yb, xb, C * sizeof(float));
    }
  });
  return y;
}

// DINOv3 apply_rope with torch's f32 rounding: (x * cos) + (rotate_half(x) * sin), each product and the sum
// rounded to f32. q / k arrive as strided views of the qkv output ([B, H, N, hd] over [B, N, 3, H, hd] memory):
// read through their strides, one [N, hd] matrix per leading index, with unit stride along head_dim.
Tensor CpuBackend::rope_apply(const Tensor& x, const Tensor& sin_in, const Tensor& cos_in) {
  check_f32_cpu("ops::rope_apply", x, "input");
  check_f32_cpu("ops::rope_apply", sin_in, "sin");
  check_f32_cpu("ops::rope_apply", cos_in, "cos");
  const detail::RopeShapes s = detail::rope_shapes("ops::rope_apply", x, sin_in, cos_in);
  const Tensor sn = sin_in.contiguous(), cs = cos_in.contiguous();
  Tensor y = Tensor::empty(x.shape());
  const int64_t nd = x.dim();
  const Tensor xc = x.stride(nd - 1) == 1 ? x : x.contiguous();
  const int64_t st_t = xc.stride(nd - 2);
  const std::vector<int64_t> lead_shape(xc.shape().begin(), xc.shape().end() - 2);
  const std::vector<int64_t> lead_stride(xc.strides().begin(), xc.strides().end() - 2);
  const float* xbase = xc.data<float>();
  const float* sp = sn.data<float>();
  const float* cp = cs.data<float>();
  float* yp = y.data<float>();
  const int64_t half = s.hd / 2;
  parallel_for(s.rows, grain_for(s.rows, s.n * s.hd), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t off = 0, rem = r;
      for (int64_t d = static_cast<int64_t>(lead_shape.size()) - 1; d >= 0; --d) {
        off += (rem % lead_shape[d]) * lead_stride[d];
        rem /= lead_shape[d];
      }
      const float* xm = xbase + off;
      float* ym = yp + r * s.n * s.hd;
      for (int64_t t = 0; t < s.n; ++t) {
        const float* xr = xm + t * st_t;
        float* yr = ym + t * s.hd;
        if (t < s.prefix) {
          std::copy(xr, xr + s.hd, yr);
          continue;
        }
        const float* sr = sp + (t - s.prefix) * s.hd;
        const float* cr = cp + (t - s.prefix) * s.hd;
        for (int64_t d = 0; d < half; ++d) {
          const float a = xr[d] * cr[d], b = -xr[d + half] * sr[d];
          yr[d] = a + b;
        }
        for (int64_t d = half; d < s.hd; ++d) {
          const float a = xr[d] * cr[d], b = xr[d - half] * sr[d];
          yr[d] = a + b;
        }
      }
    }
  });
  return y;
}

}  // namespace tabula

namespace tabula::detail {
void max_pool_rows_channels_last(const float* x, int64_t ih0, int64_t ih1, int64_t W, int64_t C, float* y,
                                 int64_t oh0, int64_t oh1, int64_t Wo, std::array<int64_t, 2> k,
                                 std::array<int64_t, 2> s, std::array<int64_t, 2> p, std::array<int64_t, 2> d) {
  for (int64_t oh = oh0; oh < oh1; ++oh)
    for (int64_t ow = 0; ow < Wo; ++ow) {
      float* best = y + ((oh - oh0) * Wo + ow) * C;
      std::fill_n(best, C, -std::numeric_limits<float>::infinity());
      for (int64_t i = 0; i < k[0]; ++i) {
        const int64_t ih = oh * s[0] - p[0] + i * d[0];
        if (ih < ih0 || ih >= ih1) continue;
        for (int64_t j = 0; j < k[1]; ++j) {
          const int64_t iw = ow * s[1] - p[1] + j * d[1];
          if (iw < 0 || iw >= W) continue;
          row_kernels().max_into(best, x + ((ih - ih0) * W + iw) * C, C);
        }
      }
    }
}
}  // namespace tabula::detail
