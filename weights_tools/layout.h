// Parameter-name layouts and their mapping onto tabula's canonical names. Canonical = the reference's own
// names: torchvision for ResNets, timm for ViTs (packed `blocks.N.attn.qkv.*`, `ls1.gamma`, `reg_token`,
// `no_embed_class` pos_embed for register models). Mapping is a table of rename rules per layout (anchored
// regular expressions applied in order), plus the few structural conversions real checkpoints need:
//   - Hugging Face Dinov2Model / Dinov2WithRegistersModel / ViTModel: separate query/key/value (or
//     q_proj/k_proj/v_proj in transformers 5) concatenated into qkv; `embeddings.*`, `encoder.layer.N.*`
//     (or `layers.N.*`), `layer_scale1.lambda1`; the pooler and mask token dropped (reported);
//   - DINOv2 torch.hub: `mask_token` dropped, chunked `blocks.C.N.*` unchunked, SwiGLU `w12`/`w3` -> `fc1`/`fc2`;
//   - registers: DINOv2 (hub and HF) keep the CLS position inside pos_embed, timm's `_reg` models do not
//     (no_embed_class): cls_token += pos_embed[:, 0], pos_embed = pos_embed[:, 1:], exactly timm's
//     _convert_dinov2.
// The families whose published names only their model knows how to read are recognised here and mapped there
// (ModelConfig::from_canonical, one mapping for loading and converting; see owned_by_model): timm's Swin and the
// original / timm 0.5 Swin of ctranspath.pth (models/swin.cpp), timm's ConvNeXt and the original / DINOv3 hub
// ConvNeXt (models/convnext.cpp), CONCH's CoCa `visual.*` (models/conch.cpp), Recursion's MAEModel
// `encoder.vit_backbone.*` (models/ca_vit.cpp).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "weights_tools/weight_tensor.h"

namespace tabula::weights {

enum class Layout {
  torchvision_resnet,
  timm_vit,
  dinov2_hub,
  hf_dinov2,
  hf_vit,
  timm_swin,          // timm >= 0.9 SwinTransformer: downsample at the start of a stage, head.fc
  swin_timm05,        // the original Swin / timm 0.5 (ctranspath.pth): downsample at the end of a stage, head
  timm_convnext,      // timm ConvNeXt: stem, stages.N.blocks.M, conv_dw, mlp.fc1 / fc2, head.norm / head.fc
  original_convnext,  // the original ConvNeXt / DINOv3 hub: downsample_layers, stages.N.M, dwconv, pwconv1 / 2
  conch_coca,         // CONCH's CoCa (open_clip): visual.trunk.* (timm ViT), the attentional poolers, the text tower
  recursion_mae,      // Recursion's MAEModel (OpenPhenom): encoder.vit_backbone.*, the decoder
  unknown
};
// "torchvision-resnet", "timm-vit", "dinov2-hub", "hf-dinov2", "hf-vit", "timm-swin", "swin-timm0.5",
// "timm-convnext", "original-convnext", "conch-coca", "recursion-mae", "unknown"
std::string_view layout_name(Layout l);
Layout layout_from_name(const std::string& s);  // throws listing the names
// A layout whose names pass through here unchanged and are mapped by the model the file is for
// (ModelConfig::from_canonical): the Swin, ConvNeXt, CONCH and CA-MAE layouts.
bool owned_by_model(Layout l);

struct ShapedName {
  std::string name;
  std::vector<int64_t> shape;
};
std::vector<ShapedName> shaped_names(const StateDict& sd);

struct LayoutGuess {
  Layout layout = Layout::unknown;
  std::string evidence;      // the key that decided it
  std::string strip_prefix;  // e.g. "dinov2." / "vit." of HF *ForImageClassification files
};
LayoutGuess detect_layout(const std::vector<ShapedName>& keys);

// One output tensor of the mapping.
struct MapOp {
  enum class Kind { rename, concat0, cls_plus_pos0, pos_without_cls };
  Kind kind = Kind::rename;
  std::string out;
  std::vector<std::string> in;   // source names (concat0: in order)
  std::vector<int64_t> shape;    // output shape
};

struct LayoutPlan {
  Layout from = Layout::unknown;
  std::string strip_prefix;
  std::vector<MapOp> ops;
  std::vector<std::pair<std::string, std::string>> dropped;  // name, why
  std::vector<std::string> problems;  // e.g. query without key/value: mapping cannot be complete
};

// Plans the mapping from `keys` in layout `from` (Layout::unknown: detect) to canonical names.
LayoutPlan plan_layout(const std::vector<ShapedName>& keys, Layout from = Layout::unknown);
// Applies a plan (renames are zero-copy; concatenations and the register conversion allocate).
// Throws naming the tensors when a concatenation's parts disagree in dtype or trailing shape.
StateDict apply_plan(const StateDict& sd, const LayoutPlan& plan);
inline StateDict to_canonical(const StateDict& sd, LayoutPlan* plan_out = nullptr, Layout from = Layout::unknown) {
  LayoutPlan p = plan_layout(shaped_names(sd), from);
  StateDict out = apply_plan(sd, p);
  if (plan_out) *plan_out = std::move(p);
  return out;
}

// timm's packed qkv split back into the three [D, ...] pieces (for exporting to HF-style layouts and tests).
std::vector<WeightTensor> split_qkv(const WeightTensor& qkv);

// Compares a state dict against the keys and shapes a model expects.
struct KeyCheck {
  std::vector<std::string> missing;  // expected, not provided
  std::vector<std::string> unused;   // provided, not expected
  std::vector<std::string> shape_mismatches;  // "name: file [..] vs model [..]"
  bool ok() const { return missing.empty() && shape_mismatches.empty(); }
  std::string summary(size_t max_names = 20) const;  // one paragraph naming them
};
KeyCheck check_keys(const std::vector<ShapedName>& provided, const std::vector<ShapedName>& expected);
// Throws std::runtime_error with the summary when shapes mismatch, or keys are missing and !allow_missing.
void require_loadable(const KeyCheck& check, bool allow_missing);

}  // namespace tabula::weights
