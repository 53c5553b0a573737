// timm's ViT Block (timm/models/vision_transformer.py: Block with Attention, LayerScale, Mlp / GluMlp / SwiGLU) and
// the DINOv2 hub's NestedTensorBlock (dinov2/layers/block.py: the same computation and parameters, without timm's
// Identity / Dropout placeholders, with SwiGLUFFNFused): declared in the module tree with its taps, and its forward.
//
// One block for every model whose blocks are this module: models/vit.cpp (timm VisionTransformer, the DINOv2 hub)
// and models/conch.cpp (CONCH's timm trunk). DINOv3's SelfAttentionBlock (RoPE on q and k, LinearKMaskedBias,
// SwiGLUFFN with w1 / w2 / w3, no placeholders) and CA-MAE's ParallelScalingBlock (one fused in_proj, parallel
// attention and MLP) are other modules and keep their own code.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "engine/hooks.h"
#include "engine/ops.h"
#include "models/layers.h"
#include "models/module_tree.h"
#include "models/vit.h"

namespace tabula {

// The MLP activation by timm's act_layer name: gelu (exact erf), silu, gelu_tanh, quick_gelu (OpenAI CLIP's
// x * sigmoid(1.702 x)).
class MlpActivation {
 public:
  explicit MlpActivation(const std::string& act);
  Tensor operator()(const Tensor& x) const;
  // What a GEMM epilogue applies; quick_gelu has none (fused() is false).
  Activation kind() const { return kind_; }
  bool fused() const { return !quick_gelu_; }

 private:
  Activation kind_;
  bool quick_gelu_;
};

// q k^T and probs v: 2 * head_dim multiply-accumulates per attention-map entry.
MacRule attention_macs(int64_t head_dim);

// F.scaled_dot_product_attention(q, k, v) whose maps a hook may observe: when `observed`, the maps softmax(q k^T *
// scale) are materialised and passed through `tap_maps`; a hook that replaced them gives o = maps @ v.
Tensor attention_with_maps(const Tensor& q, const Tensor& k, const Tensor& v, bool observed,
                           const std::function<Tensor(const Tensor&)>& tap_maps);

// timm Mlp / GluMlp / SwiGLU between the first linear(s) and fc2: act, drop1, norm (Identity), all taps.
void declare_timm_mlp_middle(ModuleTree& t, Module& mlp, const ShapeRule& hidden);

// Block(dim, num_heads, mlp_ratio, qkv_bias, qk_norm, init_values, act_layer, norm_layer, mlp_layer) as the model
// builds it, plus what the taps need: the token count for a model input and the prefix tokens of the hook context.
struct ViTBlockConfig {
  int64_t dim = 768;
  int64_t num_heads = 12;
  int64_t fc1_out = 3072;  // output width of the MLP's first linear (fc1 / w12; each of fc1_g, fc1_x)
  int64_t fc2_in = 3072;   // input width of its second (fc2 / w3)
  bool qkv_bias = true;
  bool qk_norm = false;
  double norm_eps = 1e-6;
  std::optional<double> init_values;  // LayerScale (ls1 / ls2.gamma) when set, else nn.Identity
  ViTConfig::Mlp mlp = ViTConfig::Mlp::mlp;
  std::string act = "gelu";
  bool hub = false;  // the DINOv2 hub's NestedTensorBlock (its module names)
  std::function<int64_t(const Shape&)> num_tokens;  // N, class and register tokens included, for a model input
  int64_t num_prefix_tokens = 1;                    // the tokens before the patches (TapContext)
};

class ViTBlock {
 public:
  // Declares blocks.<index> and its modules in Block.__init__'s order (tabula's attn.softmax before attn_drop).
  ViTBlock(ModuleTree& t, Module& blocks, int index, const ViTBlockConfig& c);

  // Block.forward: x = x + ls1(attn(norm1(x))); x = x + ls2(mlp(norm2(x))) (eval: drop paths are identities);
  // the output passes the block's own tap.
  Tensor operator()(const Tensor& x, TapSet& taps) const;
  Module& module() const { return *module_; }

 private:
  Parameter* layer_scale(ModuleTree& t, const char* local, const ShapeRule& tok) const;
  Tensor attention(const Tensor& x, TapSet& taps, const Tensor& residual) const;
  Tensor mlp(const Tensor& x, TapSet& taps, const Tensor& residual) const;
  Tensor glu_mlp(const Tensor& x, TapSet& taps, const Tensor& residual) const;
  Tensor T(TapSet& taps, const std::string& name, Tensor x) const;

  ViTBlockConfig c_;
  MlpActivation act_;
  Module* module_ = nullptr;
  std::string name_;
  LayerNorm *norm1_ = nullptr, *norm2_ = nullptr;
  Linear *qkv_ = nullptr, *proj_ = nullptr;
  LayerNorm *q_norm_ = nullptr, *k_norm_ = nullptr;  // qk_norm (off: nn.Identity)
  Parameter *ls1_ = nullptr, *ls2_ = nullptr;         // LayerScale gamma (nn.Identity when init_values is None)
  Linear* fc1_ = nullptr;                             // Mlp / GluMlp fc1, SwiGLU fc1_g, SwiGLUFFNFused w12
  Linear* fc1_x_ = nullptr;                           // SwiGLU's value branch
  Linear* fc2_ = nullptr;                             // fc2 / w3
};

}  // namespace tabula
