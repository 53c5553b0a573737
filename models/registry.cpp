#include "models/registry.h"

#include <map>
#include <stdexcept>
#include <utility>

#include "engine/ops.h"
#include "models/resnet.h"

namespace tabula {
namespace {

// timm names users type that parse_arch does not know, as overrides of a name it does (timm model_args;
// tests/models checks each one's parameter count against timm's).
const std::vector<std::pair<std::string, std::string>>& extra_names() {
  static const std::vector<std::pair<std::string, std::string>> t = {
      {"vit_small_patch8_224", "vit_small_patch16_224:patch=8,classes=0"},  // timm default cfg: DINO v1 ViT-S/8, no head
      {"vit_base_patch8_224", "vit_base_patch16_224:patch=8"},  // timm default cfg has a head (DINO v1 B/8: classes=0)
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
      {"vit_giant_patch14_224", "vit_large_patch16_224:patch=14,dim=1408,depth=40,heads=16,mlp_ratio=4.363636363636363"},
      // SigLIP image towers: no class token, attention-pool head (AttentionPoolLatent) or patch mean, no classifier
      {"vit_base_patch16_siglip_224", "vit_base_patch16_224:class_token=0,global_pool=map,classes=0"},
      {"vit_base_patch16_siglip_gap_224", "vit_base_patch16_224:class_token=0,global_pool=avg,fc_norm=0,classes=0"},
      {"vit_base_patch16_224_miil", "vit_base_patch16_224:qkv_bias=0,classes=11221"},  // timm default cfg: in21k head
      {"vit_base_patch16_siglip_256", "vit_base_patch16_224:class_token=0,global_pool=map,classes=0,img=256"},
      {"vit_base_patch16_siglip_gap_256", "vit_base_patch16_224:class_token=0,global_pool=avg,fc_norm=0,classes=0,img=256"},
      {"vit_base_patch16_siglip_384", "vit_base_patch16_224:class_token=0,global_pool=map,classes=0,img=384"},
      {"vit_base_patch16_siglip_gap_384", "vit_base_patch16_224:class_token=0,global_pool=avg,fc_norm=0,classes=0,img=384"},
      {"vit_base_patch16_siglip_512", "vit_base_patch16_224:class_token=0,global_pool=map,classes=0,img=512"},
      {"vit_base_patch16_siglip_gap_512", "vit_base_patch16_224:class_token=0,global_pool=avg,fc_norm=0,classes=0,img=512"},
      {"vit_large_patch16_siglip_256", "vit_large_patch16_224:class_token=0,global_pool=map,classes=0,img=256"},
      {"vit_large_patch16_siglip_gap_256", "vit_large_patch16_224:class_token=0,global_pool=avg,fc_norm=0,classes=0,img=256"},
      {"vit_large_patch16_siglip_384", "vit_large_patch16_224:class_token=0,global_pool=map,classes=0,img=384"},
      {"vit_large_patch16_siglip_gap_384", "vit_large_patch16_224:class_token=0,global_pool=avg,fc_norm=0,classes=0,img=384"},
      {"vit_large_patch16_siglip_512", "vit_large_patch16_224:class_token=0,global_pool=map,classes=0,img=512"},
      {"vit_large_patch16_siglip_gap_512", "vit_large_patch16_224:class_token=0,global_pool=avg,fc_norm=0,classes=0,img=512"},
      {"vit_base_patch16_plus_240", "vit_base_patch16_224:dim=896,heads=14,img=240,init_values=1e-5"},
      // CLIP image towers (timm's, quick_gelu variants excluded): pre_norm (no patch bias), LayerNorm eps 1e-5
      {"vit_base_patch16_clip_224", "vit_base_patch16_224:pre_norm=1,norm_eps=1e-5"},
      {"vit_large_patch14_clip_224", "vit_large_patch16_224:patch=14,pre_norm=1,norm_eps=1e-5"},
      {"vit_huge_patch14_clip_224", "vit_large_patch16_224:patch=14,dim=1280,depth=32,heads=16,pre_norm=1,norm_eps=1e-5"},
      {"vit_huge_patch14_clip_378", "vit_large_patch16_224:patch=14,dim=1280,depth=32,heads=16,pre_norm=1,norm_eps=1e-5,img=378,classes=1024"},
      // QuickGELU CLIP towers (OpenAI / MetaCLIP / DFN weights); timm's default cfgs keep the projection as `head`
      {"vit_base_patch16_clip_quickgelu_224", "vit_base_patch16_224:pre_norm=1,norm_eps=1e-5,act=quick_gelu,classes=512"},
      {"vit_large_patch14_clip_quickgelu_224", "vit_large_patch16_224:patch=14,pre_norm=1,norm_eps=1e-5,act=quick_gelu,classes=768"},
      {"vit_large_patch14_clip_quickgelu_336", "vit_large_patch16_224:patch=14,pre_norm=1,norm_eps=1e-5,act=quick_gelu,classes=768,img=336"},
      {"vit_huge_patch14_clip_quickgelu_224", "vit_large_patch16_224:patch=14,dim=1280,depth=32,heads=16,pre_norm=1,norm_eps=1e-5,act=quick_gelu,classes=1024"},
      {"vit_huge_patch14_clip_quickgelu_378", "vit_large_patch16_224:patch=14,dim=1280,depth=32,heads=16,pre_norm=1,norm_eps=1e-5,act=quick_gelu,classes=1024,img=378"},
  };
  return t;
}

}  // namespace

std::vector<std::string> model_names() {
  std::vector<std::string> names = named_archs();
  for (const auto& [n, def] : extra_names()) names.push_back(n);
  return names;
}

ModelArch parse_model_arch(const std::string& arch) {
  ModelArch m;
  std::string head = arch.substr(0, arch.find(':'));
  std::string keys = arch.size() > head.size() ? arch.substr(head.size() + 1) : "";
  // Take the forward-only key out (its value is one token, so a piece-wise filter cannot split a list value).
  std::string kept;
  size_t pos = 0;
  while (!keys.empty() && pos <= keys.size()) {
    size_t comma = keys.find(',', pos);
    if (comma == std::string::npos) comma = keys.size();
    const std::string piece = keys.substr(pos, comma - pos);
    if (piece.rfind("dynamic_img_size=", 0) == 0) {
      const std::string v = piece.substr(17);
      if (v == "1" || v == "true" || v == "True") m.vit.dynamic_img_size = true;
      else if (v == "0" || v == "false" || v == "False") m.vit.dynamic_img_size = false;
      else throw std::invalid_argument("arch '" + arch + "': key 'dynamic_img_size' needs 0/1 or true/false, got '" + v + "'");
    } else {
      kept += (kept.empty() ? "" : ",") + piece;
    }
    pos = comma + 1;
  }
  for (const auto& [n, def] : extra_names()) {
    if (n == head) {
      head = def;
      break;
    }
  }
  std::string full = head;
  if (!kept.empty()) full += (head.find(':') == std::string::npos ? ":" : ",") + kept;
  try {
    m.arch = parse_arch(full);
  } catch (const std::invalid_argument& e) {
    std::string msg = e.what();
    if (msg.find("unknown architecture") != std::string::npos) {
      std::string extra;
      for (const auto& [n, def] : extra_names()) extra += (extra.empty() ? "" : ", ") + n;
      msg += "; also: " + extra;
    }
    if (full != arch) msg += " (arch '" + arch + "' read as '" + full + "')";
    throw std::invalid_argument(msg);
  }
  m.arch.name = arch;
  if (m.arch.is_resnet() && m.vit.dynamic_img_size)
    throw std::invalid_argument("arch '" + arch + "': dynamic_img_size is a ViT key (ResNets take any input size)");
  if (!m.arch.is_resnet() && m.vit.dynamic_img_size) std::get<ViTConfig>(m.arch.config).dynamic_img_size = true;
  return m;
}

namespace {
std::unique_ptr<Model> make(const ModelArch& m, const ParamStore& p) {
  if (m.arch.is_resnet()) return make_resnet(m.arch, p);
  return make_vit(m.arch, p, m.vit);
}
}  // namespace

namespace {

// Checkpoints reach models in tabula's canonical (timm) names: weights_tools' to_canonical maps a DINOv2 hub
// file onto them (mask_token dropped, register_tokens -> reg_token, w12/w3 -> fc1/fc2, and for register models
// the CLS position folded into cls_token as timm's _convert_dinov2 does). A hub-flavour model takes such weights
// back under its own names. The folded CLS position loses nothing: the hub adds pos_embed[:, 0] to the class
// token only (it is never interpolated), so cls_token' = cls_token + pos_embed[:, 0] with a zero CLS row gives
// the same bits. mask_token is used in training only and comes back as zeros.
WeightMap hub_names_from_canonical(const ViTConfig& c, const WeightMap& w) {
  WeightMap out;
  const int64_t D = c.embed_dim;
  for (const auto& [k, t] : w) {
    std::string name = k;
    if (k == "reg_token") name = "register_tokens";
    if (c.mlp == ViTConfig::Mlp::swiglufused && k.rfind("blocks.", 0) == 0) {
      for (const auto& [from, to] : {std::pair<std::string, std::string>{".mlp.fc1.", ".mlp.w12."}, {".mlp.fc2.", ".mlp.w3."}}) {
        const size_t at = name.find(from);
        if (at != std::string::npos) name.replace(at, from.size(), to);
      }
    }
    out[name] = t;
  }
  auto pos = out.find("pos_embed");
  if (pos != out.end() && pos->second.dim() == 3 && pos->second.size(1) == c.num_patches() && pos->second.size(2) == D) {
    Tensor cls_row = Tensor::zeros({1, 1, D});
    pos->second = ops::cat({cls_row, pos->second.to(DType::f32).contiguous()}, 1);
  }
  out.emplace("mask_token", Tensor::zeros({1, D}));
  return out;
}

}  // namespace

std::unique_ptr<Model> build_model(const std::string& arch, const WeightMap& weights, bool strict, LoadReport* report) {
  ModelArch m = parse_model_arch(arch);
  if (!m.arch.is_resnet() && m.arch.vit().flavor == ViTConfig::Flavor::dinov2 && !weights.count("mask_token") &&
      !weights.count("register_tokens") && (m.arch.vit().reg_tokens == 0 || weights.count("reg_token")))
    return make(m, ParamStore(m.arch, hub_names_from_canonical(m.arch.vit(), weights), strict, report));
  return make(m, ParamStore(m.arch, weights, strict, report));
}

std::unique_ptr<Model> build_model_seed(const std::string& arch, uint64_t seed) {
  ModelArch m = parse_model_arch(arch);
  return make(m, ParamStore(m.arch, to_weight_map(init_weights(m.arch, seed)), true));
}

std::unique_ptr<Model> build_model_skeleton(const std::string& arch) {
  ModelArch m = parse_model_arch(arch);
  return make(m, ParamStore::skeleton(m.arch));
}

}  // namespace tabula

namespace tabula {

ModelInfo model_info(const std::string& arch) {
  ModelArch m = parse_model_arch(arch);
  auto model = build_model_skeleton(arch);
  ModelInfo info;
  info.arch = arch;
  if (m.arch.is_resnet()) info.family = "torchvision ResNet";
  else info.family = m.arch.vit().flavor == ViTConfig::Flavor::dinov2 ? "DINOv2 hub" : "timm ViT";
  info.params = param_count(m.arch);
  info.input = model->default_input_shape(1);
  info.gmacs = model->gmacs(info.input);
  info.default_taps = model->default_taps();
  return info;
}

std::optional<TimmPretrainedCfg> timm_pretrained_cfg(const std::string& arch) {
  struct Norm {
    std::array<float, 3> mean, std;
  };
  static const Norm kHalf{{0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}};
  static const Norm kImageNet{{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}};
  static const Norm kOpenAiClip{{0.48145466f, 0.4578275f, 0.40821073f}, {0.26862954f, 0.26130258f, 0.27577711f}};
  static const Norm kNone{{0.0f, 0.0f, 0.0f}, {1.0f, 1.0f, 1.0f}};
  struct Row {
    int size;
    double crop_pct;
    const char* interpolation;
    const Norm& norm;
  };
  // timm 1.0.31 get_pretrained_cfg(name) (tests/fixtures/models/pretrained_cfgs.tsv, written by
  // weights_tools/reference/models_fixtures.py --only pretrained, checks every row); the tag in the comment.
  static const std::map<std::string, Row> table = {
      {"vit_tiny_patch16_224", {224, 0.9, "bicubic", kHalf}},  // augreg_in21k_ft_in1k
      {"vit_small_patch16_224", {224, 0.9, "bicubic", kHalf}},  // augreg_in21k_ft_in1k
      {"vit_base_patch16_224", {224, 0.9, "bicubic", kHalf}},  // augreg2_in21k_ft_in1k
      {"vit_large_patch16_224", {224, 0.9, "bicubic", kHalf}},  // augreg_in21k_ft_in1k
      {"vit_small_patch8_224", {224, 0.9, "bicubic", kImageNet}},  // dino
      {"vit_base_patch8_224", {224, 0.9, "bicubic", kHalf}},  // augreg2_in21k_ft_in1k
      {"vit_small_patch32_224", {224, 0.9, "bicubic", kHalf}},  // augreg_in21k_ft_in1k
      {"vit_base_patch32_224", {224, 0.9, "bicubic", kHalf}},  // augreg_in21k_ft_in1k
      {"vit_large_patch32_224", {224, 0.9, "bicubic", kHalf}},  // orig_in21k
      {"vit_large_patch14_224", {224, 0.9, "bicubic", kHalf}},  // untrained
      {"vit_huge_patch14_224", {224, 0.9, "bicubic", kHalf}},  // orig_in21k
      {"vit_small_patch14_dinov2", {518, 1.0, "bicubic", kImageNet}},  // lvd142m
      {"vit_base_patch14_dinov2", {518, 1.0, "bicubic", kImageNet}},  // lvd142m
      {"vit_large_patch14_dinov2", {518, 1.0, "bicubic", kImageNet}},  // lvd142m
      {"vit_small_patch14_reg4_dinov2", {518, 1.0, "bicubic", kImageNet}},  // lvd142m
      {"vit_base_patch14_reg4_dinov2", {518, 1.0, "bicubic", kImageNet}},  // lvd142m
      {"vit_large_patch14_reg4_dinov2", {518, 1.0, "bicubic", kImageNet}},  // lvd142m
      {"vit_giant_patch14_dinov2", {518, 1.0, "bicubic", kImageNet}},  // lvd142m
      {"vit_giant_patch14_reg4_dinov2", {518, 1.0, "bicubic", kImageNet}},  // lvd142m
      {"vit_tiny_patch16_384", {384, 1.0, "bicubic", kHalf}},  // augreg_in21k_ft_in1k
      {"vit_small_patch16_384", {384, 1.0, "bicubic", kHalf}},  // augreg_in21k_ft_in1k
      {"vit_base_patch16_384", {384, 1.0, "bicubic", kHalf}},  // augreg_in21k_ft_in1k
      {"vit_large_patch16_384", {384, 1.0, "bicubic", kHalf}},  // augreg_in21k_ft_in1k
      {"vit_base_patch16_gap_224", {224, 0.9, "bicubic", kHalf}},  // untrained
      {"vit_huge_patch14_gap_224", {224, 0.9, "bicubic", kImageNet}},  // in1k_ijepa
      {"vit_giant_patch14_224", {224, 0.9, "bicubic", kHalf}},  // untrained
      {"vit_base_patch16_siglip_224", {224, 0.9, "bicubic", kHalf}},  // v2_webli
      {"vit_base_patch16_siglip_gap_224", {224, 0.9, "bicubic", kHalf}},  // v2_webli
      {"vit_base_patch16_224_miil", {224, 0.875, "bilinear", kNone}},  // in21k
      {"vit_base_patch16_siglip_256", {256, 0.9, "bicubic", kHalf}},  // v2_webli
      {"vit_base_patch16_siglip_384", {384, 0.9, "bicubic", kHalf}},  // v2_webli
      {"vit_base_patch16_siglip_512", {512, 0.9, "bicubic", kHalf}},  // v2_webli
      {"vit_base_patch16_siglip_gap_256", {256, 0.9, "bicubic", kHalf}},  // v2_webli
      {"vit_base_patch16_siglip_gap_384", {384, 0.9, "bicubic", kHalf}},  // v2_webli
      {"vit_base_patch16_siglip_gap_512", {512, 0.9, "bicubic", kHalf}},  // v2_webli
      {"vit_large_patch16_siglip_256", {256, 0.9, "bicubic", kHalf}},  // v2_webli
      {"vit_large_patch16_siglip_384", {384, 0.9, "bicubic", kHalf}},  // v2_webli
      {"vit_large_patch16_siglip_512", {512, 0.9, "bicubic", kHalf}},  // v2_webli
      {"vit_large_patch16_siglip_gap_256", {256, 0.9, "bicubic", kHalf}},  // v2_webli
      {"vit_large_patch16_siglip_gap_384", {384, 0.9, "bicubic", kHalf}},  // v2_webli
      {"vit_large_patch16_siglip_gap_512", {512, 0.9, "bicubic", kHalf}},  // v2_webli
      {"vit_base_patch16_plus_240", {240, 0.95, "bicubic", kHalf}},  // untrained
      {"vit_base_patch16_clip_224", {224, 0.95, "bicubic", kOpenAiClip}},  // laion2b_ft_in12k_in1k
      {"vit_large_patch14_clip_224", {224, 1.0, "bicubic", kHalf}},  // laion2b_ft_in12k_in1k
      {"vit_huge_patch14_clip_224", {224, 1.0, "bicubic", kOpenAiClip}},  // laion2b_ft_in12k_in1k
      {"vit_huge_patch14_clip_378", {378, 1.0, "bicubic", kOpenAiClip}},  // dfn5b
      {"vit_base_patch16_clip_quickgelu_224", {224, 1.0, "bicubic", kOpenAiClip}},  // metaclip_2pt5b
      {"vit_large_patch14_clip_quickgelu_224", {224, 1.0, "bicubic", kOpenAiClip}},  // dfn2b
      {"vit_large_patch14_clip_quickgelu_336", {336, 1.0, "bicubic", kOpenAiClip}},  // openai
      {"vit_huge_patch14_clip_quickgelu_224", {224, 1.0, "bicubic", kOpenAiClip}},  // dfn5b
      {"vit_huge_patch14_clip_quickgelu_378", {378, 1.0, "bicubic", kOpenAiClip}},  // dfn5b
  };
  const auto it = table.find(arch.substr(0, arch.find(':')));
  if (it == table.end()) return std::nullopt;
  TimmPretrainedCfg c;
  c.input_size = it->second.size;
  c.crop_pct = it->second.crop_pct;
  c.interpolation = it->second.interpolation;
  c.mean = it->second.norm.mean;
  c.std = it->second.norm.std;
  return c;
}

}  // namespace tabula
