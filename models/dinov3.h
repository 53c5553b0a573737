// DINOv3 ViTs as the official code defines them (github facebookresearch/dinov3, models/vision_transformer.py
// DinoVisionTransformer with the hub constructors' settings, hub/backbones.py), in eval mode:
//   patch embedding Conv2d(3, D, 16) -> [cls, 4 storage tokens, patches]; no learned position table: axial 2D RoPE
//   on the patch tokens' queries and keys in every block (RopePositionEmbedding: base 100, coordinates of the patch
//   centres normalised per axis ('separate') into [-1, 1]; the shift/jitter/rescale augmentations run in training
//   only), so any image whose sides are multiples of 16 runs as is; blocks x + ls1(attn(norm1(x))),
//   x + ls2(ffn(norm2(x))) with LayerScale 1e-5, LayerNorm eps 1e-5 ('layernormbf16'), qkv bias with the key
//   third masked to zero (LinearKMaskedBias, its bias_mask buffer), FFN Mlp (GELU) or SwiGLUFFN (hidden
//   int(D * ratio * 2 / 3) rounded up to 8, or 64 for the 7B); forward_features' x_norm_clstoken (the hub
//   forward's output), x_storage_tokens and x_norm_patchtokens.
// Weights: the hub .pth state_dict (its own names) or transformers' DINOv3ViTModel safetensors (q/k/v split, no
// key bias, layer_scale lambda1, "model.layer." or "layer."), mapped here (from_canonical).
// Taps (module names): patch_embed [B, H/16, W/16, D], blocks.N (norm1, attn, attn.qkv, attn.softmax (tabula's
// extra), attn.proj, ls1, norm2, mlp (fc1, act, fc2 | w1, w2, w3), ls2), blocks, norm, x_norm_clstoken,
// x_storage_tokens, x_norm_patchtokens, head.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "models/arch.h"
#include "models/model.h"

namespace tabula {

// DinoVisionTransformer(...) keyword arguments; the defaults are the hub constructors' (dinov3_vits16 & co).
struct Dinov3Config final : ModelConfig {
  int img_size = 224;
  int patch_size = 16;
  int in_chans = 3;
  int embed_dim = 384;
  int depth = 12;
  int num_heads = 6;
  double ffn_ratio = 4.0;
  std::string ffn_layer = "mlp";  // mlp, swiglu, swiglu32, swiglu64, swiglu128
  bool qkv_bias = true;
  bool proj_bias = true;
  bool ffn_bias = true;
  std::optional<double> layerscale_init = 1e-5;
  double norm_eps = 1e-5;  // 'layernormbf16'; 'layernorm' is 1e-6
  int n_storage_tokens = 4;
  bool mask_k_bias = true;
  std::optional<double> rope_base = 100.0;
  std::optional<double> rope_min_period, rope_max_period;
  std::string rope_normalize = "separate";  // min, max, separate
  bool untie_cls_and_patch_norms = false;
  bool untie_global_and_local_cls_norm = false;  // adds local_cls_norm (training only)

  int head_dim() const { return embed_dim / num_heads; }
  int num_prefix_tokens() const { return 1 + n_storage_tokens; }
  int64_t ffn_hidden() const;  // fc1 / w1 / w2 output width

  std::unique_ptr<ModelConfig> clone() const override { return std::make_unique<Dinov3Config>(*this); }
  std::string family() const override { return "DINOv3"; }
  void apply_keys(const KeyValues& keys) override;
  std::unique_ptr<Model> construct(const ArchConfig& arch) const override;
  void init_weights(const ModuleTree& tree, InitState& state) const override;
  // transformers' DINOv3ViTModel names -> the hub's; the key third of the qkv bias masked (bias * bias_mask).
  WeightMap from_canonical(const WeightMap& weights) const override;
};

const Family& dinov3_family();

// x_norm_clstoken [B, D] of the untrained model of `seed` on x [B, C, H, W], computed while the weights are
// generated, with one block's weights in memory at a time (at the CPU precision set: fp32 for the reference of a
// model whose fp32 weights do not fit, DINOv3-7B's 27 GB); bit for bit build_model_seed(arch, seed)'s forward.
// Throws std::invalid_argument for an arch that is not DINOv3.
Tensor dinov3_streamed_forward(const std::string& arch, uint64_t seed, const Tensor& x,
                               const LoadProgress& progress = {});

}  // namespace tabula
