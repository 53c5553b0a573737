// Taps and hooks: how a run reaches inside a model.
//
// Model forward code passes every module output through one named tap point, with its PyTorch name:
//
//     x = ops::conv2d(x, w, b, o, Activation::relu);
//     if (taps.tap("layer1.0", x)) return;         // true once the deepest requested tap has been passed
//
// A TapSet is built per run from what the user asked for (exact names, "prefix*" / "prefix.*" selections, or
// "all"), each either a capture with a pooling (avg, cls, mean, cls+mean, max, gem, none) or an intervention
// (zero, replace with a given tensor, scale, ablate attention heads). At a tap, interventions apply first (in
// the order they were added) and replace the tensor the forward continues with; captures then record the
// pooled result, so no full-resolution copy leaves the op unless pool=none was asked for.
#pragma once
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/ops.h"
#include "engine/tensor.h"

namespace tabula {

enum class HookAction { capture, zero, replace, scale, ablate_heads };

struct Hook {
  std::string pattern;  // "layer3.5" (exact), "blocks.*" / "blocks*" (prefix), or "all"
  HookAction action = HookAction::capture;
  Pool pool = Pool::avg;       // capture
  Tensor value;                // replace: same shape as the tap's tensor
  float factor = 1.f;          // scale
  std::vector<int64_t> heads;  // ablate_heads: zero these heads' channels of [B, N, heads * head_dim]
  bool matches(std::string_view tap_name) const;
};

// What the model knows at a tap that a hook may need.
struct TapContext {
  int64_t num_prefix_tokens = 1;  // CLS + register tokens, for token pooling
  int64_t num_heads = 0;          // for ablate_heads (the tap must be the attention output before proj)
};

class TapSet {
 public:
  TapSet& capture(std::string pattern, Pool pool = Pool::avg);
  TapSet& zero(std::string pattern);
  TapSet& replace(std::string pattern, Tensor value);
  TapSet& scale(std::string pattern, float factor);
  TapSet& ablate_heads(std::string pattern, std::vector<int64_t> heads);
  TapSet& add(Hook h);

  // The model's tap names in forward order (what `tabula hooks ARCH` lists). Checks every pattern matches at
  // least one tap (the error names the pattern and a few taps that exist) and finds the deepest capture, after
  // which the forward may stop. Without bind() every tap is accepted and the forward never stops early.
  void bind(const std::vector<std::string>& taps_in_forward_order);

  // Called by the forward for each module output; may replace `x`. Returns true when the forward can stop.
  bool tap(std::string_view name, Tensor& x, const TapContext& ctx = {});
  // Whether any hook acts at this tap (the forward produces optional taps such as attention maps only then).
  bool wants(std::string_view name) const;
  bool done() const { return done_; }

  // Pooled captures by tap name; when several captures hit one tap, keys are "name:pool".
  const std::map<std::string, Tensor>& captured() const { return captured_; }
  // Names of the captured outputs this set will produce, in forward order (after bind()).
  std::vector<std::string> capture_keys() const;
  // Clears captures and the stop flag for the next batch (hooks and binding stay).
  void reset();

  const std::vector<Hook>& hooks() const { return hooks_; }
  // Records every tap the forward passes, in order, with the shape it had there (the tests' check that a
  // model's declared tap list is what its forward does); nullptr stops recording.
  void trace(std::vector<std::pair<std::string, Shape>>* out) { trace_ = out; }

 private:
  std::string key_for(std::string_view name, const Hook& h) const;
  std::vector<Hook> hooks_;
  std::vector<std::string> order_;  // bound tap names
  int64_t stop_after_ = -1;         // index in order_ of the deepest capture, -1: never stop
  std::map<std::string, Tensor> captured_;
  bool done_ = false;
  std::vector<std::pair<std::string, Shape>>* trace_ = nullptr;
};

}  // namespace tabula
