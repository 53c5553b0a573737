// The parameter names and shapes each architecture's reference implementation has (torchvision ResNet,
// timm VisionTransformer), computed from the architecture's configuration. `tabula weights convert --arch`
// checks files against these until the model registry (models/) provides its own list; the lists are tested
// against the state_dict() of the real torchvision/timm models (tests/fixtures/weights/key_lists.json).
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "weights_tools/layout.h"

namespace tabula::weights {

struct VitKeyConfig {
  int64_t dim = 768, depth = 12, patch = 16, img = 224, in_chans = 3;
  double mlp_ratio = 4.0;
  int64_t reg_tokens = 0;
  bool class_token = true;
  bool no_embed_class = false;  // timm: pos_embed excludes the prefix tokens (DINOv2 register models)
  bool layer_scale = false;     // ls1.gamma / ls2.gamma
  int64_t num_classes = 1000;   // 0: no head
};

struct ResNetKeyConfig {
  bool bottleneck = true;
  std::vector<int64_t> layers = {3, 4, 6, 3};
  int64_t num_classes = 1000;
};

std::vector<ShapedName> vit_keys(const VitKeyConfig& c);
std::vector<ShapedName> resnet_keys(const ResNetKeyConfig& c);

// Key list for an arch name (resnet18/34/50/101/152, vit_{tiny,small,base,large,huge}_patch{P}_{IMG},
// vit_{small,base,large}_patch14_dinov2 and _reg4_dinov2, hub aliases dinov2_vit{s,b,l}14[_reg], and the
// key=value form "vit:dim=64,depth=2,heads=4,patch=8,img=32[,reg=R,ls=1,classes=N,mlp=R,no_embed_class=1]").
// nullopt when the name is not known here (the caller reports the check as not done, never as passed).
std::optional<std::vector<ShapedName>> arch_keys(const std::string& arch);
// The layout an arch's canonical names follow.
Layout arch_layout(const std::string& arch);

}  // namespace tabula::weights
