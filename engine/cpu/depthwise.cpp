#define TABULA_DEPTHWISE_NS generic
#include "engine/cpu/depthwise_impl.h"

#include <vector>

#include "engine/cpu/packed.h"
#include "engine/cpu/rowops.h"
#include "engine/ops_common.h"
#include "engine/system.h"
#include "engine/threads.h"

namespace tabula::detail {

DepthwiseRowsFn depthwise_rows_generic() { return generic::rows; }

DepthwiseRowsFn depthwise_rows() {
  static const DepthwiseRowsFn f = [] {
    const CpuFeatures& c = cpu_features();
    if (c.has_avx512()) return depthwise_rows_avx512();
    if (c.has_avx2_fma()) return depthwise_rows_avx2();
    return depthwise_rows_generic();
  }();
  return f;
}

Tensor depthwise_conv2d(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, const Conv2dOptions& o,
                        Activation act, const Tensor& residual) {
  const ConvShapes s = conv2d_shapes("ops::conv2d", x_in, w_in, b_in, o, residual);
  const Tensor x = to_channels_last(x_in);
  const Tensor res = residual.defined() ? to_channels_last(residual) : Tensor();
  const Tensor w = w_in.contiguous();
  const Tensor b = b_in.defined() ? b_in.contiguous() : Tensor();
  // [C, 1, kh, kw] -> [kh, kw, C]: the taps of one window position are contiguous across channels
  const int64_t C = s.C, K = s.kh * s.kw;
  std::vector<float> wt(static_cast<size_t>(K * C));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t k = 0; k < K; ++k) wt[static_cast<size_t>(k * C + c)] = w.data<float>()[c * K + k];
  const DepthwiseGeom g{s.H, s.W, C, s.kh, s.kw, s.Ho, s.Wo, o.stride[0], o.stride[1], o.padding[0],
                        o.padding[1], o.dilation[0], o.dilation[1]};
  Tensor y = empty_channels_last(s.N, C, s.Ho, s.Wo);
  const float* xp = x.data<float>();
  const float* bp = b.defined() ? b.data<float>() : nullptr;
  const float* rp = res.defined() ? res.data<float>() : nullptr;
  float* yp = y.data<float>();
  const DepthwiseRowsFn rows = depthwise_rows();
  const int64_t row = s.Wo * C;  // floats per output row
  parallel_for(s.N * s.Ho, grain_for(s.N * s.Ho, row * K), [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t n = q / s.Ho, oh = q % s.Ho;
      float* yn = yp + n * s.Ho * row;
      rows(xp + n * s.H * s.W * C, wt.data(), bp, g, yn, oh, oh + 1);
      if (rp || act != Activation::none) {
        float* yr = yn + oh * row;
        if (rp) {
          const float* rr = rp + q * row;
          for (int64_t i = 0; i < row; ++i) yr[i] += rr[i];
        }
        activation_inplace(yr, row, act);
      }
    }
  });
  return y;
}

}  // namespace tabula::detail
