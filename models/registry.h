// Arch name -> model: the families (models/arch.h) listed once, in registry.cpp, and what users get from a name.
// Names are the families' named archs, their aliases (timm names defined as keys over a named arch) and the
// key=value forms (parse_arch). The timm key `dynamic_img_size=1` (a constructor flag that adds no parameters),
// e.g. `vit:dim=64,depth=2,heads=4,patch=8,img=32,dynamic_img_size=1`, lets a ViT take any multiple of its patch.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "models/arch.h"
#include "models/model.h"

namespace tabula {

// Builds the model and loads `weights` (state_dict keys of the reference; f16/bf16 converted). Missing keys
// and shape mismatches always throw naming the key; unexpected keys throw when strict (else only reported).
// A family whose own names differ from tabula's canonical ones (the DINOv2 hub: no mask_token; reg_token;
// fc1/fc2 for w12/w3; CLS position in cls_token) also takes the canonical form, as load_weight_map /
// `tabula weights convert` write it (ModelConfig::from_canonical).
std::unique_ptr<Model> build_model(const std::string& arch, const WeightMap& weights, bool strict = true,
                                   LoadReport* report = nullptr);
struct BuildOptions {
  bool strict = true;
  LoadReport* report = nullptr;
  int device = -1;        // where the weights are prepared: -1 the CPU (packed), N straight onto GPU N
  LoadProgress progress;  // called after each layer (Model::load)
};
std::unique_ptr<Model> build_model(const std::string& arch, const WeightMap& weights, const BuildOptions& opt);
// The untrained model of `seed` with the weights prepared for opt.device and progress reported (strict and report
// do not apply): the init pass streams into the layers (Model::load_streamed).
std::unique_ptr<Model> build_model_seed(const std::string& arch, uint64_t seed, const BuildOptions& opt);
// The untrained model of `seed` (init_weights: the weights PyTorch builds after torch.manual_seed(seed)).
std::unique_ptr<Model> build_model_seed(const std::string& arch, uint64_t seed);
// The structure without weights (no memory): list_taps, gmacs, default_taps; its forward throws.
std::unique_ptr<Model> build_model_skeleton(const std::string& arch);
// The state_dict layout under tabula's canonical names, what `tabula weights convert --arch` checks a file
// against. Throws std::invalid_argument for an unknown arch (parse_arch's message).
std::vector<ParamSpec> canonical_specs(const std::string& arch);

}  // namespace tabula

namespace tabula {

// One row of `tabula models`.
struct ModelInfo {
  std::string arch;
  std::string family;  // "torchvision ResNet", "timm ViT", "DINOv2 hub"
  int64_t params = 0;  // sum(p.numel() for p in model.parameters())
  double gmacs = 0;    // at the default input size, one image
  Shape input;         // default input [1, C, H, W]
  std::vector<std::string> default_taps;
};
ModelInfo model_info(const std::string& arch);

// timm's eval transform for a timm arch name: the default pretrained_cfg (the first tag timm lists for the name,
// e.g. vit_base_patch16_224.augreg2_in21k_ft_in1k): Resize(floor(input_size / crop_pct), interpolation) ->
// CenterCrop(input_size) -> Normalize(mean, std). Keys after ':' are ignored (the name decides); nullopt for
// anything that is not one of the registry's timm names (torchvision, DINOv2 hub, key=value forms).
struct TimmPretrainedCfg {
  int input_size = 224;
  double crop_pct = 0.9;
  std::string interpolation;  // "bicubic" or "bilinear"
  std::array<float, 3> mean{}, std{};
};
std::optional<TimmPretrainedCfg> timm_pretrained_cfg(const std::string& arch);

}  // namespace tabula
