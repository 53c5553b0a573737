// Winograd F(2x2, 3x3) convolution (internal; ops::conv2d dispatches to it). See winograd.cpp.
#pragma once
#include "engine/ops_common.h"

namespace tabula::detail {

// 3x3, stride 1, dilation 1, groups 1, at least 16 input and output channels (where it wins over im2col).
bool winograd_applies(const ConvShapes& s, const Conv2dOptions& o);
// x: [N, C, H, W], w: [Cout, C, 3, 3], bias/res may be null; y: [N, Cout, Ho, Wo] (all contiguous).
void winograd_conv3x3(const float* x, const float* w, const float* bias, const float* res, float* y,
                      const ConvShapes& s, const Conv2dOptions& o, Activation act);

}  // namespace tabula::detail
