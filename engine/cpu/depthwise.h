// Depthwise convolution on channels-last maps (internal to the CPU backend): F.conv2d with groups = C_in = C_out
// (ConvNeXt's 7x7 conv_dw, MobileNet-style blocks). One output pixel is a sum over the window of x[ih, iw, :] *
// w[i, j, :], vectorised across channels, so every load is a contiguous run of C floats. Compiled three times
// (generic, AVX2+FMA, AVX-512) from depthwise_impl.h and picked once at run time like the row kernels.
#pragma once
#include <cstdint>

#include "engine/ops.h"

namespace tabula::detail {

struct DepthwiseGeom {
  int64_t H, W, C, kh, kw, Ho, Wo;
  int64_t sh, sw, ph, pw, dh, dw;
};

// Output rows [oh0, oh1) of one image: x [H, W, C], wt [kh, kw, C] (the torch weight [C, 1, kh, kw] transposed),
// bias [C] or null, y [Ho, Wo, C]. Window taps outside the input are skipped (zero padding).
using DepthwiseRowsFn = void (*)(const float* x, const float* wt, const float* bias, const DepthwiseGeom& g,
                                 float* y, int64_t oh0, int64_t oh1);

DepthwiseRowsFn depthwise_rows();  // the best for this CPU
DepthwiseRowsFn depthwise_rows_generic();
DepthwiseRowsFn depthwise_rows_avx2();    // depthwise_avx2.cpp
DepthwiseRowsFn depthwise_rows_avx512();  // depthwise_avx512.cpp

// ops::conv2d's depthwise case: the output is channels-last (as the input is or is made), with bias, residual
// and activation applied per pixel after the window sum.
Tensor depthwise_conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dOptions& o,
                        Activation act, const Tensor& residual);

}  // namespace tabula::detail
