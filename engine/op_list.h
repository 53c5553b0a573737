// The op list: every op of the API models are written against, once. Names, arguments and semantics follow
// torch.nn.functional, so a model's forward reads like the PyTorch module it mirrors. Images are NCHW and tokens
// [B, N, C] at this level; fast paths may use other layouts internally.
//
// TABULA_OPS(OP) calls OP(name, (parameters), (arguments)) per op. From this one list come
//   tabula::ref::<op>      the reference declarations (engine/ops.h; ops_ref.cpp defines them),
//   tabula::ops::<op>      the dispatchers: pick the backend of the inputs' device and call it (engine/ops.h),
//   Backend::<op>          one pure virtual per op (engine/backend.h), overridden by every backend
//                          (engine/cpu/backend.h, engine/cuda/backend.h).
// A backend whose definition does not match the list fails to compile; one that lacks an op fails to link.
// Default arguments are part of the list (so ops:: and ref:: calls look like torch's); virtual functions carry
// the same defaults, which is harmless because every declaration comes from this one place.
// How to add an op on both backends: engine/README.md.
#pragma once
#include <array>
#include <optional>
#include <string_view>
#include <vector>

#include "engine/tensor.h"

namespace tabula {

enum class Activation { none, relu, gelu, gelu_tanh, silu };

struct Conv2dOptions {
  std::array<int64_t, 2> stride{1, 1};
  std::array<int64_t, 2> padding{0, 0};
  std::array<int64_t, 2> dilation{1, 1};
  int64_t groups = 1;
};

enum class InterpMode { nearest, bilinear, bicubic };
// F.interpolate(input, size=..., scale_factor=..., mode=..., align_corners=..., antialias=...) with
// recompute_scale_factor=None: give exactly one of `size` and `scale_factor`. With a scale factor the output size
// is floor(in * s) and the kernel maps coordinates with 1/s (not in/out), as torch does.
struct InterpolateOptions {
  std::optional<std::array<int64_t, 2>> size;
  std::optional<std::array<double, 2>> scale_factor;
  InterpMode mode = InterpMode::bilinear;
  bool align_corners = false;
  bool antialias = false;
};

// Pooling of a feature map or a token sequence into one vector per image (taps, heads):
//   [B, C, H, W]: avg (mean over H, W), max, gem (generalised mean, p=3, clamp eps 1e-6), none.
//   [B, N, C] with `num_prefix` leading prefix tokens (CLS + registers):
//     cls = x[:, 0]; mean = avg = mean of the non-prefix (patch) tokens (timm global_pool='avg');
//     cls_mean = cat(cls, mean) (DINOv2 linear heads); max / gem over patch tokens; none = the tensor itself.
enum class Pool { avg, cls, mean, cls_mean, max, gem, none };
std::string_view pool_name(Pool p);  // "avg", "cls", "mean", "cls+mean", "max", "gem", "none"
std::optional<Pool> pool_from_name(std::string_view s);

using Int2 = std::array<int64_t, 2>;

// clang-format off
#define TABULA_OPS(OP)                                                                                              \
  /* F.conv2d, then (fused) + residual and activation: act(conv(x, w) + bias + residual). w: [Cout, Cin/g, kh, kw]. \
     residual: [N, Cout, Ho, Wo] or undefined. */                                                                   \
  OP(conv2d, (const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& opt = {},              \
              Activation act = Activation::none, const Tensor& residual = {}),                                      \
     (x, weight, bias, opt, act, residual))                                                                         \
  /* F.batch_norm in eval mode (running statistics), per channel of dim 1. */                                       \
  OP(batch_norm, (const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,            \
                  const Tensor& running_var, double eps = 1e-5),                                                    \
     (x, weight, bias, running_mean, running_var, eps))                                                             \
  OP(relu, (const Tensor& x), (x))                                                                                  \
  /* exact erf form by default, as nn.GELU() */                                                                     \
  OP(gelu, (const Tensor& x, bool tanh_approximation = false), (x, tanh_approximation))                             \
  OP(silu, (const Tensor& x), (x))                                                                                  \
  /* F.hardswish: x * relu6(x + 3) / 6 (MobileNetV3) */                                                             \
  OP(hardswish, (const Tensor& x), (x))                                                                             \
  OP(activation, (const Tensor& x, Activation act), (x, act))                                                       \
  /* SwiGLU as DINOv2's SwiGLUFFN: x1, x2 = x.chunk(2, dim=-1); silu(x1) * x2. */                                    \
  OP(swiglu, (const Tensor& x), (x))                                                                                \
  OP(max_pool2d, (const Tensor& x, Int2 kernel, Int2 stride, Int2 padding = {0, 0}, Int2 dilation = {1, 1},         \
                  bool ceil_mode = false),                                                                          \
     (x, kernel, stride, padding, dilation, ceil_mode))                                                             \
  OP(avg_pool2d, (const Tensor& x, Int2 kernel, Int2 stride, Int2 padding = {0, 0}, bool ceil_mode = false,         \
                  bool count_include_pad = true),                                                                   \
     (x, kernel, stride, padding, ceil_mode, count_include_pad))                                                    \
  OP(adaptive_avg_pool2d, (const Tensor& x, Int2 output_size), (x, output_size))                                    \
  OP(adaptive_max_pool2d, (const Tensor& x, Int2 output_size), (x, output_size))                                    \
  /* F.linear, then (fused) + residual and activation: act(x [..., in] @ weight[out, in]^T + bias + residual).     \
     residual: the result's shape or undefined (a transformer block's `x + proj(...)` inside the GEMM). */          \
  OP(linear, (const Tensor& x, const Tensor& weight, const Tensor& bias = {}, Activation act = Activation::none,     \
              const Tensor& residual = {}),                                                                         \
     (x, weight, bias, act, residual))                                                                              \
  /* torch.matmul for a [..., M, K] @ b [..., K, N] with equal batch dims, or b 2-D (broadcast). */                  \
  OP(matmul, (const Tensor& a, const Tensor& b), (a, b))                                                            \
  /* F.layer_norm over the last dim. weight/bias may be undefined (elementwise_affine=False). */                    \
  OP(layer_norm, (const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5),                    \
     (x, weight, bias, eps))                                                                                        \
  OP(softmax, (const Tensor& x, int64_t dim = -1), (x, dim))                                                        \
  /* F.scaled_dot_product_attention for q [B, H, Nq, D], k/v [B, H, Nk, D] (no mask, no dropout). scale defaults     \
     to D^-0.5. When attn_probs is non-null it receives softmax(q k^T * scale) [B, H, Nq, Nk] (hooks only: the       \
     fast paths otherwise never materialise the N x N matrix). */                                                   \
  OP(scaled_dot_product_attention, (const Tensor& q, const Tensor& k, const Tensor& v,                              \
                                    std::optional<double> scale = std::nullopt, Tensor* attn_probs = nullptr),      \
     (q, k, v, scale, attn_probs))                                                                                  \
  /* Broadcasting elementwise ops (numpy rules). */                                                                 \
  OP(add, (const Tensor& a, const Tensor& b), (a, b))                                                               \
  OP(mul, (const Tensor& a, const Tensor& b), (a, b))                                                               \
  OP(mul, (const Tensor& a, float s), (a, s))                                                                       \
  /* torch.cat */                                                                                                   \
  OP(cat, (const std::vector<Tensor>& xs, int64_t dim), (xs, dim))                                                  \
  /* LayerScale: x * gamma over the last dim. */                                                                    \
  OP(layer_scale, (const Tensor& x, const Tensor& gamma), (x, gamma))                                               \
  OP(interpolate, (const Tensor& x, const InterpolateOptions& opt), (x, opt))                                       \
  /* See Pool. Returns [B, C] ([B, 2C] for cls_mean), or x itself for none. */                                      \
  OP(pool, (const Tensor& x, Pool p, int64_t num_prefix = 1), (x, p, num_prefix))                                  \
  /* timm WindowAttention (Swin): softmax(q k^T * scale + bias[h] + mask[b % nW]) @ v for q/k/v [B, H, N, D];       \
     bias [H, N, N] (the relative position bias) or undefined; mask [nW, N, N] (the shifted windows' 0 / -100        \
     mask, B a multiple of nW) or undefined. scale defaults to D^-0.5; attn_probs as scaled_dot_product_attention. */ \
  OP(biased_attention, (const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,                       \
                        const Tensor& mask = {}, std::optional<double> scale = std::nullopt,                        \
                        Tensor* attn_probs = nullptr),                                                              \
     (q, k, v, bias, mask, scale, attn_probs)) \
  /* DINOv3 SelfAttention.apply_rope on one of q / k: x [..., N, head_dim] (any strides), sin / cos [HW, head_dim]    \
     (engine/pos_encoding.h). The last HW tokens get x * cos + rotate_half(x) * sin (rotate_half: [-x2, x1] for       \
     the halves x = [x1, x2]), the N - HW prefix tokens (class, storage) pass unchanged. */                           \
  OP(rope_apply, (const Tensor& x, const Tensor& sin, const Tensor& cos), (x, sin, cos))
// clang-format on

#define TABULA_UNPAREN(...) __VA_ARGS__

}  // namespace tabula
