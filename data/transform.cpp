#include "data/transform.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "models/cards/cards.h"
#include "models/cards/timm_tags.h"
#include "models/arch.h"
#include "models/ca_vit.h"
#include "models/conch.h"
#include "models/dinov3.h"
#include "models/registry.h"
#include "models/vit.h"
#include "models/registry.h"

namespace tabula::data {

namespace {

std::vector<float> parse_floats(const std::string& flag, const std::string& s) {
  std::vector<float> v;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = s.find(',', start);
    const std::string x = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!x.empty()) {
      size_t used = 0;
      float f = 0;
      try {
        f = std::stof(x, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != x.size() || !std::isfinite(f))
        throw std::invalid_argument("--" + flag + ": '" + x + "' is not a number");
      v.push_back(f);
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (v.empty()) throw std::invalid_argument("--" + flag + ": expected comma-separated numbers, got '" + s + "'");
  return v;
}

int parse_side(const std::string& flag, const std::string& whole, const std::string& x) {
  try {
    size_t used = 0;
    const int n = std::stoi(x, &used);
    if (used == x.size() && n >= 0) return n;
  } catch (const std::exception&) {
  }
  throw std::invalid_argument("--" + flag + " takes N (shorter side), HxW or 0 (none), got '" + whole + "'");
}

json::Value num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return json::Value::number(v, buf);
}
json::Value floats_json(const std::vector<float>& v) {
  json::Value::Array a;
  for (float f : v) a.push_back(num(f));
  return json::Value::array(std::move(a));
}

}  // namespace

Transform preset_transform(const std::string& name) {
  // The presets' references (torchvision weights, DINOv2, timm) run on PIL images: Pillow's path for 8-bit data.
  Transform t;
  if (name == "torchvision")
    t = transform_torchvision();
  else if (name == "dinov2")
    t = transform_dinov2();
  else if (name == "timm")
    t = transform_timm(224, 0.9, Interp::bicubic, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f});
  else if (name == "none")
    t.resize = 0, t.crop = 0, t.do_normalize = false;
  else
    throw std::invalid_argument("--preset '" + name + "': expected torchvision, dinov2, timm or none");
  t.resize_impl = "auto";
  return t;
}

Transform arch_transform(const ArchConfig& ac, int crop) {
  const int resize = int(std::lround(crop * 256.0 / 224.0));
  Transform t;
  if (ac.is_resnet()) {
    t = transform_torchvision(resize, crop);
  } else if (ac.as<CaViTConfig>()) {
    // OpenPhenom's crops as they are (256 px), / 255 and self-standardised (MAEModel.input_norm)
    t.resize = 0;
    t.crop = crop;
    t.do_normalize = false;
    t.intensity = "self-standardize";
  } else if (ac.as<ConchConfig>()) {
    // CONCH's image_transform: Resize(size, bicubic) -> CenterCrop(size) -> Normalize(OpenAI CLIP mean, std)
    t.resize = crop, t.crop = crop, t.interp = Interp::bicubic;
    t.mean = {0.48145466f, 0.4578275f, 0.40821073f}, t.std = {0.26862954f, 0.26130258f, 0.27577711f};
  } else if (ac.as<Dinov3Config>() || (ac.as<ViTConfig>() && ac.vit().flavor == ViTConfig::Flavor::dinov2) ||
             ac.name.find("dinov2") != std::string::npos ||
             ac.name.find("dinov3") != std::string::npos) {  // DINOv3 evaluates with DINOv2's transform
    t = transform_dinov2(crop);
    t.resize = resize;
  } else if (const auto cfg = timm_pretrained_cfg(ac.name)) {
    t = transform_timm(crop, cfg->crop_pct, parse_interp(cfg->interpolation), {cfg->mean.begin(), cfg->mean.end()},
                       {cfg->std.begin(), cfg->std.end()});
  } else {
    t = transform_timm(crop, 0.9, Interp::bicubic, {0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f});
  }
  t.resize_impl = "auto";  // the references run on PIL images
  return t;
}

Transform timm_tag_transform(const cards::TimmTag& tag) {
  const std::string mode = tag.crop_mode;
  if (mode != "center" && mode != "squash")
    throw std::invalid_argument(std::string(tag.name) + ": timm crop_mode '" + mode +
                                "' is not supported (center, squash)");
  Transform t = transform_timm(tag.input_size, tag.crop_pct, parse_interp(tag.interpolation),
                               {tag.mean.begin(), tag.mean.end()}, {tag.std.begin(), tag.std.end()});
  if (mode == "squash") t.resize_h = t.resize_w = t.resize;
  t.resize_impl = "auto";  // timm's eval transform runs on PIL images
  return t;
}

Transform card_transform(const cards::CardTransform& c) {
  Transform t;
  t.intensity = c.intensity;
  t.do_normalize = c.normalize;
  t.resize = c.resize, t.resize_h = c.resize_h, t.resize_w = c.resize_w;
  t.crop = c.crop;
  t.interp = parse_interp(c.interp);
  t.mean.assign(c.mean.begin(), c.mean.end());
  t.std.assign(c.std.begin(), c.std.end());
  t.resize_impl = c.resize_impl;
  return t;
}

TransformSpec resolve_transform(Transform t, std::string origin, const TransformFlags& f, const Image& first) {
  TransformSpec spec;
  auto changed = [&](const char* flag) { spec.overridden.push_back(flag); };
  if (f.preset) t = preset_transform(*f.preset), origin = "preset " + *f.preset, changed("preset");
  if (f.size) {
    if (*f.size <= 0) throw std::invalid_argument("--size must be positive");
    // The model input side: the crop becomes `size` and the resize keeps its ratio to it (256/224 stays 256/224);
    // a transform that resizes without cropping resizes to `size`; one that does neither crops to `size`.
    if (t.crop > 0 && t.resize > 0) {
      t.resize = int(std::lround(double(t.resize) * *f.size / t.crop)), t.crop = *f.size;
    } else if (t.resize > 0) {
      t.resize = *f.size;
    } else {
      t.crop = *f.size;
    }
    changed("size");
  }
  if (f.resize) {
    const std::string& r = *f.resize;
    const size_t x = r.find('x');
    if (x == std::string::npos)
      t.resize = parse_side("resize", r, r), t.resize_h = t.resize_w = 0;
    else
      t.resize_h = parse_side("resize", r, r.substr(0, x)), t.resize_w = parse_side("resize", r, r.substr(x + 1));
    changed("resize");
  }
  if (f.crop) {
    if (*f.crop < 0) throw std::invalid_argument("--crop must be 0 (none) or positive");
    t.crop = *f.crop, changed("crop");
  }
  if (f.interp) {
    try {
      t.interp = parse_interp(*f.interp);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string("--interp: ") + e.what());
    }
    changed("interp");
  }
  if (f.no_antialias) t.antialias = false, changed("no-antialias");
  if (f.mean) t.mean = parse_floats("mean", *f.mean), t.do_normalize = true, changed("mean");
  if (f.std) {
    t.std = parse_floats("std", *f.std), t.do_normalize = true, changed("std");
    for (float s : t.std)
      if (s == 0.0f) throw std::invalid_argument("--std: a standard deviation of 0");
  }
  if (f.no_normalize) t.do_normalize = false, changed("no-normalize");
  if (f.intensity) {
    const std::string& i = *f.intensity;
    if (i != "unit" && i != "percentile" && i != "minmax" && i != "none" && i != "self-standardize")
      throw std::invalid_argument("--intensity '" + i + "': expected unit, percentile, minmax, none or "
                                  "self-standardize");
    t.intensity = i, changed("intensity");
  }
  if (f.percentiles) {
    const std::vector<float> p = parse_floats("percentiles", *f.percentiles);
    if (p.size() != 2 || !(p[0] >= 0 && p[1] <= 100 && p[0] < p[1]))
      throw std::invalid_argument("--percentiles takes LO,HI with 0 <= LO < HI <= 100");
    t.pct_lo = p[0], t.pct_hi = p[1], changed("percentiles");
  }
  try {
    spec.channels = parse_channel_strategy(f.channels ? *f.channels : first.channels == 3 ? "rgb" : "per-channel");
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("--channels: ") + e.what());
  }
  if (f.channels) changed("channels");

  const std::string impl = f.resize_impl ? *f.resize_impl : t.resize_impl;
  if (impl != "auto" && impl != "pil" && impl != "uint8" && impl != "tensor")
    throw std::invalid_argument("--resize-impl '" + impl + "': expected auto, pil, uint8 or tensor");
  if (f.resize_impl) changed("resize-impl");
  const bool eight_bit = !first.is_float && first.bits == 8 && first.max_value == 255.0f;
  if (impl == "auto") {
    t.resize_impl = eight_bit && t.antialias && (t.intensity == "unit" || t.intensity == "none") ? "pil" : "tensor";
  } else if (impl == "uint8" && !f.resize_impl && !eight_bit) {
    t.resize_impl = "tensor";  // a card whose reference resizes uint8 tensors, given 16-bit or float data
  } else {
    t.resize_impl = impl;
  }
  if (t.resize_impl == "tensor" && t.interp != Interp::bilinear && t.interp != Interp::bicubic &&
      (t.resize > 0 || (t.resize_h > 0 && t.resize_w > 0)))
    throw std::invalid_argument(std::string("--interp ") + interp_name(t.interp) +
                                " exists only on Pillow's path (8-bit "
                                "images, --resize-impl pil); tensors resize bilinear or bicubic");
  if ((t.resize_impl == "pil" || t.resize_impl == "uint8") && !eight_bit)
    throw std::invalid_argument((first.source.empty() ? std::string("the data") : first.source) + ": --resize-impl " +
                                t.resize_impl + " needs 8-bit images, this one has " + std::to_string(first.bits) +
                                "-bit" + (first.is_float ? " float" : "") + " samples");
  spec.t = std::move(t);
  spec.origin = std::move(origin);
  return spec;
}

json::Value TransformSpec::to_json() const {
  json::Value o = json::Value::object();
  o.set("origin", json::Value::string(origin));
  json::Value::Array ov;
  for (const auto& s : overridden) ov.push_back(json::Value::string(s));
  o.set("overridden", json::Value::array(std::move(ov)));
  o.set("intensity", json::Value::string(t.intensity));
  if (t.intensity == "percentile") o.set("percentiles", floats_json({float(t.pct_lo), float(t.pct_hi)}));
  if (t.resize_h > 0 && t.resize_w > 0) {
    o.set("resize", json::Value::string(std::to_string(t.resize_h) + "x" + std::to_string(t.resize_w)));
  } else {
    o.set("resize", json::Value::integer(t.resize));
  }
  o.set("interp", json::Value::string(interp_name(t.interp)));
  o.set("antialias", json::Value::boolean(t.antialias));
  o.set("resize_impl", json::Value::string(t.resize_impl));
  o.set("crop", json::Value::integer(t.crop));
  o.set("normalize", json::Value::boolean(t.do_normalize));
  if (t.do_normalize) o.set("mean", floats_json(t.mean)), o.set("std", floats_json(t.std));
  o.set("channels", json::Value::string(channels.to_string()));
  return o;
}

std::string TransformSpec::describe() const { return t.describe() + " channels=" + channels.to_string(); }

}  // namespace tabula::data
