#include "cli/transform_flags.h"

namespace tabula::cli {

std::vector<Flag> transform_flags() {
  return {
      {"preset", "NAME",
       "eval transform instead of the model's: torchvision (resize 256 bilinear, crop 224), dinov2 "
       "(256 bicubic, 224), timm (crop_pct 0.9 bicubic), none",
       false, ""},
      {"resize", "N|HxW", "Resize: shorter side N, or exact HxW (0: none)", false, ""},
      {"crop", "N", "CenterCrop (0: none)", false, ""},
      {"size", "S", "input (crop) size; the resize scales with it", false, ""},
      {"interp", "MODE", "bilinear, bicubic (both paths), lanczos, box, hamming (Pillow path)", false, ""},
      {"no-antialias", "", "resize without antialiasing (torchvision antialias=False; tensor path)", false, ""},
      {"mean", "M,..", "Normalize mean (1 or C values)", false, ""},
      {"std", "S,..", "Normalize std (1 or C values)", false, ""},
      {"no-normalize", "", "skip Normalize", false, ""},
      {"intensity", "MODE", "unit (x / type max, as ToTensor), percentile (per image and channel), minmax, none, self-standardize "
       "(unit, then per channel after the crop: OpenPhenom)", false,
       ""},
      {"percentiles", "LO,HI", "percentiles for --intensity percentile (default 1,99)", false, ""},
      {"channels", "S", "per-channel|rgb:i,j,k|mean|all (default: rgb for 3 channels, else per-channel)", false, ""},
      {"resize-impl", "auto|pil|uint8|tensor",
       "pil: resize 8-bit images as Pillow does (the references run on PIL "
       "images); uint8: as torch resizes uint8 tensors (transforms.v2); "
       "tensor: torch's float resize; auto: pil for 8-bit data",
       false, ""},
  };
}

std::vector<Flag> with_transform_flags(std::vector<Flag> base) {
  for (Flag& f : transform_flags()) base.push_back(std::move(f));
  return base;
}

data::TransformFlags read_transform_flags(const Args& a) {
  data::TransformFlags f;
  auto opt = [&](const char* name, std::optional<std::string>& field) {
    if (a.has(name)) field = a.get(name);
  };
  opt("preset", f.preset);
  opt("resize", f.resize);
  opt("interp", f.interp);
  opt("mean", f.mean);
  opt("std", f.std);
  opt("intensity", f.intensity);
  opt("percentiles", f.percentiles);
  opt("channels", f.channels);
  opt("resize-impl", f.resize_impl);
  if (a.has("crop")) f.crop = static_cast<int>(a.get_int("crop"));
  if (a.has("size")) f.size = static_cast<int>(a.get_int("size"));
  f.no_antialias = a.has("no-antialias");
  f.no_normalize = a.has("no-normalize");
  // A malformed value is a usage error (exit 2) before any data is read: resolve against a stand-in 8-bit RGB image
  // (what depends on the data -- channel indices, the Pillow path -- is checked again on the real first image).
  data::Image probe(3, 1, 1);
  probe.bits = 8, probe.max_value = 255.0f;
  try {
    data::resolve_transform(data::preset_transform("none"), "", f, probe);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  return f;
}

}  // namespace tabula::cli
