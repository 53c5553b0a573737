// `tabula preprocess`: the exact model input tensors for a manifest, for inspection (argument parsing only; the
// transform is resolved as `tabula embed` resolves it, data/transform.h; the work is data/pipeline.cpp).
#include <iostream>
#include <memory>
#include <tuple>

#include "cli/args.h"
#include "cli/transform_flags.h"
#include "data/pipeline.h"
#include "data/transform.h"
#include "embed/model_choice.h"
#include "models/ca_vit.h"
#include "models/registry.h"

namespace tabula::cli {

int cmd_preprocess(const Args& args) {
  using namespace tabula::data;
  if (args.has("model") && args.has("arch")) throw UsageError("tabula preprocess: give --model or --arch, not both");
  if (args.has("model")) check_card_name("preprocess", args.get("model"));
  if (args.has("arch")) check_arch_name("preprocess", args.get("arch"), true);
  ManifestOptions mo;
  mo.illumination = !args.has("no-illum");
  Manifest m = read_manifest(args.get("data"), mo);
  if (m.samples.empty()) throw std::invalid_argument(args.get("data") + ": the manifest lists no images");
  // The defaults `tabula embed` would use: the card's, the timm tag's, the arch's reference transform, or
  // torchvision's when no model is named.
  Transform defaults = preset_transform("torchvision");
  std::string origin = "preset torchvision";
  TransformFlags flags = read_transform_flags(args);
  if (args.has("model") || args.has("arch")) {
    const ModelChoice choice = choose_model(args.get("model"), args.get("arch"));
    std::unique_ptr<Model> skeleton;
    if (!choice.card && !choice.tag) skeleton = build_model_skeleton(choice.arch);
    std::tie(defaults, origin) = default_transform(choice, skeleton.get());
    // as `tabula embed` does: the card's channel strategy unless --channels is given; a channel-agnostic arch
    // takes every channel in one input
    if (!flags.channels && choice.card && !choice.card->transform.channels.empty())
      flags.channels = choice.card->transform.channels;
    if (!flags.channels && skeleton && skeleton->arch().as<CaViTConfig>()) flags.channels = "all";
  }
  const TransformSpec spec = resolve_transform(defaults, origin, flags, load_sample(m, 0));
  PipelineOptions po;
  po.threads = int(args.get_int("threads"));
  po.limit = args.get_int("limit");
  PreprocessSummary r = preprocess_to_npy(m, spec.t, spec.channels, po, args.get("out"));
  std::cout << "tabula preprocess: " << r.samples << " samples (" << m.kind << " manifest) -> " << r.inputs
            << " inputs [" << r.shape[0] << ", " << r.shape[1] << ", " << r.shape[2] << ", " << r.shape[3] << "] in "
            << args.get("out") << " (" << r.seconds << " s)\n"
            << "transform (" << spec.origin << "): " << spec.describe() << "\n";
  return 0;
}

}  // namespace tabula::cli
