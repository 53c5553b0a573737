// The channel-agnostic ViT of Recursion's CA-MAE / OpenPhenom (github recursionpharma/maes_microscopy vit.py and
// mae_modules.py; the published OpenPhenom checkpoint is the Hugging Face MAEModel of huggingface_mae.py): a timm
// VisionTransformer (timm 1.0.31) with ParallelScalingBlock, qkv_bias=False, qk_norm=True, LayerScale 1e-4, a
// class token and global_pool='avg' with fc_norm=None (so `norm` is nn.Identity and `fc_norm` exists), whose
// patch embedding is one Conv2d(1, D, P, stride P) applied to every input channel separately (tokens channel-major:
// all patches of channel 0, then channel 1, ...), and whose position embedding is the fixed 2D sin-cos table
// (scale 10000) repeated for max_in_chans channels with a zero row for the class token, added for the *actual*
// number of tokens (pos_embed[:, :N]), so any channel count up to max_in_chans runs.
//
// The embedding OpenPhenom publishes (MAEModel.predict): forward_features (no final norm), then the mean of the
// patch tokens, or with return_channelwise_embeddings the mean per channel's token group (C x D features).
// Its inputs are uint8 images / 255, self-standardised per image and channel (InstanceNorm2d, eps 1e-5):
// `--intensity self-standardize` (data/preprocess.h), the default tabula embed gives this family.
//
// Taps (timm module names): patch_embed, pos_drop, patch_drop, norm_pre, blocks.N (in_norm, in_proj, q_norm,
// k_norm, attn.softmax (tabula's extra: the attention maps), mlp_act, attn_out_proj, mlp_out_proj, ls), blocks,
// norm (Identity with global_pool=avg), fc_norm, head (Identity).
#pragma once
#include <memory>
#include <string>

#include "models/arch.h"

namespace tabula {

struct CaViTConfig final : ModelConfig {
  int img_size = 256;
  int patch_size = 16;
  int embed_dim = 384;
  int depth = 12;
  int num_heads = 6;
  double mlp_ratio = 4.0;
  // MAEEncoder(max_in_chans=11) in MAEModel: the rows of the sin-cos table, hence the most channels an input has.
  int max_in_chans = 11;
  // vit.py's backbones are built with in_chans=6 before their patch embedding is replaced: that first
  // Conv2d(6, D, P) only draws from the random stream (init replay), it is not in the state_dict.
  int backbone_in_chans = 6;
  double init_values = 1e-4;
  bool qkv_bias = false;
  bool qk_norm = true;
  std::string global_pool = "avg";  // avg: fc_norm, no norm (MAEModel); token: norm, no fc_norm (vit.py default)
  double norm_eps = 1e-6;

  int grid() const { return img_size / patch_size; }
  int mlp_hidden() const { return static_cast<int>(embed_dim * mlp_ratio); }

  std::unique_ptr<ModelConfig> clone() const override { return std::make_unique<CaViTConfig>(*this); }
  std::string family() const override { return "CA-MAE ViT"; }
  void apply_keys(const KeyValues& keys) override;
  std::unique_ptr<Model> construct(const ArchConfig& arch) const override;
  void init_weights(const ModuleTree& tree, InitState& state) const override;
  // The HF MAEModel state_dict (encoder.vit_backbone.* plus the decoder's keys) -> the backbone's timm names.
  WeightMap from_canonical(const WeightMap& weights) const override;
};

const Family& ca_vit_family();

}  // namespace tabula
