// The one transform spec shared by `tabula embed`, `tabula preprocess` (and the study): what a model is fed, resolved
// once from the model card's or the arch's reference eval transform plus the user's flags, and recorded whole in
// run.json. Every flag overrides the default it names and nothing else; both commands take the same flags with the
// same defaults.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "data/image.h"
#include "data/preprocess.h"
#include "util/json.h"

namespace tabula {
struct ArchConfig;
namespace cards {
struct CardTransform;
struct TimmTag;
}  // namespace cards
}  // namespace tabula

namespace tabula::data {

// The transform flags as typed (absent = keep the default).
struct TransformFlags {
  std::optional<std::string> preset;  // torchvision | dinov2 | timm | none (replaces the model's default)
  std::optional<std::string> resize;  // "N" (shorter side), "HxW", "0" (none)
  std::optional<int> crop;            // centre crop, 0 = none
  std::optional<int> size;            // model input side: the crop (the resize scaled with it), else the resize
  std::optional<std::string> interp;  // bilinear | bicubic | lanczos | box | hamming
  bool no_antialias = false;
  std::optional<std::string> mean, std;  // "a,b,c" or "a"
  bool no_normalize = false;
  std::optional<std::string> intensity;    // unit | percentile | minmax | none
  std::optional<std::string> percentiles;  // "LO,HI"
  std::optional<std::string> channels;     // per-channel | rgb:i,j,k | mean | all
  std::optional<std::string> resize_impl;  // auto | pil | tensor
};

struct TransformSpec {
  Transform t;  // resize_impl resolved to pil or tensor
  ChannelStrategy channels;
  std::string origin;  // where the defaults came from: "card uni", "arch resnet50", "preset dinov2", ...
  std::vector<std::string> overridden;  // the flags that changed a default
  json::Value to_json() const;          // every field, for run.json
  std::string describe() const;         // one line for logs
};

// A named preset: torchvision (Resize 256 bilinear, CenterCrop 224, ImageNet), dinov2 (256 bicubic, 224, ImageNet),
// timm (timm's default: crop_pct 0.9 bicubic at 224, ImageNet), none (no resize, crop or Normalize).
Transform preset_transform(const std::string& name);

// The arch's reference eval transform at its default input size `size` (the crop): torchvision ResNets
// Resize(size * 256 / 224, bilinear) -> CenterCrop(size) with ImageNet statistics; DINOv2 hub models the same with
// bicubic; timm names their default pretrained_cfg (crop_pct, interpolation, mean, std); other ViTs timm's default
// (crop_pct 0.9, bicubic, mean = std = 0.5).
Transform arch_transform(const ArchConfig& arch, int size);

// A model card's transform (models/cards/cards.h) as a Transform: the card's intensity step (ToTensor's / 255 for
// most), Resize, CenterCrop and Normalize (or none).
Transform card_transform(const cards::CardTransform& c);

// timm's transforms_imagenet_eval for a pretrained tag's cfg: Resize(floor(input_size / crop_pct), interpolation)
// (crop_mode squash: to that square) -> CenterCrop(input_size) -> Normalize(mean, std).
Transform timm_tag_transform(const cards::TimmTag& tag);

// The defaults, the flags on top, then resize_impl "auto" resolved against the data's first image: Pillow's
// resampling for 8-bit integer images (the reference pipelines run on PIL images) when the intensity step is
// ToTensor's (unit) and antialiasing is on, the tensor path otherwise. Channels default to rgb for 3-channel data,
// per-channel otherwise. Throws std::invalid_argument naming the flag on a bad value.
TransformSpec resolve_transform(Transform defaults, std::string origin, const TransformFlags& flags,
                                const Image& first_image);

}  // namespace tabula::data
