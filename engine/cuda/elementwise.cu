// Element-wise ops: activations, swiglu, broadcasting add/mul, LayerScale, and the epilogue (bias + residual +
// activation) that follows cuDNN and cuBLASLt.
#include "engine/cuda/common.cuh"

namespace tabula::cuda {
namespace {

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

enum class BinOp { add, mul };
__device__ __forceinline__ float bin_apply(float u, float v, BinOp op) { return op == BinOp::add ? u + v : u * v; }
// General broadcasting form: both operands through their (expanded) strides; y contiguous.
__global__ void binary_kernel(void* y, ET yt, const void* a, Strides sa, ET at, const void* b, Strides sb, ET bt,
                              int64_t n, BinOp op) {
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
    const bool lastdim =
        b.dim() == 1 && a.dim() >= 1 && b.size(0) == a.size(-1) && a.is_contiguous() && b.is_contiguous();
    if (same || lastdim) {
      Tensor y = empty_like_layout(a, dev, ydt);
      const int64_t n = y.numel();
      if (same && kind == BinOp::add && a.dtype() == b.dtype() && a.dtype() == ydt && vec8_ok(a) && vec8_ok(b) && n) {
        if (ydt == DType::bf16)
          add_vec8_kernel<<<blocks_for(n / 8), 256, 0, stream(dev)>>>(
              static_cast<__nv_bfloat16*>(y.raw()), static_cast<const __nv_bfloat16*>(a.raw()),
              static_cast<const __nv_bfloat16*>(b.raw()), n / 8);
        else
          add_vec8_kernel<<<blocks_for(n / 8), 256, 0, stream(dev)>>>(static_cast<__half*>(y.raw()),
                                                                      static_cast<const __half*>(a.raw()),
                                                                      static_cast<const __half*>(b.raw()), n / 8);
        LAUNCH_CHECK();
        return y;
      }
      if (n)
        binary_flat_kernel<<<blocks_for(n), 256, 0, stream(dev)>>>(y.raw(), et(y), a.raw(), et(a), b.raw(), et(b), n,
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
  binary_kernel<<<blocks_for(n), 256, 0, stream(dev)>>>(y.raw(), et(y), a.raw(), make_strides(op, expanded(a)), et(a),
                                                        b.raw(), make_strides(op, expanded(b)), et(b), n, kind);
  LAUNCH_CHECK();
  return y;
}

// swiglu: x [rows, 2H] -> silu(x[:, :H]) * x[:, H:]
__global__ void swiglu_kernel(void* y, ET yt, const void* x, ET xt, int64_t rows, int64_t H) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= rows * H) return;
  const int64_t r = i / H, c = i % H;
  const float a = ld(x, r * 2 * H + c, xt), g = ld(x, r * 2 * H + H + c, xt);
  st(y, i, a / (1.f + expf(-a)) * g, yt);
}

__global__ void hardswish_kernel(void* y, ET yt, const void* x, ET xt, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float v = ld(x, i, xt);
  st(y, i, v * fminf(fmaxf(v + 3.f, 0.f), 6.f) / 6.f, yt);
}

}  // namespace

// ---- epilogue after cuDNN/cuBLAS: y = act(y + bias[channel] + residual), residual laid out like y ----
// channel = (i / inner) % channels: inner = H*W for NCHW, 1 for channels-last or [rows, C].
template <typename Index>
__global__ void epilogue_kernel(void* y, ET yt, Index n, const float* bias, Index inner, Index channels,
                                const void* residual, ET rt, Activation a) {
  const Index i = static_cast<Index>(blockIdx.x) * static_cast<Index>(blockDim.x) + static_cast<Index>(threadIdx.x);
  if (i >= n) return;
  float v = ld(y, i, yt);
  if (bias) v += bias[(i / inner) % channels];
  if (residual) v += ld(residual, i, rt);
  st(y, i, act_apply(v, a), yt);
}
void epilogue(Tensor& y, int dev, const float* bias, int64_t inner, int64_t channels, const Tensor& residual,
              Activation a) {
  const int64_t n = y.numel();
  if (n == 0) return;
  if (inner == 1 && channels % 8 == 0 && vec8_ok(y) &&
      (!residual.defined() || (residual.dtype() == y.dtype() && vec8_ok(residual)))) {
    const void* r = residual.defined() ? residual.raw() : nullptr;
    if (y.dtype() == DType::bf16)
      epilogue_vec8_kernel<<<blocks_for(n / 8), 256, 0, stream(dev)>>>(
          static_cast<__nv_bfloat16*>(y.raw()), n / 8, bias, channels, static_cast<const __nv_bfloat16*>(r), a);
    else
      epilogue_vec8_kernel<<<blocks_for(n / 8), 256, 0, stream(dev)>>>(static_cast<__half*>(y.raw()), n / 8, bias,
                                                                       channels, static_cast<const __half*>(r), a);
    LAUNCH_CHECK();
    return;
  }
  const void* r = residual.defined() ? residual.raw() : nullptr;
  const ET rt = residual.defined() ? et(residual) : ET::f32;
  if (n < (int64_t{1} << 31))  // 32-bit index math: the division by `channels` is several times cheaper
    epilogue_kernel<int32_t><<<blocks_for(n), 256, 0, stream(dev)>>>(y.raw(), et(y), static_cast<int32_t>(n), bias,
                                                                     static_cast<int32_t>(inner),
                                                                     static_cast<int32_t>(channels), r, rt, a);
  else
    epilogue_kernel<int64_t>
        <<<blocks_for(n), 256, 0, stream(dev)>>>(y.raw(), et(y), n, bias, inner, channels, r, rt, a);
  LAUNCH_CHECK();
}

// y = act(x) over dense memory of the same layout (y may be x: in place).
void apply_activation(Tensor& y, const Tensor& x, Activation act, int dev) {
  const int64_t n = x.numel();
  if (n == 0) return;
  if (vec8_ok(x) && vec8_ok(y)) {
    if (x.dtype() == DType::bf16)
      act_vec8_kernel<<<blocks_for(n / 8), 256, 0, stream(dev)>>>(
          static_cast<__nv_bfloat16*>(y.raw()), static_cast<const __nv_bfloat16*>(x.raw()), n / 8, act);
    else
      act_vec8_kernel<<<blocks_for(n / 8), 256, 0, stream(dev)>>>(static_cast<__half*>(y.raw()),
                                                                  static_cast<const __half*>(x.raw()), n / 8, act);
  } else {
    act_kernel<<<blocks_for(n), 256, 0, stream(dev)>>>(y.raw(), et(y), x.raw(), et(x), n, act);
  }
  LAUNCH_CHECK();
}

Tensor CudaBackend::activation(const Tensor& x_in, Activation act) {
  const OpTimer timer("activation", x_in);
  const int dev = common_device("cuda::activation", {&x_in});
  Tensor x = dense_any_layout(x_in) ? x_in : dense(x_in, dev);
  Tensor y = empty_like_layout(x, dev, x.dtype());
  apply_activation(y, x, act, dev);
  return y;
}
Tensor CudaBackend::relu(const Tensor& x) {
  const OpTimer timer("relu", x);
  return activation(x, Activation::relu);
}
Tensor CudaBackend::gelu(const Tensor& x, bool tanh_approximation) {
  const OpTimer timer("gelu", x);
  return activation(x, tanh_approximation ? Activation::gelu_tanh : Activation::gelu);
}
Tensor CudaBackend::silu(const Tensor& x) {
  const OpTimer timer("silu", x);
  return activation(x, Activation::silu);
}

Tensor CudaBackend::hardswish(const Tensor& x_in) {
  const OpTimer timer("hardswish", x_in);
  const int dev = common_device("cuda::hardswish", {&x_in});
  Tensor x = dense_any_layout(x_in) ? x_in : dense(x_in, dev);
  Tensor y = empty_like_layout(x, dev, x.dtype());
  if (x.numel())
    hardswish_kernel<<<blocks_for(x.numel()), 256, 0, stream(dev)>>>(y.raw(), et(y), x.raw(), et(x), x.numel());
  LAUNCH_CHECK();
  return y;
}

Tensor CudaBackend::swiglu(const Tensor& x_in) {
  const OpTimer timer("swiglu", x_in);
  const int dev = common_device("cuda::swiglu", {&x_in});
  const int64_t C = x_in.size(-1);
  if (C % 2) op_error("cuda::swiglu", "last dim must be even, got " + x_in.str());
  Tensor x = dense(x_in, dev);
  Shape os = x.shape();
  os.back() = C / 2;
  Tensor y = empty(os, dev, x.dtype());
  const int64_t rows = C ? x.numel() / C : 0;
  if (y.numel())
    swiglu_kernel<<<blocks_for(y.numel()), 256, 0, stream(dev)>>>(y.raw(), et(y), x.raw(), et(x), rows, C / 2);
  LAUNCH_CHECK();
  return y;
}

Tensor CudaBackend::add(const Tensor& a, const Tensor& b) {
  const OpTimer timer("add", a, b);
  return binary("cuda::add", a, b, BinOp::add);
}
Tensor CudaBackend::mul(const Tensor& a, const Tensor& b) {
  const OpTimer timer("mul", a);
  return binary("cuda::mul", a, b, BinOp::mul);
}
Tensor CudaBackend::mul(const Tensor& x_in, float s) {
  const OpTimer timer("mul", x_in);
  const int dev = common_device("cuda::mul", {&x_in});
  Tensor x = dense_any_layout(x_in) ? x_in : dense(x_in, dev);
  Tensor y = empty_like_layout(x, dev, x.dtype());
  if (x.numel())
    scale_kernel<<<blocks_for(x.numel()), 256, 0, stream(dev)>>>(y.raw(), et(y), x.raw(), et(x), x.numel(), s);
  LAUNCH_CHECK();
  return y;
}
Tensor CudaBackend::layer_scale(const Tensor& x, const Tensor& gamma) {
  const OpTimer timer("layer_scale", x);
  if (gamma.dim() != 1 || gamma.numel() != x.size(-1))
    op_error("cuda::layer_scale", "gamma must be [" + std::to_string(x.size(-1)) + "], got " + gamma.str());
  return binary("cuda::layer_scale", x, gamma, BinOp::mul);
}
}  // namespace tabula::cuda
