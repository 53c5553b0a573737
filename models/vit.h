// Vision Transformers, eval mode, in two flavours sharing one forward:
//   timm  — timm.models.vision_transformer.VisionTransformer (timm 1.0.31): class token on/off, register tokens,
//           no_embed_class, LayerScale (init_values), pre_norm, global_pool ''/token/avg/avgmax/max/map
//           (AttentionPoolLatent over the patch tokens), fc_norm, head, qk_norm (LayerNorm(head_dim) on q and k),
//           MLPs Mlp / SwiGLUPacked (GluMlp) / SwiGLU with GELU, SiLU or tanh-GELU,
//           dynamic_img_size (pos-embed resampled with resample_abs_pos_embed: bicubic, antialias, by size).
//   dinov2 — the DINOv2 torch-hub DinoVisionTransformer: pos-embed interpolated as the hub does (scale factor
//           (g + 0.1) / M without antialias; by size with antialias for the _reg models), register tokens
//           inserted after the class token *after* the pos-embed, forward = norm(x)[:, 0] (x_norm_clstoken);
//           FFN Mlp or SwiGLUFFNFused (mlp.w12 / mlp.w3, the ViT-g models).
// Taps carry the reference's module names (timm: patch_embed, patch_embed.proj, pos_drop, norm_pre, blocks.N,
// blocks.N.norm1, blocks.N.attn, blocks.N.attn.qkv, blocks.N.ls1, blocks.N.mlp.fc1, norm, attn_pool.*, fc_norm,
// head, ...;
// hub: patch_embed, blocks.N..., norm, head) plus blocks.N.attn.softmax (the attention maps [B, heads, N, N])
// and attn_pool.softmax (the latent query's map [B, heads, 1, P]), and, for the hub flavour, x_norm_clstoken /
// x_norm_patchtokens (forward_features' outputs).
//
// Files: vit_arch.cpp (config keys, named archs and aliases, init_weights), vit.cpp (the module), vit_block.cpp
// (its blocks: timm Block / NestedTensorBlock, shared with conch.cpp).
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "models/arch.h"

namespace tabula {

// timm VisionTransformer(...) keyword arguments, plus the DINOv2 hub flavour (DinoVisionTransformer: keys
// register_tokens / mask_token, no head, torch's trunc_normal_).
struct ViTConfig final : ModelConfig {
  enum class Flavor { timm, dinov2 };
  Flavor flavor = Flavor::timm;
  int img_size = 224;
  int patch_size = 16;
  int in_chans = 3;
  int num_classes = 1000;  // 0: head is nn.Identity
  std::string global_pool = "token";  // timm: '', 'token', 'avg', 'avgmax', 'max', 'map' (AttentionPoolLatent)
  int embed_dim = 768;
  int depth = 12;
  int num_heads = 12;
  double mlp_ratio = 4.0;
  bool qkv_bias = true;
  std::optional<double> init_values;  // LayerScale (ls1/ls2.gamma) when set
  bool class_token = true;
  bool no_embed_class = false;
  int reg_tokens = 0;
  bool pre_norm = false;
  bool final_norm = true;
  std::optional<bool> fc_norm;  // timm: None -> global_pool in (avg, avgmax, max)
  // timm Attention(qk_norm=True): a LayerNorm(head_dim) on the queries and keys of every head (attn.q_norm,
  // attn.k_norm), applied after the qkv split and before the scaled dot product. Key `qk_norm=1`.
  bool qk_norm = false;
  // The block's MLP (key `mlp=`):
  //   mlp           timm Mlp / DINOv2 Mlp: fc1 -> act -> fc2 (hidden = int(dim * mlp_ratio)).
  //   swiglu_packed timm SwiGLUPacked = GluMlp(act=SiLU, gate_last=False): fc1 -> [B, N, hidden], chunk(2) into
  //                 x1, x2, act(x1) * x2 -> fc2 (hidden / 2 -> dim). What vit_giant_patch14_dinov2 uses.
  //   swiglu        timm.layers.SwiGLU: act(fc1_g(x)) * fc1_x(x) -> norm (Identity) -> fc2.
  //   swiglufused   DINOv2 hub SwiGLUFFNFused: w12 -> chunk(2), silu(x1) * x2 -> w3, with the hidden width
  //                 (int(hidden * 2 / 3) + 7) // 8 * 8 (dinov2/layers/swiglu_ffn.py). DINOv2 flavour only.
  enum class Mlp { mlp, swiglu_packed, swiglu, swiglufused };
  Mlp mlp = Mlp::mlp;
  // eps of every LayerNorm (timm norm_layer=partial(LayerNorm, eps=...)): 1e-6 (timm, DINOv2), 1e-5 (CLIP towers).
  // Key `norm_eps`.
  double norm_eps = 1e-6;
  // timm dynamic_img_size=True: any input that is a multiple of the patch size; the pos-embed is resampled at run
  // time (resample_abs_pos_embed: bicubic, antialias, by size) and patch_embed outputs NHWC. Adds no parameters.
  bool dynamic_img_size = false;
  // The MLP activation (timm act_layer; also AttentionPoolLatent's MLP): gelu (exact erf, nn.GELU), silu,
  // gelu_tanh (GELU(approximate='tanh')), quick_gelu (x * sigmoid(1.702 x), OpenAI CLIP). Key `act=`; defaults
  // to silu for the SwiGLU MLPs, gelu otherwise.
  std::string act = "gelu";
  // timm before 1.0.23 (before commit b5ffe5bd): the constructor drew pos_embed with torch.randn(...) * .02
  // (then overwritten by init_weights), which shifts every later draw. Key `legacy_init=1`.
  bool legacy_init = false;
  // timm VisionTransformer(weight_init=...): "" (timm's default), "jax", "jax_nlhb" or "moco".
  std::string weight_init;
  // The untrained twin of a Hugging Face class (key `hf_init=`): "vit" replays transformers' ViTModel(config,
  // add_pooling_layer=False), "dinov2" its Dinov2Model -- their constructors in their own order, then post_init()'s
  // _init_weights (transformers 5.x, initializer_range 0.02). Empty: timm's / the hub's init.
  std::string hf_init;
  // DINOv2 hub forward-time settings (no parameters).
  bool interpolate_antialias = false;
  double interpolate_offset = 0.1;

  int grid() const { return img_size / patch_size; }
  int num_patches() const { return grid() * grid(); }
  int num_prefix_tokens() const { return (class_token ? 1 : 0) + reg_tokens; }
  int mlp_hidden() const { return static_cast<int>(embed_dim * mlp_ratio); }  // Block: int(dim * mlp_ratio)
  // Output width of the first MLP linear (fc1 / w12; each of fc1_g, fc1_x) and input width of the second (fc2 / w3).
  int64_t mlp_fc1_out() const;
  int64_t mlp_fc2_in() const;
  bool use_fc_norm() const;

  std::unique_ptr<ModelConfig> clone() const override { return std::make_unique<ViTConfig>(*this); }
  std::string family() const override { return flavor == Flavor::dinov2 ? "DINOv2 hub" : "timm ViT"; }
  void apply_keys(const KeyValues& keys) override;
  std::unique_ptr<Model> construct(const ArchConfig& arch) const override;
  void init_weights(const ModuleTree& tree, InitState& state) const override;
  WeightMap from_canonical(const WeightMap& weights) const override;
  std::vector<ParamSpec> canonical_specs(const std::vector<ParamSpec>& specs) const override;
};

const Family& vit_family();

// The untrained weights of transformers' ViTModel / Dinov2Model for the state's seed (models/vit_hf_init.cpp).
void hf_init_weights(const ViTConfig& c, InitState& s);

}  // namespace tabula
