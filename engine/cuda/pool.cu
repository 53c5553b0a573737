// Pooling: the tap/head pool(), max_pool2d (with a channels-last 16-bit vector form), adaptive_avg_pool2d.
#include "engine/cuda/common.cuh"

namespace tabula::cuda {
namespace {

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
  return {x.size(0),   x.size(1),   x.size(2),   x.size(3),   Ho,    Wo,
          x.stride(0), x.stride(1), x.stride(2), x.stride(3), out_cl};
}

__global__ void max_pool_kernel(void* y, ET yt, const void* x, ET xt, Map4 m, int kh, int kw, int sh, int sw, int ph,
                                int pw, int dh, int dw) {
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
__global__ void max_pool_cl_vec8_kernel(T* y, const T* x, int64_t N, int C, int H, int W, int Ho, int Wo, int kh,
                                        int kw, int sh, int sw, int ph, int pw, int dh, int dw) {
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

}  // namespace

Tensor CudaBackend::pool(const Tensor& x_in, Pool p, int64_t num_prefix) {
  const OpTimer timer("pool", x_in);
  const int dev = common_device("cuda::pool", {&x_in});
  if (p == Pool::none) return x_in;
  int64_t B, L, C, first, sb, sl, sc;
  Tensor x;
  if (x_in.dim() == 4) {
    if (p == Pool::cls || p == Pool::mean || p == Pool::cls_mean)
      op_error("cuda::pool",
               std::string(pool_name(p)) + " pooling needs tokens [B, N, C], got a feature map " + x_in.str());
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
      op_error("cuda::pool",
               "no patch tokens to pool: " + std::to_string(L) + " tokens, " + std::to_string(num_prefix) + " prefix");
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

Tensor CudaBackend::max_pool2d(const Tensor& x_in, std::array<int64_t, 2> k, std::array<int64_t, 2> s,
                               std::array<int64_t, 2> pd, std::array<int64_t, 2> d, bool ceil_mode) {
  const OpTimer timer("max_pool2d", x_in);
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
#define TABULA_MAXPOOL8(T)                                                                                     \
  max_pool_cl_vec8_kernel<T><<<blocks_for(n), 256, 0, stream(dev)>>>(                                          \
      static_cast<T*>(y.raw()), static_cast<const T*>(x_in.raw()), N, I(C), I(H), I(W), I(Ho), I(Wo), I(k[0]), \
      I(k[1]), I(s[0]), I(s[1]), I(pd[0]), I(pd[1]), I(d[0]), I(d[1]))
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

Tensor CudaBackend::adaptive_avg_pool2d(const Tensor& x_in, std::array<int64_t, 2> os) {
  const OpTimer timer("adaptive_avg_pool2d", x_in);
  const int dev = common_device("cuda::adaptive_avg_pool2d", {&x_in});
  if (x_in.dim() != 4) op_error("cuda::adaptive_avg_pool2d", "expects [N, C, H, W], got " + x_in.str());
  if (os[0] <= 0 || os[1] <= 0) op_error("cuda::adaptive_avg_pool2d", "output size must be positive");
  const int64_t N = x_in.size(0), C = x_in.size(1);
  // A channels-last input gives a channels-last result, except 1x1 (the same memory either way: contiguous).
  const bool cl = !x_in.is_contiguous() && is_channels_last(x_in) && os[0] * os[1] > 1;
  Tensor y =
      cl ? empty_channels_last(N, C, os[0], os[1], dev, x_in.dtype()) : empty({N, C, os[0], os[1]}, dev, x_in.dtype());
  if (y.numel())
    adaptive_avg_kernel<<<blocks_for(y.numel()), 256, 0, stream(dev)>>>(y.raw(), et(y), x_in.raw(), et(x_in),
                                                                        map4(x_in, os[0], os[1], cl));
  LAUNCH_CHECK();
  return y;
}

Tensor CudaBackend::avg_pool2d(const Tensor& x, Int2, Int2, Int2, bool, bool) {
  op_error("ops::avg_pool2d", "not implemented on cuda (got " + x.str() + "): no model runs it on a GPU");
}
Tensor CudaBackend::adaptive_max_pool2d(const Tensor& x, Int2) {
  op_error("ops::adaptive_max_pool2d", "not implemented on cuda (got " + x.str() + "): no model runs it on a GPU");
}
}  // namespace tabula::cuda
