// `tabula preprocess`: the exact model input tensors for a manifest, for inspection (argument parsing only; the
// transform is resolved as `tabula embed` resolves it, data/transform.h; the work is data/pipeline.cpp).
#include <iostream>

#include "cli/args.h"
#include "cli/transform_flags.h"
#include "data/pipeline.h"
#include "data/transform.h"
#include "models/cards/cards.h"
#include "models/cards/timm_tags.h"
#include "models/registry.h"

namespace tabula::cli {

int cmd_preprocess(const Args& args) {
  using namespace tabula::data;
  if (args.has("model") && args.has("arch")) throw UsageError("tabula preprocess: give --model or --arch, not both");
  ManifestOptions mo;
  mo.illumination = !args.has("no-illum");
  Manifest m = read_manifest(args.get("data"), mo);
  if (m.samples.empty()) throw std::invalid_argument(args.get("data") + ": the manifest lists no images");
  // The defaults `tabula embed` would use: the card's transform, the arch's reference transform, or torchvision's.
  Transform defaults;
  std::string origin;
  if (args.has("model")) {
    const cards::CardChoice ch = cards::choose_card(args.get("model"));
    defaults = card_transform(ch.card->transform), origin = "card " + ch.card->name;
  } else if (args.has("arch")) {
    const cards::TaggedArch tagged = cards::split_timm_tag(args.get("arch"));
    if (tagged.tag) {
      defaults = timm_tag_transform(*tagged.tag);
      origin = std::string("timm pretrained_cfg ") + tagged.tag->name;
    } else {
      auto model = build_model_skeleton(tagged.arch);
      defaults = arch_transform(model->arch(), static_cast<int>(model->default_input_shape()[2]));
      origin = "arch " + tagged.arch;
    }
  } else {
    defaults = preset_transform("torchvision"), origin = "preset torchvision";
  }
  const TransformSpec spec = resolve_transform(defaults, origin, read_transform_flags(args), load_sample(m, 0));
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
