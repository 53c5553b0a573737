// ResNet configs: torchvision's named archs, the `resnet:` keys, and ResNet's init_weights().
#include <stdexcept>

#include "engine/init.h"
#include "models/resnet.h"

namespace tabula {

int64_t ResNetConfig::width(int64_t planes) const {
  if (block == Block::basic) return planes;
  return static_cast<int64_t>(static_cast<double>(planes) * (width_per_group / 64.0)) * groups;
}

namespace {
constexpr int kMaxBlocks = 1024;  // per stage; the deepest published ResNets have ~200
}  // namespace

void ResNetConfig::apply_keys(const KeyValues& keys) {
  for (const auto& [k, v] : keys) {
    if (k == "layers") {
      std::vector<int> xs;
      size_t p = 0;
      while (p <= v.size()) {
        size_t q = v.find(',', p);
        if (q == std::string::npos) q = v.size();
        xs.push_back(parse_int_value(k, v.substr(p, q - p), 1, kMaxBlocks));
        p = q + 1;
      }
      if (xs.size() != 4)
        throw KeyValueError("key 'layers' needs 4 block counts (e.g. layers=2,2,2,2), got '" + v + "'");
      for (size_t i = 0; i < 4; ++i) layers[i] = xs[i];
    } else if (k == "channels") {
      std::vector<int> xs;
      size_t p = 0;
      while (p <= v.size()) {
        size_t q = v.find(',', p);
        if (q == std::string::npos) q = v.size();
        xs.push_back(parse_int_value(k, v.substr(p, q - p), 1, kMaxSize / 4));
        p = q + 1;
      }
      if (xs.size() != 4)
        throw KeyValueError("key 'channels' needs 4 stage widths (timm's default 64,128,256,512), got '" + v + "'");
      for (size_t i = 0; i < 4; ++i) channels[i] = xs[i];
    } else if (k == "block") {
      if (v == "basic") block = Block::basic;
      else if (v == "bottleneck") block = Block::bottleneck;
      else throw KeyValueError("key 'block' is basic or bottleneck, got '" + v + "'");
    } else if (k == "width" || k == "width_per_group") {
      width_per_group = parse_int_value(k, v, 1);
    } else if (k == "groups") {
      groups = parse_int_value(k, v, 1);
    } else if (k == "classes" || k == "num_classes") {
      num_classes = parse_int_value(k, v, 0);
    } else if (k == "zero_init_residual") {
      zero_init_residual = parse_bool_value(k, v);
    } else if (k == "chans" || k == "in_chans") {
      in_chans = parse_int_value(k, v, 1);
    } else if (k == "dynamic_img_size") {
      throw KeyValueError("dynamic_img_size is a ViT key (ResNets take any input size)");
    } else {
      throw KeyValueError("unknown key '" + k + "' (resnet keys: layers, block, width, groups, classes, "
                                  "zero_init_residual, chans, channels)");
    }
  }
  if (block == Block::basic && (groups != 1 || width_per_group != 64))
    throw KeyValueError("BasicBlock only supports groups=1 and width=64 (as torchvision)");
  // Each stage's 3x3 conv is int(planes * width / 64) * groups channels wide (layer4's: 512 * width / 8 * groups).
  for (int planes : channels)
    if (static_cast<double>(planes) * width_per_group / 64.0 * groups > kMaxSize)
      throw KeyValueError("width * groups must be at most " + std::to_string(kMaxSize / 8) +
                          " (layer4 would be " + std::to_string(int64_t{planes} * width_per_group / 64 * groups) +
                          " channels wide)");
}

WeightMap ResNetConfig::from_canonical(const WeightMap& weights) const {
  if (num_classes > 0 || (!weights.count("fc.weight") && !weights.count("fc.bias"))) return weights;
  WeightMap out = weights;
  out.erase("fc.weight");
  out.erase("fc.bias");
  return out;
}

// ResNet.__init__'s loop over self.modules(): kaiming_normal_(fan_out, relu) for every Conv2d, BatchNorm weight 1
// and bias 0 (the constructor's values already); then zero_init_residual zeroes each block's last BN weight.
void ResNetConfig::init_weights(const ModuleTree& tree, InitState& s) const {
  for (const Module* m : tree.modules()) {
    if (m->type != "Conv2d") continue;
    const std::string w = m->name() + ".weight";
    kaiming_normal_(s.f32(w), s.shape(w), s.gen(), 0.0, FanMode::fan_out, "relu");
  }
  if (!zero_init_residual) return;
  for (const Module* m : tree.modules()) {
    if (m->type == "Bottleneck") s.fill(m->name() + ".bn3.weight", 0.0f);
    if (m->type == "BasicBlock") s.fill(m->name() + ".bn2.weight", 0.0f);
  }
}

namespace {
std::shared_ptr<const ModelConfig> resnet(ResNetConfig::Block block, std::array<int, 4> layers,
                                          int width_per_group = 64, int groups = 1) {
  auto c = std::make_shared<ResNetConfig>();
  c->block = block;
  c->layers = layers;
  c->width_per_group = width_per_group;
  c->groups = groups;
  return c;
}
}  // namespace

const Family& resnet_family() {
  using B = ResNetConfig::Block;
  static const Family f{"resnet",
                        std::make_shared<ResNetConfig>(),
                        {
                            {"resnet18", resnet(B::basic, {2, 2, 2, 2})},
                            {"resnet34", resnet(B::basic, {3, 4, 6, 3})},
                            {"resnet50", resnet(B::bottleneck, {3, 4, 6, 3})},
                            {"resnet101", resnet(B::bottleneck, {3, 4, 23, 3})},
                            {"resnet152", resnet(B::bottleneck, {3, 8, 36, 3})},
                            {"wide_resnet50_2", resnet(B::bottleneck, {3, 4, 6, 3}, 128)},
                            {"wide_resnet101_2", resnet(B::bottleneck, {3, 4, 23, 3}, 128)},
                            {"resnext50_32x4d", resnet(B::bottleneck, {3, 4, 6, 3}, 4, 32)},
                            {"resnext101_32x8d", resnet(B::bottleneck, {3, 4, 23, 3}, 8, 32)},
                            {"resnext101_64x4d", resnet(B::bottleneck, {3, 4, 23, 3}, 4, 64)},
                        },
                        {}};
  return f;
}

}  // namespace tabula
