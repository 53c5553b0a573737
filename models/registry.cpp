#include "models/registry.h"

#include <cstdio>
#include <map>
#include <stdexcept>
#include <utility>

#include "models/ca_vit.h"
#include "models/conch.h"
#include "models/dinov3.h"
#include "models/resnet.h"
#include "models/swin.h"
#include "models/vit.h"

namespace tabula {

const Family& convnext_family();  // models/convnext.cpp

// The families, one line each, in the order `tabula models` lists them.
const std::vector<const Family*>& families() {
  static const std::vector<const Family*> f = {
      &resnet_family(),
      &vit_family(),
      &ca_vit_family(),
      &dinov3_family(),
      &conch_family(),
      &swin_family(),
      &convnext_family(),
  };
  return f;
}

std::vector<std::string> named_archs() {
  std::vector<std::string> names;
  for (const Family* f : families())
    for (const auto& [n, c] : f->named) names.push_back(n);
  return names;
}

std::vector<std::string> model_names() {
  std::vector<std::string> names = named_archs();
  for (const Family* f : families())
    for (const auto& [n, def] : f->aliases) names.push_back(n);
  return names;
}

namespace {

// Sizes are at most 2^24 each, but their products are not: a bound on the whole model (counted in double, so
// nothing overflows) keeps param_count, init and loading in int64 range. 2^36 parameters (275 GB in fp32) is
// three times ViT-22B.
constexpr double kMaxParams = 68719476736.0;

void check_size(const ArchConfig& out, const std::string& shown) {
  double total = 0;
  for (const auto& spec : param_specs(out)) {
    double n = 1;
    for (const int64_t d : spec.shape) n *= static_cast<double>(d);
    total += n;
  }
  if (total > kMaxParams) {
    char n[64];
    std::snprintf(n, sizeof n, "%.3g", total);
    bad_arch(shown, std::string(n) + " parameters and buffers; tabula builds models of up to 2^36 (6.87e+10)");
  }
}

// `head[:keys]` with head a family's key=value head or a named arch (no aliases).
ArchConfig parse_expanded(const std::string& arch) {
  const size_t colon = arch.find(':');
  const std::string head = arch.substr(0, colon);
  std::shared_ptr<const ModelConfig> base;
  for (const Family* f : families()) {
    if (f->head == head) base = f->defaults;
    for (const auto& [n, c] : f->named)
      if (n == head) base = c;
  }
  if (!base) {
    std::string msg = "unknown architecture '" + head + "' (known: ";
    for (const auto& n : named_archs()) msg.append(n).append(", ");
    for (size_t i = 0; i < families().size(); ++i)
      msg.append(families()[i]->head).append(i + 1 < families().size() ? ":KEY=VALUE,..., " : ":KEY=VALUE,...");
    msg.append("); also: ");
    bool first = true;
    for (const Family* f : families())
      for (const auto& [n, def] : f->aliases) {
        if (!first) msg.append(", ");
        msg.append(n);
        first = false;
      }
    bad_arch(arch, msg);
  }
  ArchConfig out;
  out.name = arch;
  if (colon == std::string::npos) {
    out.config = base;
    return out;
  }
  const std::string keys = arch.substr(colon + 1);
  if (keys.empty()) bad_arch(arch, "nothing after ':'");
  std::unique_ptr<ModelConfig> c = base->clone();
  try {
    c->apply_keys(parse_key_values(keys));
  } catch (const KeyValueError& e) {
    bad_arch(arch, e.message);
  }
  out.config = std::move(c);
  check_size(out, arch);
  return out;
}

}  // namespace

ArchConfig parse_arch(const std::string& arch) {
  const size_t colon = arch.find(':');
  const std::string head = arch.substr(0, colon);
  std::string full = arch;
  for (const Family* f : families())
    for (const auto& [n, def] : f->aliases)
      if (n == head) {
        full = def;
        if (colon != std::string::npos) full.append(",").append(arch, colon + 1, std::string::npos);
      }
  ArchConfig out;
  try {
    out = parse_expanded(full);
  } catch (const std::invalid_argument& e) {
    if (full == arch) throw;
    throw std::invalid_argument(std::string(e.what()) + " (arch '" + arch + "' read as '" + full + "')");
  }
  out.name = arch;
  return out;
}

namespace {
std::unique_ptr<Model> construct_loaded(const ArchConfig& arch, const WeightMap& weights, const BuildOptions& o) {
  std::unique_ptr<Model> model = arch.config->construct(arch);
  model->load(ParamStore(arch.name, model->tree().specs(), arch.config->from_canonical(weights), o.strict, o.report),
              o.device, o.progress);
  return model;
}
}  // namespace

std::unique_ptr<Model> build_model(const std::string& arch, const WeightMap& weights, bool strict, LoadReport* report) {
  BuildOptions o;
  o.strict = strict;
  o.report = report;
  return construct_loaded(parse_arch(arch), weights, o);
}

std::unique_ptr<Model> build_model(const std::string& arch, const WeightMap& weights, const BuildOptions& opt) {
  return construct_loaded(parse_arch(arch), weights, opt);
}

std::unique_ptr<Model> build_model_seed(const std::string& arch, uint64_t seed) {
  return build_model_seed(arch, seed, BuildOptions{});
}

std::unique_ptr<Model> build_model_seed(const std::string& arch, uint64_t seed, const BuildOptions& opt) {
  const ArchConfig a = parse_arch(arch);
  std::unique_ptr<Model> model = a.config->construct(a);
  // The init pass's tensors go straight into the layers (the untrained weights carry the tree's own names, so
  // no from_canonical): a model is never held beside its full fp32 state_dict.
  const ModuleTree& tree = model->tree();
  model->load_streamed([&](const InitSink& sink) { init_weights(a, tree, seed, sink); }, opt.device, opt.progress);
  return model;
}

std::unique_ptr<Model> build_model_skeleton(const std::string& arch) {
  const ArchConfig a = parse_arch(arch);
  std::unique_ptr<Model> model = a.config->construct(a);
  model->load(ParamStore::skeleton(a.name, model->tree().specs()));
  return model;
}

std::vector<ParamSpec> canonical_specs(const std::string& arch) {
  const ArchConfig a = parse_arch(arch);
  return a.config->canonical_specs(param_specs(a));
}

ModelInfo model_info(const std::string& arch) {
  auto model = build_model_skeleton(arch);
  ModelInfo info;
  info.arch = arch;
  info.family = model->arch().config->family();
  info.params = 0;
  for (const ParamSpec& s : model->tree().specs())
    if (!s.is_buffer) info.params += shape_numel(s.shape);
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
      // Swin (tests/fixtures/swin/pretrained_cfgs.tsv, weights_tools/reference/swin_fixtures.py)
      {"swin_tiny_patch4_window7_224", {224, 0.9, "bicubic", kImageNet}},  // ms_in1k
      {"swin_small_patch4_window7_224", {224, 0.9, "bicubic", kImageNet}},  // ms_in22k_ft_in1k
      {"swin_base_patch4_window7_224", {224, 0.9, "bicubic", kImageNet}},  // ms_in22k_ft_in1k
      {"swin_base_patch4_window12_384", {384, 1.0, "bicubic", kImageNet}},  // ms_in22k_ft_in1k
      {"swin_large_patch4_window7_224", {224, 0.9, "bicubic", kImageNet}},  // ms_in22k_ft_in1k
      {"swin_large_patch4_window12_384", {384, 1.0, "bicubic", kImageNet}},  // ms_in22k_ft_in1k
      {"convnext_atto", {224, 0.875, "bicubic", kImageNet}},  // d2_in1k
      {"convnext_femto", {224, 0.875, "bicubic", kImageNet}},  // d1_in1k
      {"convnext_pico", {224, 0.875, "bicubic", kImageNet}},  // d1_in1k
      {"convnext_nano", {224, 0.95, "bicubic", kImageNet}},  // in12k_ft_in1k
      {"convnext_tiny", {224, 0.95, "bicubic", kImageNet}},  // in12k_ft_in1k
      {"convnext_small", {224, 0.95, "bicubic", kImageNet}},  // in12k_ft_in1k
      {"convnext_base", {224, 0.875, "bicubic", kImageNet}},  // fb_in22k_ft_in1k
      {"convnext_large", {224, 0.875, "bicubic", kImageNet}},  // fb_in22k_ft_in1k
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
