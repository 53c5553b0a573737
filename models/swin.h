// timm's SwinTransformer (timm/models/swin_transformer.py, matched at timm 1.0.31), in eval mode:
//   patch_embed: Conv2d(in, D, 4, stride 4) -> NHWC -> LayerNorm (or CTransPath's ConvStem: two 3x3/2 conv + BN +
//     ReLU, a 1x1 conv, LayerNorm; github mahmoodlab/HEST cpath_model_zoo/ctranspath/ctran.py);
//   layers.N (SwinTransformerStage): PatchMerging at the start of every stage but the first (timm 1.0's order:
//     pad to even, 2x2 neighbours concatenated as (0,0), (1,0), (0,1), (1,1), LayerNorm(4C), Linear(4C, 2C)), then
//     blocks x + attn(norm1(x)), x + mlp(norm2(x)); odd blocks shift their windows by window // 2 (torch.roll) and
//     mask attention between tokens the roll brought together (0 / -100); a feature map that is not a multiple of
//     the window is zero-padded at the bottom/right before the windows are cut; a stage whose map is no larger than
//     the window uses the map size as window and does not shift (both decided from `img`, as timm's constructor);
//   WindowAttention: qkv, softmax(q k^T * hd^-0.5 + relative position bias + mask), proj; the bias table
//     [(2wh-1)(2ww-1), heads] is read through relative_position_index (derived here, as timm's non-persistent
//     buffer: a checkpoint's copy is checked and dropped);
//   norm, head (avg pool over H, W; fc, absent with classes=0).
// Inputs of other sizes (multiples of the patch) run as timm's dynamic_img_size=True does: the masks follow the
// input, the window sizes and shifts stay those of `img`.
//
// Weights: timm's state_dict, or the original Swin / timm 0.5.x layout (CTransPath's ctranspath.pth, key 'model'):
// downsample at the end of a stage (layers.N.downsample -> layers.N+1.downsample), relative_position_index and
// attn_mask buffers, head.weight (dropped with classes=0, as HEST's nn.Identity head and strict=False load).
//
// Taps (timm module names): patch_embed.proj, patch_embed.norm, patch_embed, layers.N.downsample (.norm,
// .reduction), layers.N.blocks.M (norm1, attn (qkv, softmax (tabula's extra), proj), norm2, mlp (fc1, act, fc2)),
// layers.N.blocks, layers.N, layers, norm, head.global_pool, head.fc, head. NHWC maps [B, H, W, C] are tapped as
// token sequences [B, H*W, C] (so pools average over positions); a block's attention taps hold its windows one after
// the other per image: [B, windows * N, C] (qkv, proj, attn) and [B, windows * heads, N, N] (softmax).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "models/arch.h"

namespace tabula {

// SwinTransformer(...) keyword arguments; the defaults are swin_tiny_patch4_window7_224's.
struct SwinConfig final : ModelConfig {
  int img_size = 224;
  int patch_size = 4;
  int in_chans = 3;
  int num_classes = 1000;
  int embed_dim = 96;
  std::vector<int> depths{2, 2, 6, 2};
  std::vector<int> num_heads{3, 6, 12, 24};
  int window_size = 7;
  double mlp_ratio = 4.0;
  bool qkv_bias = true;
  std::string embed_layer = "patch";  // patch (timm's PatchEmbed) or convstem (CTransPath)

  int stages() const { return static_cast<int>(depths.size()); }
  int64_t dim(int i) const { return static_cast<int64_t>(embed_dim) << i; }
  int64_t num_features() const { return dim(stages() - 1); }
  int64_t grid() const { return img_size / patch_size; }

  std::unique_ptr<ModelConfig> clone() const override { return std::make_unique<SwinConfig>(*this); }
  std::string family() const override { return embed_layer == "convstem" ? "Swin + ConvStem" : "timm Swin"; }
  void apply_keys(const KeyValues& keys) override;
  std::unique_ptr<Model> construct(const ArchConfig& arch) const override;
  void init_weights(const ModuleTree& tree, InitState& state) const override;
  // The original Swin / timm 0.5.x names (ctranspath.pth) -> timm 1.0's; derived buffers checked and dropped.
  WeightMap from_canonical(const WeightMap& weights) const override;
};

const Family& swin_family();

}  // namespace tabula
