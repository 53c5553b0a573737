// The op API models are written against. Names, arguments and semantics follow torch.nn.functional, so a model's
// forward reads like the PyTorch module it mirrors. Images are NCHW and tokens [B, N, C] at this level; fast paths
// may use other layouts internally.
//
// Every op exists twice with the same signature:
//   tabula::ref::<op>  the reference: plain loops over logical indices, double accumulation where sums are long.
//                      It is the specification; tests/engine proves it against numbers torch produced.
//   tabula::ops::<op>  the fast CPU path (blocked GEMM with AVX-512/AVX2 micro-kernels, fused epilogues,
//                      flash-style attention, vectorised row ops, thread-parallel with a deterministic split).
// Inputs may be any strided f32 CPU tensor; outputs are fresh tensors, contiguous except where the fast path keeps
// a layout for the next op: ops::max_pool2d of a channels-last map is channels-last (packed.h), and
// ops::scaled_dot_product_attention returns its [B, H, Nq, D] result as a view of [B, Nq, H, D] memory. Bad shapes
// throw std::invalid_argument naming the op and the offending argument.
#pragma once
#include <array>
#include <cmath>
#include <optional>
#include <utility>
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
std::string_view pool_name(Pool p);        // "avg", "cls", "mean", "cls+mean", "max", "gem", "none"
std::optional<Pool> pool_from_name(std::string_view s);

#define TABULA_OPS_DECLARATIONS                                                                                   \
  /* F.conv2d, then (fused) + residual and activation: act(conv(x, w) + bias + residual). w: [Cout, Cin/g, kh, kw]. \
     residual: [N, Cout, Ho, Wo] or undefined. */                                                                 \
  Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& opt = {},          \
                Activation act = Activation::none, const Tensor& residual = {});                                  \
  /* F.batch_norm in eval mode (running statistics), per channel of dim 1. */                                     \
  Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,        \
                    const Tensor& running_var, double eps = 1e-5);                                                \
  Tensor relu(const Tensor& x);                                                                                   \
  Tensor gelu(const Tensor& x, bool tanh_approximation = false); /* exact erf form by default, as nn.GELU() */    \
  Tensor silu(const Tensor& x);                                                                                   \
  Tensor activation(const Tensor& x, Activation act);                                                             \
  /* SwiGLU as DINOv2's SwiGLUFFN: x1, x2 = x.chunk(2, dim=-1); silu(x1) * x2. */                                  \
  Tensor swiglu(const Tensor& x);                                                                                 \
  Tensor max_pool2d(const Tensor& x, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride,                \
                    std::array<int64_t, 2> padding = {0, 0}, std::array<int64_t, 2> dilation = {1, 1},             \
                    bool ceil_mode = false);                                                                      \
  Tensor avg_pool2d(const Tensor& x, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride,                \
                    std::array<int64_t, 2> padding = {0, 0}, bool ceil_mode = false,                               \
                    bool count_include_pad = true);                                                               \
  Tensor adaptive_avg_pool2d(const Tensor& x, std::array<int64_t, 2> output_size);                               \
  Tensor adaptive_max_pool2d(const Tensor& x, std::array<int64_t, 2> output_size);                               \
  /* F.linear: x [..., in] @ weight[out, in]^T + bias, then act (fused bias+GELU on the fast path). */             \
  Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = {}, Activation act = Activation::none); \
  /* torch.matmul for a [..., M, K] @ b [..., K, N] with equal batch dims, or b 2-D (broadcast). */                \
  Tensor matmul(const Tensor& a, const Tensor& b);                                                                \
  /* F.layer_norm over the last dim. weight/bias may be undefined (elementwise_affine=False). */                  \
  Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);                 \
  Tensor softmax(const Tensor& x, int64_t dim = -1);                                                              \
  /* F.scaled_dot_product_attention for q [B, H, Nq, D], k/v [B, H, Nk, D] (no mask, no dropout). scale defaults   \
     to D^-0.5. When attn_probs is non-null it receives softmax(q k^T * scale) [B, H, Nq, Nk] (hooks only: the     \
     fast path otherwise never materialises the N x N matrix). */                                                 \
  Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,                          \
                                      std::optional<double> scale = std::nullopt, Tensor* attn_probs = nullptr);  \
  /* Broadcasting elementwise ops (numpy rules). */                                                               \
  Tensor add(const Tensor& a, const Tensor& b);                                                                   \
  Tensor mul(const Tensor& a, const Tensor& b);                                                                   \
  Tensor mul(const Tensor& a, float s);                                                                           \
  /* torch.cat */                                                                                                 \
  Tensor cat(const std::vector<Tensor>& xs, int64_t dim);                                                         \
  /* LayerScale: x * gamma over the last dim. */                                                                  \
  Tensor layer_scale(const Tensor& x, const Tensor& gamma);                                                       \
  Tensor interpolate(const Tensor& x, const InterpolateOptions& opt);                                             \
  /* See Pool. Returns [B, C] ([B, 2C] for cls_mean), or x itself for none. */                                    \
  Tensor pool(const Tensor& x, Pool p, int64_t num_prefix = 1);

namespace ref {
TABULA_OPS_DECLARATIONS
}  // namespace ref

namespace ops {
TABULA_OPS_DECLARATIONS

// C[M, N] = A[M, K] @ B[K, N] (+ epilogue), strided row-major operands: element (i, k) of A is
// a[i * lda + k] (or a[k * lda + i] when trans_a), element (k, j) of B is b[k * ldb + j] (or b[j * ldb + k]
// when trans_b). Deterministic: the K loop is blocked in a fixed order, whatever the thread count.
struct GemmEpilogue {
  const float* bias_row = nullptr;  // per output row i (conv: per output channel)
  const float* bias_col = nullptr;  // per output column j (linear: per output feature)
  const float* residual = nullptr;  // added before the activation, element (i, j) at residual[i * ldr + j]
  int64_t ldr = 0;
  Activation act = Activation::none;
};
void gemm(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, bool trans_a, const float* b, int64_t ldb,
          bool trans_b, float* c, int64_t ldc, const GemmEpilogue& ep = {});
// Which micro-kernel gemm() dispatches to on this machine: "avx512", "avx2" or "generic".
const char* gemm_kernel_name();
// Whether PackedConv2d (engine/packed.h) transforms the weights of eligible 3x3 stride-1 convs for the Winograd
// F(4x4, 3x3) path at construction (winograd_conv_eligible). On by default; a conv packed while it is off runs
// the direct path (no transformed copy: 4x less memory for those weights). Process-wide; affects weights packed
// afterwards only. The environment variable TABULA_WINOGRAD=0 makes off the initial state.
void set_winograd_enabled(bool on);
bool winograd_enabled();
}  // namespace ops

// Folds an eval-mode BatchNorm that follows a conv into the conv (at weight-load time):
// w' = w * gamma / sqrt(var + eps) per output channel, b' = (b - mean) * gamma / sqrt(var + eps) + beta.
// conv_bias may be undefined (ResNet convs have none). Computed in double, rounded once to f32.
std::pair<Tensor, Tensor> fold_batch_norm(const Tensor& conv_weight, const Tensor& conv_bias, const Tensor& bn_weight,
                                          const Tensor& bn_bias, const Tensor& running_mean,
                                          const Tensor& running_var, double eps = 1e-5);

// Output spatial size of conv/pool windows (torch's pooling_output_shape, incl. ceil_mode's last-window rule).
int64_t pooling_output_size(int64_t in, int64_t kernel, int64_t pad, int64_t stride, int64_t dilation, bool ceil_mode);

}  // namespace tabula
