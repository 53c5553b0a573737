// tabula::cuda::<op>: the CUDA versions of engine/ops.h, same names, arguments and semantics (torch.nn.functional),
// on device tensors (cuda::to_device / cuda::empty). Each one is tested against tabula::ref::<op> of the same name
// (tests/engine/test_cuda_ops.cpp). Outputs are fresh device tensors on the inputs' device, issued on that
// device's stream (device.h), so a sequence of ops runs in order with no host synchronisation.
//
// Precision (process-wide, set once by --precision) chooses how the matrix products run:
//   fp32  cuBLASLt/cuDNN in full fp32 (no TF32), the exact attention kernel path in fp32;
//   tf32  cuBLASLt CUBLAS_COMPUTE_32F_FAST_TF32, cuDNN tensor-op math;
//   bf16 / fp16  GEMM operands rounded to bf16/fp16 (weights once per call today), fp32 accumulation and output;
//         attention inputs rounded the same way, fp32 accumulation and softmax statistics.
// Storage type of activations: an op's result has its inputs' type -- f32 in, f32 out (the op tests), and a
// forward whose input was cast to bf16/fp16 (Model::to_device in those precisions, as torch's model.to(bf16))
// keeps its activations in 16 bits between ops, with f32 parameters (bias, LayerNorm, pos-embed, LayerScale)
// applied in fp32 inside the op. Every kernel computes in fp32 (row statistics, softmax, epilogues); pool()
// always returns f32. In 16 bits, convolutions run channels-last (NHWC) on cuDNN and return channels-last
// tensors, GEMMs write their 16-bit result (bias included) directly, and attention rounds P to 16 bits before
// P @ V as torch's fused attention does.
//
// Wiring a model forward to the GPU (models are not part of this backend): the signatures equal ops::, so a model
// written against ops:: runs here by calling cuda::<op> instead when its input is on Device::cuda, with
//   - weights uploaded once (cuda::to_device), BatchNorm folded first (fold_batch_norm on the CPU), linear weights
//     passed through cuda::convert_weight after cuda::set_precision, position embeddings resized on the CPU or
//     with cuda::interpolate at load time;
//   - host-side tensor work replaced: views (slice/select/transpose/permute/unsqueeze/flatten of a contiguous
//     tensor) are free on device tensors, but anything that reads data on the host (contiguous(), to_vector(),
//     data<float>()) must become cuda::contiguous / cuda::to_host;
//   - taps pooled on the device (cuda::pool) and only the pooled [B, C] features brought back with to_host;
//   - for throughput, the forward run once eagerly, then captured with cuda::Graph and replayed per batch, each
//     batch uploaded into the graph's input tensor with upload_async from a PinnedBuffer.
#pragma once
#include <optional>
#include <string_view>
#include <vector>

#include "engine/cuda/device.h"
#include "engine/ops.h"

namespace tabula::cuda {

enum class Precision { fp32, tf32, bf16, fp16 };
std::string_view precision_name(Precision p);                  // "fp32", "tf32", "bf16", "fp16"
std::optional<Precision> precision_from_name(std::string_view s);
void set_precision(Precision p);
Precision precision();

// Copies (strided views of device tensors -> contiguous): slice/select/transpose/permute are views on any
// Tensor; materialise them with contiguous().
Tensor contiguous(const Tensor& x);

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& opt = {},
              Activation act = Activation::none, const Tensor& residual = {});
Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, double eps = 1e-5);
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x, bool tanh_approximation = false);
Tensor silu(const Tensor& x);
Tensor activation(const Tensor& x, Activation act);
Tensor swiglu(const Tensor& x);
Tensor max_pool2d(const Tensor& x, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride,
                  std::array<int64_t, 2> padding = {0, 0}, std::array<int64_t, 2> dilation = {1, 1},
                  bool ceil_mode = false);
Tensor adaptive_avg_pool2d(const Tensor& x, std::array<int64_t, 2> output_size);
// weight: f32 (rounded to the precision on every call) or the tensor convert_weight returned (rounded once).
// residual (an extension of ops::linear, same shape as the result): act(x W^T + bias + residual), the add done by
// the GEMM itself (cuBLASLt's C operand) -- a ViT block's `x + proj(...)` without a separate pass.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = {}, Activation act = Activation::none,
              const Tensor& residual = {});
// A linear weight converted once, at load, to the storage type GEMMs use in the current precision: a bf16/fp16
// copy for bf16/fp16, the f32 tensor itself (made dense) for fp32/tf32. linear() rejects a converted weight
// when the precision has changed since.
Tensor convert_weight(const Tensor& weight);
Tensor matmul(const Tensor& a, const Tensor& b);
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
Tensor softmax(const Tensor& x, int64_t dim = -1);
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    std::optional<double> scale = std::nullopt, Tensor* attn_probs = nullptr);
Tensor add(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, float s);
Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
Tensor layer_scale(const Tensor& x, const Tensor& gamma);
Tensor interpolate(const Tensor& x, const InterpolateOptions& opt);
Tensor pool(const Tensor& x, Pool p, int64_t num_prefix = 1);

// With TABULA_CUDA_PROFILE set, every op reached through ops:: on a device tensor is timed with CUDA events
// (eager forwards only, not inside graph capture); print_op_profile prints the device ms per forward of each op
// and input shape to stderr, largest first, and clears the records. `tabula bench --device cuda` (without
// --graph) clears before and prints after its timed forwards.
void clear_op_profile();
void print_op_profile(int forwards);

}  // namespace tabula::cuda
