// F.interpolate with the reference's own separable taps (detail::interpolate_taps), computed on the host.
#include "engine/cuda/common.cuh"

namespace tabula::cuda {
namespace {

// ---- interpolate: separable taps computed on the host by detail::interpolate_taps (the reference's own) ----
__global__ void interpolate_kernel(void* y, ET yt, const void* x, ET xt, int64_t NC, int64_t H, int64_t W, int64_t Ho,
                                   int64_t Wo, const int64_t* ih, const float* wh, int th, const int64_t* iw,
                                   const float* ww, int tw) {
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

// Padded [out, T] tables (index 0 / weight 0 beyond an output's own taps) uploaded to the device.
std::pair<Tensor, Tensor> taps_on_device(const detail::InterpTaps& t, int dev, int& width) {
  size_t T = 1;
  for (const auto& v : t.index) T = std::max(T, v.size());
  const int64_t out = static_cast<int64_t>(t.index.size());
  Tensor idx = Tensor::heap({out, static_cast<int64_t>(T)}, DType::i64),
         w = Tensor::heap({out, static_cast<int64_t>(T)}, DType::f32);
  for (int64_t i = 0; i < out; ++i)
    for (size_t j = 0; j < T; ++j) {
      const bool in = j < t.index[i].size();
      idx.data<int64_t>()[i * T + j] = in ? t.index[i][j] : 0;
      w.data<float>()[i * T + j] = in ? static_cast<float>(t.weight[i][j]) : 0.f;
    }
  width = static_cast<int>(T);
  return {to_device(idx, dev), to_device(w, dev)};
}


}  // namespace

Tensor CudaBackend::interpolate(const Tensor& x_in, const InterpolateOptions& o) {
  const OpTimer timer("interpolate", x_in);
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
    interpolate_kernel<<<blocks_for(y.numel()), 256, 0, stream(dev)>>>(y.raw(), et(y), x.raw(), et(x), N * C, H, W, Ho,
                                                                       Wo, ih.data<int64_t>(), fptr(wh), th,
                                                                       iw.data<int64_t>(), fptr(ww), tw);
  LAUNCH_CHECK();
  // The tap tables go back to the cache on return; a later allocation reusing them is ordered after this kernel
  // on the same stream, so no synchronisation is needed.
  return y;
}
}  // namespace tabula::cuda
