// torchvision.models.ResNet (BasicBlock / Bottleneck with the stride on the 3x3 conv, "ResNet V1.5"), eval mode.
// Taps carry torchvision's module names: conv1, bn1, relu, maxpool, layer1 .. layer4, layer2.3, layer2.3.conv2,
// layer2.3.bn2, layer2.3.relu (the block's shared ReLU: like a forward hook, the value kept is its last call,
// the block output), layer2.0.downsample(.0/.1), avgpool, fc.
//
// Fast path: every BatchNorm is folded into the conv before it at load, and bias + residual + ReLU run in the
// conv's GEMM epilogue. A block (or the stem) that holds a wanted pre-fold tap (conv1, bn1, ...) runs unfused
// with the original weights, so the tapped value is torch's own.
#pragma once
#include <memory>

#include "models/model.h"

namespace tabula {

// `params` resolved for `arch` (a skeleton gives a model whose forward throws: list_taps/gmacs only).
std::unique_ptr<Model> make_resnet(const ArchConfig& arch, const ParamStore& params);

}  // namespace tabula
