// Shared by the CUDA backend's files (engine/cuda/*.cu, nvcc only): element types and strided indexing, the
// device/dtype rules every op applies to its arguments, dense copies and layouts, activations in fp32, block and
// warp reductions, precision helpers and the cuBLASLt entry point. Kernels are deliberately simple (one thread per
// output element or one block/warp per row) and mirror tabula::ref loop for loop; the heavy products go to
// cuBLASLt and cuDNN.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "engine/cuda/backend.h"
#include "engine/cuda/device.h"
#include "engine/cuda/ops.h"
#include "engine/cuda/runtime.h"
#include "engine/ops_common.h"

#define LAUNCH_CHECK() TABULA_CUDA_CHECK(cudaGetLastError())

namespace tabula::cuda {

extern Precision g_precision;  // dispatch.cu: set_precision

inline cudaStream_t stream(int device) { return static_cast<cudaStream_t>(stream_for(device)); }
inline unsigned blocks_for(int64_t n, int threads = 256) { return static_cast<unsigned>((n + threads - 1) / threads); }

// Device of the first tensor; every other defined tensor must be on the same device. Tensors are f32, or the
// 16-bit storage type activations have in the bf16/fp16 precisions (never both 16-bit types in one call).
inline int common_device(std::string_view op, std::initializer_list<const Tensor*> ts) {
  int dev = -1;
  DType half = DType::f32;
  for (const Tensor* t : ts) {
    if (!t->defined()) continue;
    const DType d = t->dtype();
    if (d != DType::f32 && d != DType::bf16 && d != DType::f16)
      op_error(op, "expected f32, bf16 or f16 tensors, got " + t->str());
    if (d != DType::f32) {
      if (half != DType::f32 && half != d) op_error(op, "bf16 and f16 tensors mixed in one call: " + t->str());
      half = d;
    }
    const int dv = device_of(op, *t);
    if (dev >= 0 && dv != dev)
      op_error(op, "tensors on different devices (cuda:" + std::to_string(dev) + ", cuda:" + std::to_string(dv) + ")");
    dev = dv;
  }
  if (dev < 0) op_error(op, "no defined input");
  TABULA_CUDA_CHECK(cudaSetDevice(dev));
  return dev;
}

// The dtype of an op's result. Activations keep the 16-bit storage type once a forward is in it: a bf16
// activation combined with an f32 parameter (pos-embed, class token, LayerScale gamma, bias) gives bf16 -- as in
// torch, where the parameters of a bf16 model are bf16 themselves. All-f32 inputs give f32.
inline DType result_dtype(std::initializer_list<const Tensor*> ts) {
  DType r = DType::f32;
  for (const Tensor* t : ts)
    if (t->defined() && t->dtype() != DType::f32) r = t->dtype();
  return r;
}

inline const float* fptr(const Tensor& t) { return static_cast<const float*>(t.raw()); }
inline float* fptr_mut(Tensor& t) { return static_cast<float*>(t.raw()); }
inline bool aligned(const void* p, size_t a = 256) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

// ---- element types: kernels take void* plus the element type and compute in fp32 ----
enum class ET : int { f32, bf16, f16 };
inline ET et(const Tensor& t) {
  return t.dtype() == DType::bf16 ? ET::bf16 : t.dtype() == DType::f16 ? ET::f16 : ET::f32;
}
__device__ __forceinline__ float ld(const void* p, int64_t i, ET t) {
  if (t == ET::bf16) return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
  if (t == ET::f16) return __half2float(static_cast<const __half*>(p)[i]);
  return static_cast<const float*>(p)[i];
}
__device__ __forceinline__ void st(void* p, int64_t i, float v, ET t) {
  if (t == ET::bf16) static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16(v);
  else if (t == ET::f16) static_cast<__half*>(p)[i] = __float2half(v);
  else static_cast<float*>(p)[i] = v;
}

// 16-bit values as float and back (the vectorised kernels over 8-element / 16-byte chunks).
__device__ __forceinline__ float tof(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float tof(__half v) { return __half2float(v); }
template <typename T> __device__ __forceinline__ T fromf(float v);
template <> __device__ __forceinline__ __nv_bfloat16 fromf<__nv_bfloat16>(float v) { return __float2bfloat16(v); }
template <> __device__ __forceinline__ __half fromf<__half>(float v) { return __float2half(v); }

// ---- strided indexing (up to 8 dims): element i of a logical C-order walk -> storage offset ----
inline constexpr int kMaxDims = 8;
struct Strides {
  int nd = 0;
  int64_t size[kMaxDims] = {};
  int64_t stride[kMaxDims] = {};
};
inline Strides make_strides(std::string_view op, const Tensor& t) {
  if (t.dim() > kMaxDims) op_error(op, "at most 8 dimensions on cuda, got " + t.str());
  Strides s;
  s.nd = static_cast<int>(t.dim());
  for (int d = 0; d < s.nd; ++d) s.size[d] = t.size(d), s.stride[d] = t.stride(d);
  return s;
}
__device__ __forceinline__ int64_t offset_of(const Strides& s, int64_t i) {
  int64_t off = 0;
  for (int d = s.nd - 1; d >= 0; --d) {
    off += (i % s.size[d]) * s.stride[d];
    i /= s.size[d];
  }
  return off;
}

// dst (any strided view of device memory) = src (same shape, any strides, any of the three element types).
void copy_into(std::string_view op, Tensor& dst, const Tensor& src, int dev);  // copy.cu

// A contiguous, 256-byte aligned copy when the tensor is not already one (cuBLASLt/cuDNN want aligned operands).
inline Tensor dense(const Tensor& x, int dev) {
  if (x.is_contiguous() && aligned(x.raw())) return x;
  Tensor y = empty(x.shape(), dev, x.dtype());
  copy_into("cuda::contiguous", y, x, dev);
  return y;
}
// The same, stored as `dt` (one pass: the copy converts).
inline Tensor dense_as(const Tensor& x, int dev, DType dt) {
  if (x.dtype() == dt) return dense(x, dev);
  Tensor y = empty(x.shape(), dev, dt);
  copy_into("cuda::convert", y, x, dev);
  return y;
}

// Channels-last [N, C, H, W]: stored as [N, H, W, C] (cuDNN's NHWC), the layout of 16-bit convolutions.
inline bool is_channels_last(const Tensor& t) {
  if (t.dim() != 4) return false;
  const int64_t C = t.size(1), H = t.size(2), W = t.size(3);
  auto ok = [&](int d, int64_t want) { return t.size(d) == 1 || t.stride(d) == want; };
  return ok(1, 1) && ok(3, C) && ok(2, W * C) && ok(0, H * W * C);
}
inline Tensor empty_channels_last(int64_t N, int64_t C, int64_t H, int64_t W, int dev, DType dt) {
  return empty({N, H, W, C}, dev, dt).permute({0, 3, 1, 2});
}
inline Tensor dense_channels_last(const Tensor& x, int dev, DType dt) {
  if (x.dtype() == dt && is_channels_last(x) && aligned(x.raw())) return x;
  Tensor y = empty_channels_last(x.size(0), x.size(1), x.size(2), x.size(3), dev, dt);
  copy_into("cuda::conv2d", y, x, dev);
  return y;
}
// A fresh tensor laid out like x when x is contiguous or channels-last (element-wise results keep the layout).
inline Tensor empty_like_layout(const Tensor& x, int dev, DType dt) {
  if (!x.is_contiguous() && is_channels_last(x))
    return empty_channels_last(x.size(0), x.size(1), x.size(2), x.size(3), dev, dt);
  return empty(x.shape(), dev, dt);
}
// Contiguous or channels-last, 256-byte aligned: dense memory that element-wise kernels walk with one index.
inline bool dense_any_layout(const Tensor& x) { return (x.is_contiguous() || is_channels_last(x)) && aligned(x.raw()); }

// ---- activations (same formulas as the CPU reference, in fp32) ----
__device__ __forceinline__ float act_apply(float v, Activation a) {
  switch (a) {
    case Activation::relu: return v < 0.f ? 0.f : v;  // NaN and -0.0 pass through, as torch.relu
    case Activation::gelu: return 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
    case Activation::gelu_tanh: {
      const float u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
      return 0.5f * v * (1.f + tanhf(u));
    }
    case Activation::silu: return v / (1.f + expf(-v));
    case Activation::none: break;
  }
  return v;
}
// Whether t's storage is a 16-bit type whose data can be walked in 16-byte chunks.
inline bool vec8_ok(const Tensor& t) {
  return (t.dtype() == DType::bf16 || t.dtype() == DType::f16) && t.numel() % 8 == 0 && aligned(t.raw(), 16);
}


// y = act(y + bias[channel] + residual) after cuDNN/cuBLAS, residual laid out like y; channel = (i / inner) %
// channels: inner = H*W for NCHW, 1 for channels-last or [rows, C] (elementwise.cu).
void epilogue(Tensor& y, int dev, const float* bias, int64_t inner, int64_t channels, const Tensor& residual,
              Activation a);
// y = act(x) over dense memory of the same layout (y may be x: in place) (elementwise.cu).
void apply_activation(Tensor& y, const Tensor& x, Activation act, int dev);

// ---- block reductions for row kernels ----
__device__ inline float block_sum(float v, float* shm) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  __syncthreads();  // shm may still be read by a previous reduction
  if (lane == 0) shm[warp] = v;
  __syncthreads();
  float r = 0.f;
  for (int w = 0; w < warps; ++w) r += shm[w];  // fixed order: deterministic
  return r;
}
__device__ inline float block_max(float v, float* shm) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  __syncthreads();
  if (lane == 0) shm[warp] = v;
  __syncthreads();
  float r = -INFINITY;
  for (int w = 0; w < warps; ++w) r = fmaxf(r, shm[w]);
  return r;
}
inline constexpr int kWarpRowMax = 32 * 48;  // 1536: ViT-g's width, ViT-L/14 at 518 px (1370 tokens)
// Launches a warp-row kernel with the smallest PER that holds C (C <= kWarpRowMax); 4 warps per block.
template <template <int> class K, typename... Args>
void launch_warp_rows(int64_t rows, int C, int dev, Args... args) {
  const unsigned blocks = static_cast<unsigned>((rows + 3) / 4);
  const int per = (C + 31) / 32;
  if (per <= 4) K<4>::launch(blocks, dev, args...);
  else if (per <= 8) K<8>::launch(blocks, dev, args...);
  else if (per <= 16) K<16>::launch(blocks, dev, args...);
  else if (per <= 24) K<24>::launch(blocks, dev, args...);
  else if (per <= 32) K<32>::launch(blocks, dev, args...);
  else K<48>::launch(blocks, dev, args...);
}

// ---- precision helpers ----
__device__ __forceinline__ float round_to(float v, Precision p) {
  if (p == Precision::bf16) return __bfloat162float(__float2bfloat16(v));
  if (p == Precision::fp16) return __half2float(__float2half(v));
  return v;
}
// The storage type GEMM operands have in precision p: bf16/fp16 copies, f32 for fp32/tf32.
inline DType operand_dtype(Precision p) {
  return p == Precision::bf16 ? DType::bf16 : p == Precision::fp16 ? DType::f16 : DType::f32;
}
// A dense copy of x as the GEMM operand of precision p (x itself when it already is one).
inline Tensor lowered(const Tensor& x, int dev, Precision p) { return dense_as(x, dev, operand_dtype(p)); }
inline DType operand_dtype() { return operand_dtype(g_precision); }
// Bytes of `elems` elements of t's type past t's start (batched operands split into chunks).
inline void* at_elem(Tensor& t, int64_t elems) {
  return static_cast<char*>(t.raw()) + elems * static_cast<int64_t>(dtype_size(t.dtype()));
}

// Column-major D[m, n] = op(A)[m, k] @ B[k, n] (+ bias[m]) for `batch` strided problems. A/B are f32 or the
// precision's 16-bit copies (`p` is the precision they are stored in and the math runs in); D is f32 or 16-bit
// (`d_type`; a bias has D's type). C (optional, laid out and typed as D) is added: D = A B + C + bias (beta = 1).
// Row-major callers swap operands (see linear/matmul).
void lt_matmul(int dev, bool trans_a, const void* A, int64_t lda, int64_t stride_a, const void* B, int64_t ldb,
               int64_t stride_b, void* D, DType d_type, int64_t m, int64_t n, int64_t k, int64_t batch,
               const void* bias, Precision p, const void* C = nullptr);  // blas.cu

// With TABULA_CUDA_PROFILE set, every op of the backend records its device time with CUDA events (eager forwards
// only, not inside graph capture). Only the outermost op on a thread is timed: an op built on another (relu on
// activation) counts once (dispatch.cu).
class OpTimer {
 public:
  OpTimer(const char* name, const Tensor& x, const Tensor& w = {});
  ~OpTimer();
  OpTimer(const OpTimer&) = delete;
  OpTimer& operator=(const OpTimer&) = delete;

 private:
  bool outer_ = false;
  int record_ = -1;
};

}  // namespace tabula::cuda
