// timm names with pretrained tags (`vit_small_patch16_224.augreg_in21k_ft_in1k`, `resnet50.a1_in1k`,
// `vit_base_patch14_dinov2.lvd142m`): the arch tabula has plus that tag's pretrained_cfg, from a table generated from
// timm (weights_tools/reference/timm_tags.py -> timm_tags_table.inc), not typed by hand.
#pragma once
#include <array>
#include <string>

namespace tabula::cards {

struct TimmTag {
  const char* name;  // "arch.tag"
  int input_size;
  double crop_pct;
  const char* crop_mode;      // center | squash (timm's transforms_imagenet_eval)
  const char* interpolation;  // bicubic | bilinear
  std::array<float, 3> mean, std;
};

// "base.tag[:keys]" -> the arch to build ("base[:keys]") and the tag's row. Names without a tag come back as given
// (tag = nullptr); a tag timm does not list for a base tabula has is an error naming the tags it does list.
struct TaggedArch {
  std::string arch;
  const TimmTag* tag = nullptr;
};
TaggedArch split_timm_tag(const std::string& arch);

}  // namespace tabula::cards
