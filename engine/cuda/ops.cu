// tabula::cuda ops. Kernels are deliberately simple (one thread per output element or one block/warp per row)
// and mirror tabula::ref loop for loop; the heavy products go to cuBLASLt and cuDNN.
#include "engine/cuda/ops.h"

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "engine/cuda/runtime.h"
#include "engine/device_ops.h"
#include "engine/ops_common.h"

#define TABULA_CUBLAS_CHECK(call) check_cublas((call), #call, __FILE__, __LINE__)
#define TABULA_CUDNN_CHECK(call) check_cudnn((call), #call, __FILE__, __LINE__)

namespace tabula::cuda {
namespace {

void check_cublas(cublasStatus_t s, const char* what, const char* file, int line) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + what + ": cuBLAS status " +
                           std::to_string(static_cast<int>(s)));
}
void check_cudnn(cudnnStatus_t s, const char* what, const char* file, int line) {
  if (s == CUDNN_STATUS_SUCCESS) return;
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + what + ": " + cudnnGetErrorString(s));
}
#define LAUNCH_CHECK() TABULA_CUDA_CHECK(cudaGetLastError())

Precision g_precision = Precision::fp32;

cudaStream_t stream(int device) { return static_cast<cudaStream_t>(stream_for(device)); }
unsigned blocks_for(int64_t n, int threads = 256) { return static_cast<unsigned>((n + threads - 1) / threads); }

// Device of the first tensor; every other defined tensor must be on the same device. Tensors are f32, or the
// 16-bit storage type activations have in the bf16/fp16 precisions (never both 16-bit types in one call).
int common_device(std::string_view op, std::initializer_list<const Tensor*> ts) {
  int dev = -1;
  DType half = DType::f32;
  for (const Tensor* t : ts) {
    if (!t->defined()) continue;
    const DType d = t->dtype();
    if (d != DType::f32 && d != DType::bf16 && d != DType::f16) op_error(op, "expected f32, bf16 or f16 tensors, got " + t->str());
    if (d != DType::f32) {
      if (half != DType::f32 && half != d) op_error(op, "bf16 and f16 tensors mixed in one call: " + t->str());
      half = d;
    }
    const int dv = device_of(op, *t);
    if (dev >= 0 && dv != dev) op_error(op, "tensors on different devices (cuda:" + std::to_string(dev) + ", cuda:" + std::to_string(dv) + ")");
    dev = dv;
  }
  if (dev < 0) op_error(op, "no defined input");
  TABULA_CUDA_CHECK(cudaSetDevice(dev));
  return dev;
}

// The dtype of an op's result. Activations keep the 16-bit storage type once a forward is in it: a bf16
// activation combined with an f32 parameter (pos-embed, class token, LayerScale gamma, bias) gives bf16 -- as in
// torch, where the parameters of a bf16 model are bf16 themselves. All-f32 inputs give f32.
DType result_dtype(std::initializer_list<const Tensor*> ts) {
  DType r = DType::f32;
  for (const Tensor* t : ts)
    if (t->defined() && t->dtype() != DType::f32) r = t->dtype();
  return r;
}

const float* fptr(const Tensor& t) { return static_cast<const float*>(t.raw()); }
float* fptr_mut(Tensor& t) { return static_cast<float*>(t.raw()); }
bool aligned(const void* p, size_t a = 256) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

// ---- element types: kernels take void* plus the element type and compute in fp32 ----
enum class ET : int { f32, bf16, f16 };
ET et(const Tensor& t) { return t.dtype() == DType::bf16 ? ET::bf16 : t.dtype() == DType::f16 ? ET::f16 : ET::f32; }
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
constexpr int kMaxDims = 8;
struct Strides {
  int nd = 0;
  int64_t size[kMaxDims] = {};
  int64_t stride[kMaxDims] = {};
};
Strides make_strides(std::string_view op, const Tensor& t) {
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

// dst = src element by element in logical order, V consecutive elements of the last dim per thread (V divides the
// last dim, whose stride is 1 on both sides when V > 1), converting the element type. vec16: same type and every
// run of V elements is a 16-byte aligned chunk on both sides, copied as one uint4.
template <int V>
__global__ void copy_kernel(void* dst, Strides ds, ET dt, const void* src, Strides ss, ET stype, int64_t groups, bool vec16) {
  const int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (g >= groups) return;
  const int64_t i = g * V, so = offset_of(ss, i), dof = offset_of(ds, i);
  if (V > 1 && vec16) {
    constexpr int es = 16 / V;
    *reinterpret_cast<uint4*>(static_cast<char*>(dst) + dof * es) =
        *reinterpret_cast<const uint4*>(static_cast<const char*>(src) + so * es);
    return;
  }
  for (int v = 0; v < V; ++v) st(dst, dof + v, ld(src, so + v, stype), dt);
}
// dst (any strided view of device memory) = src (same shape, any strides, any of the three element types).
void copy_into(std::string_view op, Tensor& dst_in, const Tensor& src_in, int dev) {
  const int64_t n = src_in.numel();
  if (n == 0) return;
  if (src_in.shape() != dst_in.shape()) op_error(op, "copy of " + src_in.str() + " into " + dst_in.str());
  // Walk dst in its memory order (stores coalesce): permute both by dst's strides, largest first.
  Tensor dst = dst_in, src = src_in;
  if (!dst.is_contiguous()) {
    std::vector<int64_t> order(static_cast<size_t>(dst.dim()));
    for (size_t d = 0; d < order.size(); ++d) order[d] = static_cast<int64_t>(d);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return dst.stride(a) > dst.stride(b); });
    dst = dst.permute(order), src = src.permute(order);
  }
  const size_t es = dtype_size(dst.dtype());
  int V = 1;
  if (dst.dim() >= 1 && src.stride(-1) == 1 && dst.stride(-1) == 1) {
    for (int c : {8, 4, 2}) {
      bool ok = dst.size(-1) % c == 0;
      for (int64_t d = 0; d + 1 < dst.dim() && ok; ++d)
        if (dst.size(d) > 1 && (src.stride(d) % c || dst.stride(d) % c)) ok = false;
      if (ok) {
        V = c;
        break;
      }
    }
  }
  const bool vec16 = V > 1 && dst.dtype() == src.dtype() && static_cast<size_t>(V) * es == 16 && aligned(dst.raw(), 16) &&
                     aligned(src.raw(), 16);
  const Strides ds = make_strides(op, dst), ss = make_strides(op, src);
  const int64_t groups = n / V;
  const unsigned nb = blocks_for(groups);
  switch (V) {
    case 8: copy_kernel<8><<<nb, 256, 0, stream(dev)>>>(dst.raw(), ds, et(dst), src.raw(), ss, et(src), groups, vec16); break;
    case 4: copy_kernel<4><<<nb, 256, 0, stream(dev)>>>(dst.raw(), ds, et(dst), src.raw(), ss, et(src), groups, vec16); break;
    case 2: copy_kernel<2><<<nb, 256, 0, stream(dev)>>>(dst.raw(), ds, et(dst), src.raw(), ss, et(src), groups, vec16); break;
    default: copy_kernel<1><<<nb, 256, 0, stream(dev)>>>(dst.raw(), ds, et(dst), src.raw(), ss, et(src), groups, false); break;
  }
  LAUNCH_CHECK();
}

// A contiguous, 256-byte aligned copy when the tensor is not already one (cuBLASLt/cuDNN want aligned operands).
Tensor dense(const Tensor& x, int dev) {
  if (x.is_contiguous() && aligned(x.raw())) return x;
  Tensor y = empty(x.shape(), dev, x.dtype());
  copy_into("cuda::contiguous", y, x, dev);
  return y;
}
// The same, stored as `dt` (one pass: the copy converts).
Tensor dense_as(const Tensor& x, int dev, DType dt) {
  if (x.dtype() == dt) return dense(x, dev);
  Tensor y = empty(x.shape(), dev, dt);
  copy_into("cuda::convert", y, x, dev);
  return y;
}

// Channels-last [N, C, H, W]: stored as [N, H, W, C] (cuDNN's NHWC), the layout of 16-bit convolutions.
bool is_channels_last(const Tensor& t) {
  if (t.dim() != 4) return false;
  const int64_t C = t.size(1), H = t.size(2), W = t.size(3);
  auto ok = [&](int d, int64_t want) { return t.size(d) == 1 || t.stride(d) == want; };
  return ok(1, 1) && ok(3, C) && ok(2, W * C) && ok(0, H * W * C);
}
Tensor empty_channels_last(int64_t N, int64_t C, int64_t H, int64_t W, int dev, DType dt) {
  return empty({N, H, W, C}, dev, dt).permute({0, 3, 1, 2});
}
Tensor dense_channels_last(const Tensor& x, int dev, DType dt) {
  if (x.dtype() == dt && is_channels_last(x) && aligned(x.raw())) return x;
  Tensor y = empty_channels_last(x.size(0), x.size(1), x.size(2), x.size(3), dev, dt);
  copy_into("cuda::conv2d", y, x, dev);
  return y;
}
// A fresh tensor laid out like x when x is contiguous or channels-last (element-wise results keep the layout).
Tensor empty_like_layout(const Tensor& x, int dev, DType dt) {
  if (!x.is_contiguous() && is_channels_last(x)) return empty_channels_last(x.size(0), x.size(1), x.size(2), x.size(3), dev, dt);
  return empty(x.shape(), dev, dt);
}
// Contiguous or channels-last, 256-byte aligned: dense memory that element-wise kernels walk with one index.
bool dense_any_layout(const Tensor& x) { return (x.is_contiguous() || is_channels_last(x)) && aligned(x.raw()); }

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

__global__ void act_kernel(void* y, ET yt, const void* x, ET xt, int64_t n, Activation a) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) st(y, i, act_apply(ld(x, i, xt), a), yt);
}

// Vectorised 16-bit forms: 8 elements (one 16-byte load) per thread over dense memory.
// Epilogue over channels-last / [rows, C] data with C % 8 == 0: the 8 elements of a chunk are channels c0..c0+7.
template <typename T>
__global__ void epilogue_vec8_kernel(T* y, int64_t n8, const float* bias, int64_t C, const T* res, Activation a) {
  const int64_t i8 = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i8 >= n8) return;
  const int64_t c0 = (i8 * 8) % C;
  uint4 yv = reinterpret_cast<const uint4*>(y)[i8];
  T* ye = reinterpret_cast<T*>(&yv);
  uint4 rv{};
  if (res) rv = reinterpret_cast<const uint4*>(res)[i8];
  const T* re = reinterpret_cast<const T*>(&rv);
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    float v = tof(ye[j]);
    if (bias) v += bias[c0 + j];
    if (res) v += tof(re[j]);
    ye[j] = fromf<T>(act_apply(v, a));
  }
  reinterpret_cast<uint4*>(y)[i8] = yv;
}
template <typename T>
__global__ void act_vec8_kernel(T* y, const T* x, int64_t n8, Activation a) {
  const int64_t i8 = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i8 >= n8) return;
  uint4 v = reinterpret_cast<const uint4*>(x)[i8];
  T* e = reinterpret_cast<T*>(&v);
#pragma unroll
  for (int j = 0; j < 8; ++j) e[j] = fromf<T>(act_apply(tof(e[j]), a));
  reinterpret_cast<uint4*>(y)[i8] = v;
}
template <typename T>
__global__ void add_vec8_kernel(T* y, const T* a, const T* b, int64_t n8) {
  const int64_t i8 = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i8 >= n8) return;
  uint4 u = reinterpret_cast<const uint4*>(a)[i8], w = reinterpret_cast<const uint4*>(b)[i8];
  T* ue = reinterpret_cast<T*>(&u);
  const T* we = reinterpret_cast<const T*>(&w);
#pragma unroll
  for (int j = 0; j < 8; ++j) ue[j] = fromf<T>(tof(ue[j]) + tof(we[j]));
  reinterpret_cast<uint4*>(y)[i8] = u;
}
// Whether t's storage is a 16-bit type whose data can be walked in 16-byte chunks.
bool vec8_ok(const Tensor& t) {
  return (t.dtype() == DType::bf16 || t.dtype() == DType::f16) && t.numel() % 8 == 0 && aligned(t.raw(), 16);
}

enum class BinOp { add, mul };
__device__ __forceinline__ float bin_apply(float u, float v, BinOp op) { return op == BinOp::add ? u + v : u * v; }
// General broadcasting form: both operands through their (expanded) strides; y contiguous.
__global__ void binary_kernel(void* y, ET yt, const void* a, Strides sa, ET at, const void* b, Strides sb, ET bt, int64_t n,
                              BinOp op) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  st(y, i, bin_apply(ld(a, offset_of(sa, i), at), ld(b, offset_of(sb, i), bt), op), yt);
}
// Fast forms over dense memory: b laid out like a (i), or b a vector along a's innermost dim (i % C).
__global__ void binary_flat_kernel(void* y, ET yt, const void* a, ET at, const void* b, ET bt, int64_t n, int64_t bmod,
                                   BinOp op) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  st(y, i, bin_apply(ld(a, i, at), ld(b, bmod ? i % bmod : i, bt), op), yt);
}
__global__ void scale_kernel(void* y, ET yt, const void* x, ET xt, int64_t n, float s) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) st(y, i, ld(x, i, xt) * s, yt);
}

Tensor binary(std::string_view op, const Tensor& a, const Tensor& b, BinOp kind) {
  const int dev = common_device(op, {&a, &b});
  const Shape out = detail::broadcast_shape(op, a.shape(), b.shape());
  const DType ydt = result_dtype({&a, &b});
  // b the same shape and layout as a, or a vector broadcast along a's last dim (bias, LayerScale gamma): one
  // flat index over dense memory, and the result keeps a's layout (channels-last stays channels-last).
  if (a.shape() == out && dense_any_layout(a)) {
    const bool same = b.shape() == a.shape() && b.strides() == a.strides() && aligned(b.raw());
    const bool lastdim = b.dim() == 1 && a.dim() >= 1 && b.size(0) == a.size(-1) && a.is_contiguous() && b.is_contiguous();
    if (same || lastdim) {
      Tensor y = empty_like_layout(a, dev, ydt);
      const int64_t n = y.numel();
      if (same && kind == BinOp::add && a.dtype() == b.dtype() && a.dtype() == ydt && vec8_ok(a) && vec8_ok(b) && n) {
        if (ydt == DType::bf16)
          add_vec8_kernel<<<blocks_for(n / 8), 256, 0, stream(dev)>>>(static_cast<__nv_bfloat16*>(y.raw()),
                                                                      static_cast<const __nv_bfloat16*>(a.raw()),
                                                                      static_cast<const __nv_bfloat16*>(b.raw()), n / 8);
        else
          add_vec8_kernel<<<blocks_for(n / 8), 256, 0, stream(dev)>>>(static_cast<__half*>(y.raw()), static_cast<const __half*>(a.raw()),
                                                                      static_cast<const __half*>(b.raw()), n / 8);
        LAUNCH_CHECK();
        return y;
      }
      if (n) binary_flat_kernel<<<blocks_for(n), 256, 0, stream(dev)>>>(y.raw(), et(y), a.raw(), et(a), b.raw(), et(b), n,
                                                                      same ? 0 : b.size(0), kind);
      LAUNCH_CHECK();
      return y;
    }
  }
  Tensor y = empty(out, dev, ydt);
  const int64_t n = y.numel();
  if (n == 0) return y;
  // Left-pad dims with size-1 (numpy rules), then expand: stride 0 along broadcast dims.
  auto expanded = [&](const Tensor& t) {
    Tensor u = t;
    while (u.dim() < static_cast<int64_t>(out.size())) u = u.unsqueeze(0);
    return u.expand(out);
  };
  binary_kernel<<<blocks_for(n), 256, 0, stream(dev)>>>(y.raw(), et(y), a.raw(), make_strides(op, expanded(a)), et(a), b.raw(),
                                                        make_strides(op, expanded(b)), et(b), n, kind);
  LAUNCH_CHECK();
  return y;
}

// ---- epilogue after cuDNN/cuBLAS: y = act(y + bias[channel] + residual), residual laid out like y ----
// channel = (i / inner) % channels: inner = H*W for NCHW, 1 for channels-last or [rows, C].
template <typename Index>
__global__ void epilogue_kernel(void* y, ET yt, Index n, const float* bias, Index inner, Index channels, const void* residual,
                                ET rt, Activation a) {
  const Index i = static_cast<Index>(blockIdx.x) * static_cast<Index>(blockDim.x) + static_cast<Index>(threadIdx.x);
  if (i >= n) return;
  float v = ld(y, i, yt);
  if (bias) v += bias[(i / inner) % channels];
  if (residual) v += ld(residual, i, rt);
  st(y, i, act_apply(v, a), yt);
}
void epilogue(Tensor& y, int dev, const float* bias, int64_t inner, int64_t channels, const Tensor& residual, Activation a) {
  const int64_t n = y.numel();
  if (n == 0) return;
  if (inner == 1 && channels % 8 == 0 && vec8_ok(y) && (!residual.defined() || (residual.dtype() == y.dtype() && vec8_ok(residual)))) {
    const void* r = residual.defined() ? residual.raw() : nullptr;
    if (y.dtype() == DType::bf16)
      epilogue_vec8_kernel<<<blocks_for(n / 8), 256, 0, stream(dev)>>>(static_cast<__nv_bfloat16*>(y.raw()), n / 8, bias, channels,
                                                                       static_cast<const __nv_bfloat16*>(r), a);
    else
      epilogue_vec8_kernel<<<blocks_for(n / 8), 256, 0, stream(dev)>>>(static_cast<__half*>(y.raw()), n / 8, bias, channels,
                                                                       static_cast<const __half*>(r), a);
    LAUNCH_CHECK();
    return;
  }
  const void* r = residual.defined() ? residual.raw() : nullptr;
  const ET rt = residual.defined() ? et(residual) : ET::f32;
  if (n < (int64_t{1} << 31))  // 32-bit index math: the division by `channels` is several times cheaper
    epilogue_kernel<int32_t><<<blocks_for(n), 256, 0, stream(dev)>>>(y.raw(), et(y), static_cast<int32_t>(n), bias,
                                                                     static_cast<int32_t>(inner), static_cast<int32_t>(channels), r, rt, a);
  else
    epilogue_kernel<int64_t><<<blocks_for(n), 256, 0, stream(dev)>>>(y.raw(), et(y), n, bias, inner, channels, r, rt, a);
  LAUNCH_CHECK();
}

// ---- block reductions for row kernels ----
__device__ float block_sum(float v, float* shm) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  __syncthreads();  // shm may still be read by a previous reduction
  if (lane == 0) shm[warp] = v;
  __syncthreads();
  float r = 0.f;
  for (int w = 0; w < warps; ++w) r += shm[w];  // fixed order: deterministic
  return r;
}
__device__ float block_max(float v, float* shm) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  __syncthreads();
  if (lane == 0) shm[warp] = v;
  __syncthreads();
  float r = -INFINITY;
  for (int w = 0; w < warps; ++w) r = fmaxf(r, shm[w]);
  return r;
}

// F.layer_norm over rows of C: two passes (mean, then centred variance, biased as torch), fp32 statistics.
__global__ void layer_norm_kernel(void* y, ET yt, const void* x, ET xt, const float* w, const float* b, int64_t C, float eps) {
  __shared__ float shm[32];
  const int64_t r0 = blockIdx.x * C;
  float s = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += ld(x, r0 + c, xt);
  const float mean = block_sum(s, shm) / static_cast<float>(C);
  float v = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    const float d = ld(x, r0 + c, xt) - mean;
    v += d * d;
  }
  const float rstd = rsqrtf(block_sum(v, shm) / static_cast<float>(C) + eps);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    float o = (ld(x, r0 + c, xt) - mean) * rstd;
    if (w) o *= w[c];
    if (b) o += b[c];
    st(y, r0 + c, o, yt);
  }
}

__global__ void softmax_kernel(void* y, ET yt, const void* x, ET xt, int64_t C) {
  __shared__ float shm[32];
  const int64_t r0 = blockIdx.x * C;
  float m = -INFINITY;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) m = fmaxf(m, ld(x, r0 + c, xt));
  m = block_max(m, shm);
  float s = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += expf(ld(x, r0 + c, xt) - m);
  const float inv = 1.f / block_sum(s, shm);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) st(y, r0 + c, expf(ld(x, r0 + c, xt) - m) * inv, yt);
}

// softmax(x * scale) over rows of C of fp32 attention scores into p, any storage type: the f32 probabilities in
// place (p == x: each element is read and written by the same thread only) or a 16-bit P for the P @ V product.
__global__ void scaled_softmax_kernel(void* p, ET pt, const float* x, int64_t C, float scale) {
  __shared__ float shm[32];
  const int64_t r0 = blockIdx.x * C;
  const float* xr = x + r0;
  float m = -INFINITY;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) m = fmaxf(m, xr[c] * scale);
  m = block_max(m, shm);
  float s = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += expf(xr[c] * scale - m);
  const float inv = 1.f / block_sum(s, shm);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) st(p, r0 + c, expf(xr[c] * scale - m) * inv, pt);
}

// Warp-per-row forms for rows up to 32 * PER elements, held in registers: one read and one write per element and
// warp shuffles only (the block kernels above re-read the row for each statistic and synchronise the block).
// softmax(x * scale) of fp32 scores into p (any storage type; p may be x itself: each row is read before written).
template <int PER>
__global__ void softmax_warp_kernel(void* p, ET pt, const float* x, int64_t rows, int C, float scale) {
  const int64_t row = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const float* xr = x + row * C;
  float v[PER];
  float m = -INFINITY;
#pragma unroll
  for (int t = 0; t < PER; ++t) {
    const int c = lane + 32 * t;
    v[t] = c < C ? xr[c] * scale : -INFINITY;
    m = fmaxf(m, v[t]);
  }
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  float sum = 0.f;
#pragma unroll
  for (int t = 0; t < PER; ++t) {
    v[t] = lane + 32 * t < C ? expf(v[t] - m) : 0.f;
    sum += v[t];
  }
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  const float inv = 1.f / sum;
#pragma unroll
  for (int t = 0; t < PER; ++t) {
    const int c = lane + 32 * t;
    if (c < C) st(p, row * C + c, v[t] * inv, pt);
  }
}
// F.layer_norm of rows of C <= 32 * PER: mean, then the centred variance (biased), fp32 statistics.
template <int PER>
__global__ void layer_norm_warp_kernel(void* y, ET yt, const void* x, ET xt, const float* w, const float* b, int64_t rows, int C,
                                       float eps) {
  const int64_t row = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const int64_t r0 = row * C;
  float v[PER];
  float s = 0.f;
#pragma unroll
  for (int t = 0; t < PER; ++t) {
    const int c = lane + 32 * t;
    v[t] = c < C ? ld(x, r0 + c, xt) : 0.f;
    s += v[t];
  }
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  const float mean = s / static_cast<float>(C);
  float q = 0.f;
#pragma unroll
  for (int t = 0; t < PER; ++t) {
    const float d = lane + 32 * t < C ? v[t] - mean : 0.f;
    q += d * d;
  }
  for (int o = 16; o > 0; o >>= 1) q += __shfl_xor_sync(0xffffffffu, q, o);
  const float rstd = rsqrtf(q / static_cast<float>(C) + eps);
#pragma unroll
  for (int t = 0; t < PER; ++t) {
    const int c = lane + 32 * t;
    if (c >= C) continue;
    float o = (v[t] - mean) * rstd;
    if (w) o *= w[c];
    if (b) o += b[c];
    st(y, r0 + c, o, yt);
  }
}
constexpr int kWarpRowMax = 32 * 48;  // 1536: ViT-g's width, ViT-L/14 at 518 px (1370 tokens)
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
template <int PER>
struct SoftmaxWarp {
  static void launch(unsigned blocks, int dev, void* p, ET pt, const float* x, int64_t rows, int C, float scale) {
    softmax_warp_kernel<PER><<<blocks, 128, 0, stream(dev)>>>(p, pt, x, rows, C, scale);
  }
};
template <int PER>
struct LayerNormWarp {
  static void launch(unsigned blocks, int dev, void* y, ET yt, const void* x, ET xt, const float* w, const float* b, int64_t rows,
                     int C, float eps) {
    layer_norm_warp_kernel<PER><<<blocks, 128, 0, stream(dev)>>>(y, yt, x, xt, w, b, rows, C, eps);
  }
};

// swiglu: x [rows, 2H] -> silu(x[:, :H]) * x[:, H:]
__global__ void swiglu_kernel(void* y, ET yt, const void* x, ET xt, int64_t rows, int64_t H) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= rows * H) return;
  const int64_t r = i / H, c = i % H;
  const float a = ld(x, r * 2 * H + c, xt), g = ld(x, r * 2 * H + H + c, xt);
  st(y, i, a / (1.f + expf(-a)) * g, yt);
}

__global__ void channel_affine_kernel(void* y, ET yt, const void* x, ET xt, int64_t n, int64_t inner, int64_t C,
                                      const float* scale, const float* shift) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const int64_t c = (i / inner) % C;
  st(y, i, ld(x, i, xt) * scale[c] + (shift ? shift[c] : 0.f), yt);
}
__global__ void bn_coeff_kernel(float* scale, float* shift, const float* w, const float* b, const float* mean,
                                const float* var, int64_t C, float eps) {
  int64_t c = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (c >= C) return;
  const float inv = rsqrtf(var[c] + eps);
  const float g = w ? w[c] : 1.f;
  scale[c] = g * inv;
  shift[c] = (b ? b[c] : 0.f) - mean[c] * g * inv;
}

// pool(): element (b, l, c) at b*sb + l*sl + c*sc; one thread per (b, c), sequential over l (deterministic).
// The result is f32 whatever the input's storage type.
__global__ void pool_kernel(float* y, const void* x, ET xt, int64_t B, int64_t L, int64_t C, int64_t first, int64_t sb,
                            int64_t sl, int64_t sc, Pool p) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= B * C) return;
  const int64_t b = i / C, c = i % C;
  const int64_t base = b * sb + c * sc;
  float mean = 0.f, mx = -INFINITY, gem = 0.f;
  for (int64_t l = first; l < L; ++l) {
    const float v = ld(x, base + l * sl, xt);
    mean += v;
    mx = (v > mx || v != v) ? v : mx;
    const float cl = fmaxf(v, 1e-6f);
    gem += cl * cl * cl;  // p = 3, as detail::kGemP
  }
  const float n = static_cast<float>(L - first);
  const int64_t D = p == Pool::cls_mean ? 2 * C : C;
  float* yr = y + b * D;
  switch (p) {
    case Pool::avg: case Pool::mean: yr[c] = mean / n; break;
    case Pool::max: yr[c] = mx; break;
    case Pool::gem: yr[c] = cbrtf(gem / n); break;
    case Pool::cls: yr[c] = ld(x, base, xt); break;
    case Pool::cls_mean: yr[c] = ld(x, base, xt), yr[C + c] = mean / n; break;
    case Pool::none: break;
  }
}

// Spatial pools over [N, C, H, W] read through x's strides; output element i is (n, c, oh, ow) in the output's own
// layout: channels-last (c fastest) when out_cl, else NCHW.
struct Map4 {
  int64_t N, C, H, W, Ho, Wo, sn, sc, sh, sw;
  bool out_cl;
};
__device__ __forceinline__ void out_coords(const Map4& m, int64_t i, int64_t& n, int64_t& c, int64_t& oh, int64_t& ow) {
  if (m.out_cl) {
    c = i % m.C, ow = (i / m.C) % m.Wo, oh = (i / (m.C * m.Wo)) % m.Ho, n = i / (m.C * m.Wo * m.Ho);
  } else {
    ow = i % m.Wo, oh = (i / m.Wo) % m.Ho, c = (i / (m.Wo * m.Ho)) % m.C, n = i / (m.Wo * m.Ho * m.C);
  }
}
Map4 map4(const Tensor& x, int64_t Ho, int64_t Wo, bool out_cl) {
  return {x.size(0), x.size(1), x.size(2), x.size(3), Ho, Wo, x.stride(0), x.stride(1), x.stride(2), x.stride(3), out_cl};
}

__global__ void max_pool_kernel(void* y, ET yt, const void* x, ET xt, Map4 m, int kh, int kw, int sh, int sw, int ph, int pw,
                                int dh, int dw) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= m.N * m.C * m.Ho * m.Wo) return;
  int64_t n, c, oh, ow;
  out_coords(m, i, n, c, oh, ow);
  const int64_t base = n * m.sn + c * m.sc;
  float best = -INFINITY;
  for (int a = 0; a < kh; ++a) {
    const int64_t ih = oh * sh - ph + a * dh;
    if (ih < 0 || ih >= m.H) continue;
    for (int b = 0; b < kw; ++b) {
      const int64_t iw = ow * sw - pw + b * dw;
      if (iw < 0 || iw >= m.W) continue;
      const float v = ld(x, base + ih * m.sh + iw * m.sw, xt);
      if (v > best || v != v) best = v;
    }
  }
  st(y, i, best, yt);
}

// Channels-last 16-bit max pooling, 8 channels (one 16-byte load) per thread: output pixel (n, oh, ow), channels
// c8*8 .. c8*8+7; x and y dense channels-last with C % 8 == 0.
template <typename T>
__global__ void max_pool_cl_vec8_kernel(T* y, const T* x, int64_t N, int C, int H, int W, int Ho, int Wo, int kh, int kw, int sh,
                                        int sw, int ph, int pw, int dh, int dw) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int C8 = C / 8;
  if (i >= N * Ho * Wo * C8) return;
  const int c8 = static_cast<int>(i % C8);
  const int64_t pix = i / C8;
  const int ow = static_cast<int>(pix % Wo), oh = static_cast<int>((pix / Wo) % Ho);
  const int64_t n = pix / (static_cast<int64_t>(Wo) * Ho);
  float best[8];
#pragma unroll
  for (int q = 0; q < 8; ++q) best[q] = -INFINITY;
  for (int a = 0; a < kh; ++a) {
    const int ih = oh * sh - ph + a * dh;
    if (ih < 0 || ih >= H) continue;
    for (int b = 0; b < kw; ++b) {
      const int iw = ow * sw - pw + b * dw;
      if (iw < 0 || iw >= W) continue;
      const uint4 u = *reinterpret_cast<const uint4*>(x + ((n * H + ih) * W + iw) * C + c8 * 8);
      const T* e = reinterpret_cast<const T*>(&u);
#pragma unroll
      for (int q = 0; q < 8; ++q) {
        const float v = tof(e[q]);
        if (v > best[q] || v != v) best[q] = v;
      }
    }
  }
  uint4 u;
  T* e = reinterpret_cast<T*>(&u);
#pragma unroll
  for (int q = 0; q < 8; ++q) e[q] = fromf<T>(best[q]);
  reinterpret_cast<uint4*>(y)[i] = u;
}

__global__ void adaptive_avg_kernel(void* y, ET yt, const void* x, ET xt, Map4 m) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= m.N * m.C * m.Ho * m.Wo) return;
  int64_t n, c, oh, ow;
  out_coords(m, i, n, c, oh, ow);
  const int64_t H = m.H, W = m.W, Ho = m.Ho, Wo = m.Wo;
  const int64_t h0 = (oh * H) / Ho, h1 = ((oh + 1) * H + Ho - 1) / Ho;
  const int64_t w0 = (ow * W) / Wo, w1 = ((ow + 1) * W + Wo - 1) / Wo;
  const int64_t base = n * m.sn + c * m.sc;
  float acc = 0.f;
  for (int64_t ih = h0; ih < h1; ++ih)
    for (int64_t iw = w0; iw < w1; ++iw) acc += ld(x, base + ih * m.sh + iw * m.sw, xt);
  st(y, i, acc / static_cast<float>((h1 - h0) * (w1 - w0)), yt);
}

// ---- precision helpers ----
__device__ __forceinline__ float round_to(float v, Precision p) {
  if (p == Precision::bf16) return __bfloat162float(__float2bfloat16(v));
  if (p == Precision::fp16) return __half2float(__float2half(v));
  return v;
}
// The storage type GEMM operands have in precision p: bf16/fp16 copies, f32 for fp32/tf32.
DType operand_dtype(Precision p) {
  return p == Precision::bf16 ? DType::bf16 : p == Precision::fp16 ? DType::f16 : DType::f32;
}
// A dense copy of x as the GEMM operand of precision p (x itself when it already is one).
Tensor lowered(const Tensor& x, int dev, Precision p) { return dense_as(x, dev, operand_dtype(p)); }

// f32 values rounded to the precision's storage type, kept in f32 (the V operand of the fp32 P @ V product).
__global__ void round_kernel(float* y, const float* x, int64_t n, Precision p) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) y[i] = round_to(x[i], p);
}

// ---- attention ----
// Flash-style forward: one warp per query row, keys streamed with an online softmax (running max m, running
// sum l, output rescaled when m grows), so the Nq x Nk matrix never exists. A block holds kFlashRows query rows
// of one (batch, head) and stages kFlashKeys keys/values at a time in shared memory, so each K/V element is read
// from global memory once per block instead of once per row. Lane t owns dims t, t+32, ... of its row.
// Inputs are rounded to the precision's storage type on load; every sum is fp32, in a fixed order.
constexpr int kMaxHeadDim = 256;
constexpr int kFlashRows = 8;   // warps per block
constexpr int kFlashKeys = 16;  // keys per shared-memory tile: 2 x 16 x 256 x 4 B = 32 KiB at most
__global__ void attention_flash_kernel(float* out, const float* q, const float* k, const float* v, int64_t Nq,
                                       int64_t Nk, int D, int Dv, float scale, Precision p) {
  __shared__ float ks[kFlashKeys * kMaxHeadDim];
  __shared__ float vs[kFlashKeys * kMaxHeadDim];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t chunks = (Nq + kFlashRows - 1) / kFlashRows;
  const int64_t bh = blockIdx.x / chunks, i = (blockIdx.x % chunks) * kFlashRows + warp;
  const bool active = i < Nq;  // uniform per warp; inactive warps still help load tiles and meet the barriers
  const int64_t row = bh * Nq + i;
  float qreg[kMaxHeadDim / 32], acc[kMaxHeadDim / 32];
  const int nd = (D + 31) / 32, nv = (Dv + 31) / 32;
  for (int t = 0; t < nd; ++t) {
    const int d = lane + 32 * t;
    qreg[t] = active && d < D ? round_to(q[row * D + d], p) : 0.f;
  }
  for (int t = 0; t < nv; ++t) acc[t] = 0.f;
  float m = -INFINITY, l = 0.f;
  for (int64_t j0 = 0; j0 < Nk; j0 += kFlashKeys) {
    const int nt = static_cast<int>(Nk - j0 < kFlashKeys ? Nk - j0 : kFlashKeys);
    __syncthreads();  // every warp is done with the previous tile
    const float* kt = k + (bh * Nk + j0) * D;
    const float* vt = v + (bh * Nk + j0) * Dv;
    for (int idx = threadIdx.x; idx < nt * D; idx += blockDim.x) ks[idx] = round_to(kt[idx], p);
    for (int idx = threadIdx.x; idx < nt * Dv; idx += blockDim.x) vs[idx] = round_to(vt[idx], p);
    __syncthreads();
    if (!active) continue;
    for (int jj = 0; jj < nt; ++jj) {
      float s = 0.f;
      for (int t = 0; t < nd; ++t) {
        const int d = lane + 32 * t;
        if (d < D) s += qreg[t] * ks[jj * D + d];
      }
      for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
      s *= scale;
      const float m_new = fmaxf(m, s);
      const float corr = expf(m - m_new);  // 0 on the first key (m = -inf)
      const float e = expf(s - m_new);
      l = l * corr + e;
      for (int t = 0; t < nv; ++t) {
        const int d = lane + 32 * t;
        acc[t] = acc[t] * corr + (d < Dv ? e * vs[jj * Dv + d] : 0.f);
      }
      m = m_new;
    }
  }
  if (!active) return;
  for (int t = 0; t < nv; ++t) {
    const int d = lane + 32 * t;
    if (d < Dv) out[row * Dv + d] = acc[t] / l;
  }
}

// Exact path (and the attention-probabilities tap): one block per query row; the row of scores lives in shared
// memory, softmax as softmax_kernel, probabilities written out, then P @ V.
__global__ void attention_exact_kernel(float* out, float* probs, const float* q, const float* k, const float* v,
                                       int64_t Nq, int64_t Nk, int D, int Dv, float scale, Precision p) {
  extern __shared__ float srow[];
  __shared__ float shm[32];
  const int64_t row = blockIdx.x, bh = row / Nq;
  const float* qr = q + row * D;
  for (int64_t j = threadIdx.x; j < Nk; j += blockDim.x) {
    const float* kj = k + (bh * Nk + j) * D;
    float s = 0.f;
    for (int d = 0; d < D; ++d) s += round_to(qr[d], p) * round_to(kj[d], p);
    srow[j] = s * scale;
  }
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < Nk; j += blockDim.x) mx = fmaxf(mx, srow[j]);
  mx = block_max(mx, shm);
  float sum = 0.f;
  for (int64_t j = threadIdx.x; j < Nk; j += blockDim.x) sum += (srow[j] = expf(srow[j] - mx));
  const float inv = 1.f / block_sum(sum, shm);  // block_sum's barriers also publish srow
  for (int64_t j = threadIdx.x; j < Nk; j += blockDim.x) {
    srow[j] *= inv;
    if (probs) probs[row * Nk + j] = srow[j];
  }
  __syncthreads();
  for (int d = threadIdx.x; d < Dv; d += blockDim.x) {
    float a = 0.f;
    for (int64_t j = 0; j < Nk; ++j) a += srow[j] * round_to(v[(bh * Nk + j) * Dv + d], p);
    out[row * Dv + d] = a;
  }
}

// Tensor-core attention for 16-bit q/k/v (head dim D in {64, 80, 96, 128}), FlashAttention-2 style: a block
// takes 128 query rows of one (batch, head), a warp 16 of them, and streams the keys in tiles of 64 through shared
// memory with an online softmax. Everything per row stays in registers in the PTX mma.m16n8k16 fragment layouts:
// S = Q K^T with fp32 accumulation, the scaled, masked row maxima and exp in fp32 (row sums l of the fp32
// exponentials), P = exp(S - m) rounded to 16 bits and fed to O = O * exp(m_old - m) + P V (fp32 accumulators);
// at the end O / l. The N x N matrix never exists. q/k/v are read through their strides (the views of one packed
// qkv tensor need no copies), out is written through its strides. Fixed summation order: deterministic.
//
// m16n8k16 fragments (g = lane / 4, t = lane % 4; two 16-bit values per 32-bit register, lower column first):
//   A 16x16 row-major: {A[g][2t..], A[g+8][2t..], A[g][2t+8..], A[g+8][2t+8..]}
//   B 16x8 (k x n):   {B[2t..2t+1][g], B[2t+8..2t+9][g]}
//   C 16x8 fp32:      {C[g][2t], C[g][2t+1], C[g+8][2t], C[g+8][2t+1]}
constexpr int kFaRows = 128, kFaKeys = 64, kFaThreads = 256;  // 8 warps x 16 query rows share each K/V tile
template <int D>
constexpr size_t flash_smem_bytes() { return size_t{2} * kFaKeys * (D + 8) * 2; }  // K and V tiles, rows padded by 8
struct Strides3 {
  int64_t b, h, n;
};
template <typename T>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  T l = fromf<T>(lo), h = fromf<T>(hi);
  uint16_t ul, uh;
  memcpy(&ul, &l, 2), memcpy(&uh, &h, 2);
  return static_cast<uint32_t>(ul) | (static_cast<uint32_t>(uh) << 16);
}
template <typename T>
__device__ __forceinline__ uint32_t pack2(T lo, T hi) {
  uint16_t ul, uh;
  memcpy(&ul, &lo, 2), memcpy(&uh, &hi, 2);
  return static_cast<uint32_t>(ul) | (static_cast<uint32_t>(uh) << 16);
}
__device__ __forceinline__ uint32_t ld32(const void* p) { return *reinterpret_cast<const uint32_t*>(p); }

template <typename T, int D>
__global__ void __launch_bounds__(kFaThreads) flash_attention_kernel(T* out, Strides3 os, const T* q, Strides3 qs, const T* k,
                                                                     Strides3 ks, const T* v, Strides3 vs, int H, int Nq,
                                                                     int Nk, float scale) {
  constexpr int LDT = D + 8, CH = D / 8, KS = D / 16, NT = D / 8;
  extern __shared__ __align__(16) unsigned char smem[];
  T* Ks = reinterpret_cast<T*>(smem);
  T* Vs = Ks + kFaKeys * LDT;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int qblocks = (Nq + kFaRows - 1) / kFaRows;
  const int bh = blockIdx.x / qblocks, q0 = (blockIdx.x % qblocks) * kFaRows;
  const int b = bh / H, h = bh % H;
  const T* kb = k + b * ks.b + h * ks.h;
  const T* vb = v + b * vs.b + h * vs.h;
  // This lane's two query rows (g and g + 8 of the warp's 16) as A fragments, for the whole key loop.
  const int n0 = q0 + warp * 16 + g, n1 = n0 + 8;
  const T* qr0 = q + b * qs.b + h * qs.h + static_cast<int64_t>(n0) * qs.n;
  const T* qr1 = qr0 + 8 * qs.n;
  uint32_t qa[KS][4];
#pragma unroll
  for (int kk = 0; kk < KS; ++kk) {
    qa[kk][0] = n0 < Nq ? ld32(qr0 + kk * 16 + 2 * t) : 0u;
    qa[kk][1] = n1 < Nq ? ld32(qr1 + kk * 16 + 2 * t) : 0u;
    qa[kk][2] = n0 < Nq ? ld32(qr0 + kk * 16 + 8 + 2 * t) : 0u;
    qa[kk][3] = n1 < Nq ? ld32(qr1 + kk * 16 + 8 + 2 * t) : 0u;
  }
  float o[NT][4];
#pragma unroll
  for (int i = 0; i < NT; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  for (int k0 = 0; k0 < Nk; k0 += kFaKeys) {
    __syncthreads();  // every warp is done with the previous tile
    for (int i = threadIdx.x; i < kFaKeys * CH; i += kFaThreads) {
      const int r = i / CH, c = (i % CH) * 8;
      uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
      if (k0 + r < Nk) {  // keys past the end: zeros (their P is 0; zero V keeps 0 * V finite)
        kv = *reinterpret_cast<const uint4*>(kb + static_cast<int64_t>(k0 + r) * ks.n + c);
        vv = *reinterpret_cast<const uint4*>(vb + static_cast<int64_t>(k0 + r) * vs.n + c);
      }
      *reinterpret_cast<uint4*>(Ks + r * LDT + c) = kv;
      *reinterpret_cast<uint4*>(Vs + r * LDT + c) = vv;
    }
    __syncthreads();
    // S[16, 64] = Q_w K_tile^T: 8 n-tiles of 8 keys; B[d][key] = K[key][d]
    float sc[8][4];
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
      sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.f;
      const T* kr = Ks + (nt * 8 + g) * LDT + 2 * t;
#pragma unroll
      for (int kk = 0; kk < KS; ++kk) mma16816<T>(sc[nt], qa[kk], ld32(kr + kk * 16), ld32(kr + kk * 16 + 8));
    }
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const bool valid = k0 + nt * 8 + 2 * t + e < Nk;
        sc[nt][e] = valid ? sc[nt][e] * scale : -INFINITY;
        sc[nt][2 + e] = valid ? sc[nt][2 + e] * scale : -INFINITY;
        mx0 = fmaxf(mx0, sc[nt][e]);
        mx1 = fmaxf(mx1, sc[nt][2 + e]);
      }
#pragma unroll
    for (int o2 = 1; o2 <= 2; o2 <<= 1) {  // the 4 lanes of a group hold one row
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, o2));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, o2));
    }
    const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);  // finite: every tile holds a key (k0 < Nk)
    const float c0 = expf(m0 - mn0), c1 = expf(m1 - mn1);    // 0 on the first tile
    float s0 = 0.f, s1 = 0.f;
    uint32_t pa[4][4];  // P as A fragments of the 4 key steps of 16
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
      const float p00 = expf(sc[nt][0] - mn0), p01 = expf(sc[nt][1] - mn0);
      const float p10 = expf(sc[nt][2] - mn1), p11 = expf(sc[nt][3] - mn1);
      s0 += p00 + p01, s1 += p10 + p11;
      const int kk = nt / 2, hi = (nt % 2) * 2;
      pa[kk][hi] = pack2<T>(p00, p01);
      pa[kk][hi + 1] = pack2<T>(p10, p11);
    }
#pragma unroll
    for (int o2 = 1; o2 <= 2; o2 <<= 1) {
      s0 += __shfl_xor_sync(0xffffffffu, s0, o2);
      s1 += __shfl_xor_sync(0xffffffffu, s1, o2);
    }
    l0 = l0 * c0 + s0, l1 = l1 * c1 + s1, m0 = mn0, m1 = mn1;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) o[nt][0] *= c0, o[nt][1] *= c0, o[nt][2] *= c1, o[nt][3] *= c1;
    // O[16, D] += P[16, 64] V_tile[64, D]: B[key][d] = V[key][d], two keys per register
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const T* vc = Vs + nt * 8 + g;
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        const int r = kk * 16 + 2 * t;
        mma16816<T>(o[nt], pa[kk], pack2<T>(vc[r * LDT], vc[(r + 1) * LDT]), pack2<T>(vc[(r + 8) * LDT], vc[(r + 9) * LDT]));
      }
    }
  }
  const float i0 = 1.f / l0, i1 = 1.f / l1;
  T* or0 = out + b * os.b + h * os.h + static_cast<int64_t>(n0) * os.n + 2 * t;
  T* or1 = or0 + 8 * os.n;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    if (n0 < Nq) *reinterpret_cast<uint32_t*>(or0 + nt * 8) = pack2<T>(o[nt][0] * i0, o[nt][1] * i0);
    if (n1 < Nq) *reinterpret_cast<uint32_t*>(or1 + nt * 8) = pack2<T>(o[nt][2] * i1, o[nt][3] * i1);
  }
}
template <typename T, int D>
void launch_flash(T* out, Strides3 os, const T* q, Strides3 qs, const T* k, Strides3 ks, const T* v, Strides3 vs, int64_t B, int H,
                  int Nq, int Nk, float scale, int dev) {
  constexpr size_t shm = flash_smem_bytes<D>();
  static const bool attr = [] {
    TABULA_CUDA_CHECK(cudaFuncSetAttribute(flash_attention_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shm)));
    return true;
  }();
  (void)attr;
  const int64_t blocks = B * H * ((Nq + kFaRows - 1) / kFaRows);
  flash_attention_kernel<T, D><<<static_cast<unsigned>(blocks), kFaThreads, shm, stream(dev)>>>(out, os, q, qs, k, ks, v, vs, H, Nq, Nk, scale);
}

// LayerNorm over 16-bit rows with C % 8 == 0, C <= 256 * PV: a warp per row, 16-byte loads, the row in registers.
template <typename T, int PV>
__global__ void layer_norm_vec_kernel(T* y, const T* x, const float* w, const float* b, int64_t rows, int C, float eps) {
  const int64_t row = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x & 31, chunks = C / 8;
  if (row >= rows) return;
  const uint4* xr = reinterpret_cast<const uint4*>(x + row * C);
  float v[PV * 8];
  float s = 0.f;
#pragma unroll
  for (int t = 0; t < PV; ++t) {
    const int j = lane + 32 * t;
    uint4 u = j < chunks ? xr[j] : make_uint4(0, 0, 0, 0);
    const T* e = reinterpret_cast<const T*>(&u);
#pragma unroll
    for (int q = 0; q < 8; ++q) {
      v[t * 8 + q] = j < chunks ? tof(e[q]) : 0.f;
      s += v[t * 8 + q];
    }
  }
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  const float mean = s / static_cast<float>(C);
  float q2 = 0.f;
#pragma unroll
  for (int t = 0; t < PV; ++t) {
    const bool in = lane + 32 * t < chunks;
#pragma unroll
    for (int q = 0; q < 8; ++q) {
      const float d = in ? v[t * 8 + q] - mean : 0.f;
      q2 += d * d;
    }
  }
  for (int o = 16; o > 0; o >>= 1) q2 += __shfl_xor_sync(0xffffffffu, q2, o);
  const float rstd = rsqrtf(q2 / static_cast<float>(C) + eps);
  uint4* yr = reinterpret_cast<uint4*>(y + row * C);
#pragma unroll
  for (int t = 0; t < PV; ++t) {
    const int j = lane + 32 * t;
    if (j >= chunks) continue;
    uint4 u;
    T* e = reinterpret_cast<T*>(&u);
#pragma unroll
    for (int q = 0; q < 8; ++q) {
      const int c = j * 8 + q;
      float o = (v[t * 8 + q] - mean) * rstd;
      if (w) o *= w[c];
      if (b) o += b[c];
      e[q] = fromf<T>(o);
    }
    yr[j] = u;
  }
}
template <typename T>
bool layer_norm_vec(void* y, const void* x, const float* w, const float* b, int64_t rows, int C, float eps, int dev) {
  if (C % 8 || C > 2048) return false;
  const unsigned blocks = static_cast<unsigned>((rows + 3) / 4);
  const int pv = (C / 8 + 31) / 32;
  T* yp = static_cast<T*>(y);
  const T* xp = static_cast<const T*>(x);
  if (pv <= 1) layer_norm_vec_kernel<T, 1><<<blocks, 128, 0, stream(dev)>>>(yp, xp, w, b, rows, C, eps);
  else if (pv <= 2) layer_norm_vec_kernel<T, 2><<<blocks, 128, 0, stream(dev)>>>(yp, xp, w, b, rows, C, eps);
  else if (pv <= 3) layer_norm_vec_kernel<T, 3><<<blocks, 128, 0, stream(dev)>>>(yp, xp, w, b, rows, C, eps);
  else if (pv <= 4) layer_norm_vec_kernel<T, 4><<<blocks, 128, 0, stream(dev)>>>(yp, xp, w, b, rows, C, eps);
  else if (pv <= 6) layer_norm_vec_kernel<T, 6><<<blocks, 128, 0, stream(dev)>>>(yp, xp, w, b, rows, C, eps);
  else layer_norm_vec_kernel<T, 8><<<blocks, 128, 0, stream(dev)>>>(yp, xp, w, b, rows, C, eps);
  return true;
}

// ---- interpolate: separable taps computed on the host by detail::interpolate_taps (the reference's own) ----
__global__ void interpolate_kernel(void* y, ET yt, const void* x, ET xt, int64_t NC, int64_t H, int64_t W, int64_t Ho,
                                   int64_t Wo, const int64_t* ih, const float* wh, int th, const int64_t* iw, const float* ww,
                                   int tw) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= NC * Ho * Wo) return;
  const int64_t ow = i % Wo, oh = (i / Wo) % Ho, nc = i / (Wo * Ho);
  const int64_t x0 = nc * H * W;
  float acc = 0.f;
  for (int a = 0; a < th; ++a) {
    const float wa = wh[oh * th + a];
    const int64_t r = x0 + ih[oh * th + a] * W;
    float row = 0.f;
    for (int b = 0; b < tw; ++b) row += ww[ow * tw + b] * ld(x, r + iw[ow * tw + b], xt);
    acc += wa * row;
  }
  st(y, i, acc, yt);
}

// ---- cuBLASLt ----
struct Blas {
  cublasLtHandle_t lt = nullptr;
  Tensor workspace;  // 32 MiB, allocated once per device
  std::map<std::string, cublasLtMatmulAlgo_t> algos;  // heuristic choice cached per problem: same kernel every run
};
constexpr size_t kWorkspace = size_t{32} << 20;
std::mutex g_blas_mu;
Blas& blas(int dev) {
  static std::map<int, Blas> handles;
  std::lock_guard<std::mutex> lock(g_blas_mu);
  Blas& b = handles[dev];
  if (!b.lt) {
    TABULA_CUBLAS_CHECK(cublasLtCreate(&b.lt));
    b.workspace = empty({static_cast<int64_t>(kWorkspace)}, dev, DType::u8);
  }
  return b;
}

cudaDataType_t cuda_type(DType d) {
  return d == DType::bf16 ? CUDA_R_16BF : d == DType::f16 ? CUDA_R_16F : CUDA_R_32F;
}
// The largest power of two (<= 256) dividing the address: cuBLASLt chooses kernels for the alignment it is told.
uint32_t alignment_of(const void* p) {
  uint32_t a = 256;
  while (a > 1 && reinterpret_cast<uintptr_t>(p) % a) a >>= 1;
  return a;
}

// Column-major D[m, n] = op(A)[m, k] @ B[k, n] (+ bias[m]) for `batch` strided problems. A/B are f32 or the
// precision's 16-bit copies (`p` is the precision they are stored in and the math runs in); D is f32 or 16-bit
// (`d_type`; a bias has D's type). C (optional, laid out and typed as D) is added: D = A B + C + bias (beta = 1).
// Row-major callers swap operands (see linear/matmul).
void lt_matmul(int dev, bool trans_a, const void* A, int64_t lda, int64_t stride_a, const void* B, int64_t ldb,
               int64_t stride_b, void* D, DType d_type, int64_t m, int64_t n, int64_t k, int64_t batch, const void* bias,
               Precision p, const void* C = nullptr) {
  Blas& bl = blas(dev);
  const cudaDataType_t in_type = p == Precision::bf16 ? CUDA_R_16BF : p == Precision::fp16 ? CUDA_R_16F : CUDA_R_32F;
  const cudaDataType_t d_cuda = cuda_type(d_type);
  const cublasComputeType_t compute = p == Precision::tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                             : CUBLAS_COMPUTE_32F;  // Lt never uses TF32 here
  cublasLtMatmulDesc_t desc;
  TABULA_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, compute, CUDA_R_32F));
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, ld = nullptr;
  auto cleanup = [&] {
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (ld) cublasLtMatrixLayoutDestroy(ld);
    cublasLtMatmulDescDestroy(desc);
  };
  try {
    const cublasOperation_t ta = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = CUBLAS_OP_N;
    TABULA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    TABULA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    if (bias) {
      const cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;  // GELU stays a separate erf kernel: Lt's is tanh-GELU
      TABULA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof(ep)));
      TABULA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
      TABULA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &d_cuda, sizeof(d_cuda)));
    }
    TABULA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&la, in_type, trans_a ? k : m, trans_a ? m : k, lda));
    TABULA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb, in_type, k, n, ldb));
    TABULA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&ld, d_cuda, m, n, m));
    if (batch > 1) {
      const int32_t bc = static_cast<int32_t>(batch);
      const int64_t sd = m * n;
      for (auto [l, s] : {std::pair{la, stride_a}, std::pair{lb, stride_b}, std::pair{ld, sd}}) {
        TABULA_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof(bc)));
        TABULA_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &s, sizeof(s)));
      }
    }
    const uint32_t al_a = alignment_of(A), al_b = alignment_of(B), al_d = alignment_of(D);
    const uint32_t al_c = C ? std::min(alignment_of(C), al_d) : al_d;
    const std::string key = std::to_string(static_cast<int>(p)) + (trans_a ? "T" : "N") + std::to_string(m) + "," +
                            std::to_string(n) + "," + std::to_string(k) + "," + std::to_string(lda) + "," +
                            std::to_string(ldb) + "," + std::to_string(batch) + "," + std::to_string(stride_a) + "," +
                            std::to_string(stride_b) + (bias ? "b" : "") + (C ? "c" : "") + std::string(dtype_name(d_type)) + "@" +
                            std::to_string(al_a) + "," + std::to_string(al_b) + "," + std::to_string(al_c) + "," + std::to_string(al_d);
    cublasLtMatmulAlgo_t algo;
    {
      std::lock_guard<std::mutex> lock(g_blas_mu);
      auto it = bl.algos.find(key);
      if (it != bl.algos.end()) {
        algo = it->second;
      } else {
        cublasLtMatmulPreference_t pref;
        TABULA_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
        const size_t ws = kWorkspace;
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
        // Offsets into a batch (attention chunks) are not 256-byte aligned: say what the operands really are.
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof(al_a));
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof(al_b));
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof(al_c));
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d, sizeof(al_d));
        cublasLtMatmulHeuristicResult_t res{};
        int found = 0;
        const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(bl.lt, desc, la, lb, ld, ld, pref, 1, &res, &found);
        cublasLtMatmulPreferenceDestroy(pref);
        TABULA_CUBLAS_CHECK(st);
        if (found == 0)
          throw std::runtime_error("cuda::matmul: cuBLASLt has no algorithm for m=" + std::to_string(m) + " n=" +
                                   std::to_string(n) + " k=" + std::to_string(k) + " in " +
                                   std::string(precision_name(p)) + " with a " + std::string(dtype_name(d_type)) + " result");
        algo = res.algo;
        bl.algos.emplace(key, algo);
      }
    }
    const float alpha = 1.f, beta = C ? 1.f : 0.f;
    TABULA_CUBLAS_CHECK(cublasLtMatmul(bl.lt, desc, &alpha, A, la, B, lb, &beta, C ? C : D, ld, D, ld, &algo,
                                       bl.workspace.raw(), kWorkspace, stream(dev)));
  } catch (...) {
    cleanup();
    throw;
  }
  cleanup();
}

// ---- cuDNN ----
struct Dnn {
  cudnnHandle_t h = nullptr;
  std::map<std::string, std::pair<cudnnConvolutionFwdAlgo_t, size_t>> algos;
};
Dnn& dnn(int dev) {
  static std::map<int, Dnn> handles;
  std::lock_guard<std::mutex> lock(g_blas_mu);
  Dnn& d = handles[dev];
  if (!d.h) TABULA_CUDNN_CHECK(cudnnCreate(&d.h));
  return d;
}

}  // namespace

std::string_view precision_name(Precision p) {
  switch (p) {
    case Precision::fp32: return "fp32";
    case Precision::tf32: return "tf32";
    case Precision::bf16: return "bf16";
    case Precision::fp16: return "fp16";
  }
  return "?";
}
std::optional<Precision> precision_from_name(std::string_view s) {
  for (Precision p : {Precision::fp32, Precision::tf32, Precision::bf16, Precision::fp16})
    if (precision_name(p) == s) return p;
  return std::nullopt;
}
void set_precision(Precision p) { g_precision = p; }
Precision precision() { return g_precision; }

namespace {
// y = act(x) over dense memory of the same layout (y may be x: in place).
void apply_activation(Tensor& y, const Tensor& x, Activation act, int dev) {
  const int64_t n = x.numel();
  if (n == 0) return;
  if (vec8_ok(x) && vec8_ok(y)) {
    if (x.dtype() == DType::bf16)
      act_vec8_kernel<<<blocks_for(n / 8), 256, 0, stream(dev)>>>(static_cast<__nv_bfloat16*>(y.raw()),
                                                                  static_cast<const __nv_bfloat16*>(x.raw()), n / 8, act);
    else
      act_vec8_kernel<<<blocks_for(n / 8), 256, 0, stream(dev)>>>(static_cast<__half*>(y.raw()), static_cast<const __half*>(x.raw()),
                                                                  n / 8, act);
  } else {
    act_kernel<<<blocks_for(n), 256, 0, stream(dev)>>>(y.raw(), et(y), x.raw(), et(x), n, act);
  }
  LAUNCH_CHECK();
}
}  // namespace

Tensor contiguous(const Tensor& x) {
  const int dev = common_device("cuda::contiguous", {&x});
  if (x.is_contiguous()) return x;
  Tensor y = empty(x.shape(), dev, x.dtype());
  copy_into("cuda::contiguous", y, x, dev);
  return y;
}

Tensor activation(const Tensor& x_in, Activation act) {
  const int dev = common_device("cuda::activation", {&x_in});
  Tensor x = dense_any_layout(x_in) ? x_in : dense(x_in, dev);
  Tensor y = empty_like_layout(x, dev, x.dtype());
  apply_activation(y, x, act, dev);
  return y;
}
Tensor relu(const Tensor& x) { return activation(x, Activation::relu); }
Tensor gelu(const Tensor& x, bool tanh_approximation) {
  return activation(x, tanh_approximation ? Activation::gelu_tanh : Activation::gelu);
}
Tensor silu(const Tensor& x) { return activation(x, Activation::silu); }

Tensor swiglu(const Tensor& x_in) {
  const int dev = common_device("cuda::swiglu", {&x_in});
  const int64_t C = x_in.size(-1);
  if (C % 2) op_error("cuda::swiglu", "last dim must be even, got " + x_in.str());
  Tensor x = dense(x_in, dev);
  Shape os = x.shape();
  os.back() = C / 2;
  Tensor y = empty(os, dev, x.dtype());
  const int64_t rows = C ? x.numel() / C : 0;
  if (y.numel()) swiglu_kernel<<<blocks_for(y.numel()), 256, 0, stream(dev)>>>(y.raw(), et(y), x.raw(), et(x), rows, C / 2);
  LAUNCH_CHECK();
  return y;
}

Tensor add(const Tensor& a, const Tensor& b) { return binary("cuda::add", a, b, BinOp::add); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary("cuda::mul", a, b, BinOp::mul); }
Tensor mul(const Tensor& x_in, float s) {
  const int dev = common_device("cuda::mul", {&x_in});
  Tensor x = dense_any_layout(x_in) ? x_in : dense(x_in, dev);
  Tensor y = empty_like_layout(x, dev, x.dtype());
  if (x.numel()) scale_kernel<<<blocks_for(x.numel()), 256, 0, stream(dev)>>>(y.raw(), et(y), x.raw(), et(x), x.numel(), s);
  LAUNCH_CHECK();
  return y;
}
Tensor layer_scale(const Tensor& x, const Tensor& gamma) {
  if (gamma.dim() != 1 || gamma.numel() != x.size(-1))
    op_error("cuda::layer_scale", "gamma must be [" + std::to_string(x.size(-1)) + "], got " + gamma.str());
  return binary("cuda::layer_scale", x, gamma, BinOp::mul);
}

Tensor batch_norm(const Tensor& x_in, const Tensor& w, const Tensor& b, const Tensor& mean, const Tensor& var,
                  double eps) {
  const int dev = common_device("cuda::batch_norm", {&x_in, &w, &b, &mean, &var});
  if (x_in.dim() < 2) op_error("cuda::batch_norm", "expects [N, C, ...], got " + x_in.str());
  const int64_t C = x_in.size(1);
  for (const Tensor* t : {&w, &b, &mean, &var})
    if (t->defined() && t->numel() != C) op_error("cuda::batch_norm", "per-channel tensors must have " + std::to_string(C) + " elements, got " + t->str());
  if (!mean.defined() || !var.defined()) op_error("cuda::batch_norm", "running_mean and running_var are required");
  // Channels-last input keeps its layout (channel = i % C); anything else is made contiguous NCHW.
  const bool cl = !x_in.is_contiguous() && is_channels_last(x_in) && aligned(x_in.raw());
  Tensor x = cl ? x_in : dense(x_in, dev), y = empty_like_layout(x, dev, x.dtype());
  Tensor sc = empty({C}, dev), sh = empty({C}, dev);
  auto f32 = [&](const Tensor& t) { return t.defined() ? dense_as(t, dev, DType::f32) : Tensor(); };
  Tensor wd = f32(w), bd = f32(b), md = f32(mean), vd = f32(var);
  bn_coeff_kernel<<<blocks_for(C), 256, 0, stream(dev)>>>(fptr_mut(sc), fptr_mut(sh), wd.defined() ? fptr(wd) : nullptr,
                                                          bd.defined() ? fptr(bd) : nullptr, fptr(md), fptr(vd), C,
                                                          static_cast<float>(eps));
  LAUNCH_CHECK();
  const int64_t inner = cl ? 1 : (C ? x.numel() / (x.size(0) * C) : 1);
  if (x.numel())
    channel_affine_kernel<<<blocks_for(x.numel()), 256, 0, stream(dev)>>>(y.raw(), et(y), x.raw(), et(x), x.numel(),
                                                                          std::max<int64_t>(inner, 1), C, fptr(sc), fptr(sh));
  LAUNCH_CHECK();
  return y;
}

Tensor layer_norm(const Tensor& x_in, const Tensor& w, const Tensor& b, double eps) {
  const int dev = common_device("cuda::layer_norm", {&x_in, &w, &b});
  const int64_t C = x_in.size(-1), rows = C ? x_in.numel() / C : 0;
  for (const Tensor* t : {&w, &b})
    if (t->defined() && t->numel() != C)
      op_error("cuda::layer_norm", "weight/bias must have " + std::to_string(C) + " elements, got " + t->str());
  Tensor x = dense(x_in, dev), y = empty(x.shape(), dev, x.dtype());
  Tensor wd = w.defined() ? dense_as(w, dev, DType::f32) : Tensor(), bd = b.defined() ? dense_as(b, dev, DType::f32) : Tensor();
  const float* wp = wd.defined() ? fptr(wd) : nullptr;
  const float* bp = bd.defined() ? fptr(bd) : nullptr;
  const bool vec = rows > 0 && x.dtype() == y.dtype() && aligned(x.raw(), 16) &&
                   ((x.dtype() == DType::bf16 && layer_norm_vec<__nv_bfloat16>(y.raw(), x.raw(), wp, bp, rows, static_cast<int>(C), static_cast<float>(eps), dev)) ||
                    (x.dtype() == DType::f16 && layer_norm_vec<__half>(y.raw(), x.raw(), wp, bp, rows, static_cast<int>(C), static_cast<float>(eps), dev)));
  if (!vec && rows > 0 && C <= kWarpRowMax)
    launch_warp_rows<LayerNormWarp>(rows, static_cast<int>(C), dev, y.raw(), et(y), static_cast<const void*>(x.raw()), et(x), wp, bp,
                                    rows, static_cast<int>(C), static_cast<float>(eps));
  else if (!vec && rows > 0)
    layer_norm_kernel<<<static_cast<unsigned>(rows), 256, 0, stream(dev)>>>(y.raw(), et(y), x.raw(), et(x), wp, bp, C,
                                                                           static_cast<float>(eps));
  LAUNCH_CHECK();
  return y;
}

Tensor softmax(const Tensor& x_in, int64_t dim) {
  const int dev = common_device("cuda::softmax", {&x_in});
  dim = x_in.wrap_dim(dim);
  Tensor x = dense(x_in.transpose(dim, -1), dev);  // rows along the softmax dim
  Tensor y = empty(x.shape(), dev, x.dtype());
  const int64_t C = x.size(-1), rows = C ? x.numel() / C : 0;
  if (rows > 0) softmax_kernel<<<static_cast<unsigned>(rows), 256, 0, stream(dev)>>>(y.raw(), et(y), x.raw(), et(x), C);
  LAUNCH_CHECK();
  return contiguous(y.transpose(dim, -1));
}

Tensor pool(const Tensor& x_in, Pool p, int64_t num_prefix) {
  const int dev = common_device("cuda::pool", {&x_in});
  if (p == Pool::none) return x_in;
  int64_t B, L, C, first, sb, sl, sc;
  Tensor x;
  if (x_in.dim() == 4) {
    if (p == Pool::cls || p == Pool::mean || p == Pool::cls_mean)
      op_error("cuda::pool", std::string(pool_name(p)) + " pooling needs tokens [B, N, C], got a feature map " + x_in.str());
    const bool cl = !x_in.is_contiguous() && is_channels_last(x_in);
    x = cl ? x_in : dense(x_in, dev);
    B = x.size(0), C = x.size(1), L = x.size(2) * x.size(3), first = 0;
    if (cl) sb = C * L, sc = 1, sl = C;  // (h, w) -> l = h * W + w at offset l * C
    else sb = C * L, sc = L, sl = 1;
  } else if (x_in.dim() == 3) {
    x = dense(x_in, dev);
    B = x.size(0), L = x.size(1), C = x.size(2), first = num_prefix;
    if (num_prefix < 0) op_error("cuda::pool", "negative number of prefix tokens");
    if (p != Pool::cls && first >= L)
      op_error("cuda::pool", "no patch tokens to pool: " + std::to_string(L) + " tokens, " + std::to_string(num_prefix) + " prefix");
    if ((p == Pool::cls || p == Pool::cls_mean) && num_prefix < 1)
      op_error("cuda::pool", "cls pooling needs a prefix (class) token");
    sb = L * C, sl = C, sc = 1;
  } else {
    op_error("cuda::pool", "expects [B, C, H, W] or [B, N, C], got " + x_in.str());
  }
  Tensor y = empty({B, p == Pool::cls_mean ? 2 * C : C}, dev);
  if (B * C > 0)
    pool_kernel<<<blocks_for(B * C), 256, 0, stream(dev)>>>(fptr_mut(y), x.raw(), et(x), B, L, C, first, sb, sl, sc, p);
  LAUNCH_CHECK();
  return y;
}

Tensor max_pool2d(const Tensor& x_in, std::array<int64_t, 2> k, std::array<int64_t, 2> s, std::array<int64_t, 2> pd,
                  std::array<int64_t, 2> d, bool ceil_mode) {
  const int dev = common_device("cuda::max_pool2d", {&x_in});
  if (x_in.dim() != 4) op_error("cuda::max_pool2d", "expects [N, C, H, W], got " + x_in.str());
  detail::check_pool_args("cuda::max_pool2d", k, s, pd, d);
  const int64_t N = x_in.size(0), C = x_in.size(1), H = x_in.size(2), W = x_in.size(3);
  auto [Ho, Wo] = detail::pool_output_hw("cuda::max_pool2d", H, W, k, s, pd, d, ceil_mode);
  const bool cl = !x_in.is_contiguous() && is_channels_last(x_in);  // the result keeps the input's layout
  Tensor y = cl ? empty_channels_last(N, C, Ho, Wo, dev, x_in.dtype()) : empty({N, C, Ho, Wo}, dev, x_in.dtype());
  if (cl && C % 8 == 0 && x_in.dtype() != DType::f32 && aligned(x_in.raw(), 16) && y.numel()) {
    const int64_t n = y.numel() / 8;
    auto I = [](int64_t v) { return static_cast<int>(v); };
#define TABULA_MAXPOOL8(T)                                                                                                    \
  max_pool_cl_vec8_kernel<T><<<blocks_for(n), 256, 0, stream(dev)>>>(static_cast<T*>(y.raw()), static_cast<const T*>(x_in.raw()), N, \
                                                                      I(C), I(H), I(W), I(Ho), I(Wo), I(k[0]), I(k[1]), I(s[0]),     \
                                                                      I(s[1]), I(pd[0]), I(pd[1]), I(d[0]), I(d[1]))
    if (x_in.dtype() == DType::bf16) TABULA_MAXPOOL8(__nv_bfloat16);
    else TABULA_MAXPOOL8(__half);
#undef TABULA_MAXPOOL8
    LAUNCH_CHECK();
    return y;
  }
  if (y.numel())
    max_pool_kernel<<<blocks_for(y.numel()), 256, 0, stream(dev)>>>(
        y.raw(), et(y), x_in.raw(), et(x_in), map4(x_in, Ho, Wo, cl), static_cast<int>(k[0]), static_cast<int>(k[1]),
        static_cast<int>(s[0]), static_cast<int>(s[1]), static_cast<int>(pd[0]), static_cast<int>(pd[1]),
        static_cast<int>(d[0]), static_cast<int>(d[1]));
  LAUNCH_CHECK();
  return y;
}

Tensor adaptive_avg_pool2d(const Tensor& x_in, std::array<int64_t, 2> os) {
  const int dev = common_device("cuda::adaptive_avg_pool2d", {&x_in});
  if (x_in.dim() != 4) op_error("cuda::adaptive_avg_pool2d", "expects [N, C, H, W], got " + x_in.str());
  if (os[0] <= 0 || os[1] <= 0) op_error("cuda::adaptive_avg_pool2d", "output size must be positive");
  const int64_t N = x_in.size(0), C = x_in.size(1);
  // A channels-last input gives a channels-last result, except 1x1 (the same memory either way: contiguous).
  const bool cl = !x_in.is_contiguous() && is_channels_last(x_in) && os[0] * os[1] > 1;
  Tensor y = cl ? empty_channels_last(N, C, os[0], os[1], dev, x_in.dtype()) : empty({N, C, os[0], os[1]}, dev, x_in.dtype());
  if (y.numel())
    adaptive_avg_kernel<<<blocks_for(y.numel()), 256, 0, stream(dev)>>>(y.raw(), et(y), x_in.raw(), et(x_in),
                                                                        map4(x_in, os[0], os[1], cl));
  LAUNCH_CHECK();
  return y;
}

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  if (xs.empty()) op_error("cuda::cat", "no tensors");
  int dev = -1;
  DType ydt = DType::f32;
  for (const Tensor& t : xs) {
    dev = common_device("cuda::cat", {&t, &xs[0]});
    if (t.dtype() != DType::f32) ydt = t.dtype();  // 16-bit activations win over f32 parameters (class token)
  }
  const int64_t nd = xs[0].dim();
  if (dim < -nd || dim >= nd) op_error("cuda::cat", "dim " + std::to_string(dim) + " out of range for " + xs[0].str());
  if (dim < 0) dim += nd;
  Shape out = xs[0].shape();
  out[dim] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    if (xs[i].dim() != nd) op_error("cuda::cat", "tensor " + std::to_string(i) + " " + xs[i].str() + " has a different rank");
    for (int64_t d = 0; d < nd; ++d)
      if (d != dim && xs[i].size(d) != xs[0].size(d))
        op_error("cuda::cat", "tensor " + std::to_string(i) + " " + xs[i].str() + " differs from " + xs[0].str() + " outside dim " + std::to_string(dim));
    out[dim] += xs[i].size(dim);
  }
  Tensor y = empty(out, dev, ydt);
  int64_t at = 0;
  for (const Tensor& t : xs) {
    Tensor dst = y.slice(dim, at, at + t.size(dim));
    copy_into("cuda::cat", dst, t, dev);
    at += t.size(dim);
  }
  return y;
}

// Padded [out, T] tables (index 0 / weight 0 beyond an output's own taps) uploaded to the device.
std::pair<Tensor, Tensor> taps_on_device(const detail::InterpTaps& t, int dev, int& width) {
  size_t T = 1;
  for (const auto& v : t.index) T = std::max(T, v.size());
  const int64_t out = static_cast<int64_t>(t.index.size());
  Tensor idx = Tensor::heap({out, static_cast<int64_t>(T)}, DType::i64), w = Tensor::heap({out, static_cast<int64_t>(T)}, DType::f32);
  for (int64_t i = 0; i < out; ++i)
    for (size_t j = 0; j < T; ++j) {
      const bool in = j < t.index[i].size();
      idx.data<int64_t>()[i * T + j] = in ? t.index[i][j] : 0;
      w.data<float>()[i * T + j] = in ? static_cast<float>(t.weight[i][j]) : 0.f;
    }
  width = static_cast<int>(T);
  return {to_device(idx, dev), to_device(w, dev)};
}

Tensor interpolate(const Tensor& x_in, const InterpolateOptions& o) {
  const int dev = common_device("cuda::interpolate", {&x_in});
  if (x_in.dim() != 4) op_error("cuda::interpolate", "expects [N, C, H, W], got " + x_in.str());
  const int64_t N = x_in.size(0), C = x_in.size(1), H = x_in.size(2), W = x_in.size(3);
  auto [Ho, Wo] = detail::interpolate_size("cuda::interpolate", H, W, o);
  std::optional<double> sh, sw;
  if (o.scale_factor) sh = (*o.scale_factor)[0], sw = (*o.scale_factor)[1];
  int th = 0, tw = 0;
  auto [ih, wh] = taps_on_device(detail::interpolate_taps(H, Ho, sh, o), dev, th);
  auto [iw, ww] = taps_on_device(detail::interpolate_taps(W, Wo, sw, o), dev, tw);
  Tensor x = dense(x_in, dev), y = empty({N, C, Ho, Wo}, dev, x.dtype());
  if (y.numel())
    interpolate_kernel<<<blocks_for(y.numel()), 256, 0, stream(dev)>>>(
        y.raw(), et(y), x.raw(), et(x), N * C, H, W, Ho, Wo, ih.data<int64_t>(), fptr(wh), th, iw.data<int64_t>(), fptr(ww), tw);
  LAUNCH_CHECK();
  // The tap tables go back to the cache on return; a later allocation reusing them is ordered after this kernel
  // on the same stream, so no synchronisation is needed.
  return y;
}

namespace {
DType operand_dtype() { return operand_dtype(g_precision); }

// A linear weight as the GEMM consumes it: f32 weights are rounded here (per call), weights from convert_weight
// are used as they are after checking they were converted for the current precision.
Tensor weight_operand(std::string_view op, const Tensor& w, int dev) {
  if (!w.defined()) op_error(op, "weight is undefined");
  const int d = device_of(op, w);
  if (d != dev) op_error(op, "weight on cuda:" + std::to_string(d) + ", input on cuda:" + std::to_string(dev));
  if (w.dtype() == DType::f32) return lowered(w, dev, g_precision);
  if (w.dtype() != operand_dtype())
    op_error(op, "weight " + w.str() + " was converted for another precision: " + std::string(precision_name(g_precision)) +
                     " needs " + std::string(dtype_name(operand_dtype())) + " (or f32)");
  if (!w.is_contiguous() || !aligned(w.raw()))
    op_error(op, "a converted weight must be the contiguous tensor convert_weight returned, got a view " + w.str());
  return w;
}

// Bytes of `elems` elements of t's type past t's start (batched operands split into chunks).
void* at_elem(Tensor& t, int64_t elems) { return static_cast<char*>(t.raw()) + elems * static_cast<int64_t>(dtype_size(t.dtype())); }

}  // namespace

Tensor convert_weight(const Tensor& w) {
  const int dev = common_device("cuda::convert_weight", {&w});
  return lowered(w, dev, g_precision);
}

// The result has the input's storage type: f32 activations give f32 (the GEMM rounds its operands to the
// precision), 16-bit activations give 16-bit results written by the GEMM itself, bias included.
Tensor linear(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, Activation act, const Tensor& residual) {
  const int dev = common_device("cuda::linear", {&x_in, &b_in, &residual});
  if (w_in.dim() != 2 || x_in.dim() < 1 || x_in.size(-1) != w_in.size(1))
    op_error("cuda::linear", "input " + x_in.str() + " does not match weight " + w_in.str());
  const int64_t K = w_in.size(1), N = w_in.size(0), M = K ? x_in.numel() / K : 0;
  if (b_in.defined() && b_in.numel() != N) op_error("cuda::linear", "bias must have " + std::to_string(N) + " elements, got " + b_in.str());
  Shape os = x_in.shape();
  os.back() = N;
  const DType ydt = x_in.dtype();
  Tensor y = empty(os, dev, ydt);
  if (M == 0 || N == 0) return y;
  if (K == 0) op_error("cuda::linear", "in_features is 0");
  Tensor x = lowered(x_in, dev, g_precision), w = weight_operand("cuda::linear", w_in, dev);
  Tensor b = b_in.defined() ? dense_as(b_in, dev, ydt) : Tensor();
  Tensor r;
  if (residual.defined()) {
    if (residual.shape() != y.shape()) op_error("cuda::linear", "residual must be " + y.str() + ", got " + residual.str());
    r = dense_as(residual, dev, ydt);
  }
  // Row-major Y[M, N] = X[M, K] W[N, K]^T  <=>  column-major Y^T[N, M] = W^T . X^T with W stored K x N (ld K).
  lt_matmul(dev, true, w.raw(), K, 0, x.raw(), K, 0, y.raw(), ydt, N, M, K, 1, b.defined() ? b.raw() : nullptr, g_precision,
            r.defined() ? r.raw() : nullptr);
  if (act != Activation::none) apply_activation(y, y, act, dev);
  return y;
}

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  const int dev = common_device("cuda::matmul", {&a_in, &b_in});
  if (a_in.dim() < 2 || b_in.dim() < 2) op_error("cuda::matmul", "operands must be at least 2-D, got " + a_in.str() + " and " + b_in.str());
  const int64_t M = a_in.size(-2), K = a_in.size(-1), N = b_in.size(-1);
  if (b_in.size(-2) != K) op_error("cuda::matmul", "inner dims differ: " + a_in.str() + " @ " + b_in.str());
  int64_t batch = 1;
  for (int64_t d = 0; d + 2 < a_in.dim(); ++d) batch *= a_in.size(d);
  if (b_in.dim() > 2) {
    if (b_in.dim() != a_in.dim()) op_error("cuda::matmul", "batch dims differ: " + a_in.str() + " @ " + b_in.str());
    for (int64_t d = 0; d + 2 < a_in.dim(); ++d)
      if (a_in.size(d) != b_in.size(d)) op_error("cuda::matmul", "batch dims differ: " + a_in.str() + " @ " + b_in.str());
  }
  Shape os = a_in.shape();
  os.back() = N;
  const DType ydt = result_dtype({&a_in, &b_in});
  Tensor y = empty(os, dev, ydt);
  if (y.numel() == 0) return y;
  if (K == 0) op_error("cuda::matmul", "inner dimension is 0");
  Tensor a = lowered(a_in, dev, g_precision), b = lowered(b_in, dev, g_precision);
  // Row-major C = A B  <=>  column-major C^T[N, M] = B^T[N, K] . A^T[K, M] (B as N x K with ld N, A as K x M, ld K).
  if (b_in.dim() == 2)  // broadcast b: fold the batch into M
    lt_matmul(dev, false, b.raw(), N, 0, a.raw(), K, 0, y.raw(), ydt, N, batch * M, K, 1, nullptr, g_precision);
  else
    lt_matmul(dev, false, b.raw(), N, K * N, a.raw(), K, M * K, y.raw(), ydt, N, M, K, batch, nullptr, g_precision);
  return y;
}

Tensor scaled_dot_product_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                                    std::optional<double> scale_opt, Tensor* attn_probs) {
  const char* op = "cuda::scaled_dot_product_attention";
  const int dev = common_device(op, {&q_in, &k_in, &v_in});
  if (q_in.dim() != 4 || k_in.dim() != 4 || v_in.dim() != 4)
    op_error(op, "expects q/k/v [B, H, N, D], got " + q_in.str() + ", " + k_in.str() + ", " + v_in.str());
  const int64_t B = q_in.size(0), H = q_in.size(1), Nq = q_in.size(2), D = q_in.size(3), Nk = k_in.size(2),
                Dv = v_in.size(3);
  if (k_in.size(0) != B || v_in.size(0) != B || k_in.size(1) != H || v_in.size(1) != H || k_in.size(3) != D ||
      v_in.size(2) != Nk)
    op_error(op, "shapes do not match: q " + q_in.str() + ", k " + k_in.str() + ", v " + v_in.str());
  if (D > kMaxHeadDim || Dv > kMaxHeadDim) op_error(op, "head dim above 256 is not supported on cuda: " + q_in.str());
  if (Nk == 0) op_error(op, "no keys");
  const float scale = static_cast<float>(scale_opt ? *scale_opt : 1.0 / std::sqrt(static_cast<double>(D)));
  const DType ydt = result_dtype({&q_in, &k_in, &v_in});
  const int64_t BH = B * H, rows = BH * Nq;
  constexpr size_t kAttnScoresBudget = size_t{4} << 30;
  const bool half = g_precision == Precision::bf16 || g_precision == Precision::fp16;

  // 16-bit activations (a bf16/fp16 forward), no probabilities asked for: as torch's fused attention, in chunks of
  // (batch, head) pairs whose scores fit the budget. S = Q K^T from the 16-bit q, k with fp32 accumulation and fp32
  // scores, P = softmax(S * scale) in fp32 stored in 16 bits, O = P V on the tensor cores in 16 bits.
  if (half && ydt != DType::f32 && !attn_probs && D == Dv && (D == 64 || D == 80 || D == 96 || D == 128) &&
      q_in.dtype() == operand_dtype() && k_in.dtype() == q_in.dtype() && v_in.dtype() == q_in.dtype() && rows > 0 &&
      B * H * ((Nq + kFaRows - 1) / kFaRows) <= 0x7fffffff) {
    // q/k/v read in place when each row of D is 16-byte aligned; else one dense copy each.
    auto rows_ok = [](const Tensor& t) {
      return t.stride(3) == 1 && t.stride(0) % 8 == 0 && t.stride(1) % 8 == 0 && t.stride(2) % 8 == 0 && aligned(t.raw(), 16);
    };
    Tensor q = rows_ok(q_in) ? q_in : dense(q_in, dev), k = rows_ok(k_in) ? k_in : dense(k_in, dev);
    Tensor v = rows_ok(v_in) ? v_in : dense(v_in, dev);
    // The result is stored [B, Nq, H, D] (what the module's transpose(1, 2).reshape reads) and returned as the
    // [B, H, Nq, D] view, as the CPU attention does.
    Tensor out = empty({B, Nq, H, D}, dev, ydt).permute({0, 2, 1, 3});
    auto s3 = [](const Tensor& t) { return Strides3{t.stride(0), t.stride(1), t.stride(2)}; };
    const int Hi = static_cast<int>(H), Nqi = static_cast<int>(Nq), Nki = static_cast<int>(Nk);
#define TABULA_FLASH(T, DD)                                                                                                  \
  launch_flash<T, DD>(static_cast<T*>(out.raw()), s3(out), static_cast<const T*>(q.raw()), s3(q), static_cast<const T*>(k.raw()), \
                      s3(k), static_cast<const T*>(v.raw()), s3(v), B, Hi, Nqi, Nki, scale, dev)
    if (ydt == DType::bf16) {
      if (D == 64) TABULA_FLASH(__nv_bfloat16, 64);
      else if (D == 80) TABULA_FLASH(__nv_bfloat16, 80);
      else if (D == 96) TABULA_FLASH(__nv_bfloat16, 96);
      else TABULA_FLASH(__nv_bfloat16, 128);
    } else {
      if (D == 64) TABULA_FLASH(__half, 64);
      else if (D == 80) TABULA_FLASH(__half, 80);
      else if (D == 96) TABULA_FLASH(__half, 96);
      else TABULA_FLASH(__half, 128);
    }
#undef TABULA_FLASH
    LAUNCH_CHECK();
    return out;
  }
  if (half && ydt != DType::f32 && !attn_probs) {
    const DType opd = operand_dtype();
    Tensor q = dense_as(q_in, dev, opd), k = dense_as(k_in, dev, opd), v = dense_as(v_in, dev, opd);
    Tensor out = empty({B, H, Nq, Dv}, dev, ydt);
    if (rows == 0) return out;
    const int64_t per = Nq * Nk;
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(BH, static_cast<int64_t>(kAttnScoresBudget / (static_cast<size_t>(per) * 6))));
    Tensor S = empty({chunk * per}, dev), P = empty({chunk * per}, dev, opd);
    const unsigned threads = Nk >= 256 ? 256 : 128;
    for (int64_t c0 = 0; c0 < BH; c0 += chunk) {
      const int64_t cnt = std::min(chunk, BH - c0);
      // column-major S^T[Nk, Nq] = K[Nk, D] . Q^T[D, Nq] per (batch, head)
      lt_matmul(dev, true, at_elem(k, c0 * Nk * D), D, Nk * D, at_elem(q, c0 * Nq * D), D, Nq * D, S.raw(), DType::f32, Nk, Nq,
                D, cnt, nullptr, g_precision);
      if (Nk <= kWarpRowMax)
        launch_warp_rows<SoftmaxWarp>(cnt * Nq, static_cast<int>(Nk), dev, P.raw(), et(P), static_cast<const float*>(S.raw()), cnt * Nq,
                                      static_cast<int>(Nk), scale);
      else
        scaled_softmax_kernel<<<static_cast<unsigned>(cnt * Nq), threads, 0, stream(dev)>>>(P.raw(), et(P), fptr(S), Nk, scale);
      LAUNCH_CHECK();
      // column-major O^T[Dv, Nq] = V^T[Dv, Nk] . P^T[Nk, Nq]
      lt_matmul(dev, false, at_elem(v, c0 * Nk * Dv), Dv, Nk * Dv, P.raw(), Nk, Nq * Nk, at_elem(out, c0 * Nq * Dv), ydt, Dv, Nq,
                Nk, cnt, nullptr, g_precision);
    }
    return out;
  }

  // f32 activations (and any probabilities request): the inputs in f32, only q, k, v rounded to the precision.
  Tensor q = dense_as(q_in, dev, DType::f32), k = dense_as(k_in, dev, DType::f32), v = dense_as(v_in, dev, DType::f32);
  Tensor out = empty({B, H, Nq, Dv}, dev);
  auto result = [&](Tensor o) { return ydt == DType::f32 ? o : dense_as(o, dev, ydt); };
  if (rows == 0) return result(out);
  // The fast path: two cuBLASLt batched GEMMs around a row softmax, S = Q K^T (q, k rounded to the precision,
  // fp32 accumulation), P = softmax(S * scale) in fp32 (it is also the attention-probabilities tap), O = P V in
  // full fp32 with v rounded to the precision -- so only q, k, v are rounded, exactly as the reference is given
  // them, and tf32 leaves attention in fp32. It materialises S (B*H*Nq*Nk floats); past kAttnScoresBudget the
  // streaming kernels below take over.
  const Precision qk_p = half ? g_precision : Precision::fp32;
  if (static_cast<size_t>(BH * Nq * Nk) * sizeof(float) <= kAttnScoresBudget) {
    Tensor probs = empty({B, H, Nq, Nk}, dev);
    Tensor ql = lowered(q, dev, qk_p), kl = lowered(k, dev, qk_p);
    lt_matmul(dev, true, kl.raw(), D, Nk * D, ql.raw(), D, Nq * D, probs.raw(), DType::f32, Nk, Nq, D, BH, nullptr, qk_p);
    const unsigned threads = Nk >= 256 ? 256 : 128;
    scaled_softmax_kernel<<<static_cast<unsigned>(BH * Nq), threads, 0, stream(dev)>>>(probs.raw(), ET::f32, fptr(probs), Nk, scale);
    LAUNCH_CHECK();
    Tensor vr = v;
    if (qk_p != Precision::fp32) {
      vr = empty(v.shape(), dev);
      round_kernel<<<blocks_for(v.numel()), 256, 0, stream(dev)>>>(fptr_mut(vr), fptr(v), v.numel(), qk_p);
      LAUNCH_CHECK();
    }
    lt_matmul(dev, false, vr.raw(), Dv, Nk * Dv, probs.raw(), Nk, Nq * Nk, out.raw(), DType::f32, Dv, Nq, Nk, BH, nullptr,
              Precision::fp32);
    if (attn_probs) *attn_probs = probs;
    return result(out);
  }
  // Too long for the scores in memory: fp32 or a probabilities request take the exact kernel (one row of scores
  // in shared memory), the rest the flash-style streaming kernel.
  if (attn_probs || g_precision == Precision::fp32) {
    Tensor probs = attn_probs ? empty({B, H, Nq, Nk}, dev) : Tensor();
    // The row of Nk scores, plus 16 bytes: compute-sanitizer saw the compiler's vectorised reads of the row's
    // tail (LDS of 3 floats at the last element) step past an allocation of exactly Nk floats.
    const size_t shm = (static_cast<size_t>(Nk) + 4) * sizeof(float);
    if (shm > 200 * 1024) op_error(op, "exact attention keeps a row of scores in shared memory: Nk=" + std::to_string(Nk) + " is too long");
    if (shm > 48 * 1024)
      TABULA_CUDA_CHECK(cudaFuncSetAttribute(attention_exact_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shm)));
    attention_exact_kernel<<<static_cast<unsigned>(rows), 128, shm, stream(dev)>>>(
        fptr_mut(out), probs.defined() ? fptr_mut(probs) : nullptr, fptr(q), fptr(k), fptr(v), Nq, Nk,
        static_cast<int>(D), static_cast<int>(Dv), scale, g_precision);
    LAUNCH_CHECK();
    if (attn_probs) *attn_probs = probs;
    return result(out);
  }
  const int64_t blocks = B * H * ((Nq + kFlashRows - 1) / kFlashRows);
  if (blocks > 0x7fffffff) op_error(op, "too many query rows for one launch: " + q_in.str());
  attention_flash_kernel<<<static_cast<unsigned>(blocks), kFlashRows * 32, 0, stream(dev)>>>(
      fptr_mut(out), fptr(q), fptr(k), fptr(v), Nq, Nk, static_cast<int>(D), static_cast<int>(Dv), scale, g_precision);
  LAUNCH_CHECK();
  return result(out);
}

namespace {
// The cuDNN descriptors of one forward convolution (released with the object) and the algorithm for it: cuDNN's
// heuristics only (no timing, so the choice is the same every run), deterministic algorithms only, cached per
// shape and precision. gemm_first (fp32 fidelity): the first usable implicit-GEMM/GEMM algorithm -- a plain dot
// product per output, like the reference -- and only when cuDNN offers none, any deterministic one (FFT/Winograd
// round differently); otherwise cuDNN's own order.
struct ConvPlan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t c = nullptr;
  cudnnConvolutionFwdAlgo_t algo{};
  size_t workspace = 0;

  ConvPlan(Dnn& dn, const char* op, cudnnTensorFormat_t fmt, cudnnDataType_t dt, cudnnMathType_t math, const std::string& key_prefix,
           const Shape& xs, const Shape& ws, int64_t Ho, int64_t Wo, const Conv2dOptions& o, bool gemm_first) {
    try {
      auto I = [](int64_t v) { return static_cast<int>(v); };
      TABULA_CUDNN_CHECK(cudnnCreateTensorDescriptor(&x));
      TABULA_CUDNN_CHECK(cudnnCreateTensorDescriptor(&y));
      TABULA_CUDNN_CHECK(cudnnCreateFilterDescriptor(&w));
      TABULA_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&c));
      TABULA_CUDNN_CHECK(cudnnSetTensor4dDescriptor(x, fmt, dt, I(xs[0]), I(xs[1]), I(xs[2]), I(xs[3])));
      TABULA_CUDNN_CHECK(cudnnSetTensor4dDescriptor(y, fmt, dt, I(xs[0]), I(ws[0]), I(Ho), I(Wo)));
      TABULA_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w, dt, fmt, I(ws[0]), I(ws[1]), I(ws[2]), I(ws[3])));
      TABULA_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(c, I(o.padding[0]), I(o.padding[1]), I(o.stride[0]), I(o.stride[1]),
                                                         I(o.dilation[0]), I(o.dilation[1]), CUDNN_CROSS_CORRELATION,
                                                         CUDNN_DATA_FLOAT));
      TABULA_CUDNN_CHECK(cudnnSetConvolutionGroupCount(c, I(o.groups)));
      TABULA_CUDNN_CHECK(cudnnSetConvolutionMathType(c, math));
      const std::string key = key_prefix + ":" + shape_str(xs) + shape_str(ws) + std::to_string(o.stride[0]) + "," +
                              std::to_string(o.stride[1]) + "," + std::to_string(o.padding[0]) + "," + std::to_string(o.padding[1]) +
                              "," + std::to_string(o.dilation[0]) + "," + std::to_string(o.dilation[1]) + "," +
                              std::to_string(o.groups);
      auto it = dn.algos.find(key);
      if (it != dn.algos.end()) {
        std::tie(algo, workspace) = it->second;
        return;
      }
      cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
      int found = 0;
      TABULA_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(dn.h, x, w, c, y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &found, perf));
      auto usable = [&](const cudnnConvolutionFwdAlgoPerf_t& a) {
        return a.status == CUDNN_STATUS_SUCCESS && a.determinism == CUDNN_DETERMINISTIC && a.memory <= (size_t{1} << 30);
      };
      auto gemm_like = [](cudnnConvolutionFwdAlgo_t a) {
        return a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM || a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM ||
               a == CUDNN_CONVOLUTION_FWD_ALGO_GEMM;
      };
      bool ok = false;
      for (int i = 0; i < found && !ok && gemm_first; ++i)
        if (usable(perf[i]) && gemm_like(perf[i].algo)) algo = perf[i].algo, workspace = perf[i].memory, ok = true;
      for (int i = 0; i < found && !ok; ++i)
        if (usable(perf[i])) algo = perf[i].algo, workspace = perf[i].memory, ok = true;
      if (!ok) op_error(op, "cuDNN offers no deterministic algorithm for " + key_prefix + " " + shape_str(xs) + " * " + shape_str(ws));
      dn.algos.emplace(key, std::make_pair(algo, workspace));
    } catch (...) {
      release();
      throw;
    }
  }
  ~ConvPlan() { release(); }
  ConvPlan(const ConvPlan&) = delete;
  ConvPlan& operator=(const ConvPlan&) = delete;

 private:
  void release() {
    if (x) cudnnDestroyTensorDescriptor(x), x = nullptr;
    if (y) cudnnDestroyTensorDescriptor(y), y = nullptr;
    if (w) cudnnDestroyFilterDescriptor(w), w = nullptr;
    if (c) cudnnDestroyConvolutionDescriptor(c), c = nullptr;
  }
};
}  // namespace

namespace {
// 16-bit activations: NHWC convolution on the tensor cores. x channels-last in its 16-bit type, the weight
// rearranged to [Cout, kh, kw, Cin/g] and rounded per call (f32 parameters stay f32 in the model), fp32
// accumulation; bias, residual and activation in fp32 in one pass over the 16-bit result.
Tensor conv2d_nhwc(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, const Conv2dOptions& o, Activation act,
                   const Tensor& residual, int dev, int64_t Ho, int64_t Wo) {
  const char* op = "cuda::conv2d";
  const DType dt = x_in.dtype();
  const int64_t N = x_in.size(0), C = x_in.size(1), H = x_in.size(2), W = x_in.size(3);
  const int64_t Cout = w_in.size(0), Cg = w_in.size(1), kh = w_in.size(2), kw = w_in.size(3), g = o.groups;
  // Windows that tile the image (ViT's patch embedding: kernel = stride, no padding): the conv is one GEMM over
  // the patches, [N*Ho*Wo, C*kh*kw] x [C*kh*kw, Cout], whose row-major result is the channels-last output.
  if (kh * kw > 1 && o.stride[0] == kh && o.stride[1] == kw && o.padding[0] == 0 && o.padding[1] == 0 &&
      o.dilation[0] == 1 && o.dilation[1] == 1 && g == 1 && H == Ho * kh && W == Wo * kw) {
    const Precision p16 = dt == DType::bf16 ? Precision::bf16 : Precision::fp16;
    Tensor xc = x_in.is_contiguous() ? x_in : contiguous(x_in);
    Tensor patches = empty({N, Ho, Wo, C, kh, kw}, dev, dt);  // im2col of non-overlapping windows: a permutation
    copy_into(op, patches, xc.view({N, C, Ho, kh, Wo, kw}).permute({0, 2, 4, 1, 3, 5}), dev);
    Tensor wk = dense_as(w_in, dev, dt);  // [Cout, C*kh*kw] in (c, i, j) order, as the patches
    Tensor y = empty_channels_last(N, Cout, Ho, Wo, dev, dt);
    const int64_t K = C * kh * kw, M = N * Ho * Wo;
    const bool bias_in_gemm = b_in.defined() && !residual.defined() && act == Activation::none;
    Tensor b16 = bias_in_gemm ? dense_as(b_in, dev, dt) : Tensor();
    lt_matmul(dev, true, wk.raw(), K, 0, patches.raw(), K, 0, y.raw(), dt, Cout, M, K, 1, bias_in_gemm ? b16.raw() : nullptr, p16);
    if (!bias_in_gemm && (b_in.defined() || residual.defined() || act != Activation::none)) {
      Tensor b = b_in.defined() ? dense_as(b_in, dev, DType::f32) : Tensor();
      Tensor r = residual.defined() ? dense_channels_last(residual, dev, residual.dtype()) : Tensor();
      epilogue(y, dev, b.defined() ? fptr(b) : nullptr, 1, Cout, r, act);
    }
    return y;
  }
  Tensor x = dense_channels_last(x_in, dev, dt);
  // The weight as [Cout, kh, kw, Cg] storage: as given when it was converted at load (models/device.h
  // upload_conv_weight), else rearranged and rounded here.
  Tensor w = w_in;
  if (!(w_in.dtype() == dt && is_channels_last(w_in) && aligned(w_in.raw()))) {
    w = empty({Cout, kh, kw, Cg}, dev, dt).permute({0, 3, 1, 2});  // [Cout, Cg, kh, kw] view of the KRSC storage
    copy_into(op, w, w_in, dev);
  }
  Tensor y = empty_channels_last(N, Cout, Ho, Wo, dev, dt);
  Dnn& dn = dnn(dev);
  TABULA_CUDNN_CHECK(cudnnSetStream(dn.h, stream(dev)));
  const ConvPlan plan(dn, op, CUDNN_TENSOR_NHWC, dt == DType::bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_HALF, CUDNN_TENSOR_OP_MATH,
                      "nhwc" + std::string(dtype_name(dt)), x.shape(), w_in.shape(), Ho, Wo, o, /*gemm_first=*/false);
  Tensor ws = plan.workspace ? empty({static_cast<int64_t>(plan.workspace)}, dev, DType::u8) : Tensor();
  const float alpha = 1.f, beta = 0.f;
  TABULA_CUDNN_CHECK(cudnnConvolutionForward(dn.h, &alpha, plan.x, x.raw(), plan.w, w.raw(), plan.c, plan.algo,
                                             ws.defined() ? ws.raw() : nullptr, plan.workspace, &beta, plan.y, y.raw()));
  if (b_in.defined() || residual.defined() || act != Activation::none) {
    Tensor b = b_in.defined() ? dense_as(b_in, dev, DType::f32) : Tensor();
    Tensor r = residual.defined() ? dense_channels_last(residual, dev, residual.dtype()) : Tensor();
    epilogue(y, dev, b.defined() ? fptr(b) : nullptr, 1, Cout, r, act);
  }
  return y;
}
}  // namespace

Tensor conv2d(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, const Conv2dOptions& o, Activation act,
              const Tensor& residual) {
  const char* op = "cuda::conv2d";
  const int dev = common_device(op, {&x_in, &w_in, &b_in, &residual});
  if (x_in.dim() != 4 || w_in.dim() != 4) op_error(op, "expects x [N, C, H, W] and weight [Cout, Cin/g, kh, kw], got " + x_in.str() + ", " + w_in.str());
  const int64_t N = x_in.size(0), C = x_in.size(1), H = x_in.size(2), W = x_in.size(3);
  const int64_t Cout = w_in.size(0), kh = w_in.size(2), kw = w_in.size(3), g = o.groups;
  if (g < 1 || C % g || Cout % g || w_in.size(1) != C / g)
    op_error(op, "weight " + w_in.str() + " does not match input " + x_in.str() + " with groups=" + std::to_string(g));
  if (b_in.defined() && b_in.numel() != Cout) op_error(op, "bias must have " + std::to_string(Cout) + " elements, got " + b_in.str());
  for (int a = 0; a < 2; ++a)
    if (o.stride[a] < 1 || o.dilation[a] < 1 || o.padding[a] < 0)
      op_error(op, "stride and dilation must be >= 1 and padding >= 0, got stride " + std::to_string(o.stride[a]) +
                       ", dilation " + std::to_string(o.dilation[a]) + ", padding " + std::to_string(o.padding[a]));
  const int64_t Ho = pooling_output_size(H, kh, o.padding[0], o.stride[0], o.dilation[0], false);
  const int64_t Wo = pooling_output_size(W, kw, o.padding[1], o.stride[1], o.dilation[1], false);
  if (Ho <= 0 || Wo <= 0) op_error(op, "empty output for input " + x_in.str() + " and kernel " + w_in.str());
  if (residual.defined() && residual.shape() != Shape{N, Cout, Ho, Wo})
    op_error(op, "residual must be " + shape_str({N, Cout, Ho, Wo}) + ", got " + residual.str());
  if (N * Cout * Ho * Wo == 0) return empty({N, Cout, Ho, Wo}, dev, x_in.dtype());
  if (x_in.dtype() != DType::f32) return conv2d_nhwc(x_in, w_in, b_in, o, act, residual, dev, Ho, Wo);
  Tensor x = dense(x_in, dev), w = dense_as(w_in, dev, DType::f32), y = empty({N, Cout, Ho, Wo}, dev);
  Dnn& dn = dnn(dev);
  TABULA_CUDNN_CHECK(cudnnSetStream(dn.h, stream(dev)));
  // fp32: plain FMA math (no TF32); every other precision lets cuDNN use tensor cores on the f32 data.
  const ConvPlan plan(dn, op, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, g_precision == Precision::fp32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH,
                      std::to_string(static_cast<int>(g_precision)), x.shape(), w.shape(), Ho, Wo, o, /*gemm_first=*/true);
  Tensor ws = plan.workspace ? empty({static_cast<int64_t>(plan.workspace)}, dev, DType::u8) : Tensor();
  const float alpha = 1.f, beta = 0.f;
  // cuDNN's fused form y = act(conv(x) + alpha2 * z + bias) is exactly act(conv + bias + residual) for ReLU or
  // none; cuDNN runs it with the implicit-precomputed-GEMM algorithm (the only one allowed for identity).
  const bool fused = (act == Activation::none || act == Activation::relu) && (b_in.defined() || residual.defined()) &&
                     plan.algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM;
  if (fused) {
    Tensor b;
    if (b_in.defined()) {
      b = dense_as(b_in, dev, DType::f32);
    } else {
      b = empty({Cout}, dev);
      TABULA_CUDA_CHECK(cudaMemsetAsync(b.raw(), 0, b.nbytes(), stream(dev)));
    }
    Tensor r = residual.defined() ? dense_as(residual, dev, DType::f32) : Tensor();
    cudnnTensorDescriptor_t bd = nullptr;
    cudnnActivationDescriptor_t ad = nullptr;
    auto cleanup = [&] {
      if (bd) cudnnDestroyTensorDescriptor(bd);
      if (ad) cudnnDestroyActivationDescriptor(ad);
    };
    try {
      TABULA_CUDNN_CHECK(cudnnCreateTensorDescriptor(&bd));
      TABULA_CUDNN_CHECK(cudnnSetTensor4dDescriptor(bd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, static_cast<int>(Cout), 1, 1));
      TABULA_CUDNN_CHECK(cudnnCreateActivationDescriptor(&ad));
      TABULA_CUDNN_CHECK(cudnnSetActivationDescriptor(
          ad, act == Activation::relu ? CUDNN_ACTIVATION_RELU : CUDNN_ACTIVATION_IDENTITY, CUDNN_PROPAGATE_NAN, 0.0));
      const float alpha2 = r.defined() ? 1.f : 0.f;
      // Without a residual z is y itself with alpha2 = 0; cuDNN does not promise to skip reading z then, and
      // 0 * NaN (an uninitialised or poisoned y) would be NaN, so y starts as zeros.
      if (!r.defined()) TABULA_CUDA_CHECK(cudaMemsetAsync(y.raw(), 0, y.nbytes(), stream(dev)));
      TABULA_CUDNN_CHECK(cudnnConvolutionBiasActivationForward(
          dn.h, &alpha, plan.x, x.raw(), plan.w, w.raw(), plan.c, plan.algo, ws.defined() ? ws.raw() : nullptr, plan.workspace,
          &alpha2, plan.y, r.defined() ? r.raw() : y.raw(), bd, b.raw(), ad, plan.y, y.raw()));
    } catch (...) {
      cleanup();
      throw;
    }
    cleanup();
  } else {
    TABULA_CUDNN_CHECK(cudnnConvolutionForward(dn.h, &alpha, plan.x, x.raw(), plan.w, w.raw(), plan.c, plan.algo,
                                               ws.defined() ? ws.raw() : nullptr, plan.workspace, &beta, plan.y, y.raw()));
  }
  if (!fused && (b_in.defined() || residual.defined() || act != Activation::none)) {
    Tensor b = b_in.defined() ? dense_as(b_in, dev, DType::f32) : Tensor();
    Tensor r = residual.defined() ? dense_as(residual, dev, DType::f32) : Tensor();
    epilogue(y, dev, b.defined() ? fptr(b) : nullptr, Ho * Wo, Cout, r, act);
  }
  return y;
}

}  // namespace tabula::cuda

// ---- ops:: dispatch (engine/device_ops.h): ops::<op> on a cuda tensor lands here ----
namespace tabula::cuda {
namespace {
Tensor clone_dense(const Tensor& x) {
  const int dev = common_device("Tensor::clone", {&x});
  Tensor y = empty(x.shape(), dev, x.dtype());
  copy_into("Tensor::clone", y, x, dev);
  return y;
}
// Host copies are f32 whatever the device storage type (captures, interventions and to_host() read f32).
Tensor host_copy(const Tensor& x) {
  const int dev = common_device("to_host", {&x});
  Tensor f = x.dtype() == DType::f32 ? cuda::contiguous(x) : dense_as(x, dev, DType::f32);
  return cuda::to_host(f);
}
// A host value placed where `like` lives, in like's storage type (an intervention's replacement in a bf16 forward).
Tensor device_copy_like(const Tensor& host, const Tensor& like) {
  const int dev = device_of("to_device", like);
  Tensor d = to_device(host, dev);
  return d.dtype() == like.dtype() || !(like.dtype() == DType::bf16 || like.dtype() == DType::f16) ? d : dense_as(d, dev, like.dtype());
}
Tensor to_dtype(const Tensor& x, DType dt) {
  const int dev = common_device("Tensor::to", {&x});
  if (dt != DType::f32 && dt != DType::bf16 && dt != DType::f16)
    op_error("Tensor::to", "cuda tensors convert between f32, bf16 and f16, not to " + std::string(dtype_name(dt)));
  Tensor y = empty(x.shape(), dev, dt);
  copy_into("Tensor::to", y, x, dev);
  return y;
}
// ---- per-op device time (TABULA_CUDA_PROFILE=1): events around every op the models call through ops:: ----
struct ProfRec {
  std::string key;
  int dev;
  cudaEvent_t a, b;
};
std::mutex g_prof_mu;
std::vector<ProfRec> g_prof;
bool profiling() {
  static const bool on = std::getenv("TABULA_CUDA_PROFILE") != nullptr;
  return on;
}
struct OpTimer {
  ProfRec r{};
  bool on = false;
  OpTimer(const char* name, const Tensor& x, const Tensor& w = {}) {
    if (!profiling() || !on_gpu(x)) return;
    r.dev = device_of(name, x);
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    TABULA_CUDA_CHECK(cudaStreamIsCapturing(stream(r.dev), &cs));
    if (cs != cudaStreamCaptureStatusNone) return;  // graph capture: only eager forwards are timed
    on = true;
    r.key = std::string(name) + " " + x.str() + (w.defined() ? " w" + shape_str(w.shape()) : "");
    TABULA_CUDA_CHECK(cudaEventCreate(&r.a));
    TABULA_CUDA_CHECK(cudaEventCreate(&r.b));
    TABULA_CUDA_CHECK(cudaEventRecord(r.a, stream(r.dev)));
  }
  ~OpTimer() {
    if (!on) return;
    cudaEventRecord(r.b, stream(r.dev));
    std::lock_guard<std::mutex> lock(g_prof_mu);
    g_prof.push_back(r);
  }
};

Tensor relu_or_act(const Tensor& x, Activation a) { OpTimer t("activation", x); return activation(x, a); }
Tensor mul_tensor(const Tensor& a, const Tensor& b) { OpTimer t("mul", a); return mul(a, b); }
Tensor mul_scalar(const Tensor& a, float s) { OpTimer t("mul_scalar", a); return mul(a, s); }
Tensor gelu_any(const Tensor& x, bool tn) { OpTimer t("gelu", x); return gelu(x, tn); }
Tensor max_pool(const Tensor& x, std::array<int64_t, 2> k, std::array<int64_t, 2> s, std::array<int64_t, 2> p,
                std::array<int64_t, 2> d, bool c) {
  OpTimer t("max_pool2d", x);
  return max_pool2d(x, k, s, p, d, c);
}
Tensor conv(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dOptions& o, Activation a, const Tensor& r) {
  OpTimer t("conv2d", x, w);
  return conv2d(x, w, b, o, a, r);
}
Tensor lin(const Tensor& x, const Tensor& w, const Tensor& b, Activation a) { OpTimer t("linear", x, w); return linear(x, w, b, a); }
Tensor lin_res(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& r) {
  OpTimer t("linear+residual", x, w);
  return linear(x, w, b, Activation::none, r);
}
Tensor bn(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& m, const Tensor& v, double eps) {
  OpTimer t("batch_norm", x);
  return batch_norm(x, w, b, m, v, eps);
}
Tensor ln(const Tensor& x, const Tensor& w, const Tensor& b, double eps) { OpTimer t("layer_norm", x); return layer_norm(x, w, b, eps); }
Tensor sm(const Tensor& x, int64_t d) { OpTimer t("softmax", x); return softmax(x, d); }
Tensor sdpa(const Tensor& q, const Tensor& k, const Tensor& v, std::optional<double> s, Tensor* p) {
  OpTimer t("attention", q);
  return scaled_dot_product_attention(q, k, v, s, p);
}
Tensor pooled(const Tensor& x, Pool p, int64_t n) { OpTimer t("pool", x); return pool(x, p, n); }
Tensor add_t(const Tensor& a, const Tensor& b) { OpTimer t("add", a, b); return add(a, b); }
Tensor cat_t(const std::vector<Tensor>& xs, int64_t d) { OpTimer t("cat", xs.empty() ? Tensor() : xs[0]); return cat(xs, d); }
Tensor layer_scale_t(const Tensor& x, const Tensor& g) { OpTimer t("layer_scale", x); return layer_scale(x, g); }
Tensor clone_t(const Tensor& x) { OpTimer t("clone", x); return clone_dense(x); }
Tensor to_dtype_t(const Tensor& x, DType d) { OpTimer t("to_dtype", x); return to_dtype(x, d); }

const DeviceOps kTable = {
    conv,        bn,       gelu_any,   relu_or_act, swiglu, max_pool, adaptive_avg_pool2d, lin,         matmul, ln, sm,
    sdpa,        add_t,    mul_tensor, mul_scalar,  cat_t,  layer_scale_t, interpolate,     pooled,      clone_t,
    host_copy,   device_copy_like, to_dtype_t, lin_res,
};
}  // namespace

void clear_op_profile() {
  std::lock_guard<std::mutex> lock(g_prof_mu);
  for (ProfRec& r : g_prof) cudaEventDestroy(r.a), cudaEventDestroy(r.b);
  g_prof.clear();
}

void print_op_profile(int forwards) {
  std::lock_guard<std::mutex> lock(g_prof_mu);
  if (g_prof.empty()) return;
  forwards = std::max(forwards, 1);
  std::map<std::string, std::pair<double, int>> by;  // key -> (ms, calls)
  double total = 0;
  for (ProfRec& r : g_prof) {
    TABULA_CUDA_CHECK(cudaEventSynchronize(r.b));
    float ms = 0;
    TABULA_CUDA_CHECK(cudaEventElapsedTime(&ms, r.a, r.b));
    by[r.key].first += ms / forwards, by[r.key].second += 1, total += ms / forwards;
    cudaEventDestroy(r.a), cudaEventDestroy(r.b);
  }
  g_prof.clear();
  std::vector<std::pair<std::string, std::pair<double, int>>> rows(by.begin(), by.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
  std::fprintf(stderr, "device time per op and forward (TABULA_CUDA_PROFILE, %d eager forwards): %.2f ms\n", forwards, total);
  for (const auto& [key, v] : rows)
    std::fprintf(stderr, "%9.3f ms %5.1f%% %6d calls  %s\n", v.first, 100.0 * v.first / total, v.second / forwards, key.c_str());
}

void register_ops_dispatch() { register_device_ops(Device::cuda, &kTable); }
}  // namespace tabula::cuda
