// tabula::cuda ops. Kernels are deliberately simple (one thread per output element or one block/warp per row)
// and mirror tabula::ref loop for loop; the heavy products go to cuBLASLt and cuDNN.
#include "engine/cuda/ops.h"

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cmath>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>

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

// Device of the first tensor; every other defined tensor must be on the same device.
int common_device(std::string_view op, std::initializer_list<const Tensor*> ts) {
  int dev = -1;
  for (const Tensor* t : ts) {
    if (!t->defined()) continue;
    if (t->dtype() != DType::f32) op_error(op, "expected f32 tensors, got " + t->str());
    const int d = device_of(op, *t);
    if (dev >= 0 && d != dev) op_error(op, "tensors on different devices (cuda:" + std::to_string(dev) + ", cuda:" + std::to_string(d) + ")");
    dev = d;
  }
  if (dev < 0) op_error(op, "no defined input");
  TABULA_CUDA_CHECK(cudaSetDevice(dev));
  return dev;
}

const float* fptr(const Tensor& t) { return static_cast<const float*>(t.raw()); }
float* fptr_mut(Tensor& t) { return static_cast<float*>(t.raw()); }

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

__global__ void strided_copy_kernel(float* dst, Strides ds, const float* src, Strides ss, int64_t n) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) dst[offset_of(ds, i)] = src[offset_of(ss, i)];
}
// dst (any strided view of device memory) = src (same shape, any strides).
void copy_into(std::string_view op, Tensor& dst, const Tensor& src, int dev) {
  const int64_t n = src.numel();
  if (n == 0) return;
  strided_copy_kernel<<<blocks_for(n), 256, 0, stream(dev)>>>(fptr_mut(dst), make_strides(op, dst), fptr(src),
                                                              make_strides(op, src), n);
  LAUNCH_CHECK();
}

// A contiguous, 256-byte aligned copy when the tensor is not already one (cuBLASLt/cuDNN want aligned operands).
Tensor dense(const Tensor& x, int dev) {
  if (x.is_contiguous() && reinterpret_cast<uintptr_t>(x.raw()) % 256 == 0) return x;
  Tensor y = empty(x.shape(), dev);
  copy_into("cuda::contiguous", y, x, dev);
  return y;
}

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

__global__ void act_kernel(float* y, const float* x, int64_t n, Activation a) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) y[i] = act_apply(x[i], a);
}

enum class BinOp { add, mul };
__global__ void binary_kernel(float* y, const float* a, Strides sa, const float* b, Strides sb, int64_t n, BinOp op) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float u = a[offset_of(sa, i)], v = b[offset_of(sb, i)];
  y[i] = op == BinOp::add ? u + v : u * v;
}
__global__ void scale_kernel(float* y, const float* x, int64_t n, float s) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) y[i] = x[i] * s;
}

Tensor binary(std::string_view op, const Tensor& a, const Tensor& b, BinOp kind) {
  const int dev = common_device(op, {&a, &b});
  const Shape out = detail::broadcast_shape(op, a.shape(), b.shape());
  Tensor y = empty(out, dev);
  const int64_t n = y.numel();
  if (n == 0) return y;
  // Left-pad dims with size-1 (numpy rules), then expand: stride 0 along broadcast dims.
  auto expanded = [&](const Tensor& t) {
    Tensor u = t;
    while (u.dim() < static_cast<int64_t>(out.size())) u = u.unsqueeze(0);
    return u.expand(out);
  };
  binary_kernel<<<blocks_for(n), 256, 0, stream(dev)>>>(fptr_mut(y), fptr(a), make_strides(op, expanded(a)), fptr(b),
                                                        make_strides(op, expanded(b)), n, kind);
  LAUNCH_CHECK();
  return y;
}

// ---- epilogue after cuDNN/cuBLAS: y = act(y + bias[channel] + residual) ----
__global__ void epilogue_kernel(float* y, int64_t n, const float* bias, int64_t inner, int64_t channels,
                                const float* residual, Activation a) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  float v = y[i];
  if (bias) v += bias[(i / inner) % channels];
  if (residual) v += residual[i];
  y[i] = act_apply(v, a);
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
__global__ void layer_norm_kernel(float* y, const float* x, const float* w, const float* b, int64_t C, float eps) {
  __shared__ float shm[32];
  const float* xr = x + blockIdx.x * C;
  float* yr = y + blockIdx.x * C;
  float s = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += xr[c];
  const float mean = block_sum(s, shm) / static_cast<float>(C);
  float v = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) v += (xr[c] - mean) * (xr[c] - mean);
  const float rstd = rsqrtf(block_sum(v, shm) / static_cast<float>(C) + eps);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    float o = (xr[c] - mean) * rstd;
    if (w) o *= w[c];
    if (b) o += b[c];
    yr[c] = o;
  }
}

__global__ void softmax_kernel(float* y, const float* x, int64_t C) {
  __shared__ float shm[32];
  const float* xr = x + blockIdx.x * C;
  float* yr = y + blockIdx.x * C;
  float m = -INFINITY;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) m = fmaxf(m, xr[c]);
  m = block_max(m, shm);
  float s = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += expf(xr[c] - m);
  const float inv = 1.f / block_sum(s, shm);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) yr[c] = expf(xr[c] - m) * inv;
}

// softmax(x * scale) over rows of C, in place (attention scores): the same sums as softmax_kernel.
__global__ void scaled_softmax_kernel(float* x, int64_t C, float scale) {
  __shared__ float shm[32];
  float* xr = x + blockIdx.x * C;
  float m = -INFINITY;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) m = fmaxf(m, xr[c] * scale);
  m = block_max(m, shm);
  float s = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += expf(xr[c] * scale - m);
  const float inv = 1.f / block_sum(s, shm);
  __syncthreads();  // every thread has read its scores before any is overwritten
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) xr[c] = expf(xr[c] * scale - m) * inv;
}

// swiglu: x [rows, 2H] -> silu(x[:, :H]) * x[:, H:]
__global__ void swiglu_kernel(float* y, const float* x, int64_t rows, int64_t H) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= rows * H) return;
  const int64_t r = i / H, c = i % H;
  const float a = x[r * 2 * H + c], g = x[r * 2 * H + H + c];
  y[i] = a / (1.f + expf(-a)) * g;
}

__global__ void channel_affine_kernel(float* y, const float* x, int64_t n, int64_t inner, int64_t C, const float* scale,
                                      const float* shift) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const int64_t c = (i / inner) % C;
  y[i] = x[i] * scale[c] + (shift ? shift[c] : 0.f);
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
__global__ void pool_kernel(float* y, const float* x, int64_t B, int64_t L, int64_t C, int64_t first, int64_t sb,
                            int64_t sl, int64_t sc, Pool p) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= B * C) return;
  const int64_t b = i / C, c = i % C;
  const float* xb = x + b * sb + c * sc;
  float mean = 0.f, mx = -INFINITY, gem = 0.f;
  for (int64_t l = first; l < L; ++l) {
    const float v = xb[l * sl];
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
    case Pool::cls: yr[c] = xb[0]; break;
    case Pool::cls_mean: yr[c] = xb[0], yr[C + c] = mean / n; break;
    case Pool::none: break;
  }
}

__global__ void max_pool_kernel(float* y, const float* x, int64_t NC, int64_t H, int64_t W, int64_t Ho, int64_t Wo,
                                int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= NC * Ho * Wo) return;
  const int64_t ow = i % Wo, oh = (i / Wo) % Ho, nc = i / (Wo * Ho);
  float best = -INFINITY;
  for (int a = 0; a < kh; ++a) {
    const int64_t ih = oh * sh - ph + a * dh;
    if (ih < 0 || ih >= H) continue;
    for (int b = 0; b < kw; ++b) {
      const int64_t iw = ow * sw - pw + b * dw;
      if (iw < 0 || iw >= W) continue;
      const float v = x[(nc * H + ih) * W + iw];
      if (v > best || v != v) best = v;
    }
  }
  y[i] = best;
}

__global__ void adaptive_avg_kernel(float* y, const float* x, int64_t NC, int64_t H, int64_t W, int64_t Ho, int64_t Wo) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= NC * Ho * Wo) return;
  const int64_t ow = i % Wo, oh = (i / Wo) % Ho, nc = i / (Wo * Ho);
  const int64_t h0 = (oh * H) / Ho, h1 = ((oh + 1) * H + Ho - 1) / Ho;
  const int64_t w0 = (ow * W) / Wo, w1 = ((ow + 1) * W + Wo - 1) / Wo;
  float acc = 0.f;
  for (int64_t ih = h0; ih < h1; ++ih)
    for (int64_t iw = w0; iw < w1; ++iw) acc += x[(nc * H + ih) * W + iw];
  y[i] = acc / static_cast<float>((h1 - h0) * (w1 - w0));
}

// ---- precision helpers ----
__device__ __forceinline__ float round_to(float v, Precision p) {
  if (p == Precision::bf16) return __bfloat162float(__float2bfloat16(v));
  if (p == Precision::fp16) return __half2float(__float2half(v));
  return v;
}
__global__ void to_bf16_kernel(__nv_bfloat16* y, const float* x, int64_t n) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) y[i] = __float2bfloat16(x[i]);
}
__global__ void to_f16_kernel(__half* y, const float* x, int64_t n) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) y[i] = __float2half(x[i]);
}
// The bf16/fp16 copy of a dense f32 operand (fp32/tf32 use the f32 tensor itself).
Tensor lowered(const Tensor& x, int dev, Precision p) {
  if (p != Precision::bf16 && p != Precision::fp16) return x;
  Tensor y = empty(x.shape(), dev, p == Precision::bf16 ? DType::bf16 : DType::f16);
  const int64_t n = x.numel();
  if (n == 0) return y;
  if (p == Precision::bf16)
    to_bf16_kernel<<<blocks_for(n), 256, 0, stream(dev)>>>(static_cast<__nv_bfloat16*>(y.raw()), fptr(x), n);
  else
    to_f16_kernel<<<blocks_for(n), 256, 0, stream(dev)>>>(static_cast<__half*>(y.raw()), fptr(x), n);
  LAUNCH_CHECK();
  return y;
}

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

// ---- interpolate: separable taps computed on the host by detail::interpolate_taps (the reference's own) ----
__global__ void interpolate_kernel(float* y, const float* x, int64_t NC, int64_t H, int64_t W, int64_t Ho, int64_t Wo,
                                   const int64_t* ih, const float* wh, int th, const int64_t* iw, const float* ww, int tw) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= NC * Ho * Wo) return;
  const int64_t ow = i % Wo, oh = (i / Wo) % Ho, nc = i / (Wo * Ho);
  const float* xp = x + nc * H * W;
  float acc = 0.f;
  for (int a = 0; a < th; ++a) {
    const float wa = wh[oh * th + a];
    const int64_t r = ih[oh * th + a] * W;
    float row = 0.f;
    for (int b = 0; b < tw; ++b) row += ww[ow * tw + b] * xp[r + iw[ow * tw + b]];
    acc += wa * row;
  }
  y[i] = acc;
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

// Column-major D[m, n] = op(A)[m, k] @ B[k, n] (+ bias[m]) for `batch` strided problems; A/B are f32 or the
// precision's 16-bit copy, D is f32. Row-major callers swap operands (see linear/matmul).
// `p` is the precision the operands are stored in (f32 for fp32/tf32, bf16/fp16 copies) and the math runs in.
void lt_matmul(int dev, bool trans_a, const Tensor& A, int64_t lda, int64_t stride_a, const Tensor& B, int64_t ldb,
               int64_t stride_b, float* D, int64_t m, int64_t n, int64_t k, int64_t batch, const float* bias,
               Precision p) {
  Blas& bl = blas(dev);
  const cudaDataType_t in_type = p == Precision::bf16 ? CUDA_R_16BF : p == Precision::fp16 ? CUDA_R_16F : CUDA_R_32F;
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
      const cudaDataType_t bt = CUDA_R_32F;
      TABULA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof(ep)));
      TABULA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
      TABULA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt)));
    }
    TABULA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&la, in_type, trans_a ? k : m, trans_a ? m : k, lda));
    TABULA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb, in_type, k, n, ldb));
    TABULA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&ld, CUDA_R_32F, m, n, m));
    if (batch > 1) {
      const int32_t bc = static_cast<int32_t>(batch);
      const int64_t sd = m * n;
      for (auto [l, s] : {std::pair{la, stride_a}, std::pair{lb, stride_b}, std::pair{ld, sd}}) {
        TABULA_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof(bc)));
        TABULA_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &s, sizeof(s)));
      }
    }
    const std::string key = std::to_string(static_cast<int>(p)) + (trans_a ? "T" : "N") + std::to_string(m) + "," +
                            std::to_string(n) + "," + std::to_string(k) + "," + std::to_string(lda) + "," +
                            std::to_string(ldb) + "," + std::to_string(batch) + (bias ? "b" : "");
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
        cublasLtMatmulHeuristicResult_t res{};
        int found = 0;
        const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(bl.lt, desc, la, lb, ld, ld, pref, 1, &res, &found);
        cublasLtMatmulPreferenceDestroy(pref);
        TABULA_CUBLAS_CHECK(st);
        if (found == 0)
          throw std::runtime_error("cuda::matmul: cuBLASLt has no algorithm for m=" + std::to_string(m) + " n=" +
                                   std::to_string(n) + " k=" + std::to_string(k) + " in " +
                                   std::string(precision_name(p)));
        algo = res.algo;
        bl.algos.emplace(key, algo);
      }
    }
    const float alpha = 1.f, beta = 0.f;
    TABULA_CUBLAS_CHECK(cublasLtMatmul(bl.lt, desc, &alpha, A.raw(), la, B.raw(), lb, &beta, D, ld, D, ld, &algo,
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

Tensor contiguous(const Tensor& x) {
  const int dev = common_device("cuda::contiguous", {&x});
  if (x.is_contiguous()) return x;
  Tensor y = empty(x.shape(), dev);
  copy_into("cuda::contiguous", y, x, dev);
  return y;
}

Tensor activation(const Tensor& x_in, Activation act) {
  const int dev = common_device("cuda::activation", {&x_in});
  Tensor x = dense(x_in, dev), y = empty(x.shape(), dev);
  if (x.numel()) act_kernel<<<blocks_for(x.numel()), 256, 0, stream(dev)>>>(fptr_mut(y), fptr(x), x.numel(), act);
  LAUNCH_CHECK();
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
  Tensor y = empty(os, dev);
  const int64_t rows = C ? x.numel() / C : 0;
  if (y.numel()) swiglu_kernel<<<blocks_for(y.numel()), 256, 0, stream(dev)>>>(fptr_mut(y), fptr(x), rows, C / 2);
  LAUNCH_CHECK();
  return y;
}

Tensor add(const Tensor& a, const Tensor& b) { return binary("cuda::add", a, b, BinOp::add); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary("cuda::mul", a, b, BinOp::mul); }
Tensor mul(const Tensor& x_in, float s) {
  const int dev = common_device("cuda::mul", {&x_in});
  Tensor x = dense(x_in, dev), y = empty(x.shape(), dev);
  if (x.numel()) scale_kernel<<<blocks_for(x.numel()), 256, 0, stream(dev)>>>(fptr_mut(y), fptr(x), x.numel(), s);
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
  Tensor x = dense(x_in, dev), y = empty(x.shape(), dev), sc = empty({C}, dev), sh = empty({C}, dev);
  Tensor wd = w.defined() ? dense(w, dev) : Tensor(), bd = b.defined() ? dense(b, dev) : Tensor();
  Tensor md = dense(mean, dev), vd = dense(var, dev);
  bn_coeff_kernel<<<blocks_for(C), 256, 0, stream(dev)>>>(fptr_mut(sc), fptr_mut(sh), wd.defined() ? fptr(wd) : nullptr,
                                                          bd.defined() ? fptr(bd) : nullptr, fptr(md), fptr(vd), C,
                                                          static_cast<float>(eps));
  LAUNCH_CHECK();
  const int64_t inner = C ? x.numel() / (x.size(0) * C) : 1;
  if (x.numel())
    channel_affine_kernel<<<blocks_for(x.numel()), 256, 0, stream(dev)>>>(fptr_mut(y), fptr(x), x.numel(),
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
  Tensor x = dense(x_in, dev), y = empty(x.shape(), dev);
  Tensor wd = w.defined() ? dense(w, dev) : Tensor(), bd = b.defined() ? dense(b, dev) : Tensor();
  if (rows > 0)
    layer_norm_kernel<<<static_cast<unsigned>(rows), 256, 0, stream(dev)>>>(
        fptr_mut(y), fptr(x), wd.defined() ? fptr(wd) : nullptr, bd.defined() ? fptr(bd) : nullptr, C,
        static_cast<float>(eps));
  LAUNCH_CHECK();
  return y;
}

Tensor softmax(const Tensor& x_in, int64_t dim) {
  const int dev = common_device("cuda::softmax", {&x_in});
  dim = x_in.wrap_dim(dim);
  Tensor x = dense(x_in.transpose(dim, -1), dev);  // rows along the softmax dim
  Tensor y = empty(x.shape(), dev);
  const int64_t C = x.size(-1), rows = C ? x.numel() / C : 0;
  if (rows > 0) softmax_kernel<<<static_cast<unsigned>(rows), 256, 0, stream(dev)>>>(fptr_mut(y), fptr(x), C);
  LAUNCH_CHECK();
  return contiguous(y.transpose(dim, -1));
}

Tensor pool(const Tensor& x_in, Pool p, int64_t num_prefix) {
  const int dev = common_device("cuda::pool", {&x_in});
  if (p == Pool::none) return x_in;
  Tensor x = dense(x_in, dev);
  int64_t B, L, C, first, sb, sl, sc;
  if (x.dim() == 4) {
    if (p == Pool::cls || p == Pool::mean || p == Pool::cls_mean)
      op_error("cuda::pool", std::string(pool_name(p)) + " pooling needs tokens [B, N, C], got a feature map " + x.str());
    B = x.size(0), C = x.size(1), L = x.size(2) * x.size(3), first = 0;
    sb = C * L, sc = L, sl = 1;
  } else if (x.dim() == 3) {
    B = x.size(0), L = x.size(1), C = x.size(2), first = num_prefix;
    if (num_prefix < 0) op_error("cuda::pool", "negative number of prefix tokens");
    if (p != Pool::cls && first >= L)
      op_error("cuda::pool", "no patch tokens to pool: " + std::to_string(L) + " tokens, " + std::to_string(num_prefix) + " prefix");
    if ((p == Pool::cls || p == Pool::cls_mean) && num_prefix < 1)
      op_error("cuda::pool", "cls pooling needs a prefix (class) token");
    sb = L * C, sl = C, sc = 1;
  } else {
    op_error("cuda::pool", "expects [B, C, H, W] or [B, N, C], got " + x.str());
  }
  Tensor y = empty({B, p == Pool::cls_mean ? 2 * C : C}, dev);
  if (B * C > 0) pool_kernel<<<blocks_for(B * C), 256, 0, stream(dev)>>>(fptr_mut(y), fptr(x), B, L, C, first, sb, sl, sc, p);
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
  Tensor x = dense(x_in, dev), y = empty({N, C, Ho, Wo}, dev);
  if (y.numel())
    max_pool_kernel<<<blocks_for(y.numel()), 256, 0, stream(dev)>>>(
        fptr_mut(y), fptr(x), N * C, H, W, Ho, Wo, static_cast<int>(k[0]), static_cast<int>(k[1]), static_cast<int>(s[0]),
        static_cast<int>(s[1]), static_cast<int>(pd[0]), static_cast<int>(pd[1]), static_cast<int>(d[0]), static_cast<int>(d[1]));
  LAUNCH_CHECK();
  return y;
}

Tensor adaptive_avg_pool2d(const Tensor& x_in, std::array<int64_t, 2> os) {
  const int dev = common_device("cuda::adaptive_avg_pool2d", {&x_in});
  if (x_in.dim() != 4) op_error("cuda::adaptive_avg_pool2d", "expects [N, C, H, W], got " + x_in.str());
  if (os[0] <= 0 || os[1] <= 0) op_error("cuda::adaptive_avg_pool2d", "output size must be positive");
  const int64_t N = x_in.size(0), C = x_in.size(1), H = x_in.size(2), W = x_in.size(3);
  Tensor x = dense(x_in, dev), y = empty({N, C, os[0], os[1]}, dev);
  if (y.numel())
    adaptive_avg_kernel<<<blocks_for(y.numel()), 256, 0, stream(dev)>>>(fptr_mut(y), fptr(x), N * C, H, W, os[0], os[1]);
  LAUNCH_CHECK();
  return y;
}

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  if (xs.empty()) op_error("cuda::cat", "no tensors");
  int dev = -1;
  for (const Tensor& t : xs) dev = common_device("cuda::cat", {&t, &xs[0]});
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
  Tensor y = empty(out, dev);
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
  Tensor x = dense(x_in, dev), y = empty({N, C, Ho, Wo}, dev);
  if (y.numel())
    interpolate_kernel<<<blocks_for(y.numel()), 256, 0, stream(dev)>>>(
        fptr_mut(y), fptr(x), N * C, H, W, Ho, Wo, ih.data<int64_t>(), fptr(wh), th, iw.data<int64_t>(), fptr(ww), tw);
  LAUNCH_CHECK();
  // The tap tables go back to the cache on return; a later allocation reusing them is ordered after this kernel
  // on the same stream, so no synchronisation is needed.
  return y;
}

namespace {
// The 16-bit storage type GEMM operands have in the current precision (f32 for fp32/tf32).
DType operand_dtype() {
  return g_precision == Precision::bf16 ? DType::bf16 : g_precision == Precision::fp16 ? DType::f16 : DType::f32;
}

// A linear weight as the GEMM consumes it: f32 weights are rounded here (per call), weights from convert_weight
// are used as they are after checking they were converted for the current precision.
Tensor weight_operand(std::string_view op, const Tensor& w, int dev) {
  if (!w.defined()) op_error(op, "weight is undefined");
  const int d = device_of(op, w);
  if (d != dev) op_error(op, "weight on cuda:" + std::to_string(d) + ", input on cuda:" + std::to_string(dev));
  if (w.dtype() == DType::f32) return lowered(dense(w, dev), dev, g_precision);
  if (w.dtype() != operand_dtype())
    op_error(op, "weight " + w.str() + " was converted for another precision: " + std::string(precision_name(g_precision)) +
                     " needs " + std::string(dtype_name(operand_dtype())) + " (or f32)");
  if (!w.is_contiguous() || reinterpret_cast<uintptr_t>(w.raw()) % 256 != 0)
    op_error(op, "a converted weight must be the contiguous tensor convert_weight returned, got a view " + w.str());
  return w;
}

}  // namespace

Tensor convert_weight(const Tensor& w) {
  const int dev = common_device("cuda::convert_weight", {&w});
  return lowered(dense(w, dev), dev, g_precision);
}

Tensor linear(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, Activation act) {
  const int dev = common_device("cuda::linear", {&x_in, &b_in});
  if (w_in.dim() != 2 || x_in.dim() < 1 || x_in.size(-1) != w_in.size(1))
    op_error("cuda::linear", "input " + x_in.str() + " does not match weight " + w_in.str());
  const int64_t K = w_in.size(1), N = w_in.size(0), M = K ? x_in.numel() / K : 0;
  if (b_in.defined() && b_in.numel() != N) op_error("cuda::linear", "bias must have " + std::to_string(N) + " elements, got " + b_in.str());
  Shape os = x_in.shape();
  os.back() = N;
  Tensor y = empty(os, dev);
  if (M == 0 || N == 0) return y;
  if (K == 0) op_error("cuda::linear", "in_features is 0");
  Tensor x = lowered(dense(x_in, dev), dev, g_precision), w = weight_operand("cuda::linear", w_in, dev);
  Tensor b = b_in.defined() ? dense(b_in, dev) : Tensor();
  // Row-major Y[M, N] = X[M, K] W[N, K]^T  <=>  column-major Y^T[N, M] = W^T . X^T with W stored K x N (ld K).
  lt_matmul(dev, true, w, K, 0, x, K, 0, fptr_mut(y), N, M, K, 1, b.defined() ? fptr(b) : nullptr, g_precision);
  if (act != Activation::none) {
    act_kernel<<<blocks_for(y.numel()), 256, 0, stream(dev)>>>(fptr_mut(y), fptr(y), y.numel(), act);
    LAUNCH_CHECK();
  }
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
  Tensor y = empty(os, dev);
  if (y.numel() == 0) return y;
  if (K == 0) op_error("cuda::matmul", "inner dimension is 0");
  Tensor a = lowered(dense(a_in, dev), dev, g_precision), b = lowered(dense(b_in, dev), dev, g_precision);
  // Row-major C = A B  <=>  column-major C^T[N, M] = B^T[N, K] . A^T[K, M] (B as N x K with ld N, A as K x M, ld K).
  if (b_in.dim() == 2)  // broadcast b: fold the batch into M
    lt_matmul(dev, false, b, N, 0, a, K, 0, fptr_mut(y), N, batch * M, K, 1, nullptr, g_precision);
  else
    lt_matmul(dev, false, b, N, K * N, a, K, M * K, fptr_mut(y), N, M, K, batch, nullptr, g_precision);
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
  Tensor q = dense(q_in, dev), k = dense(k_in, dev), v = dense(v_in, dev), out = empty({B, H, Nq, Dv}, dev);
  const int64_t rows = B * H * Nq;
  if (rows == 0) return out;
  // The fast path: two cuBLASLt batched GEMMs around a row softmax, S = Q K^T (q, k rounded to the precision,
  // fp32 accumulation), P = softmax(S * scale) in fp32 (it is also the attention-probabilities tap), O = P V in
  // full fp32 with v rounded to the precision -- so only q, k, v are rounded, exactly as the reference is given
  // them, and tf32 leaves attention in fp32. It materialises S (B*H*Nq*Nk floats); past kAttnScoresBudget the
  // streaming kernels below take over.
  constexpr size_t kAttnScoresBudget = size_t{4} << 30;
  const Precision qk_p = g_precision == Precision::bf16 || g_precision == Precision::fp16 ? g_precision : Precision::fp32;
  const int64_t BH = B * H;
  if (static_cast<size_t>(BH * Nq * Nk) * sizeof(float) <= kAttnScoresBudget) {
    Tensor probs = empty({B, H, Nq, Nk}, dev);
    Tensor ql = lowered(q, dev, qk_p), kl = lowered(k, dev, qk_p);
    // column-major S^T[Nk, Nq] = K[Nk, D] . Q^T[D, Nq] per (batch, head)
    lt_matmul(dev, true, kl, D, Nk * D, ql, D, Nq * D, fptr_mut(probs), Nk, Nq, D, BH, nullptr, qk_p);
    const unsigned threads = Nk >= 256 ? 256 : 128;
    scaled_softmax_kernel<<<static_cast<unsigned>(BH * Nq), threads, 0, stream(dev)>>>(fptr_mut(probs), Nk, scale);
    LAUNCH_CHECK();
    Tensor vr = v;
    if (qk_p != Precision::fp32) {
      vr = empty(v.shape(), dev);
      round_kernel<<<blocks_for(v.numel()), 256, 0, stream(dev)>>>(fptr_mut(vr), fptr(v), v.numel(), qk_p);
      LAUNCH_CHECK();
    }
    // column-major O^T[Dv, Nq] = V^T[Dv, Nk] . P^T[Nk, Nq]
    lt_matmul(dev, false, vr, Dv, Nk * Dv, probs, Nk, Nq * Nk, fptr_mut(out), Dv, Nq, Nk, BH, nullptr, Precision::fp32);
    if (attn_probs) *attn_probs = probs;
    return out;
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
    return out;
  }
  const int64_t blocks = B * H * ((Nq + kFlashRows - 1) / kFlashRows);
  if (blocks > 0x7fffffff) op_error(op, "too many query rows for one launch: " + q_in.str());
  attention_flash_kernel<<<static_cast<unsigned>(blocks), kFlashRows * 32, 0, stream(dev)>>>(
      fptr_mut(out), fptr(q), fptr(k), fptr(v), Nq, Nk, static_cast<int>(D), static_cast<int>(Dv), scale, g_precision);
  LAUNCH_CHECK();
  return out;
}

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
  Tensor x = dense(x_in, dev), w = dense(w_in, dev), y = empty({N, Cout, Ho, Wo}, dev);
  if (y.numel() == 0) return y;
  Dnn& dn = dnn(dev);
  TABULA_CUDNN_CHECK(cudnnSetStream(dn.h, stream(dev)));
  cudnnTensorDescriptor_t xd = nullptr, yd = nullptr, bd = nullptr;
  cudnnFilterDescriptor_t wd = nullptr;
  cudnnConvolutionDescriptor_t cd = nullptr;
  cudnnActivationDescriptor_t ad = nullptr;
  bool fused = false;
  auto cleanup = [&] {
    if (xd) cudnnDestroyTensorDescriptor(xd);
    if (yd) cudnnDestroyTensorDescriptor(yd);
    if (bd) cudnnDestroyTensorDescriptor(bd);
    if (ad) cudnnDestroyActivationDescriptor(ad);
    if (wd) cudnnDestroyFilterDescriptor(wd);
    if (cd) cudnnDestroyConvolutionDescriptor(cd);
  };
  try {
    TABULA_CUDNN_CHECK(cudnnCreateTensorDescriptor(&xd));
    TABULA_CUDNN_CHECK(cudnnCreateTensorDescriptor(&yd));
    TABULA_CUDNN_CHECK(cudnnCreateFilterDescriptor(&wd));
    TABULA_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&cd));
    auto I = [](int64_t v) { return static_cast<int>(v); };
    TABULA_CUDNN_CHECK(cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, I(N), I(C), I(H), I(W)));
    TABULA_CUDNN_CHECK(cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, I(N), I(Cout), I(Ho), I(Wo)));
    TABULA_CUDNN_CHECK(cudnnSetFilter4dDescriptor(wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, I(Cout), I(C / g), I(kh), I(kw)));
    TABULA_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(cd, I(o.padding[0]), I(o.padding[1]), I(o.stride[0]), I(o.stride[1]),
                                                       I(o.dilation[0]), I(o.dilation[1]), CUDNN_CROSS_CORRELATION,
                                                       CUDNN_DATA_FLOAT));
    TABULA_CUDNN_CHECK(cudnnSetConvolutionGroupCount(cd, I(g)));
    // fp32: plain FMA math (no TF32); every other precision lets cuDNN use tensor cores on the f32 data.
    TABULA_CUDNN_CHECK(cudnnSetConvolutionMathType(cd, g_precision == Precision::fp32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH));
    const std::string key = std::to_string(static_cast<int>(g_precision)) + ":" + shape_str(x.shape()) + shape_str(w.shape()) +
                            std::to_string(o.stride[0]) + "," + std::to_string(o.stride[1]) + "," + std::to_string(o.padding[0]) +
                            "," + std::to_string(o.padding[1]) + "," + std::to_string(o.dilation[0]) + "," +
                            std::to_string(o.dilation[1]) + "," + std::to_string(g);
    std::pair<cudnnConvolutionFwdAlgo_t, size_t> choice;
    auto it = dn.algos.find(key);
    if (it != dn.algos.end()) {
      choice = it->second;
    } else {
      // Heuristics only (no timing), so the choice is the same every run; cached per shape. Fidelity first: the
      // first usable implicit-GEMM/GEMM algorithm (a plain dot product per output, like the reference), and only
      // when cuDNN offers none of those, any deterministic one (FFT/Winograd round differently).
      cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
      int found = 0;
      TABULA_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(dn.h, xd, wd, cd, yd, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &found, perf));
      auto usable = [&](const cudnnConvolutionFwdAlgoPerf_t& a) {
        return a.status == CUDNN_STATUS_SUCCESS && a.determinism == CUDNN_DETERMINISTIC && a.memory <= (size_t{1} << 30);
      };
      auto gemm_like = [](cudnnConvolutionFwdAlgo_t a) {
        return a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM || a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM ||
               a == CUDNN_CONVOLUTION_FWD_ALGO_GEMM;
      };
      bool ok = false;
      for (int i = 0; i < found && !ok; ++i)
        if (usable(perf[i]) && gemm_like(perf[i].algo)) choice = {perf[i].algo, perf[i].memory}, ok = true;
      for (int i = 0; i < found && !ok; ++i)
        if (usable(perf[i])) choice = {perf[i].algo, perf[i].memory}, ok = true;
      if (!ok) op_error(op, "cuDNN offers no deterministic algorithm for " + x.str() + " * " + w.str());
      dn.algos.emplace(key, choice);
    }
    Tensor ws = choice.second ? empty({static_cast<int64_t>(choice.second)}, dev, DType::u8) : Tensor();
    const float alpha = 1.f, beta = 0.f;
    // cuDNN's fused form y = act(conv(x) + alpha2 * z + bias) is exactly act(conv + bias + residual) for ReLU or
    // none; cuDNN runs it with the implicit-precomputed-GEMM algorithm (the only one allowed for identity).
    fused = (act == Activation::none || act == Activation::relu) && (b_in.defined() || residual.defined()) &&
            choice.first == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM;
    if (fused) {
      Tensor b;
      if (b_in.defined()) {
        b = dense(b_in, dev);
      } else {
        b = empty({Cout}, dev);
        TABULA_CUDA_CHECK(cudaMemsetAsync(b.raw(), 0, b.nbytes(), stream(dev)));
      }
      Tensor r = residual.defined() ? dense(residual, dev) : Tensor();
      TABULA_CUDNN_CHECK(cudnnCreateTensorDescriptor(&bd));
      TABULA_CUDNN_CHECK(cudnnSetTensor4dDescriptor(bd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, I(Cout), 1, 1));
      TABULA_CUDNN_CHECK(cudnnCreateActivationDescriptor(&ad));
      TABULA_CUDNN_CHECK(cudnnSetActivationDescriptor(
          ad, act == Activation::relu ? CUDNN_ACTIVATION_RELU : CUDNN_ACTIVATION_IDENTITY, CUDNN_PROPAGATE_NAN, 0.0));
      const float alpha2 = r.defined() ? 1.f : 0.f;
      // Without a residual z is y itself with alpha2 = 0; cuDNN does not promise to skip reading z then, and
      // 0 * NaN (an uninitialised or poisoned y) would be NaN, so y starts as zeros.
      if (!r.defined()) TABULA_CUDA_CHECK(cudaMemsetAsync(y.raw(), 0, y.nbytes(), stream(dev)));
      TABULA_CUDNN_CHECK(cudnnConvolutionBiasActivationForward(
          dn.h, &alpha, xd, x.raw(), wd, w.raw(), cd, choice.first, ws.defined() ? ws.raw() : nullptr, choice.second,
          &alpha2, yd, r.defined() ? r.raw() : y.raw(), bd, b.raw(), ad, yd, y.raw()));
    } else {
      TABULA_CUDNN_CHECK(cudnnConvolutionForward(dn.h, &alpha, xd, x.raw(), wd, w.raw(), cd, choice.first,
                                                 ws.defined() ? ws.raw() : nullptr, choice.second, &beta, yd, y.raw()));
    }
  } catch (...) {
    cleanup();
    throw;
  }
  cleanup();
  if (!fused && (b_in.defined() || residual.defined() || act != Activation::none)) {
    Tensor b = b_in.defined() ? dense(b_in, dev) : Tensor(), r = residual.defined() ? dense(residual, dev) : Tensor();
    epilogue_kernel<<<blocks_for(y.numel()), 256, 0, stream(dev)>>>(fptr_mut(y), y.numel(), b.defined() ? fptr(b) : nullptr,
                                                                    Ho * Wo, Cout, r.defined() ? fptr(r) : nullptr, act);
    LAUNCH_CHECK();
  }
  return y;
}

}  // namespace tabula::cuda

// ---- ops:: dispatch (engine/device_ops.h): ops::<op> on a cuda tensor lands here ----
namespace tabula::cuda {
namespace {
Tensor clone_dense(const Tensor& x) {
  const int dev = common_device("Tensor::clone", {&x});
  Tensor y = empty(x.shape(), dev);
  copy_into("Tensor::clone", y, x, dev);
  return y;
}
Tensor host_copy(const Tensor& x) { return cuda::to_host(cuda::contiguous(x)); }
Tensor device_copy_like(const Tensor& host, const Tensor& like) { return to_device(host, device_of("to_device", like)); }
Tensor relu_or_act(const Tensor& x, Activation a) { return activation(x, a); }
Tensor mul_tensor(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor mul_scalar(const Tensor& a, float s) { return mul(a, s); }
Tensor gelu_any(const Tensor& x, bool t) { return gelu(x, t); }
Tensor max_pool(const Tensor& x, std::array<int64_t, 2> k, std::array<int64_t, 2> s, std::array<int64_t, 2> p,
                std::array<int64_t, 2> d, bool c) {
  return max_pool2d(x, k, s, p, d, c);
}
Tensor conv(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dOptions& o, Activation a, const Tensor& r) {
  return conv2d(x, w, b, o, a, r);
}
Tensor lin(const Tensor& x, const Tensor& w, const Tensor& b, Activation a) { return linear(x, w, b, a); }
Tensor bn(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& m, const Tensor& v, double eps) {
  return batch_norm(x, w, b, m, v, eps);
}
Tensor ln(const Tensor& x, const Tensor& w, const Tensor& b, double eps) { return layer_norm(x, w, b, eps); }
Tensor sm(const Tensor& x, int64_t d) { return softmax(x, d); }
Tensor sdpa(const Tensor& q, const Tensor& k, const Tensor& v, std::optional<double> s, Tensor* p) {
  return scaled_dot_product_attention(q, k, v, s, p);
}
Tensor pooled(const Tensor& x, Pool p, int64_t n) { return pool(x, p, n); }

const DeviceOps kTable = {
    conv,        bn,       gelu_any,   relu_or_act, swiglu, max_pool, adaptive_avg_pool2d, lin,         matmul, ln, sm,
    sdpa,        add,      mul_tensor, mul_scalar,  cat,    layer_scale, interpolate,       pooled,      clone_dense,
    host_copy,   device_copy_like,
};
}  // namespace

void register_ops_dispatch() { register_device_ops(Device::cuda, &kTable); }
}  // namespace tabula::cuda
