// Normalisations and row reductions: batch_norm (eval), layer_norm (block, warp-per-row and 16-bit vector forms),
// softmax.
#include "engine/cuda/common.cuh"

namespace tabula::cuda {
namespace {

// F.layer_norm over rows of C: two passes (mean, then centred variance, biased as torch), fp32 statistics.
__global__ void layer_norm_kernel(void* y, ET yt, const void* x, ET xt, const float* w, const float* b, int64_t C,
                                  float eps) {
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


// F.layer_norm of rows of C <= 32 * PER: mean, then the centred variance (biased), fp32 statistics.
template <int PER>
__global__ void layer_norm_warp_kernel(void* y, ET yt, const void* x, ET xt, const float* w, const float* b,
                                       int64_t rows, int C, float eps) {
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
template <int PER>
struct LayerNormWarp {
  static void launch(unsigned blocks, int dev, void* y, ET yt, const void* x, ET xt, const float* w, const float* b,
                     int64_t rows, int C, float eps) {
    layer_norm_warp_kernel<PER><<<blocks, 128, 0, stream(dev)>>>(y, yt, x, xt, w, b, rows, C, eps);
  }
};

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

// LayerNorm over 16-bit rows with C % 8 == 0, C <= 256 * PV: a warp per row, 16-byte loads, the row in registers.
template <typename T, int PV>
__global__ void layer_norm_vec_kernel(T* y, const T* x, const float* w, const float* b, int64_t rows, int C,
                                      float eps) {
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

}  // namespace

Tensor CudaBackend::batch_norm(const Tensor& x_in, const Tensor& w, const Tensor& b, const Tensor& mean,
                               const Tensor& var, double eps) {
  const OpTimer timer("batch_norm", x_in);
  const int dev = common_device("cuda::batch_norm", {&x_in, &w, &b, &mean, &var});
  if (x_in.dim() < 2) op_error("cuda::batch_norm", "expects [N, C, ...], got " + x_in.str());
  const int64_t C = x_in.size(1);
  for (const Tensor* t : {&w, &b, &mean, &var})
    if (t->defined() && t->numel() != C)
      op_error("cuda::batch_norm", "per-channel tensors must have " + std::to_string(C) + " elements, got " + t->str());
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
    channel_affine_kernel<<<blocks_for(x.numel()), 256, 0, stream(dev)>>>(
        y.raw(), et(y), x.raw(), et(x), x.numel(), std::max<int64_t>(inner, 1), C, fptr(sc), fptr(sh));
  LAUNCH_CHECK();
  return y;
}

Tensor CudaBackend::layer_norm(const Tensor& x_in, const Tensor& w, const Tensor& b, double eps) {
  const OpTimer timer("layer_norm", x_in);
  const int dev = common_device("cuda::layer_norm", {&x_in, &w, &b});
  const int64_t C = x_in.size(-1), rows = C ? x_in.numel() / C : 0;
  for (const Tensor* t : {&w, &b})
    if (t->defined() && t->numel() != C)
      op_error("cuda::layer_norm", "weight/bias must have " + std::to_string(C) + " elements, got " + t->str());
  Tensor x = dense(x_in, dev), y = empty(x.shape(), dev, x.dtype());
  Tensor wd = w.defined() ? dense_as(w, dev, DType::f32) : Tensor(),
         bd = b.defined() ? dense_as(b, dev, DType::f32) : Tensor();
  const float* wp = wd.defined() ? fptr(wd) : nullptr;
  const float* bp = bd.defined() ? fptr(bd) : nullptr;
  const bool vec =
      rows > 0 && x.dtype() == y.dtype() && aligned(x.raw(), 16) &&
      ((x.dtype() == DType::bf16 && layer_norm_vec<__nv_bfloat16>(y.raw(), x.raw(), wp, bp, rows, static_cast<int>(C),
                                                                  static_cast<float>(eps), dev)) ||
       (x.dtype() == DType::f16 &&
        layer_norm_vec<__half>(y.raw(), x.raw(), wp, bp, rows, static_cast<int>(C), static_cast<float>(eps), dev)));
  if (!vec && rows > 0 && C <= kWarpRowMax)
    launch_warp_rows<LayerNormWarp>(rows, static_cast<int>(C), dev, y.raw(), et(y), static_cast<const void*>(x.raw()),
                                    et(x), wp, bp, rows, static_cast<int>(C), static_cast<float>(eps));
  else if (!vec && rows > 0)
    layer_norm_kernel<<<static_cast<unsigned>(rows), 256, 0, stream(dev)>>>(y.raw(), et(y), x.raw(), et(x), wp, bp, C,
                                                                           static_cast<float>(eps));
  LAUNCH_CHECK();
  return y;
}

Tensor CudaBackend::softmax(const Tensor& x_in, int64_t dim) {
  const OpTimer timer("softmax", x_in);
  const int dev = common_device("cuda::softmax", {&x_in});
  dim = x_in.wrap_dim(dim);
  Tensor x = dense(x_in.transpose(dim, -1), dev);  // rows along the softmax dim
  Tensor y = empty(x.shape(), dev, x.dtype());
  const int64_t C = x.size(-1), rows = C ? x.numel() / C : 0;
  if (rows > 0) softmax_kernel<<<static_cast<unsigned>(rows), 256, 0, stream(dev)>>>(y.raw(), et(y), x.raw(), et(x), C);
  LAUNCH_CHECK();
  return contiguous(y.transpose(dim, -1));
}
}  // namespace tabula::cuda
