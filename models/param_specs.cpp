#include "models/param_specs.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <stdexcept>
#include <unordered_map>

namespace tabula {

bool ViTConfig::use_fc_norm() const {
  if (fc_norm) return *fc_norm;
  return global_pool == "avg" || global_pool == "avgmax" || global_pool == "max";
}

int64_t ViTConfig::mlp_fc1_out() const {
  const int64_t h = mlp_hidden();
  if (mlp == Mlp::swiglufused) return 2 * mlp_fc2_in();  // w12 packs both halves
  return h;  // Mlp fc1, GluMlp fc1 (both halves), SwiGLU fc1_g and fc1_x each
}

int64_t ViTConfig::mlp_fc2_in() const {
  const int64_t h = mlp_hidden();
  switch (mlp) {
    case Mlp::swiglu_packed: return h / 2;
    case Mlp::swiglufused: {
      // SwiGLUFFNFused: hidden_features = (int(hidden_features * 2 / 3) + 7) // 8 * 8 (Python true division).
      const int64_t d = static_cast<int64_t>(static_cast<double>(h * 2) / 3.0);
      return (d + 7) / 8 * 8;
    }
    default: return h;
  }
}

// ---- arch names --------------------------------------------------------------------------------------------

namespace {

ResNetConfig resnet(ResNetConfig::Block block, std::array<int, 4> layers, int width_per_group = 64, int groups = 1) {
  ResNetConfig c;
  c.block = block;
  c.layers = layers;
  c.width_per_group = width_per_group;
  c.groups = groups;
  return c;
}

ViTConfig timm_vit(int patch, int dim, int depth, int heads) {
  ViTConfig c;
  c.patch_size = patch;
  c.embed_dim = dim;
  c.depth = depth;
  c.num_heads = heads;
  return c;
}

// timm vit_*_patch14_dinov2 / _reg4_dinov2: model_args plus the pretrained cfg (num_classes=0, 518 px).
ViTConfig timm_dinov2(int dim, int depth, int heads, int reg) {
  ViTConfig c = timm_vit(14, dim, depth, heads);
  c.init_values = 1e-5;
  c.img_size = 518;
  c.num_classes = 0;
  if (reg) {
    c.reg_tokens = reg;
    c.no_embed_class = true;
  }
  return c;
}

// timm vit_giant_patch14_dinov2 / _reg4_dinov2: embed 1536, depth 40, 24 heads, mlp_ratio 2.66667 * 2 with
// SwiGLUPacked and SiLU (hidden 8192 = 2 x 4096, the hub's rounded SwiGLU width).
ViTConfig timm_dinov2_giant(int reg) {
  ViTConfig c = timm_dinov2(1536, 40, 24, reg);
  c.mlp_ratio = 2.66667 * 2;
  c.mlp = ViTConfig::Mlp::swiglu_packed;
  c.act = "silu";
  return c;
}

// dinov2/hub/backbones.py _make_dinov2_model: img 518, patch 14, init_values 1.0, mlp FFN; the _reg models
// add 4 register tokens, antialiased pos-embed interpolation and no interpolate offset.
ViTConfig hub_dinov2(int dim, int depth, int heads, bool reg) {
  ViTConfig c = timm_vit(14, dim, depth, heads);
  c.flavor = ViTConfig::Flavor::dinov2;
  c.img_size = 518;
  c.num_classes = 0;
  c.global_pool = "";
  c.init_values = 1.0;
  if (reg) {
    c.reg_tokens = 4;
    c.interpolate_antialias = true;
    c.interpolate_offset = 0.0;
  }
  return c;
}

// dinov2_vitg14 / _reg: vit_giant2 (embed 1536, depth 40, 24 heads) with ffn_layer="swiglufused".
ViTConfig hub_dinov2_giant(bool reg) {
  ViTConfig c = hub_dinov2(1536, 40, 24, reg);
  c.mlp = ViTConfig::Mlp::swiglufused;
  c.act = "silu";
  return c;
}

using Named = std::variant<ResNetConfig, ViTConfig>;
const std::vector<std::pair<std::string, Named>>& named_table() {
  using B = ResNetConfig::Block;
  static const std::vector<std::pair<std::string, Named>> table = {
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
      {"vit_tiny_patch16_224", timm_vit(16, 192, 12, 3)},
      {"vit_small_patch16_224", timm_vit(16, 384, 12, 6)},
      {"vit_base_patch16_224", timm_vit(16, 768, 12, 12)},
      {"vit_large_patch16_224", timm_vit(16, 1024, 24, 16)},
      {"vit_small_patch14_dinov2", timm_dinov2(384, 12, 6, 0)},
      {"vit_base_patch14_dinov2", timm_dinov2(768, 12, 12, 0)},
      {"vit_small_patch14_reg4_dinov2", timm_dinov2(384, 12, 6, 4)},
      {"vit_base_patch14_reg4_dinov2", timm_dinov2(768, 12, 12, 4)},
      {"vit_giant_patch14_dinov2", timm_dinov2_giant(0)},
      {"vit_giant_patch14_reg4_dinov2", timm_dinov2_giant(4)},
      {"dinov2_vits14", hub_dinov2(384, 12, 6, false)},
      {"dinov2_vitb14", hub_dinov2(768, 12, 12, false)},
      {"dinov2_vitl14", hub_dinov2(1024, 24, 16, false)},
      {"dinov2_vits14_reg", hub_dinov2(384, 12, 6, true)},
      {"dinov2_vitb14_reg", hub_dinov2(768, 12, 12, true)},
      {"dinov2_vitl14_reg", hub_dinov2(1024, 24, 16, true)},
      {"dinov2_vitg14", hub_dinov2_giant(false)},
      {"dinov2_vitg14_reg", hub_dinov2_giant(true)},
  };
  return table;
}

// The message quotes the user's bytes: control bytes (a NUL would end what() early) are shown as \xNN.
[[noreturn]] void bad_arch(const std::string& arch, const std::string& why) {
  std::string msg;
  for (const char ch : "arch '" + arch + "': " + why) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c != 0x7f) {
      msg += ch;
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      msg += hex;
    }
  }
  throw std::invalid_argument(msg);
}

// Sizes up to 2^24; counts of blocks up to kMaxBlocks (the deepest published ResNets and ViTs have ~200 blocks per
// stage and ~50 blocks): a typo such as depth=222422 would otherwise build millions of modules before anything
// else could fail (found by fuzz_arch: a 25-second parse).
constexpr int kMaxSize = 1 << 24;
constexpr int kMaxBlocks = 1024;
constexpr double kMaxParams = 68719476736.0;  // 2^36

int parse_int(const std::string& arch, const std::string& key, const std::string& v, int min_value,
              int max_value = kMaxSize) {
  char* end = nullptr;
  errno = 0;
  const long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || end != v.c_str() + v.size() || errno != 0 || x < min_value || x > max_value)
    bad_arch(arch, "key '" + key + "' needs an integer from " + std::to_string(min_value) + " to " +
                       std::to_string(max_value) + ", got '" + v + "'");
  return static_cast<int>(x);
}

double parse_double(const std::string& arch, const std::string& key, const std::string& v) {
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || end != v.c_str() + v.size() || !std::isfinite(x))
    bad_arch(arch, "key '" + key + "' needs a number, got '" + v + "'");
  return x;
}

bool parse_bool(const std::string& arch, const std::string& key, const std::string& v) {
  if (v == "1" || v == "true" || v == "True") return true;
  if (v == "0" || v == "false" || v == "False") return false;
  bad_arch(arch, "key '" + key + "' needs 0/1 or true/false, got '" + v + "'");
}

// "a=1,b=2,3,4" -> {a: "1", b: "2,3,4"}: a piece without '=' continues the previous value (layers=2,2,2,2).
std::vector<std::pair<std::string, std::string>> split_keys(const std::string& arch, const std::string& s) {
  std::vector<std::pair<std::string, std::string>> kv;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t comma = s.find(',', pos);
    if (comma == std::string::npos) comma = s.size();
    const std::string piece = s.substr(pos, comma - pos);
    const size_t eq = piece.find('=');
    if (eq == std::string::npos) {
      if (kv.empty() || piece.empty()) bad_arch(arch, "expected key=value, got '" + piece + "'");
      kv.back().second += "," + piece;
    } else {
      const std::string key = piece.substr(0, eq);
      if (key.empty()) bad_arch(arch, "empty key in '" + piece + "'");
      for (const auto& [k, v] : kv)
        if (k == key) bad_arch(arch, "key '" + key + "' given twice");
      kv.emplace_back(key, piece.substr(eq + 1));
    }
    pos = comma + 1;
  }
  return kv;
}

void apply_resnet_keys(const std::string& arch, ResNetConfig& c, const std::string& keys) {
  for (const auto& [k, v] : split_keys(arch, keys)) {
    if (k == "layers") {
      std::vector<int> xs;
      size_t p = 0;
      while (p <= v.size()) {
        size_t q = v.find(',', p);
        if (q == std::string::npos) q = v.size();
        xs.push_back(parse_int(arch, k, v.substr(p, q - p), 1, kMaxBlocks));
        p = q + 1;
      }
      if (xs.size() != 4) bad_arch(arch, "key 'layers' needs 4 block counts (e.g. layers=2,2,2,2), got '" + v + "'");
      for (int i = 0; i < 4; ++i) c.layers[static_cast<size_t>(i)] = xs[static_cast<size_t>(i)];
    } else if (k == "block") {
      if (v == "basic") c.block = ResNetConfig::Block::basic;
      else if (v == "bottleneck") c.block = ResNetConfig::Block::bottleneck;
      else bad_arch(arch, "key 'block' is basic or bottleneck, got '" + v + "'");
    } else if (k == "width" || k == "width_per_group") {
      c.width_per_group = parse_int(arch, k, v, 1);
    } else if (k == "groups") {
      c.groups = parse_int(arch, k, v, 1);
    } else if (k == "classes" || k == "num_classes") {
      c.num_classes = parse_int(arch, k, v, 1);
    } else if (k == "zero_init_residual") {
      c.zero_init_residual = parse_bool(arch, k, v);
    } else if (k == "chans" || k == "in_chans") {
      c.in_chans = parse_int(arch, k, v, 1);
    } else {
      bad_arch(arch, "unknown key '" + k + "' (resnet keys: layers, block, width, groups, classes, "
                     "zero_init_residual, chans)");
    }
  }
  if (c.block == ResNetConfig::Block::basic && (c.groups != 1 || c.width_per_group != 64))
    bad_arch(arch, "BasicBlock only supports groups=1 and width=64 (as torchvision)");
  // layer4's 3x3 conv is int(512 * width / 64) * groups channels wide.
  if (int64_t{8} * c.width_per_group * c.groups > kMaxSize)
    bad_arch(arch, "width * groups must be at most " + std::to_string(kMaxSize / 8) + " (layer4 would be " +
                       std::to_string(int64_t{8} * c.width_per_group * c.groups) + " channels wide)");
}

void apply_vit_keys(const std::string& arch, ViTConfig& c, const std::string& keys) {
  const auto kv = split_keys(arch, keys);
  bool classes_given = false, pool_given = false, act_given = false;
  for (const auto& [k, v] : kv) {
    classes_given |= k == "classes" || k == "num_classes";
    pool_given |= k == "global_pool";
    act_given |= k == "act" || k == "act_layer";
  }
  for (const auto& [k, v] : kv) {
    if (k == "dim" || k == "embed_dim") c.embed_dim = parse_int(arch, k, v, 1);
    else if (k == "depth") c.depth = parse_int(arch, k, v, 0, kMaxBlocks);
    else if (k == "heads" || k == "num_heads") c.num_heads = parse_int(arch, k, v, 1);
    else if (k == "patch" || k == "patch_size") c.patch_size = parse_int(arch, k, v, 1);
    else if (k == "img" || k == "img_size") c.img_size = parse_int(arch, k, v, 1);
    else if (k == "chans" || k == "in_chans") c.in_chans = parse_int(arch, k, v, 1);
    else if (k == "classes" || k == "num_classes") c.num_classes = parse_int(arch, k, v, 0);
    else if (k == "mlp_ratio") c.mlp_ratio = parse_double(arch, k, v);
    else if (k == "qkv_bias") c.qkv_bias = parse_bool(arch, k, v);
    else if (k == "init_values") {
      if (v == "none" || v == "None") c.init_values.reset();
      else c.init_values = parse_double(arch, k, v);
    } else if (k == "class_token") c.class_token = parse_bool(arch, k, v);
    else if (k == "no_embed_class") c.no_embed_class = parse_bool(arch, k, v);
    else if (k == "reg" || k == "reg_tokens") c.reg_tokens = parse_int(arch, k, v, 0);
    else if (k == "global_pool") {
      if (v != "" && v != "token" && v != "avg" && v != "avgmax" && v != "max" && v != "map")
        bad_arch(arch, "key 'global_pool' is one of '', token, avg, avgmax, max, map; got '" + v + "'");
      c.global_pool = v;
    } else if (k == "fc_norm") {
      if (v == "auto" || v == "none" || v == "None") c.fc_norm.reset();
      else c.fc_norm = parse_bool(arch, k, v);
    } else if (k == "qk_norm") c.qk_norm = parse_bool(arch, k, v);
    else if (k == "mlp" || k == "mlp_layer") {
      if (v == "mlp") c.mlp = ViTConfig::Mlp::mlp;
      else if (v == "swiglu_packed") c.mlp = ViTConfig::Mlp::swiglu_packed;
      else if (v == "swiglu") c.mlp = ViTConfig::Mlp::swiglu;
      else if (v == "swiglufused") c.mlp = ViTConfig::Mlp::swiglufused;
      else bad_arch(arch, "key 'mlp' is one of mlp, swiglu_packed, swiglu (timm) or swiglufused (DINOv2); got '" + v + "'");
      if (!act_given) c.act = c.mlp == ViTConfig::Mlp::mlp ? "gelu" : "silu";
    } else if (k == "act" || k == "act_layer") {
      if (v != "gelu" && v != "silu" && v != "gelu_tanh" && v != "quick_gelu")
        bad_arch(arch, "key 'act' is one of gelu, silu, gelu_tanh, quick_gelu; got '" + v + "'");
      c.act = v;
    } else if (k == "dynamic_img_size") c.dynamic_img_size = parse_bool(arch, k, v);
    else if (k == "norm_eps") {
      c.norm_eps = parse_double(arch, k, v);
      if (!(c.norm_eps > 0)) bad_arch(arch, "key 'norm_eps' needs a positive number, got '" + v + "'");
    }
    else if (k == "interpolate_antialias") c.interpolate_antialias = parse_bool(arch, k, v);
    else if (k == "interpolate_offset") c.interpolate_offset = parse_double(arch, k, v);
    else if (k == "pre_norm") c.pre_norm = parse_bool(arch, k, v);
    else if (k == "final_norm") c.final_norm = parse_bool(arch, k, v);
    else if (k == "legacy_init") c.legacy_init = parse_bool(arch, k, v);
    else if (k == "weight_init") {
      if (v != "" && v != "jax" && v != "jax_nlhb" && v != "moco")
        bad_arch(arch, "key 'weight_init' is one of '', jax, jax_nlhb, moco; got '" + v + "'");
      c.weight_init = v;
    }
    else if (k == "flavor") {
      if (v == "timm") c.flavor = ViTConfig::Flavor::timm;
      else if (v == "dinov2") {
        c.flavor = ViTConfig::Flavor::dinov2;
        if (!classes_given) c.num_classes = 0;  // DinoVisionTransformer's head is nn.Identity
        if (!pool_given) c.global_pool = "";
      }
      else bad_arch(arch, "key 'flavor' is timm or dinov2, got '" + v + "'");
    } else {
      bad_arch(arch, "unknown key '" + k + "' (vit keys: dim, depth, heads, patch, img, chans, classes, mlp_ratio, "
                     "qkv_bias, qk_norm, mlp, act, init_values, class_token, no_embed_class, reg, global_pool, "
                     "fc_norm, pre_norm, final_norm, flavor, legacy_init, weight_init, dynamic_img_size, norm_eps, "
                     "interpolate_antialias, interpolate_offset)");
    }
  }
  if (c.embed_dim % c.num_heads != 0)
    bad_arch(arch, "dim " + std::to_string(c.embed_dim) + " is not divisible by heads " + std::to_string(c.num_heads));
  if (c.img_size % c.patch_size != 0)
    bad_arch(arch, "img " + std::to_string(c.img_size) + " is not a multiple of patch " + std::to_string(c.patch_size));
  const int64_t grid = c.img_size / c.patch_size;
  if (grid * grid + c.num_prefix_tokens() > kMaxSize)
    bad_arch(arch, std::to_string(grid * grid + c.num_prefix_tokens()) + " tokens (img / patch = " + std::to_string(grid) +
                       " squared, + prefix tokens): at most " + std::to_string(kMaxSize));
  // int(dim * mlp_ratio), range-checked before anything converts it (fuzz_arch: mlp_ratio=4.4e107).
  const double hidden = static_cast<double>(c.embed_dim) * c.mlp_ratio;
  if (!(hidden >= 1.0 && hidden < kMaxSize + 1.0))
    bad_arch(arch, "int(dim * mlp_ratio) must be from 1 to " + std::to_string(kMaxSize) + " (timm would silently "
                   "widen a 0-wide MLP to dim), got dim " + std::to_string(c.embed_dim) + " * mlp_ratio " +
                   std::to_string(c.mlp_ratio));
  if (c.global_pool == "token" && !c.class_token) bad_arch(arch, "global_pool=token needs the class token");
  if (c.mlp == ViTConfig::Mlp::swiglu_packed && c.mlp_hidden() % 2 != 0)
    bad_arch(arch, "mlp=swiglu_packed splits fc1's output in two halves: int(dim * mlp_ratio) = " +
                       std::to_string(c.mlp_hidden()) + " must be even (timm GluMlp asserts it)");
  if (c.weight_init == "jax_nlhb" && c.num_classes <= 0)
    bad_arch(arch, "weight_init=jax_nlhb sets the head bias to -log(classes): it needs classes > 0");
  if (c.flavor == ViTConfig::Flavor::dinov2) {
    if (c.legacy_init) bad_arch(arch, "legacy_init is a timm setting (timm < 1.0.23), not a DINOv2 one");
    if (!c.weight_init.empty()) bad_arch(arch, "weight_init is a timm setting, not a DINOv2 one");
    if (c.qk_norm) bad_arch(arch, "qk_norm is a timm setting: DINOv2's MemEffAttention has no q/k norm");
    if (c.dynamic_img_size)
      bad_arch(arch, "dynamic_img_size is a timm option; the DINOv2 hub model always interpolates its pos-embed");
    if (c.norm_eps != 1e-6) bad_arch(arch, "norm_eps is a timm setting: DinoVisionTransformer's LayerNorms use 1e-6");
    if (c.mlp == ViTConfig::Mlp::swiglu_packed || c.mlp == ViTConfig::Mlp::swiglu)
      bad_arch(arch, "flavor=dinov2 takes mlp=mlp or mlp=swiglufused (the hub's ffn_layer), not a timm MLP");
    if (act_given) bad_arch(arch, "flavor=dinov2 fixes the activation (GELU in Mlp, SiLU in SwiGLUFFNFused)");
    if (c.interpolate_offset < 0) bad_arch(arch, "interpolate_offset must be >= 0");
    if (!c.class_token || c.no_embed_class || c.pre_norm || !c.final_norm || c.num_classes != 0 ||
        c.fc_norm.value_or(false) || c.global_pool == "map")
      bad_arch(arch, "flavor=dinov2 (DinoVisionTransformer) always has a class token, a pos-embed covering it, a "
                     "final norm and no head: class_token/no_embed_class/pre_norm/final_norm/classes/fc_norm "
                     "cannot be changed, and global_pool=map (a timm head) does not apply");
  } else if (c.interpolate_antialias || c.interpolate_offset != 0.1) {
    bad_arch(arch, "interpolate_antialias / interpolate_offset are DINOv2 hub settings (flavor=dinov2); timm "
                   "resamples the pos-embed by size with antialias");
  } else if (c.mlp == ViTConfig::Mlp::swiglufused) {
    bad_arch(arch, "mlp=swiglufused is DINOv2's SwiGLUFFNFused (flavor=dinov2); timm's are swiglu_packed and swiglu");
  }
}

}  // namespace

std::vector<std::string> named_archs() {
  std::vector<std::string> names;
  for (const auto& [n, c] : named_table()) names.push_back(n);
  return names;
}

ArchConfig parse_arch(const std::string& arch) {
  const size_t colon = arch.find(':');
  const std::string head = arch.substr(0, colon);
  const std::string keys = colon == std::string::npos ? "" : arch.substr(colon + 1);
  ArchConfig out;
  out.name = arch;
  if (head == "resnet") {
    out.config = ResNetConfig{};
  } else if (head == "vit") {
    out.config = ViTConfig{};
  } else {
    bool found = false;
    for (const auto& [n, c] : named_table()) {
      if (n == head) {
        out.config = c;
        found = true;
        break;
      }
    }
    if (!found) {
      std::string list;
      for (const auto& n : named_archs()) list += (list.empty() ? "" : ", ") + n;
      bad_arch(arch, "unknown architecture '" + head + "' (known: " + list + ", resnet:KEY=VALUE,..., vit:KEY=VALUE,...)");
    }
  }
  if (colon != std::string::npos) {
    if (keys.empty()) bad_arch(arch, "nothing after ':'");
    if (out.is_resnet()) apply_resnet_keys(arch, std::get<ResNetConfig>(out.config), keys);
    else apply_vit_keys(arch, std::get<ViTConfig>(out.config), keys);
    // Every size is at most 2^24, but their products are not: a bound on the whole model (counted in double, so
    // nothing overflows) keeps param_count, init and loading in int64 range. 2^36 parameters (275 GB in fp32) is
    // three times ViT-22B.
    double total = 0;
    for (const auto& spec : param_specs(out)) {
      double n = 1;
      for (const int64_t d : spec.shape) n *= static_cast<double>(d);
      total += n;
    }
    if (total > kMaxParams) {
      char n[64];
      std::snprintf(n, sizeof n, "%.3g", total);
      bad_arch(arch, std::string(n) + " parameters and buffers; tabula builds models of up to 2^36 (6.87e+10)");
    }
  }
  return out;
}

// ---- state_dict layouts --------------------------------------------------------------------------------------

namespace {

struct SpecList {
  std::vector<ParamSpec> specs;
  void param(const std::string& name, Shape shape) { specs.push_back({name, std::move(shape), DType::f32, false}); }
  void buffer(const std::string& name, Shape shape, DType dt = DType::f32) {
    specs.push_back({name, std::move(shape), dt, true});
  }
  void batchnorm(const std::string& p, int64_t c) {
    param(p + ".weight", {c});
    param(p + ".bias", {c});
    buffer(p + ".running_mean", {c});
    buffer(p + ".running_var", {c});
    buffer(p + ".num_batches_tracked", {}, DType::i64);
  }
  void layernorm(const std::string& p, int64_t c) {
    param(p + ".weight", {c});
    param(p + ".bias", {c});
  }
  void linear(const std::string& p, int64_t in, int64_t out, bool bias) {
    param(p + ".weight", {out, in});
    if (bias) param(p + ".bias", {out});
  }
};

// A ResNet block's convolutions in construction order (downsample first: _make_layer builds it before the
// block) and the block's own layout.
struct ResNetBlock {
  std::string prefix;
  int64_t inplanes, planes, width, stride;
  bool downsample;
};

std::vector<ResNetBlock> resnet_blocks(const ResNetConfig& c) {
  std::vector<ResNetBlock> blocks;
  int64_t inplanes = 64;
  const int64_t e = c.expansion();
  for (int li = 0; li < 4; ++li) {
    const int64_t planes = int64_t{64} << li;
    for (int bi = 0; bi < c.layers[static_cast<size_t>(li)]; ++bi) {
      const int64_t stride = (bi == 0 && li > 0) ? 2 : 1;
      const bool down = bi == 0 && (stride != 1 || inplanes != planes * e);
      // Bottleneck: width = int(planes * (base_width / 64.)) * groups
      const int64_t width = c.block == ResNetConfig::Block::basic
                                ? planes
                                : static_cast<int64_t>(static_cast<double>(planes) * (c.width_per_group / 64.0)) * c.groups;
      blocks.push_back({"layer" + std::to_string(li + 1) + "." + std::to_string(bi), inplanes, planes, width, stride, down});
      inplanes = planes * e;
    }
  }
  return blocks;
}

std::vector<ParamSpec> resnet_specs(const ResNetConfig& c) {
  SpecList s;
  s.param("conv1.weight", {64, c.in_chans, 7, 7});
  s.batchnorm("bn1", 64);
  const int64_t e = c.expansion();
  for (const auto& b : resnet_blocks(c)) {
    const std::string& p = b.prefix;
    if (c.block == ResNetConfig::Block::basic) {
      s.param(p + ".conv1.weight", {b.planes, b.inplanes, 3, 3});
      s.batchnorm(p + ".bn1", b.planes);
      s.param(p + ".conv2.weight", {b.planes, b.planes, 3, 3});
      s.batchnorm(p + ".bn2", b.planes);
    } else {
      s.param(p + ".conv1.weight", {b.width, b.inplanes, 1, 1});
      s.batchnorm(p + ".bn1", b.width);
      s.param(p + ".conv2.weight", {b.width, b.width / c.groups, 3, 3});
      s.batchnorm(p + ".bn2", b.width);
      s.param(p + ".conv3.weight", {b.planes * e, b.width, 1, 1});
      s.batchnorm(p + ".bn3", b.planes * e);
    }
    if (b.downsample) {
      s.param(p + ".downsample.0.weight", {b.planes * e, b.inplanes, 1, 1});
      s.batchnorm(p + ".downsample.1", b.planes * e);
    }
  }
  s.linear("fc", 512 * e, c.num_classes, true);
  return s.specs;
}

std::vector<ParamSpec> vit_specs(const ViTConfig& c) {
  SpecList s;
  const int64_t D = c.embed_dim;
  const bool dinov2 = c.flavor == ViTConfig::Flavor::dinov2;
  const int64_t pos_len = c.num_patches() + (c.no_embed_class ? 0 : c.num_prefix_tokens());
  if (dinov2) {
    // DinoVisionTransformer registers cls_token, pos_embed (patches + cls), register_tokens, mask_token.
    s.param("cls_token", {1, 1, D});
    s.param("pos_embed", {1, c.num_patches() + 1, D});
    if (c.reg_tokens) s.param("register_tokens", {1, c.reg_tokens, D});
    s.param("mask_token", {1, D});
  } else {
    if (c.class_token) s.param("cls_token", {1, 1, D});
    if (c.reg_tokens) s.param("reg_token", {1, c.reg_tokens, D});
    s.param("pos_embed", {1, pos_len, D});
  }
  const bool patch_bias = dinov2 || !c.pre_norm;  // timm: bias=not pre_norm
  s.param("patch_embed.proj.weight", {D, c.in_chans, c.patch_size, c.patch_size});
  if (patch_bias) s.param("patch_embed.proj.bias", {D});
  if (!dinov2 && c.pre_norm) s.layernorm("norm_pre", D);
  const int64_t H1 = c.mlp_fc1_out(), H2 = c.mlp_fc2_in(), hd = D / c.num_heads;
  for (int i = 0; i < c.depth; ++i) {
    const std::string p = "blocks." + std::to_string(i);
    s.layernorm(p + ".norm1", D);
    s.linear(p + ".attn.qkv", D, 3 * D, c.qkv_bias);
    if (c.qk_norm) {
      s.layernorm(p + ".attn.q_norm", hd);
      s.layernorm(p + ".attn.k_norm", hd);
    }
    s.linear(p + ".attn.proj", D, D, true);
    if (c.init_values) s.param(p + ".ls1.gamma", {D});
    s.layernorm(p + ".norm2", D);
    switch (c.mlp) {
      case ViTConfig::Mlp::swiglu:
        s.linear(p + ".mlp.fc1_g", D, H1, true);
        s.linear(p + ".mlp.fc1_x", D, H1, true);
        s.linear(p + ".mlp.fc2", H2, D, true);
        break;
      case ViTConfig::Mlp::swiglufused:
        s.linear(p + ".mlp.w12", D, H1, true);
        s.linear(p + ".mlp.w3", H2, D, true);
        break;
      default:  // Mlp, GluMlp
        s.linear(p + ".mlp.fc1", D, H1, true);
        s.linear(p + ".mlp.fc2", H2, D, true);
    }
    if (c.init_values) s.param(p + ".ls2.gamma", {D});
  }
  if (dinov2) {
    s.layernorm("norm", D);
  } else {
    if (c.final_norm && !c.use_fc_norm()) s.layernorm("norm", D);
    if (c.global_pool == "map") {
      // AttentionPoolLatent(embed_dim, num_heads, mlp_ratio, norm_layer, act_layer): latent [1, 1, D], q, kv,
      // proj, norm, mlp (timm Mlp, hidden int(D * mlp_ratio)).
      s.param("attn_pool.latent", {1, 1, D});
      s.linear("attn_pool.q", D, D, true);
      s.linear("attn_pool.kv", D, 2 * D, true);
      s.linear("attn_pool.proj", D, D, true);
      s.layernorm("attn_pool.norm", D);
      s.linear("attn_pool.mlp.fc1", D, c.mlp_hidden(), true);
      s.linear("attn_pool.mlp.fc2", c.mlp_hidden(), D, true);
    }
    if (c.final_norm && c.use_fc_norm()) s.layernorm("fc_norm", D);
    if (c.num_classes > 0) s.linear("head", D, c.num_classes, true);
  }
  return s.specs;
}

// ---- init replay ---------------------------------------------------------------------------------------------

class StateDict {
 public:
  explicit StateDict(const std::vector<ParamSpec>& specs) {
    tensors_.reserve(specs.size());
    for (const auto& sp : specs) {
      NamedTensor t;
      t.name = sp.name;
      t.shape = sp.shape;
      t.dtype = sp.dtype;
      t.bytes.assign(static_cast<size_t>(shape_numel(sp.shape)) * dtype_size(sp.dtype), 0);  // zeros_ / 0
      index_[sp.name] = tensors_.size();
      tensors_.push_back(std::move(t));
    }
  }
  NamedTensor& at(const std::string& name) {
    auto it = index_.find(name);
    if (it == index_.end()) throw std::logic_error("init replay: no tensor '" + name + "'");
    return tensors_[it->second];
  }
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  float* f32(const std::string& name) { return at(name).f32(); }
  void fill(const std::string& name, float v) {
    NamedTensor& t = at(name);
    std::fill(t.f32(), t.f32() + t.numel(), v);
  }
  std::vector<NamedTensor> take() { return std::move(tensors_); }
  std::vector<NamedTensor>& tensors() { return tensors_; }

 private:
  std::vector<NamedTensor> tensors_;
  std::unordered_map<std::string, size_t> index_;
};

std::vector<NamedTensor> init_resnet(const ResNetConfig& c, uint64_t seed) {
  StateDict sd(resnet_specs(c));
  TorchGenerator gen(seed);
  // 1. Constructors: every Conv2d runs reset_parameters() (kaiming_uniform_, bias=False here) as it is built;
  //    the values are overwritten below, the draws are not undone. _make_layer builds a block's downsample
  //    before the block itself. nn.Linear(fc) keeps its default init.
  gen.discard(default_reset_draws(sd.at("conv1.weight").shape, false));
  for (const auto& b : resnet_blocks(c)) {
    const std::string& p = b.prefix;
    if (b.downsample) gen.discard(default_reset_draws(sd.at(p + ".downsample.0.weight").shape, false));
    const int nconv = c.block == ResNetConfig::Block::basic ? 2 : 3;
    for (int k = 1; k <= nconv; ++k)
      gen.discard(default_reset_draws(sd.at(p + ".conv" + std::to_string(k) + ".weight").shape, false));
  }
  default_reset_parameters(sd.f32("fc.weight"), sd.at("fc.weight").shape, sd.f32("fc.bias"), gen);
  // 2. `for m in self.modules()`: registration order, which is the state_dict order.
  for (auto& t : sd.tensors()) {
    const std::string& n = t.name;
    const bool is_conv = n.size() > 7 && n.compare(n.size() - 7, 7, ".weight") == 0 && t.shape.size() == 4;
    if (is_conv) {
      kaiming_normal_(t.f32(), t.shape, gen, 0.0, FanMode::fan_out, "relu");
    } else if (t.dtype == DType::f32 && t.shape.size() == 1 && n.rfind("fc.", 0) != 0) {
      // BatchNorm: weight 1, bias 0 (constant_), running_var 1, running_mean 0 (buffers).
      const bool one = n.compare(n.size() - 7, 7, ".weight") == 0 ||
                       (n.size() > 12 && n.compare(n.size() - 12, 12, ".running_var") == 0);
      if (one) std::fill(t.f32(), t.f32() + t.numel(), 1.0f);
    }
  }
  // 3. zero_init_residual: the last BN of every block starts at 0.
  if (c.zero_init_residual) {
    const std::string last_bn = c.block == ResNetConfig::Block::basic ? ".bn2.weight" : ".bn3.weight";
    for (const auto& b : resnet_blocks(c)) sd.fill(b.prefix + last_bn, 0.0f);
  }
  return sd.take();
}

std::vector<NamedTensor> init_vit(const ViTConfig& c, uint64_t seed) {
  StateDict sd(vit_specs(c));
  TorchGenerator gen(seed);
  const bool dinov2 = c.flavor == ViTConfig::Flavor::dinov2;
  // 1. Constructors. PatchEmbed's Conv2d keeps its reset_parameters() init (neither timm nor DINOv2
  //    re-initialise Conv2d); every nn.Linear draws its default init, overwritten in step 2.
  {
    float* bias = sd.has("patch_embed.proj.bias") ? sd.f32("patch_embed.proj.bias") : nullptr;
    default_reset_parameters(sd.f32("patch_embed.proj.weight"), sd.at("patch_embed.proj.weight").shape, bias, gen);
  }
  if (c.legacy_init) {
    // timm <= 1.0.22: pos_embed = nn.Parameter(torch.randn(1, L, D) * .02), between PatchEmbed and the blocks.
    // Replayed with normal_ itself: for L*D < 16 torch's scalar path also leaves a cached sample behind.
    std::vector<float> scratch(static_cast<size_t>(sd.at("pos_embed").numel()));
    normal_(scratch.data(), scratch.size(), 0.0, 1.0, gen);
  }
  // The modules that draw, in construction order, which is also named_apply's (post-)order: a module's Linears
  // come before the module's own init_weights() (GluMlp, SwiGLU, AttentionPoolLatent).
  struct Step {
    enum Kind { linear, glu_mlp, swiglu_mlp, attn_pool } kind;
    std::string name;
  };
  std::vector<Step> steps;
  auto linear = [&](const std::string& n) { steps.push_back({Step::linear, n}); };
  for (int i = 0; i < c.depth; ++i) {
    const std::string p = "blocks." + std::to_string(i);
    linear(p + ".attn.qkv");
    linear(p + ".attn.proj");
    switch (c.mlp) {
      case ViTConfig::Mlp::swiglu:
        linear(p + ".mlp.fc1_g");
        linear(p + ".mlp.fc1_x");
        linear(p + ".mlp.fc2");
        steps.push_back({Step::swiglu_mlp, p + ".mlp"});
        break;
      case ViTConfig::Mlp::swiglufused:  // DINOv2's SwiGLUFFN has no init_weights of its own
        linear(p + ".mlp.w12");
        linear(p + ".mlp.w3");
        break;
      case ViTConfig::Mlp::swiglu_packed:
        linear(p + ".mlp.fc1");
        linear(p + ".mlp.fc2");
        steps.push_back({Step::glu_mlp, p + ".mlp"});
        break;
      case ViTConfig::Mlp::mlp:
        linear(p + ".mlp.fc1");
        linear(p + ".mlp.fc2");
    }
  }
  if (sd.has("attn_pool.latent")) {
    for (const char* l : {"attn_pool.q", "attn_pool.kv", "attn_pool.proj", "attn_pool.mlp.fc1", "attn_pool.mlp.fc2"})
      linear(l);
    steps.push_back({Step::attn_pool, "attn_pool"});
  }
  if (sd.has("head.weight")) linear("head");
  // AttentionPoolLatent.init_weights: trunc_normal_tf_(latent, std=latent_dim ** -0.5); called by its
  // constructor and again by VisionTransformer.init_weights (named_apply finds the method).
  auto attn_pool_init = [&] {
    NamedTensor& lat = sd.at("attn_pool.latent");
    timm_trunc_normal_tf_(lat.f32(), static_cast<size_t>(lat.numel()), gen, 0.0,
                          std::pow(static_cast<double>(c.embed_dim), -0.5));
  };
  // GluMlp.init_weights / SwiGLU.init_weights: the gate's bias 1 and its weight normal_(std=1e-6). GluMlp's
  // gate is the second half of fc1 (rows hidden/2 onwards, one contiguous block of the [out, in] weight).
  auto gate_init = [&](const Step& st) {
    const std::string fc = st.name + (st.kind == Step::glu_mlp ? ".fc1" : ".fc1_g");
    NamedTensor& w = sd.at(fc + ".weight");
    const int64_t skip_rows = st.kind == Step::glu_mlp ? w.shape[0] / 2 : 0;
    if (sd.has(fc + ".bias")) {
      NamedTensor& b = sd.at(fc + ".bias");
      std::fill(b.f32() + skip_rows, b.f32() + b.numel(), 1.0f);
    }
    const int64_t off = skip_rows * w.shape[1];
    normal_(w.f32() + off, static_cast<size_t>(w.numel() - off), 0.0, 1e-6, gen);
  };
  for (const Step& st : steps) {  // constructors (module init_weights() are not called there, except the pool's)
    if (st.kind == Step::linear)
      gen.discard(default_reset_draws(sd.at(st.name + ".weight").shape, sd.has(st.name + ".bias")));
    else if (st.kind == Step::attn_pool)
      attn_pool_init();
  }
  if (c.init_values) {
    for (int i = 0; i < c.depth; ++i) {
      const std::string p = "blocks." + std::to_string(i);
      sd.fill(p + ".ls1.gamma", static_cast<float>(*c.init_values));  // LayerScale.reset_parameters
      sd.fill(p + ".ls2.gamma", static_cast<float>(*c.init_values));
    }
  }
  for (auto& t : sd.tensors()) {  // LayerNorm weight 1 (bias, tokens, mask_token start at 0)
    const std::string& n = t.name;
    const bool norm_weight = n.size() > 7 && n.compare(n.size() - 7, 7, ".weight") == 0 && t.shape.size() == 1;
    if (norm_weight) std::fill(t.f32(), t.f32() + t.numel(), 1.0f);
  }
  // 2. init_weights(): pos_embed, cls, registers, then every Linear (trunc_normal_(.02), zero bias).
  auto trunc = [&](NamedTensor& t) {
    if (dinov2) trunc_normal_(t.f32(), static_cast<size_t>(t.numel()), gen, 0.0, 0.02);
    else timm_trunc_normal_(t.f32(), static_cast<size_t>(t.numel()), gen, 0.0, 0.02);
  };
  trunc(sd.at("pos_embed"));
  if (sd.has("cls_token")) normal_(sd.f32("cls_token"), static_cast<size_t>(sd.at("cls_token").numel()), 0.0, 1e-6, gen);
  const std::string reg = dinov2 ? "register_tokens" : "reg_token";
  if (sd.has(reg)) normal_(sd.f32(reg), static_cast<size_t>(sd.at(reg).numel()), 0.0, 1e-6, gen);
  // Every mode's function initialises a Linear its own way and otherwise calls a module's init_weights().
  auto module_init = [&](const Step& st) {
    if (st.kind == Step::attn_pool) attn_pool_init();
    else gate_init(st);
  };
  if (c.weight_init.empty()) {  // init_weights_vit_timm
    for (const Step& st : steps) {
      if (st.kind != Step::linear) {
        module_init(st);
        continue;
      }
      const std::string& l = st.name;
      trunc(sd.at(l + ".weight"));
      if (sd.has(l + ".bias")) sd.fill(l + ".bias", 0.0f);
    }
  } else if (c.weight_init == "moco") {  // init_weights_vit_moco: Conv2d keeps its default init
    for (const Step& st : steps) {
      if (st.kind != Step::linear) {
        module_init(st);
        continue;
      }
      const std::string& l = st.name;
      NamedTensor& w = sd.at(l + ".weight");
      if (l.find("qkv") != std::string::npos) {  // q, k and v treated as separate matrices
        const double val = std::sqrt(6.0 / static_cast<double>(w.shape[0] / 3 + w.shape[1]));
        uniform_init(w.f32(), w.shape, -val, val, gen);
      } else {
        xavier_uniform_(w.f32(), w.shape, gen);
      }
      if (sd.has(l + ".bias")) sd.fill(l + ".bias", 0.0f);
    }
  } else {  // init_weights_vit_jax, in named_apply order: the patch embedding's Conv2d, then the Linears
    NamedTensor& pw = sd.at("patch_embed.proj.weight");
    lecun_normal_(pw.f32(), pw.shape, gen);
    if (sd.has("patch_embed.proj.bias")) sd.fill("patch_embed.proj.bias", 0.0f);
    const double head_bias = c.weight_init == "jax_nlhb" ? -std::log(static_cast<double>(c.num_classes)) : 0.0;
    for (const Step& st : steps) {
      if (st.kind != Step::linear) {
        module_init(st);
        continue;
      }
      const std::string& l = st.name;
      NamedTensor& w = sd.at(l + ".weight");
      if (l == "head") {
        sd.fill("head.weight", 0.0f);
        sd.fill("head.bias", static_cast<float>(head_bias));
        continue;
      }
      xavier_uniform_(w.f32(), w.shape, gen);
      if (!sd.has(l + ".bias")) continue;
      NamedTensor& b = sd.at(l + ".bias");
      if (l.find("mlp") != std::string::npos) normal_(b.f32(), static_cast<size_t>(b.numel()), 0.0, 1e-6, gen);
      else sd.fill(l + ".bias", 0.0f);
    }
  }
  return sd.take();
}

}  // namespace

std::vector<ParamSpec> param_specs(const ArchConfig& arch) {
  return arch.is_resnet() ? resnet_specs(arch.resnet()) : vit_specs(arch.vit());
}

int64_t param_count(const ArchConfig& arch) {
  int64_t n = 0;
  for (const auto& s : param_specs(arch))
    if (!s.is_buffer) n += shape_numel(s.shape);
  return n;
}
int64_t param_count(const std::string& arch) { return param_count(parse_arch(arch)); }

std::vector<NamedTensor> init_weights(const ArchConfig& arch, uint64_t seed) {
  return arch.is_resnet() ? init_resnet(arch.resnet(), seed) : init_vit(arch.vit(), seed);
}
std::vector<NamedTensor> init_weights(const std::string& arch, uint64_t seed) {
  return init_weights(parse_arch(arch), seed);
}

}  // namespace tabula
