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
// and attn_pool.softmax (the latent query's map [B, heads, 1, P]), and, for the hub flavour, x_norm_clstoken / x_norm_patchtokens (forward_features' outputs).
#pragma once
#include <memory>

#include "models/model.h"

namespace tabula {

// Forward-time options that add no parameters (so they are not part of the state_dict layout).
struct ViTOptions {
  // timm dynamic_img_size=True: any input size that is a multiple of the patch size; patch_embed outputs NHWC.
  bool dynamic_img_size = false;
};

// `params` resolved for `arch` (a skeleton gives a model whose forward throws: list_taps/gmacs only).
std::unique_ptr<Model> make_vit(const ArchConfig& arch, const ParamStore& params, const ViTOptions& opt = {});

}  // namespace tabula
