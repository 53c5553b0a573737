// Architecture configs (ResNetConfig mirrors torchvision's ResNet arguments, ViTConfig timm's
// VisionTransformer / DINOv2's DinoVisionTransformer arguments), arch-name parsing, and the untrained weights
// of each arch: the state_dict PyTorch builds after `torch.manual_seed(seed)` and the model constructor,
// under the reference's own key names and in its state_dict order.
//
// Arch names: torchvision (resnet18/34/50/101/152, wide_resnet50_2, wide_resnet101_2, resnext50_32x4d,
// resnext101_32x8d, resnext101_64x4d), timm
// (vit_tiny/small/base/large_patch16_224, vit_small/base/giant_patch14_dinov2,
// vit_small/base/giant_patch14_reg4_dinov2), DINOv2 hub (dinov2_vits14, dinov2_vitb14, dinov2_vitl14,
// dinov2_vitg14 and their _reg variants), or a key=value form:
//   resnet:layers=2,2,2,2,block=basic,width=64,groups=1,classes=1000,zero_init_residual=0
//   vit:dim=64,depth=2,heads=4,patch=8,img=32,classes=10,mlp_ratio=4,qkv_bias=1,init_values=1e-5,
//       class_token=1,no_embed_class=0,reg=0,global_pool=token,fc_norm=auto,pre_norm=0,final_norm=1,
//       chans=3,flavor=timm|dinov2,legacy_init=0,weight_init=|jax|jax_nlhb|moco,qk_norm=0,
//       mlp=mlp|swiglu_packed|swiglu|swiglufused,act=gelu|silu|gelu_tanh|quick_gelu,dynamic_img_size=0,norm_eps=1e-6
//       (global_pool also takes map)
//       (flavor=dinov2 also: interpolate_antialias=0, interpolate_offset=0.1, as DinoVisionTransformer's)
// (a named arch may be followed by ':' and keys to override, e.g. `resnet50:classes=10`).
//
// Init replay, what it matches: torch 2.15 / torchvision 0.29 / timm 1.0.31 (VisionTransformer.init_weights
// with needs_reset=False, i.e. since timm 1.0.23 / commit b5ffe5bd: cls/pos/reg created with torch.empty,
// Linear and Conv2d layers keep the draws of their own reset_parameters() in the constructor; with
// legacy_init=1, timm 1.0.22 and earlier) / DINOv2 hub code
// (facebookresearch/dinov2 b8931f7, which uses torch.nn.init.trunc_normal_, i.e. torch 2.15's
// normal-with-rejection, while timm uses its own erfinv-based trunc_normal_).
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "engine/dtype.h"
#include "engine/init.h"

namespace tabula {

struct NamedTensor {
  std::string name;
  Shape shape;
  DType dtype = DType::f32;
  std::vector<uint8_t> bytes;  // little-endian, C order

  int64_t numel() const { return shape_numel(shape); }
  float* f32() { return reinterpret_cast<float*>(bytes.data()); }
  const float* f32() const { return reinterpret_cast<const float*>(bytes.data()); }
};

// torchvision.models.ResNet(block, layers, num_classes, zero_init_residual, groups, width_per_group).
struct ResNetConfig {
  enum class Block { basic, bottleneck };
  Block block = Block::bottleneck;
  std::array<int, 4> layers{3, 4, 6, 3};
  int num_classes = 1000;
  bool zero_init_residual = false;
  int groups = 1;
  int width_per_group = 64;
  int in_chans = 3;  // torchvision fixes 3; more channels (microscopy) change only conv1's shape

  int expansion() const { return block == Block::basic ? 1 : 4; }
};

// timm VisionTransformer(...) keyword arguments, plus the DINOv2 hub flavour (DinoVisionTransformer: keys
// register_tokens / mask_token, no head, torch's trunc_normal_).
struct ViTConfig {
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
  // DINOv2 hub forward-time settings (no parameters; kept so the model code can reuse this struct).
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
};

struct ArchConfig {
  std::string name;  // as given
  std::variant<ResNetConfig, ViTConfig> config;
  bool is_resnet() const { return std::holds_alternative<ResNetConfig>(config); }
  const ResNetConfig& resnet() const { return std::get<ResNetConfig>(config); }
  const ViTConfig& vit() const { return std::get<ViTConfig>(config); }
};

// Throws std::invalid_argument naming the arch and the offending key or value.
ArchConfig parse_arch(const std::string& arch);
std::vector<std::string> named_archs();

struct ParamSpec {
  std::string name;
  Shape shape;
  DType dtype = DType::f32;
  bool is_buffer = false;  // BatchNorm running stats and num_batches_tracked
};
// The state_dict keys, shapes and dtypes in the reference's order.
std::vector<ParamSpec> param_specs(const ArchConfig& arch);
// sum(p.numel() for p in model.parameters()) (buffers excluded), as `tabula models` reports.
int64_t param_count(const ArchConfig& arch);
int64_t param_count(const std::string& arch);

// The untrained state_dict, bit-identical to PyTorch's for the same seed, except the tensors timm draws
// through erfinv (torch uses MKL's): trunc_normal_ ones (pos_embed, Linear weights) within 2 ULP and, with
// weight_init=jax, the patch embedding (lecun_normal_) within 3 ULP; see engine/rng.h.
std::vector<NamedTensor> init_weights(const ArchConfig& arch, uint64_t seed);
std::vector<NamedTensor> init_weights(const std::string& arch, uint64_t seed);

}  // namespace tabula
