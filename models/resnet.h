// torchvision.models.ResNet (BasicBlock / Bottleneck with the stride on the 3x3 conv, "ResNet V1.5"), eval mode.
// Taps carry torchvision's module names: conv1, bn1, relu, maxpool, layer1 .. layer4, layer2.3, layer2.3.conv2,
// layer2.3.bn2, layer2.3.relu (the block's shared ReLU: like a forward hook, the value kept is its last call,
// the block output), layer2.0.downsample(.0/.1), avgpool, fc.
//
// Fast path: every BatchNorm is folded into the conv before it at load, and bias + residual + ReLU run in the
// conv's GEMM epilogue. A block (or the stem) that holds a wanted pre-fold tap (conv1, bn1, ...) runs unfused
// with the original weights, so the tapped value is torch's own.
//
// Files: resnet_arch.cpp (config keys, named archs, init_weights), resnet.cpp (the module).
#pragma once
#include <array>
#include <memory>

#include "models/arch.h"

namespace tabula {

// torchvision.models.ResNet(block, layers, num_classes, zero_init_residual, groups, width_per_group).
struct ResNetConfig final : ModelConfig {
  enum class Block { basic, bottleneck };
  Block block = Block::bottleneck;
  std::array<int, 4> layers{3, 4, 6, 3};
  int num_classes = 1000;
  bool zero_init_residual = false;
  int groups = 1;
  int width_per_group = 64;
  int in_chans = 3;  // torchvision fixes 3; more channels (microscopy) change only conv1's shape
  // Each stage's `planes` (timm ResNet(channels=...); torchvision's are 64, 128, 256, 512): narrower variants of a
  // geometry, for fixtures. The stem stays 64 wide, as in both.
  std::array<int, 4> channels{64, 128, 256, 512};

  int expansion() const { return block == Block::basic ? 1 : 4; }
  // Bottleneck: width = int(planes * (base_width / 64.)) * groups.
  int64_t width(int64_t planes) const;

  std::unique_ptr<ModelConfig> clone() const override { return std::make_unique<ResNetConfig>(*this); }
  std::string family() const override { return "torchvision ResNet"; }
  void apply_keys(const KeyValues& keys) override;
  std::unique_ptr<Model> construct(const ArchConfig& arch) const override;
  void init_weights(const ModuleTree& tree, InitState& state) const override;
  // classes=0: a checkpoint's fc.weight / fc.bias are left out, as timm's loader filters the classifier.
  WeightMap from_canonical(const WeightMap& weights) const override;
};

const Family& resnet_family();

}  // namespace tabula
