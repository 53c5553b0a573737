// The work behind `tabula weights inspect` and `tabula weights convert` (the CLI only parses arguments).
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "weights_tools/checkpoint.h"
#include "weights_tools/layout.h"

namespace tabula::weights {

struct InspectOptions {
  std::string key;            // --key
  bool list_tensors = false;  // one line per tensor
  bool hash = true;           // sha256 of the whole file
};
// A human-readable report (format, layout guess, #tensors, params, dtypes, top-level keys, sha256, metadata).
std::string inspect_weights(const std::string& path, const InspectOptions& opts = {});

struct ConvertOptions {
  std::string in, out, arch, key;
  // What `arch` is, from the model registry (models/registry.h canonical_specs): its state_dict under the
  // canonical names, in order, and the layout those names follow (torchvision-resnet or timm-vit).
  std::vector<ShapedName> expected;
  Layout arch_layout = Layout::timm_vit;
  // The arch's own mapping of its family's published names onto its canonical ones (the model's
  // ModelConfig::from_canonical, which loading uses too), for the layouts owned_by_model().
  std::function<StateDict(const StateDict&)> arch_names;
  std::optional<DType> dtype;  // nullopt: keep each tensor's dtype
  bool allow_missing = false;
  Layout layout = Layout::unknown;  // force a source layout (unknown: detect)
};

struct ConvertResult {
  Checkpoint source;        // what was read (and how it was chosen)
  LayoutPlan plan;          // how names were mapped
  KeyCheck check;
  bool resampled_pos_embed = false;  // pos_embed grid resized to the arch's (timm resample_abs_pos_embed)
  std::vector<std::string> dropped_unused;  // provided keys the arch does not have, left out of the output
  size_t tensors_written = 0;
  int64_t params_written = 0;
  std::string report;  // the lines the CLI prints
};
// Throws std::runtime_error (missing keys without allow_missing, shape mismatches, wrong layout family...).
ConvertResult convert_weights(const ConvertOptions& opts);

}  // namespace tabula::weights
