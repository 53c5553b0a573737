// Moving a model's weights to a GPU (Model::to_device). Plain tensors are copied as they are; linear weights are
// also converted once to the storage type the GEMMs of the current CUDA precision read (cuda::convert_weight:
// bf16/fp16 copies for bf16/fp16), so a forward never re-rounds a weight. Undefined tensors stay undefined.
#pragma once
#include <string>

#include "engine/tensor.h"

namespace tabula {

Tensor upload(const Tensor& host, int device);
Tensor upload_linear_weight(const Tensor& host, int device);
// The storage type of a forward's activations on `device` (-1: the CPU, f32): bf16/f16 in the CUDA bf16/fp16
// precisions (a model casts its input once, as torch's model.to(torch.bfloat16)), f32 otherwise.
DType activation_dtype(int device);
// A parameter the GEMM epilogue adds (linear bias) stored as the activations are (see activation_dtype).
Tensor upload_activation_param(const Tensor& host, int device);
// A conv weight [Cout, Cin/g, kh, kw]: with 16-bit activations, rounded once and stored channels-last
// ([Cout, kh, kw, Cin/g], the NHWC filter cuDNN reads; the tensor keeps its torch shape), else as upload().
Tensor upload_conv_weight(const Tensor& host, int device);

// x W^T + bias + residual on the GPU with the add inside the GEMM (cuda::linear's residual); x on a GPU.
Tensor linear_residual(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& residual);

// `--device` / `--precision` as typed: "cpu" with fp32, or "cuda[:N]" with fp32|tf32|bf16|fp16 (sets the CUDA
// precision process-wide). Returns the GPU index, -1 for the CPU. Throws std::invalid_argument naming the value
// for a bad name, a precision other than fp32 on the CPU, cuda in a build without the backend or a device index
// this machine does not have.
int select_device(const std::string& device, const std::string& precision);
// Waits until the work queued on GPU `device` is done (no-op for -1), so host timings measure it.
void synchronize_device(int device);
// Peak bytes the caching allocator had in use on `device`, in MiB (0 for -1).
double peak_device_mem_mb(int device);

}  // namespace tabula
