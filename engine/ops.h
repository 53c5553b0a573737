// The op API models are written against (the list: engine/op_list.h). Every op exists twice:
//   tabula::ref::<op>  the reference: plain loops over logical indices, double accumulation where sums are long.
//                      It is the specification; tests/engine proves it against numbers torch produced.
//   tabula::ops::<op>  the fast path of the inputs' device: the CPU backend (engine/cpu/: blocked GEMM with
//                      AVX-512/AVX2 micro-kernels, fused epilogues, flash-style attention, vectorised row ops,
//                      thread-parallel with a deterministic split) or the CUDA backend (engine/cuda/).
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

#include "engine/backend.h"
#include "engine/op_list.h"
#include "engine/tensor.h"

namespace tabula {

namespace ref {
#define TABULA_REF_OP(name, params, args) Tensor name params;
TABULA_OPS(TABULA_REF_OP)
#undef TABULA_REF_OP
}  // namespace ref

namespace ops {
#define TABULA_DISPATCH_OP(name, params, args) \
  inline Tensor name params { return backend_for("ops::" #name, TABULA_UNPAREN args).name args; }
TABULA_OPS(TABULA_DISPATCH_OP)
#undef TABULA_DISPATCH_OP

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
// Whether PackedConv2d (engine/cpu/packed.h) transforms the weights of eligible 3x3 stride-1 convs for the Winograd
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
