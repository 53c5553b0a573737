// `tabula preprocess`: the exact model input tensors for a manifest, for inspection (argument parsing only;
// the work is data/pipeline.cpp).
#include <iostream>

#include "cli/args.h"
#include "data/pipeline.h"

namespace tabula::cli {

namespace {
std::vector<float> floats(const std::string& flag, const std::string& s) {
  std::vector<float> v;
  for (const auto& x : split_list(s)) {
    try {
      size_t used = 0;
      v.push_back(std::stof(x, &used));
      if (used != x.size()) throw std::invalid_argument(x);
    } catch (const std::exception&) {
      throw UsageError("--" + flag + ": '" + x + "' is not a number");
    }
  }
  return v;
}
}  // namespace

int cmd_preprocess(const Args& args) {
  using namespace tabula::data;
  const std::string preset = args.get("preset");
  Transform t;
  if (preset == "torchvision") t = transform_torchvision();
  else if (preset == "dinov2") t = transform_dinov2();
  else if (preset == "timm") t = transform_timm(224, 0.9, Interp::bicubic, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f});
  else if (preset == "none") t.resize = 0, t.crop = 0, t.do_normalize = false;
  else throw UsageError("--preset must be torchvision, dinov2, timm or none");
  if (args.has("resize")) {
    const std::string r = args.get("resize");
    auto side = [&](const std::string& x) {
      try {
        size_t used = 0;
        const int n = std::stoi(x, &used);
        if (used == x.size() && n >= 0) return n;
      } catch (const std::exception&) {
      }
      throw UsageError("--resize takes N (shorter side) or HxW, got '" + r + "'");
    };
    const size_t x = r.find('x');
    if (x == std::string::npos) t.resize = side(r), t.resize_h = t.resize_w = 0;
    else t.resize_h = side(r.substr(0, x)), t.resize_w = side(r.substr(x + 1));
  }
  if (args.has("crop")) t.crop = int(args.get_int("crop"));
  if (args.has("interp")) {
    const std::string i = args.get("interp");
    if (i != "bilinear" && i != "bicubic") throw UsageError("--interp must be bilinear or bicubic");
    t.interp = i == "bilinear" ? Interp::bilinear : Interp::bicubic;
  }
  if (args.has("no-antialias")) t.antialias = false;
  t.intensity = args.get("intensity");
  if (t.intensity != "unit" && t.intensity != "percentile" && t.intensity != "minmax" && t.intensity != "none")
    throw UsageError("--intensity must be unit, percentile, minmax or none");
  auto pct = floats("percentiles", args.get("percentiles"));
  if (pct.size() != 2) throw UsageError("--percentiles takes LO,HI");
  t.pct_lo = pct[0], t.pct_hi = pct[1];
  if (args.has("mean")) t.mean = floats("mean", args.get("mean"));
  if (args.has("std")) t.std = floats("std", args.get("std"));
  if (args.has("no-normalize")) t.do_normalize = false;
  ChannelStrategy s;
  try {
    s = parse_channel_strategy(args.get("channels"));
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--channels: ") + e.what());
  }
  ManifestOptions mo;
  mo.illumination = !args.has("no-illum");
  Manifest m = read_manifest(args.get("data"), mo);
  PipelineOptions po;
  po.threads = int(args.get_int("threads"));
  po.limit = args.get_int("limit");
  PreprocessSummary r = preprocess_to_npy(m, t, s, po, args.get("out"));
  std::cout << "tabula preprocess: " << r.samples << " samples (" << m.kind << " manifest) -> " << r.inputs
            << " inputs [" << r.shape[0] << ", " << r.shape[1] << ", " << r.shape[2] << ", " << r.shape[3] << "] in "
            << args.get("out") << " (" << r.seconds << " s)\n"
            << "transform: " << t.describe() << " channels=" << s.to_string() << "\n";
  return 0;
}

}  // namespace tabula::cli
