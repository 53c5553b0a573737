// The CONCH v1 vision tower (Mahmood Lab; github mahmoodlab/CONCH, conch/open_clip_custom at commit 141cc09), as
// `CoCa.visual` is built by `_build_vision_tower(embed_dim=512, vision_cfg, embed_dim_caption=768)` from
// model_configs/conch_ViT-B-16.json:
//   trunk               timm VisionTransformer(embed_dim=768, depth=12, num_heads=12, mlp_ratio=4, img_size=448,
//                       patch_size=16, num_classes=0, dynamic_img_size=True) -- timm's ViT, not open_clip's (class
//                       token, learned pos-embed incl. the class position, conv patch embedding with bias, LayerNorm
//                       eps 1e-6, exact GELU), called as forward_features: the final `norm` over all tokens;
//   attn_pool_contrast  AttentionalPooler(d_model=512, context_dim=768, n_head=8, n_queries=1): ln_k over the trunk's
//                       tokens (class token included), the learned query through ln_q, one nn.MultiheadAttention
//                       (kdim = vdim = 768, so separate q/k/v_proj_weight) from the query to every token;
//   ln_contrast         LayerNorm(512) of the first query's output; proj_contrast [512, 512] (x @ proj_contrast);
//   attn_pool_caption   AttentionalPooler(d_model=768, context_dim=768, n_head=8, n_queries=256) + ln_caption (the
//                       captioning decoder's image tokens; packed in_proj_weight since kdim == d_model).
// Parameter names are the published checkpoint's (`visual.trunk.blocks.0.attn.qkv.weight`,
// `visual.attn_pool_contrast.attn.q_proj_weight`, ...); its text tower and decoder keys are dropped at load.
//
// The embedding the CONCH README recommends for feature extraction (and HEST uses): encode_image(image,
// proj_contrast=False, normalize=False) = ln_contrast(attn_pool_contrast(trunk(x))[:, 0]), tap `visual.ln_contrast`.
// encode_image(proj_contrast=True, normalize=False) is tabula's extra tap `visual.proj_contrast`.
//
// Taps carry CoCa's module names (`visual.trunk.blocks.N.attn.qkv`, `visual.attn_pool_contrast.ln_k`, ...), plus
// tabula's `....attn.softmax` (attention maps). The poolers' taps are batch-first: nn.MultiheadAttention returns
// [queries, B, d] and ln_q has no batch dimension; tabula shows them as [B, queries, d] (what AttentionalPooler
// returns, and ln_q's output as the attention receives it, repeated per image).
//
// Untrained twin: `torch.manual_seed(seed); _build_vision_tower(...)` -- the tower's own constructors (CoCa(...)
// builds the text tower first, which would shift every draw): timm 1.0.31's VisionTransformer.init_weights at the
// end of the trunk's constructor (trunc_normal_(pos_embed, .02), normal_(cls_token, 1e-6), Linear trunc_normal_(.02)
// with zero bias; the patch conv keeps its reset_parameters() draws), then the poolers' constructors: query
// torch.randn, nn.MultiheadAttention (out_proj's nn.Linear draws, xavier_uniform_ of q/k/v or in_proj, zero biases),
// proj_contrast = 768 ** -0.5 * torch.randn(512, 512).
#pragma once
#include <memory>
#include <string>

#include "models/arch.h"

namespace tabula {

// CoCaVisionCfg + VisualModel's arguments. Keys (`conch:`): dim, depth, heads, patch, img, mlp_ratio (the trunk),
// embed_dim (contrastive width), caption_dim, pool_heads, queries_contrast, queries_caption, legacy_init.
struct ConchConfig final : ModelConfig {
  int img_size = 448;
  int patch_size = 16;
  int width = 768;  // the trunk's embed_dim (CoCaVisionCfg.width)
  int depth = 12;
  int heads = 12;
  double mlp_ratio = 4.0;
  int embed_dim = 512;          // CoCa embed_dim: attn_pool_contrast's d_model, ln_contrast, proj_contrast
  int embed_dim_caption = 768;  // attn_pool_caption's d_model
  // VisualModel's attn_pooler_heads: 8 for every CONCH model (_build_vision_tower does not pass the config's
  // attn_pooler_heads on, so VisualModel's default holds).
  int pool_heads = 8;
  int queries_contrast = 1;
  int queries_caption = 256;
  // timm before 1.0.23 drew pos_embed = torch.randn(...) * .02 in the trunk's constructor (see ViTConfig).
  bool legacy_init = false;

  int grid() const { return img_size / patch_size; }
  int mlp_hidden() const { return static_cast<int>(width * mlp_ratio); }

  std::unique_ptr<ModelConfig> clone() const override { return std::make_unique<ConchConfig>(*this); }
  std::string family() const override { return "CONCH CoCa vision"; }
  void apply_keys(const KeyValues& keys) override;
  std::unique_ptr<Model> construct(const ArchConfig& arch) const override;
  void init_weights(const ModuleTree& tree, InitState& state) const override;
  // The published CoCa checkpoint (text tower, decoder, logit_scale dropped; a DataParallel `module.` prefix
  // stripped) or a `model.visual.state_dict()` (`trunk.*`, prefixed with `visual.`).
  WeightMap from_canonical(const WeightMap& weights) const override;
};

const Family& conch_family();

}  // namespace tabula
