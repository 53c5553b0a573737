// The untrained weights of transformers' ViTModel and Dinov2Model (transformers 5.x), as torch draws them after
// torch.manual_seed(seed) and the class's constructor. The order is not the timm tree's, so it is replayed here from a
// fresh generator:
//   1. the constructors, in module order: ViTEmbeddings draws cls_token = randn(1, 1, D) (Dinov2's is zeros), the
//      patch Conv2d's reset_parameters(), position_embeddings = randn(1, N + 1, D); then each layer's q_proj,
//      k_proj, v_proj, o_proj, mlp.fc1, mlp.fc2 (nn.Linear reset_parameters()). LayerNorms and LayerScale draw
//      nothing.
//   2. post_init() -> initialize_weights(): smart_apply, children before their parent, _initialize_weights on every
//      module not yet flagged _is_hf_initialized. PreTrainedModel._init_weights: Linear/Conv2d weight
//      normal_(0, initializer_range), bias zeros; LayerNorm ones/zeros. ViTPreTrainedModel then trunc_normal_s
//      position_embeddings and cls_token (torch.nn.init.trunc_normal_); Dinov2PreTrainedModel also trunc_normal_s
//      every Linear/Conv2d weight *after* the normal_ (both draw), sets lambda1 = layerscale_value, and does the same
//      for the embeddings.
//   Dinov2Encoder is itself a PreTrainedModel whose __init__ calls post_init(): its layers are initialised as soon as
//   the encoder is built -- before the model's post_init() reaches the embeddings, which then skips the flagged
//   encoder.
// Checked against the classes themselves: weights_tools/reference/hf_init_fixtures.py.
#include <algorithm>
#include <string>
#include <vector>

#include "engine/init.h"
#include "models/init_replay.h"
#include "models/vit.h"

namespace tabula {

namespace {

constexpr double kInitializerRange = 0.02;  // ViTConfig / Dinov2Config initializer_range (the published configs')

// The draws of constructors whose values post_init() overwrites.
struct CtorDraws {
  TorchGenerator& g;
  std::vector<float> scratch;
  void randn(int64_t n) {
    scratch.resize(static_cast<size_t>(n));
    normal_(scratch.data(), scratch.size(), 0.0, 1.0, g);
  }
  void reset(const Shape& weight, bool bias) { g.discard(default_reset_draws(weight, bias)); }
};

// _init_weights on a Linear/Conv2d: normal_ (and, for Dinov2, trunc_normal_ over it), bias zeros. `rows` picks one of
// q/k/v out of tabula's fused qkv weight (HF's q_proj, k_proj and v_proj are separate tensors: separate draws).
void init_linear(InitState& s, const std::string& name, bool dinov2, int64_t row0 = 0, int64_t rows = -1) {
  const Shape& ws = s.shape(name + ".weight");
  const int64_t cols = shape_numel(ws) / ws[0];
  if (rows < 0) rows = ws[0];
  float* w = s.f32(name + ".weight") + row0 * cols;
  const size_t n = static_cast<size_t>(rows * cols);
  normal_(w, n, 0.0, kInitializerRange, s.gen());
  if (dinov2) trunc_normal_(w, n, s.gen(), 0.0, kInitializerRange);
  if (s.has(name + ".bias")) {
    float* b = s.f32(name + ".bias");
    std::fill(b + row0, b + row0 + rows, 0.0f);
  }
}

void init_norm(InitState& s, const std::string& name) {
  s.fill(name + ".weight", 1.0f);
  s.fill(name + ".bias", 0.0f);
}

void init_layer(const ViTConfig& c, InitState& s, int i, bool dinov2) {
  const std::string b = "blocks." + std::to_string(i);
  const int64_t D = c.embed_dim;
  init_norm(s, b + ".norm1");  // ViT: layernorm_before, after the attention in module order; no draws either way
  for (int64_t part = 0; part < 3; ++part) init_linear(s, b + ".attn.qkv", dinov2, part * D, D);
  init_linear(s, b + ".attn.proj", dinov2);
  if (dinov2) s.fill(b + ".ls1.gamma", static_cast<float>(*c.init_values));
  init_norm(s, b + ".norm2");
  init_linear(s, b + ".mlp.fc1", dinov2);
  init_linear(s, b + ".mlp.fc2", dinov2);
  if (dinov2) s.fill(b + ".ls2.gamma", static_cast<float>(*c.init_values));
}

void init_embeddings(InitState& s, bool dinov2) {
  init_linear(s, "patch_embed.proj", dinov2);
  trunc_normal_(s.f32("pos_embed"), s.numel("pos_embed"), s.gen(), 0.0, kInitializerRange);
  trunc_normal_(s.f32("cls_token"), s.numel("cls_token"), s.gen(), 0.0, kInitializerRange);
  if (s.has("mask_token")) s.fill("mask_token", 0.0f);
}

}  // namespace

void hf_init_weights(const ViTConfig& c, InitState& s) {
  const bool dinov2 = c.hf_init == "dinov2";
  s.gen() = TorchGenerator(s.seed());
  const int64_t D = c.embed_dim, H = c.mlp_hidden();
  CtorDraws ctor{s.gen(), {}};
  if (!dinov2) ctor.randn(D);  // ViTEmbeddings.cls_token
  ctor.reset({D, c.in_chans, c.patch_size, c.patch_size}, true);
  ctor.randn(int64_t(c.num_patches() + 1) * D);  // position_embeddings
  for (int i = 0; i < c.depth; ++i) {
    for (int k = 0; k < 3; ++k) ctor.reset({D, D}, c.qkv_bias);  // q_proj, k_proj, v_proj
    ctor.reset({D, D}, true);                                    // o_proj
    ctor.reset({H, D}, true);                                    // mlp.fc1
    ctor.reset({D, H}, true);                                    // mlp.fc2
  }
  if (dinov2) {  // Dinov2Encoder's own post_init(), then the model's (embeddings, layernorm)
    for (int i = 0; i < c.depth; ++i) init_layer(c, s, i, true);
    init_embeddings(s, true);
  } else {  // ViTModel.post_init(): embeddings, layers, layernorm
    init_embeddings(s, false);
    for (int i = 0; i < c.depth; ++i) init_layer(c, s, i, false);
  }
  init_norm(s, "norm");
}

}  // namespace tabula
