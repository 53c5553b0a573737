// ViT configs: timm's and the DINOv2 hub's named archs and timm aliases, the `vit:` keys, ViT's init_weights()
// (timm VisionTransformer.init_weights / DinoVisionTransformer.init_weights), and the hub's own parameter names.
//
// Init replay, what it matches: torch 2.15 / timm 1.0.31 (VisionTransformer.init_weights with needs_reset=False,
// i.e. since timm 1.0.23 / commit b5ffe5bd: cls/pos/reg created with torch.empty, Linear and Conv2d layers keep
// the draws of their own reset_parameters() in the constructor; with legacy_init=1, timm 1.0.22 and earlier) /
// DINOv2 hub code (facebookresearch/dinov2 b8931f7, which uses torch.nn.init.trunc_normal_, i.e. torch 2.15's
// normal-with-rejection, while timm uses its own erfinv-based trunc_normal_).
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "engine/init.h"
#include "engine/ops.h"
#include "models/vit.h"

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

namespace {

constexpr int kMaxBlocks = 1024;  // the deepest published ViTs have ~50 blocks

[[noreturn]] void fail(const std::string& why) { throw KeyValueError(why); }

}  // namespace

void ViTConfig::apply_keys(const KeyValues& kv) {
  ViTConfig& c = *this;
  bool classes_given = false, pool_given = false, act_given = false;
  for (const auto& [k, v] : kv) {
    classes_given |= k == "classes" || k == "num_classes";
    pool_given |= k == "global_pool";
    act_given |= k == "act" || k == "act_layer";
  }
  for (const auto& [k, v] : kv) {
    if (k == "dim" || k == "embed_dim") c.embed_dim = parse_int_value(k, v, 1);
    else if (k == "depth") c.depth = parse_int_value(k, v, 0, kMaxBlocks);
    else if (k == "heads" || k == "num_heads") c.num_heads = parse_int_value(k, v, 1);
    else if (k == "patch" || k == "patch_size") c.patch_size = parse_int_value(k, v, 1);
    else if (k == "img" || k == "img_size") c.img_size = parse_int_value(k, v, 1);
    else if (k == "chans" || k == "in_chans") c.in_chans = parse_int_value(k, v, 1);
    else if (k == "classes" || k == "num_classes") c.num_classes = parse_int_value(k, v, 0);
    else if (k == "mlp_ratio") c.mlp_ratio = parse_number_value(k, v);
    else if (k == "qkv_bias") c.qkv_bias = parse_bool_value(k, v);
    else if (k == "init_values") {
      if (v == "none" || v == "None") c.init_values.reset();
      else c.init_values = parse_number_value(k, v);
    } else if (k == "class_token") c.class_token = parse_bool_value(k, v);
    else if (k == "no_embed_class") c.no_embed_class = parse_bool_value(k, v);
    else if (k == "reg" || k == "reg_tokens") c.reg_tokens = parse_int_value(k, v, 0);
    else if (k == "global_pool") {
      if (v != "" && v != "token" && v != "avg" && v != "avgmax" && v != "max" && v != "map")
        fail("key 'global_pool' is one of '', token, avg, avgmax, max, map; got '" + v + "'");
      c.global_pool = v;
    } else if (k == "fc_norm") {
      if (v == "auto" || v == "none" || v == "None") c.fc_norm.reset();
      else c.fc_norm = parse_bool_value(k, v);
    } else if (k == "qk_norm") c.qk_norm = parse_bool_value(k, v);
    else if (k == "mlp" || k == "mlp_layer") {
      if (v == "mlp") c.mlp = ViTConfig::Mlp::mlp;
      else if (v == "swiglu_packed") c.mlp = ViTConfig::Mlp::swiglu_packed;
      else if (v == "swiglu") c.mlp = ViTConfig::Mlp::swiglu;
      else if (v == "swiglufused") c.mlp = ViTConfig::Mlp::swiglufused;
      else fail("key 'mlp' is one of mlp, swiglu_packed, swiglu (timm) or swiglufused (DINOv2); got '" + v + "'");
      if (!act_given) c.act = c.mlp == ViTConfig::Mlp::mlp ? "gelu" : "silu";
    } else if (k == "act" || k == "act_layer") {
      if (v != "gelu" && v != "silu" && v != "gelu_tanh" && v != "quick_gelu")
        fail("key 'act' is one of gelu, silu, gelu_tanh, quick_gelu; got '" + v + "'");
      c.act = v;
    } else if (k == "dynamic_img_size") c.dynamic_img_size = parse_bool_value(k, v);
    else if (k == "norm_eps") {
      c.norm_eps = parse_number_value(k, v);
      if (!(c.norm_eps > 0)) fail("key 'norm_eps' needs a positive number, got '" + v + "'");
    }
    else if (k == "interpolate_antialias") c.interpolate_antialias = parse_bool_value(k, v);
    else if (k == "interpolate_offset") c.interpolate_offset = parse_number_value(k, v);
    else if (k == "hf_init") {
      if (v != "" && v != "vit" && v != "dinov2")
        fail("key 'hf_init' is vit (ViTModel) or dinov2 (Dinov2Model), got '" + v + "'");
      c.hf_init = v;
    }
    else if (k == "pre_norm") c.pre_norm = parse_bool_value(k, v);
    else if (k == "final_norm") c.final_norm = parse_bool_value(k, v);
    else if (k == "legacy_init") c.legacy_init = parse_bool_value(k, v);
    else if (k == "weight_init") {
      if (v != "" && v != "jax" && v != "jax_nlhb" && v != "moco")
        fail("key 'weight_init' is one of '', jax, jax_nlhb, moco; got '" + v + "'");
      c.weight_init = v;
    }
    else if (k == "flavor") {
      if (v == "timm") c.flavor = ViTConfig::Flavor::timm;
      else if (v == "dinov2") {
        c.flavor = ViTConfig::Flavor::dinov2;
        if (!classes_given) c.num_classes = 0;  // DinoVisionTransformer's head is nn.Identity
        if (!pool_given) c.global_pool = "";
      }
      else fail("key 'flavor' is timm or dinov2, got '" + v + "'");
    } else {
      fail("unknown key '" + k + "' (vit keys: dim, depth, heads, patch, img, chans, classes, mlp_ratio, "
                     "qkv_bias, qk_norm, mlp, act, init_values, class_token, no_embed_class, reg, global_pool, "
                     "fc_norm, pre_norm, final_norm, flavor, legacy_init, weight_init, dynamic_img_size, norm_eps, "
                     "interpolate_antialias, interpolate_offset, hf_init)");
    }
  }
  if (c.embed_dim % c.num_heads != 0)
    fail("dim " + std::to_string(c.embed_dim) + " is not divisible by heads " + std::to_string(c.num_heads));
  if (c.img_size % c.patch_size != 0)
    fail("img " + std::to_string(c.img_size) + " is not a multiple of patch " + std::to_string(c.patch_size));
  const int64_t grid = c.img_size / c.patch_size;
  if (grid * grid + c.num_prefix_tokens() > kMaxSize)
    fail(std::to_string(grid * grid + c.num_prefix_tokens()) + " tokens (img / patch = " + std::to_string(grid) +
                       " squared, + prefix tokens): at most " + std::to_string(kMaxSize));
  // int(dim * mlp_ratio), range-checked before anything converts it (fuzz_arch: mlp_ratio=4.4e107).
  const double hidden = static_cast<double>(c.embed_dim) * c.mlp_ratio;
  if (!(hidden >= 1.0 && hidden < kMaxSize + 1.0))
    fail("int(dim * mlp_ratio) must be from 1 to " + std::to_string(kMaxSize) + " (timm would silently "
                   "widen a 0-wide MLP to dim), got dim " + std::to_string(c.embed_dim) + " * mlp_ratio " +
                   std::to_string(c.mlp_ratio));
  if (c.global_pool == "token" && !c.class_token) fail("global_pool=token needs the class token");
  if (c.mlp == ViTConfig::Mlp::swiglu_packed && c.mlp_hidden() % 2 != 0)
    fail("mlp=swiglu_packed splits fc1's output in two halves: int(dim * mlp_ratio) = " +
                       std::to_string(c.mlp_hidden()) + " must be even (timm GluMlp asserts it)");
  if (c.weight_init == "jax_nlhb" && c.num_classes <= 0)
    fail("weight_init=jax_nlhb sets the head bias to -log(classes): it needs classes > 0");
  if (c.hf_init == "vit" &&
      (c.flavor != ViTConfig::Flavor::timm || !c.class_token || c.no_embed_class || c.reg_tokens || c.init_values ||
       c.mlp != ViTConfig::Mlp::mlp || c.qk_norm || c.num_classes != 0 || c.pre_norm || !c.final_norm ||
       c.use_fc_norm() || !c.weight_init.empty() || c.legacy_init))
    fail("hf_init=vit is transformers' ViTModel: a timm-flavour ViT with a class token, no registers, no LayerScale, "
         "the plain MLP, a final norm and no head (classes=0)");
  if (c.hf_init == "dinov2" && (c.flavor != ViTConfig::Flavor::dinov2 || c.reg_tokens || !c.init_values ||
                                c.mlp != ViTConfig::Mlp::mlp))
    fail("hf_init=dinov2 is transformers' Dinov2Model: flavor=dinov2 with init_values (layerscale_value), no "
         "registers and the plain MLP");
  if (c.flavor == ViTConfig::Flavor::dinov2) {
    if (c.legacy_init) fail("legacy_init is a timm setting (timm < 1.0.23), not a DINOv2 one");
    if (!c.weight_init.empty()) fail("weight_init is a timm setting, not a DINOv2 one");
    if (c.qk_norm) fail("qk_norm is a timm setting: DINOv2's MemEffAttention has no q/k norm");
    if (c.dynamic_img_size)
      fail("dynamic_img_size is a timm option; the DINOv2 hub model always interpolates its pos-embed");
    if (c.norm_eps != 1e-6) fail("norm_eps is a timm setting: DinoVisionTransformer's LayerNorms use 1e-6");
    if (c.mlp == ViTConfig::Mlp::swiglu_packed || c.mlp == ViTConfig::Mlp::swiglu)
      fail("flavor=dinov2 takes mlp=mlp or mlp=swiglufused (the hub's ffn_layer), not a timm MLP");
    if (act_given) fail("flavor=dinov2 fixes the activation (GELU in Mlp, SiLU in SwiGLUFFNFused)");
    if (c.interpolate_offset < 0) fail("interpolate_offset must be >= 0");
    if (!c.class_token || c.no_embed_class || c.pre_norm || !c.final_norm || c.num_classes != 0 ||
        c.fc_norm.value_or(false) || c.global_pool == "map")
      fail("flavor=dinov2 (DinoVisionTransformer) always has a class token, a pos-embed covering it, a "
                     "final norm and no head: class_token/no_embed_class/pre_norm/final_norm/classes/fc_norm "
                     "cannot be changed, and global_pool=map (a timm head) does not apply");
  } else if (c.interpolate_antialias || c.interpolate_offset != 0.1) {
    fail("interpolate_antialias / interpolate_offset are DINOv2 hub settings (flavor=dinov2); timm "
                   "resamples the pos-embed by size with antialias");
  } else if (c.mlp == ViTConfig::Mlp::swiglufused) {
    fail("mlp=swiglufused is DINOv2's SwiGLUFFNFused (flavor=dinov2); timm's are swiglu_packed and swiglu");
  }
}

// ---- init_weights ----------------------------------------------------------------------------------------------

namespace {

// GluMlp.init_weights / SwiGLU.init_weights: the gate's bias 1 and its weight normal_(std=1e-6). GluMlp's gate is
// the second half of fc1 (rows hidden/2 onwards, one contiguous block of the [out, in] weight).
void gate_init(const Module& m, InitState& s) {
  const bool glu = m.type == "GluMlp";
  const std::string fc = m.name() + (glu ? ".fc1" : ".fc1_g");
  const Shape& ws = s.shape(fc + ".weight");
  const int64_t skip_rows = glu ? ws[0] / 2 : 0;
  if (s.has(fc + ".bias")) {
    float* b = s.f32(fc + ".bias");
    std::fill(b + skip_rows, b + ws[0], 1.0f);
  }
  const int64_t off = skip_rows * ws[1];
  normal_(s.f32(fc + ".weight") + off, static_cast<size_t>(shape_numel(ws) - off), 0.0, 1e-6, s.gen());
}

// AttentionPoolLatent.init_weights: trunc_normal_tf_(latent, std=latent_dim ** -0.5).
void attn_pool_init(const Module& m, InitState& s, int64_t dim) {
  const std::string latent = m.name() + ".latent";
  timm_trunc_normal_tf_(s.f32(latent), s.numel(latent), s.gen(), 0.0, std::pow(static_cast<double>(dim), -0.5));
}

}  // namespace

void ViTConfig::init_weights(const ModuleTree& tree, InitState& s) const {
  if (!hf_init.empty()) return hf_init_weights(*this, s);
  const bool dinov2 = flavor == Flavor::dinov2;
  auto trunc = [&](const std::string& name) {
    if (dinov2) trunc_normal_(s.f32(name), s.numel(name), s.gen(), 0.0, 0.02);
    else timm_trunc_normal_(s.f32(name), s.numel(name), s.gen(), 0.0, 0.02);
  };
  trunc("pos_embed");
  if (s.has("cls_token")) normal_(s.f32("cls_token"), s.numel("cls_token"), 0.0, 1e-6, s.gen());
  const std::string reg = dinov2 ? "register_tokens" : "reg_token";
  if (s.has(reg)) normal_(s.f32(reg), s.numel(reg), 0.0, 1e-6, s.gen());
  // named_apply(init_weights_vit_<mode>, self): children before their parent. Every mode initialises a Linear
  // (and jax a Conv2d) its own way and otherwise calls the module's own init_weights().
  const double head_bias = weight_init == "jax_nlhb" ? -std::log(static_cast<double>(num_classes)) : 0.0;
  for (const Module* m : tree.modules_post_order()) {
    if (m->type == "GluMlp" || m->type == "SwiGLU") {
      gate_init(*m, s);
      continue;
    }
    if (m->type == "AttentionPoolLatent") {
      attn_pool_init(*m, s, embed_dim);
      continue;
    }
    const std::string n = m->name(), w = n + ".weight", b = n + ".bias";
    const bool has_bias = s.has(b);
    if (m->type == "Conv2d") {
      if (weight_init != "jax" && weight_init != "jax_nlhb") continue;  // the others keep the constructor's draws
      lecun_normal_(s.f32(w), s.shape(w), s.gen());
      if (has_bias) s.fill(b, 0.0f);
      continue;
    }
    if (m->type != "Linear") continue;
    if (weight_init.empty()) {  // init_weights_vit_timm
      trunc(w);
      if (has_bias) s.fill(b, 0.0f);
    } else if (weight_init == "moco") {  // init_weights_vit_moco
      const Shape& ws = s.shape(w);
      if (n.find("qkv") != std::string::npos) {  // q, k and v treated as separate matrices
        const double val = std::sqrt(6.0 / static_cast<double>(ws[0] / 3 + ws[1]));
        uniform_init(s.f32(w), ws, -val, val, s.gen());
      } else {
        xavier_uniform_(s.f32(w), ws, s.gen());
      }
      if (has_bias) s.fill(b, 0.0f);
    } else {  // init_weights_vit_jax
      if (n == "head") {
        s.fill(w, 0.0f);
        s.fill(b, static_cast<float>(head_bias));
        continue;
      }
      xavier_uniform_(s.f32(w), s.shape(w), s.gen());
      if (!has_bias) continue;
      if (n.find("mlp") != std::string::npos) normal_(s.f32(b), s.numel(b), 0.0, 1e-6, s.gen());
      else s.fill(b, 0.0f);
    }
  }
}

// ---- the DINOv2 hub's own names ------------------------------------------------------------------------------

namespace {

// timm's names of SwiGLUFFNFused's linears -> the hub's.
const std::pair<std::string, std::string> kHubMlpNames[] = {{".mlp.fc1.", ".mlp.w12."}, {".mlp.fc2.", ".mlp.w3."}};

WeightMap hub_names_from_canonical(const ViTConfig& c, const WeightMap& w) {
  WeightMap out;
  const int64_t D = c.embed_dim;
  for (const auto& [k, t] : w) {
    std::string name = k;
    if (k == "reg_token") name = "register_tokens";
    if (c.mlp == ViTConfig::Mlp::swiglufused && k.rfind("blocks.", 0) == 0) {
      for (const auto& [from, to] : kHubMlpNames) {
        const size_t at = name.find(from);
        if (at != std::string::npos) name.replace(at, from.size(), to);
      }
    }
    out[name] = t;
  }
  auto pos = out.find("pos_embed");
  if (pos != out.end() && pos->second.dim() == 3 && pos->second.size(1) == c.num_patches() &&
      pos->second.size(2) == D) {
    Tensor cls_row = Tensor::zeros({1, 1, D});
    pos->second = ops::cat({cls_row, pos->second.to(DType::f32).contiguous()}, 1);
  }
  out.emplace("mask_token", Tensor::zeros({1, D}));
  return out;
}

}  // namespace

WeightMap ViTConfig::from_canonical(const WeightMap& w) const {
  // A hub arch given tabula's canonical form (no mask_token / register_tokens; reg_token when it has registers).
  if (flavor != Flavor::dinov2 || w.count("mask_token") || w.count("register_tokens") ||
      (reg_tokens != 0 && !w.count("reg_token")))
    return w;
  return hub_names_from_canonical(*this, w);
}

// The inverse: the hub's state_dict under timm's names, in timm's order (cls_token, reg_token, pos_embed, ...).
std::vector<ParamSpec> ViTConfig::canonical_specs(const std::vector<ParamSpec>& specs) const {
  if (flavor != Flavor::dinov2) return specs;
  std::vector<ParamSpec> out, tail;
  for (ParamSpec s : specs) {
    if (s.name == "mask_token") continue;
    if (s.name == "register_tokens") s.name = "reg_token";
    if (s.name == "pos_embed" && reg_tokens) s.shape[1] -= 1;  // the CLS position folded into cls_token
    for (const auto& [to, from] : kHubMlpNames) {
      const size_t at = s.name.find(from);
      if (at != std::string::npos) s.name.replace(at, from.size(), to);
    }
    (s.name == "cls_token" || s.name == "reg_token" || s.name == "pos_embed" ? out : tail).push_back(s);
  }
  std::stable_sort(out.begin(), out.end(), [](const ParamSpec& a, const ParamSpec& b) {
    auto rank = [](const std::string& n) { return n == "cls_token" ? 0 : n == "reg_token" ? 1 : 2; };
    return rank(a.name) < rank(b.name);
  });
  out.insert(out.end(), tail.begin(), tail.end());
  return out;
}

// ---- named archs -----------------------------------------------------------------------------------------------

namespace {

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

std::shared_ptr<const ModelConfig> cfg(const ViTConfig& c) { return std::make_shared<ViTConfig>(c); }

}  // namespace

const Family& vit_family() {
  static const Family f{
      "vit",
      std::make_shared<ViTConfig>(),
      {
        {"vit_tiny_patch16_224", cfg(timm_vit(16, 192, 12, 3))},
        {"vit_small_patch16_224", cfg(timm_vit(16, 384, 12, 6))},
        {"vit_base_patch16_224", cfg(timm_vit(16, 768, 12, 12))},
        {"vit_large_patch16_224", cfg(timm_vit(16, 1024, 24, 16))},
        {"vit_small_patch14_dinov2", cfg(timm_dinov2(384, 12, 6, 0))},
        {"vit_base_patch14_dinov2", cfg(timm_dinov2(768, 12, 12, 0))},
        {"vit_small_patch14_reg4_dinov2", cfg(timm_dinov2(384, 12, 6, 4))},
        {"vit_base_patch14_reg4_dinov2", cfg(timm_dinov2(768, 12, 12, 4))},
        {"vit_giant_patch14_dinov2", cfg(timm_dinov2_giant(0))},
        {"vit_giant_patch14_reg4_dinov2", cfg(timm_dinov2_giant(4))},
        {"dinov2_vits14", cfg(hub_dinov2(384, 12, 6, false))},
        {"dinov2_vitb14", cfg(hub_dinov2(768, 12, 12, false))},
        {"dinov2_vitl14", cfg(hub_dinov2(1024, 24, 16, false))},
        {"dinov2_vits14_reg", cfg(hub_dinov2(384, 12, 6, true))},
        {"dinov2_vitb14_reg", cfg(hub_dinov2(768, 12, 12, true))},
        {"dinov2_vitl14_reg", cfg(hub_dinov2(1024, 24, 16, true))},
        {"dinov2_vitg14", cfg(hub_dinov2_giant(false))},
        {"dinov2_vitg14_reg", cfg(hub_dinov2_giant(true))},
      },
      // timm names defined as keys over a named arch (timm model_args; tests/models checks each one's parameter
      // count against timm's).
      {
        {"vit_small_patch8_224", "vit_small_patch16_224:patch=8,classes=0"},  // timm default cfg: DINO v1 S/8
        {"vit_base_patch8_224", "vit_base_patch16_224:patch=8"},  // timm default cfg: a head (DINO v1 B/8: none)
        {"vit_small_patch32_224", "vit_small_patch16_224:patch=32"},
        {"vit_base_patch32_224", "vit_base_patch16_224:patch=32"},
        {"vit_large_patch32_224", "vit_large_patch16_224:patch=32,classes=0"},  // timm: no head (in21k cfg)
        {"vit_large_patch14_224", "vit_large_patch16_224:patch=14"},
        {"vit_huge_patch14_224", "vit_large_patch16_224:patch=14,dim=1280,depth=32,heads=16,classes=0"},
        {"vit_large_patch14_dinov2", "vit_base_patch14_dinov2:dim=1024,depth=24,heads=16"},
        {"vit_large_patch14_reg4_dinov2", "vit_base_patch14_reg4_dinov2:dim=1024,depth=24,heads=16"},
        {"vit_tiny_patch16_384", "vit_tiny_patch16_224:img=384"},
        {"vit_small_patch16_384", "vit_small_patch16_224:img=384"},
        {"vit_base_patch16_384", "vit_base_patch16_224:img=384"},
        {"vit_large_patch16_384", "vit_large_patch16_224:img=384"},
        // timm's *_gap_* models: no class token, mean of the patch tokens, final norm before the pool (fc_norm=False)
        {"vit_base_patch16_gap_224", "vit_base_patch16_224:heads=16,class_token=0,global_pool=avg,fc_norm=0"},
        {"vit_huge_patch14_gap_224",
         "vit_large_patch16_224:patch=14,dim=1280,depth=32,heads=16,class_token=0,global_pool=avg,fc_norm=0,classes=0"},
        // ViT-g/14 of "Scaling Vision Transformers": mlp_ratio=48/11 (repr of the float, so int(1408 * r) = 6144)
        {"vit_giant_patch14_224",
         "vit_large_patch16_224:patch=14,dim=1408,depth=40,heads=16,mlp_ratio=4.363636363636363"},
        // SigLIP image towers: no class token, attention-pool head (AttentionPoolLatent) or patch mean, no classifier
        {"vit_base_patch16_siglip_224", "vit_base_patch16_224:class_token=0,global_pool=map,classes=0"},
        {"vit_base_patch16_siglip_gap_224", "vit_base_patch16_224:class_token=0,global_pool=avg,fc_norm=0,classes=0"},
        {"vit_base_patch16_224_miil", "vit_base_patch16_224:qkv_bias=0,classes=11221"},  // timm default cfg: in21k head
        {"vit_base_patch16_siglip_256", "vit_base_patch16_224:class_token=0,global_pool=map,classes=0,img=256"},
        {"vit_base_patch16_siglip_gap_256",
         "vit_base_patch16_224:class_token=0,global_pool=avg,fc_norm=0,classes=0,img=256"},
        {"vit_base_patch16_siglip_384", "vit_base_patch16_224:class_token=0,global_pool=map,classes=0,img=384"},
        {"vit_base_patch16_siglip_gap_384",
         "vit_base_patch16_224:class_token=0,global_pool=avg,fc_norm=0,classes=0,img=384"},
        {"vit_base_patch16_siglip_512", "vit_base_patch16_224:class_token=0,global_pool=map,classes=0,img=512"},
        {"vit_base_patch16_siglip_gap_512",
         "vit_base_patch16_224:class_token=0,global_pool=avg,fc_norm=0,classes=0,img=512"},
        {"vit_large_patch16_siglip_256", "vit_large_patch16_224:class_token=0,global_pool=map,classes=0,img=256"},
        {"vit_large_patch16_siglip_gap_256",
         "vit_large_patch16_224:class_token=0,global_pool=avg,fc_norm=0,classes=0,img=256"},
        {"vit_large_patch16_siglip_384", "vit_large_patch16_224:class_token=0,global_pool=map,classes=0,img=384"},
        {"vit_large_patch16_siglip_gap_384",
         "vit_large_patch16_224:class_token=0,global_pool=avg,fc_norm=0,classes=0,img=384"},
        {"vit_large_patch16_siglip_512", "vit_large_patch16_224:class_token=0,global_pool=map,classes=0,img=512"},
        {"vit_large_patch16_siglip_gap_512",
         "vit_large_patch16_224:class_token=0,global_pool=avg,fc_norm=0,classes=0,img=512"},
        {"vit_base_patch16_plus_240", "vit_base_patch16_224:dim=896,heads=14,img=240,init_values=1e-5"},
        // CLIP image towers (timm's, quick_gelu variants excluded): pre_norm (no patch bias), LayerNorm eps 1e-5
        {"vit_base_patch16_clip_224", "vit_base_patch16_224:pre_norm=1,norm_eps=1e-5"},
        {"vit_large_patch14_clip_224", "vit_large_patch16_224:patch=14,pre_norm=1,norm_eps=1e-5"},
        {"vit_huge_patch14_clip_224",
         "vit_large_patch16_224:patch=14,dim=1280,depth=32,heads=16,pre_norm=1,norm_eps=1e-5"},
        {"vit_huge_patch14_clip_378",
         "vit_large_patch16_224:patch=14,dim=1280,depth=32,heads=16,pre_norm=1,norm_eps=1e-5,img=378,classes=1024"},
        // QuickGELU CLIP towers (OpenAI / MetaCLIP / DFN weights); timm's default cfgs keep the projection as `head`
        {"vit_base_patch16_clip_quickgelu_224",
         "vit_base_patch16_224:pre_norm=1,norm_eps=1e-5,act=quick_gelu,classes=512"},
        {"vit_large_patch14_clip_quickgelu_224",
         "vit_large_patch16_224:patch=14,pre_norm=1,norm_eps=1e-5,act=quick_gelu,classes=768"},
        {"vit_large_patch14_clip_quickgelu_336",
         "vit_large_patch16_224:patch=14,pre_norm=1,norm_eps=1e-5,act=quick_gelu,classes=768,img=336"},
        {"vit_huge_patch14_clip_quickgelu_224",
         "vit_large_patch16_224:patch=14,dim=1280,depth=32,heads=16,pre_norm=1,norm_eps=1e-5,act=quick_gelu,"
         "classes=1024"},
        {"vit_huge_patch14_clip_quickgelu_378",
         "vit_large_patch16_224:patch=14,dim=1280,depth=32,heads=16,pre_norm=1,norm_eps=1e-5,act=quick_gelu,"
         "classes=1024,img=378"},
      }};
  return f;
}

}  // namespace tabula
