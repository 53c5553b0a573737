// GCC 12 reports -Wmaybe-uninitialized inside libstdc++'s <regex> (std::function in _State, a known false
// positive) when built with sanitizers; it is not about this file's code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "weights_tools/arch_keys.h"

#include <cmath>
#include <map>
#include <regex>
#include <stdexcept>

namespace tabula::weights {

std::vector<ShapedName> vit_keys(const VitKeyConfig& c) {
  std::vector<ShapedName> k;
  const int64_t D = c.dim, grid = c.img / c.patch, N = grid * grid;
  const int64_t prefix = (c.class_token ? 1 : 0) + c.reg_tokens;
  const int64_t hidden = static_cast<int64_t>(static_cast<double>(D) * c.mlp_ratio);  // timm: int(dim * mlp_ratio)
  if (c.class_token) k.push_back({"cls_token", {1, 1, D}});
  if (c.reg_tokens) k.push_back({"reg_token", {1, c.reg_tokens, D}});
  k.push_back({"pos_embed", {1, c.no_embed_class ? N : N + prefix, D}});
  k.push_back({"patch_embed.proj.weight", {D, c.in_chans, c.patch, c.patch}});
  k.push_back({"patch_embed.proj.bias", {D}});
  for (int64_t i = 0; i < c.depth; ++i) {
    std::string p = "blocks." + std::to_string(i) + ".";
    k.push_back({p + "norm1.weight", {D}});
    k.push_back({p + "norm1.bias", {D}});
    k.push_back({p + "attn.qkv.weight", {3 * D, D}});
    k.push_back({p + "attn.qkv.bias", {3 * D}});
    k.push_back({p + "attn.proj.weight", {D, D}});
    k.push_back({p + "attn.proj.bias", {D}});
    if (c.layer_scale) k.push_back({p + "ls1.gamma", {D}});
    k.push_back({p + "norm2.weight", {D}});
    k.push_back({p + "norm2.bias", {D}});
    k.push_back({p + "mlp.fc1.weight", {hidden, D}});
    k.push_back({p + "mlp.fc1.bias", {hidden}});
    k.push_back({p + "mlp.fc2.weight", {D, hidden}});
    k.push_back({p + "mlp.fc2.bias", {D}});
    if (c.layer_scale) k.push_back({p + "ls2.gamma", {D}});
  }
  k.push_back({"norm.weight", {D}});
  k.push_back({"norm.bias", {D}});
  if (c.num_classes > 0) {
    k.push_back({"head.weight", {c.num_classes, D}});
    k.push_back({"head.bias", {c.num_classes}});
  }
  return k;
}

static void add_bn(std::vector<ShapedName>& k, const std::string& p, int64_t ch) {
  for (const char* n : {"weight", "bias", "running_mean", "running_var"}) k.push_back({p + "." + n, {ch}});
  k.push_back({p + ".num_batches_tracked", {}});
}

std::vector<ShapedName> resnet_keys(const ResNetKeyConfig& c) {
  // torchvision.models.resnet: BasicBlock (expansion 1) or Bottleneck (expansion 4, width = planes).
  std::vector<ShapedName> k;
  const int64_t expansion = c.bottleneck ? 4 : 1;
  k.push_back({"conv1.weight", {64, 3, 7, 7}});
  add_bn(k, "bn1", 64);
  int64_t inplanes = 64;
  for (size_t li = 0; li < c.layers.size(); ++li) {
    const int64_t planes = 64 << li;
    for (int64_t b = 0; b < c.layers[li]; ++b) {
      std::string p = "layer" + std::to_string(li + 1) + "." + std::to_string(b) + ".";
      const bool stride2 = b == 0 && li > 0;
      if (c.bottleneck) {
        k.push_back({p + "conv1.weight", {planes, inplanes, 1, 1}});
        add_bn(k, p + "bn1", planes);
        k.push_back({p + "conv2.weight", {planes, planes, 3, 3}});
        add_bn(k, p + "bn2", planes);
        k.push_back({p + "conv3.weight", {planes * expansion, planes, 1, 1}});
        add_bn(k, p + "bn3", planes * expansion);
      } else {
        k.push_back({p + "conv1.weight", {planes, inplanes, 3, 3}});
        add_bn(k, p + "bn1", planes);
        k.push_back({p + "conv2.weight", {planes, planes, 3, 3}});
        add_bn(k, p + "bn2", planes);
      }
      if (b == 0 && (stride2 || inplanes != planes * expansion)) {
        k.push_back({p + "downsample.0.weight", {planes * expansion, inplanes, 1, 1}});
        add_bn(k, p + "downsample.1", planes * expansion);
      }
      inplanes = planes * expansion;
    }
  }
  if (c.num_classes > 0) {
    k.push_back({"fc.weight", {c.num_classes, 512 * expansion}});
    k.push_back({"fc.bias", {c.num_classes}});
  }
  return k;
}

namespace {

struct Size {
  int64_t dim, depth;
};
const std::map<std::string, Size>& vit_sizes() {
  static const std::map<std::string, Size> m = {
      {"tiny", {192, 12}}, {"small", {384, 12}}, {"base", {768, 12}}, {"large", {1024, 24}}, {"huge", {1280, 32}}};
  return m;
}

int64_t to_int(const std::string& arch, const std::string& key, const std::string& v) {
  try {
    size_t used = 0;
    long long x = std::stoll(v, &used);
    if (used != v.size() || x < 0) throw std::invalid_argument(v);
    return x;
  } catch (const std::exception&) {
    throw std::runtime_error("arch '" + arch + "': " + key + "=" + v + " is not a non-negative integer");
  }
}

}  // namespace

std::optional<std::vector<ShapedName>> arch_keys(const std::string& arch) {
  static const std::map<std::string, std::vector<int64_t>> resnets = {
      {"resnet18", {2, 2, 2, 2}}, {"resnet34", {3, 4, 6, 3}}, {"resnet50", {3, 4, 6, 3}},
      {"resnet101", {3, 4, 23, 3}}, {"resnet152", {3, 8, 36, 3}}};
  if (auto it = resnets.find(arch); it != resnets.end()) {
    ResNetKeyConfig c;
    c.layers = it->second;
    c.bottleneck = arch != "resnet18" && arch != "resnet34";
    return resnet_keys(c);
  }
  static const std::map<std::string, std::string> hub = {
      {"dinov2_vits14", "vit_small_patch14_dinov2"},        {"dinov2_vitb14", "vit_base_patch14_dinov2"},
      {"dinov2_vitl14", "vit_large_patch14_dinov2"},        {"dinov2_vits14_reg", "vit_small_patch14_reg4_dinov2"},
      {"dinov2_vitb14_reg", "vit_base_patch14_reg4_dinov2"}, {"dinov2_vitl14_reg", "vit_large_patch14_reg4_dinov2"}};
  std::string name = arch;
  if (auto it = hub.find(arch); it != hub.end()) name = it->second;
  std::smatch m;
  static const std::regex timm_vit(R"(^vit_(tiny|small|base|large|huge)_patch(\d+)_(\d+)$)");
  static const std::regex dinov2(R"(^vit_(small|base|large)_patch14_(reg4_)?dinov2$)");
  if (std::regex_match(name, m, timm_vit)) {
    VitKeyConfig c;
    c.dim = vit_sizes().at(m[1]).dim;
    c.depth = vit_sizes().at(m[1]).depth;
    c.patch = std::stoll(m[2]);
    c.img = std::stoll(m[3]);
    return vit_keys(c);
  }
  if (std::regex_match(name, m, dinov2)) {
    // timm's DINOv2 configs: img 518, LayerScale, no classifier; register models with no_embed_class.
    VitKeyConfig c;
    c.dim = vit_sizes().at(m[1]).dim;
    c.depth = vit_sizes().at(m[1]).depth;
    c.patch = 14;
    c.img = 518;
    c.layer_scale = true;
    c.num_classes = 0;
    if (m[2].matched) c.reg_tokens = 4, c.no_embed_class = true;
    return vit_keys(c);
  }
  if (arch.rfind("vit:", 0) == 0) {
    VitKeyConfig c;
    c.num_classes = 0;
    std::string rest = arch.substr(4);
    size_t s = 0;
    while (s < rest.size()) {
      size_t e = rest.find(',', s);
      if (e == std::string::npos) e = rest.size();
      std::string kv = rest.substr(s, e - s);
      s = e + 1;
      size_t eq = kv.find('=');
      if (eq == std::string::npos) throw std::runtime_error("arch '" + arch + "': '" + kv + "' is not key=value");
      std::string k = kv.substr(0, eq), v = kv.substr(eq + 1);
      if (k == "dim") c.dim = to_int(arch, k, v);
      else if (k == "depth") c.depth = to_int(arch, k, v);
      else if (k == "heads") to_int(arch, k, v);  // does not change names or shapes
      else if (k == "patch") c.patch = to_int(arch, k, v);
      else if (k == "img") c.img = to_int(arch, k, v);
      else if (k == "reg") c.reg_tokens = to_int(arch, k, v), c.no_embed_class = c.reg_tokens > 0;
      else if (k == "ls") c.layer_scale = to_int(arch, k, v) != 0;
      else if (k == "classes") c.num_classes = to_int(arch, k, v);
      else if (k == "in_chans") c.in_chans = to_int(arch, k, v);
      else if (k == "no_embed_class") c.no_embed_class = to_int(arch, k, v) != 0;
      else if (k == "mlp") {
        try { c.mlp_ratio = std::stod(v); } catch (const std::exception&) { throw std::runtime_error("arch '" + arch + "': mlp=" + v + " is not a number"); }
      } else {
        throw std::runtime_error("arch '" + arch + "': unknown key '" + k +
                                 "' (dim, depth, heads, patch, img, reg, ls, classes, in_chans, no_embed_class, mlp)");
      }
    }
    if (c.patch == 0 || c.img % c.patch) throw std::runtime_error("arch '" + arch + "': img must be a multiple of patch");
    return vit_keys(c);
  }
  return std::nullopt;
}

Layout arch_layout(const std::string& arch) {
  return arch.rfind("resnet", 0) == 0 ? Layout::torchvision_resnet : Layout::timm_vit;
}

}  // namespace tabula::weights
