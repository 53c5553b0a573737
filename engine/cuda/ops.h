// The CUDA backend's own controls. Its ops are ops::<op> on device tensors (cuda::to_device / cuda::empty): the
// CudaBackend (engine/cuda/backend.h), same names, arguments and semantics as tabula::ref, each tested against it
// (tests/engine/op_cases.cpp). Outputs are fresh device tensors on the inputs' device, issued on that device's
// stream (device.h), so a sequence of ops runs in order with no host synchronisation.
//
// Precision (process-wide, set once by --precision) chooses how the matrix products run:
//   fp32  cuBLASLt/cuDNN in full fp32 (no TF32), the exact attention kernel path in fp32;
//   tf32  cuBLASLt CUBLAS_COMPUTE_32F_FAST_TF32, cuDNN tensor-op math;
//   bf16 / fp16  GEMM operands rounded to bf16/fp16 (f32 weights on every call, converted ones once: convert_weight),
//         fp32 accumulation and output;
//         attention inputs rounded the same way, fp32 accumulation and softmax statistics.
// Storage type of activations: an op's result has its inputs' type -- f32 in, f32 out (the op tests), and a
// forward whose input was cast to bf16/fp16 (Model::to_device in those precisions, as torch's model.to(bf16))
// keeps its activations in 16 bits between ops, with f32 parameters (bias, LayerNorm, pos-embed, LayerScale)
// applied in fp32 inside the op. Every kernel computes in fp32 (row statistics, softmax, epilogues); pool()
// always returns f32. In 16 bits, convolutions run channels-last (NHWC) on cuDNN and return channels-last
// tensors, GEMMs write their 16-bit result (bias included) directly, and attention rounds P to 16 bits before
// P @ V as torch's fused attention does.
//
// Wiring a model forward to the GPU (models are not part of this backend): a model written against ops:: runs here
// when its input is on Device::cuda, with
//   - weights uploaded once (cuda::to_device), BatchNorm folded first (fold_batch_norm on the CPU), linear weights
//     passed through cuda::convert_weight after cuda::set_precision, position embeddings resized on the CPU or
//     with ops::interpolate at load time;
//   - host-side tensor work replaced: views (slice/select/transpose/permute/unsqueeze/flatten of a contiguous
//     tensor) are free on device tensors, but anything that reads data on the host (contiguous(), to_vector(),
//     data<float>()) must become cuda::contiguous / cuda::to_host;
//   - taps pooled on the device (ops::pool) and only the pooled [B, C] features brought back with to_host;
//   - for throughput, the forward run once eagerly, then captured with cuda::Graph and replayed per batch, each
//     batch uploaded into the graph's input tensor with upload_async from a PinnedBuffer.
#pragma once
#include <optional>
#include <string_view>
#include <vector>

#include "engine/backend.h"
#include "engine/cuda/device.h"

namespace tabula::cuda {

using Precision = tabula::Precision;
using tabula::precision_from_name;
using tabula::precision_name;
void set_precision(Precision p);
Precision precision();

// Copies (strided views of device tensors -> contiguous): slice/select/transpose/permute are views on any
// Tensor; materialise them with contiguous().
Tensor contiguous(const Tensor& x);

// A linear weight converted once, at load, to the storage type GEMMs use in the current precision: a bf16/fp16
// copy for bf16/fp16, the f32 tensor itself (made dense) for fp32/tf32. ops::linear takes an f32 weight (rounded
// to the precision on every call) or this one, and rejects it when the precision has changed since.
Tensor convert_weight(const Tensor& weight);

// With TABULA_CUDA_PROFILE set, every op reached through ops:: on a device tensor is timed with CUDA events
// (eager forwards only, not inside graph capture; an op built on another counts once); print_op_profile prints
// the device ms per forward of each op and input shape to stderr, largest first, and clears the records.
// `tabula bench --device cuda` (without --graph) clears before and prints after its timed forwards.
void clear_op_profile();
void print_op_profile(int forwards);

}  // namespace tabula::cuda
