#include "models/vit.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <stdexcept>

#include "engine/ops.h"
#include "models/layers.h"
#include "models/model.h"
#include "models/vit_block.h"

namespace tabula {
namespace {

// timm AttentionPoolLatent (global_pool='map'): one latent query attends over the patch tokens, then
// x + mlp(norm(x)), pooled as the latent token.
struct AttnPoolP {
  Parameter* latent = nullptr;
  Linear *q = nullptr, *kv = nullptr, *proj = nullptr, *fc1 = nullptr, *fc2 = nullptr;
  LayerNorm* norm = nullptr;
};

class ViT final : public Model {
 public:
  // timm VisionTransformer.__init__ / DinoVisionTransformer.__init__: the module tree in construction order (a
  // module's own parameters come first in the state_dict whenever they are declared).
  explicit ViT(const ArchConfig& arch)
      : Model(arch), c_(*arch.as<ViTConfig>()), hub_(c_.flavor == ViTConfig::Flavor::dinov2),
        act_(c_.act) {
    ModuleTree& t = module_tree();
    Module& root = t.root();
    const int64_t D = c_.embed_dim, P = c_.patch_size;
    const ShapeRule tok = tokens(D);
    // PatchEmbed: proj = Conv2d(in_chans, D, P, stride=P), bias=not pre_norm in timm; norm is nn.Identity.
    // Its output: [B, gh * gw, D], or [B, gh, gw, D] (NHWC) with dynamic_img_size.
    const ShapeRule patches = [this](const Shape& in) {
      const int64_t gh = in[2] / c_.patch_size, gw = in[3] / c_.patch_size;
      return c_.dynamic_img_size ? Shape{in[0], gh, gw, c_.embed_dim} : Shape{in[0], gh * gw, c_.embed_dim};
    };
    Conv2dOptions po;
    po.stride = {P, P};
    Module& pe = t.tap(t.child(root, "patch_embed", "PatchEmbed"), patches);
    patch_ = &t.tap(t.layer<Conv2d>(pe, "proj", c_.in_chans, D, P, po, hub_ || !c_.pre_norm), [this](const Shape& in) {
      return Shape{in[0], c_.embed_dim, in[2] / c_.patch_size, in[3] / c_.patch_size};
    });
    t.tap(pe, "norm", "Identity", patches);
    if (hub_) {
      cls_ = &t.layer<Parameter>(root, "cls_token", Shape{1, 1, D});
      pos_ = &t.layer<Parameter>(root, "pos_embed", Shape{1, c_.num_patches() + 1, D});
      if (c_.reg_tokens) reg_ = &t.layer<Parameter>(root, "register_tokens", Shape{1, c_.reg_tokens, D});
    } else {
      if (c_.class_token) cls_ = &t.layer<Parameter>(root, "cls_token", Shape{1, 1, D});
      if (c_.reg_tokens) reg_ = &t.layer<Parameter>(root, "reg_token", Shape{1, c_.reg_tokens, D});
      const int64_t pos_len = c_.num_patches() + (c_.no_embed_class ? 0 : c_.num_prefix_tokens());
      // timm <= 1.0.22 drew pos_embed = torch.randn(...) * .02 here (overwritten by init_weights).
      const CtorInit pos_init = c_.legacy_init ? CtorInit{CtorInit::randn, 0.02} : CtorInit{};
      pos_ = &t.layer<Parameter>(root, "pos_embed", Shape{1, pos_len, D}, pos_init);
      t.tap(root, "pos_drop", "Dropout", tok);
      t.tap(root, "patch_drop", "Identity", tok);
      norm_pre_ = norm_or_identity(t, root, "norm_pre", c_.pre_norm, tok);
    }
    Module& blocks = t.tap(t.child(root, "blocks", "Sequential"), tok);
    ViTBlockConfig bc;
    bc.dim = D;
    bc.num_heads = c_.num_heads;
    bc.fc1_out = c_.mlp_fc1_out();
    bc.fc2_in = c_.mlp_fc2_in();
    bc.qkv_bias = c_.qkv_bias;
    bc.qk_norm = c_.qk_norm;
    bc.norm_eps = c_.norm_eps;
    bc.init_values = c_.init_values;
    bc.mlp = c_.mlp;
    bc.act = c_.act;
    bc.hub = hub_;
    bc.num_tokens = tokens_of();
    bc.num_prefix_tokens = c_.num_prefix_tokens();
    for (int i = 0; i < c_.depth; ++i) blocks_.emplace_back(t, blocks, i, bc);
    if (hub_) {
      norm_ = &t.tap(t.layer<LayerNorm>(root, "norm", D, c_.norm_eps), tok);
      mask_token_ = &t.layer<Parameter>(root, "mask_token", Shape{1, D});  // training only
      // forward_features()' outputs; head = nn.Identity
      const ShapeRule cls = [D](const Shape& in) { return Shape{in[0], D}; };
      t.tap(root, "x_norm_clstoken", "Output", cls);
      t.tap(root, "x_norm_patchtokens", "Output", [this](const Shape& in) {
        return Shape{in[0], (in[2] / c_.patch_size) * (in[3] / c_.patch_size), c_.embed_dim};
      });
      t.tap(root, "head", "Identity", cls);
      return;
    }
    norm_ = norm_or_identity(t, root, "norm", c_.final_norm && !c_.use_fc_norm(), tok);
    if (c_.global_pool == "map") make_attn_pool(t, root);
    // forward_head: pool -> fc_norm -> head_drop -> head
    const ShapeRule pooled = [this](const Shape& in) {
      return c_.global_pool.empty() ? tokens(c_.embed_dim)(in) : Shape{in[0], c_.embed_dim};
    };
    fc_norm_ = norm_or_identity(t, root, "fc_norm", c_.final_norm && c_.use_fc_norm(), pooled);
    t.tap(root, "head_drop", "Dropout", pooled);
    const ShapeRule head = [this, pooled](const Shape& in) {
      Shape s = pooled(in);
      s.back() = c_.num_classes;
      return s;
    };
    if (c_.num_classes > 0) head_ = &t.tap(t.layer<Linear>(root, "head", D, c_.num_classes), head);
    else t.tap(root, "head", "Identity", pooled);
  }

  Shape default_input_shape(int64_t batch) const override { return {batch, c_.in_chans, c_.img_size, c_.img_size}; }

  void check_input(const Shape& s) const override {
    const std::string what = "arch '" + arch().name + "': ";
    if (s.size() != 4 || s[1] != c_.in_chans || s[0] < 1)
      throw std::invalid_argument(what + "input must be [B, " + std::to_string(c_.in_chans) + ", H, W], got " +
                                  shape_str(s));
    const bool any_size = hub_ || c_.dynamic_img_size;
    if (!any_size && (s[2] != c_.img_size || s[3] != c_.img_size))
      throw std::invalid_argument(what + "input must be " + std::to_string(c_.img_size) + "x" +
                                  std::to_string(c_.img_size) + " (timm strict_img_size; add dynamic_img_size=1 "
                                  "for other sizes), got " + shape_str(s));
    if (s[2] % c_.patch_size != 0 || s[3] % c_.patch_size != 0 || s[2] < c_.patch_size || s[3] < c_.patch_size)
      throw std::invalid_argument(what + "input height and width must be multiples of the patch size " +
                                  std::to_string(c_.patch_size) + ", got " + shape_str(s));
  }

  Tensor forward(const Tensor& x_in, TapSet& taps) override {
    check_weights();
    check_input(x_in.shape());
    taps.bind(tap_order(x_in.shape()));
    const int64_t B = x_in.size(0), D = c_.embed_dim;
    const int64_t gh = x_in.size(2) / c_.patch_size, gw = x_in.size(3) / c_.patch_size;
    // PatchEmbed: proj (conv k=s=patch), flatten(2).transpose(1, 2) (NHWC for dynamic_img_size), norm (Identity).
    Tensor x = T(taps, "patch_embed.proj", (*patch_)(x_in.to(act_dtype())));
    // flatten(2).transpose(1, 2) as the [B, gh, gw, D] permute reshaped: no copy when the conv returned
    // channels-last (the CPU fast path and 16-bit GPU convs do), one copy otherwise.
    x = c_.dynamic_img_size ? x.permute({0, 2, 3, 1}).contiguous() : x.permute({0, 2, 3, 1}).reshape({B, gh * gw, D});
    x = T(taps, "patch_embed.norm", x, kPatches);
    x = T(taps, "patch_embed", x, kPatches);
    if (taps.done()) return x;
    x = hub_ ? hub_prepare_tokens(x, gh, gw) : timm_pos_embed(x.reshape({B, gh * gw, D}), gh, gw, taps);
    if (taps.done()) return x;
    for (const ViTBlock& b : blocks_) {
      x = b(x, taps);
      if (taps.done()) return x;
    }
    x = T(taps, "blocks", x);
    x = T(taps, "norm", apply(norm_, x));
    if (taps.done()) return x;
    const int64_t prefix = c_.num_prefix_tokens();
    if (hub_) {
      // forward_features()["x_norm_clstoken"] / ["x_norm_patchtokens"]; forward() = head(x_norm_clstoken).
      Tensor cls = T(taps, "x_norm_clstoken", x.select(1, 0).contiguous());
      T(taps, "x_norm_patchtokens", x.slice(1, prefix, x.size(1)), kPatches);
      return T(taps, "head", cls);
    }
    // forward_head: pool -> fc_norm -> head_drop -> head.
    Tensor pooled = x;
    const std::string& gp = c_.global_pool;
    if (gp == "token") pooled = ops::pool(x, Pool::cls, prefix);
    else if (gp == "avg") pooled = ops::pool(x, Pool::avg, prefix);
    else if (gp == "max") pooled = ops::pool(x, Pool::max, prefix);
    else if (gp == "avgmax")  // 0.5 * (x.amax(dim=1) + x.mean(dim=1))
      pooled = ops::mul(ops::add(ops::pool(x, Pool::max, prefix), ops::pool(x, Pool::avg, prefix)), 0.5f);
    else if (gp == "map")  // attn_pool(x[:, num_prefix_tokens:]) (pool_include_prefix=False)
      pooled = attention_pool(x.slice(1, prefix, x.size(1)), taps);
    x = T(taps, "fc_norm", apply(fc_norm_, pooled));
    x = T(taps, "head_drop", x);
    if (head_) x = (*head_)(x);
    return T(taps, "head", x);
  }

  std::vector<std::string> default_taps() const override {
    if (hub_) return {"x_norm_clstoken"};
    return {c_.num_classes > 0 ? "head_drop" : "head"};
  }

 private:
  // A LayerNorm when `norm`, else nn.Identity; a tap either way.
  LayerNorm* norm_or_identity(ModuleTree& t, Module& parent, const char* local, bool norm,
                              const ShapeRule& out) const {
    if (norm) return &t.tap(t.layer<LayerNorm>(parent, local, c_.embed_dim, c_.norm_eps), out);
    t.tap(parent, local, "Identity", out);
    return nullptr;
  }

  // The taps' output shapes for an input [B, C, H, W]: N tokens (prefix + gh * gw patches) of `width`.
  int64_t num_tokens(const Shape& in) const {
    return (in[2] / c_.patch_size) * (in[3] / c_.patch_size) + c_.num_prefix_tokens();
  }
  std::function<int64_t(const Shape&)> tokens_of() const {
    return [this](const Shape& in) { return num_tokens(in); };
  }
  ShapeRule tokens(int64_t width) const {
    return [this, width](const Shape& in) { return Shape{in[0], num_tokens(in), width}; };
  }
  // q / k per head, [B, H, n, hd], for n queries or keys.
  ShapeRule per_head(std::function<int64_t(const Shape&)> n) const {
    return [this, n](const Shape& in) {
      return Shape{in[0], c_.num_heads, n(in), c_.embed_dim / c_.num_heads};
    };
  }
  // The attention maps [B, H, queries, keys].
  ShapeRule attention_maps(std::function<int64_t(const Shape&)> queries,
                           std::function<int64_t(const Shape&)> keys = {}) const {
    return [this, queries, keys](const Shape& in) {
      return Shape{in[0], c_.num_heads, queries(in), keys ? keys(in) : queries(in)};
    };
  }
  // AttentionPoolLatent(embed_dim, num_heads, mlp_ratio, norm_layer, act_layer): q, kv, proj, norm, mlp (timm
  // Mlp, hidden int(D * mlp_ratio)); its constructor ends with init_weights(), which draws the latent.
  void make_attn_pool(ModuleTree& t, Module& root) {
    const int64_t D = c_.embed_dim, Hm = c_.mlp_hidden();
    // One latent query over the P patch tokens: [B, 1, width] and [B, P, width].
    const auto one = [](const Shape&) { return int64_t{1}; };
    const auto patches = [this](const Shape& in) { return (in[2] / c_.patch_size) * (in[3] / c_.patch_size); };
    const auto latent = [](int64_t w) -> ShapeRule { return [w](const Shape& in) { return Shape{in[0], 1, w}; }; };
    const ShapeRule pooled = [D](const Shape& in) { return Shape{in[0], D}; };
    Module& m = t.tap(t.child(root, "attn_pool", "AttentionPoolLatent"), pooled);
    attn_pool_.q = &t.tap(t.layer<Linear>(m, "q", D, D), latent(D));
    attn_pool_.kv = &t.tap(t.layer<Linear>(m, "kv", D, 2 * D), [patches, D](const Shape& in) {
      return Shape{in[0], patches(in), 2 * D};
    });
    t.tap(m, "q_norm", "Identity", per_head(one));
    t.tap(m, "k_norm", "Identity", per_head(patches));
    t.tap(m, "softmax", "Softmax", attention_maps(one, patches),
          attention_macs(c_.embed_dim / c_.num_heads));  // the latent's map
    attn_pool_.proj = &t.tap(t.layer<Linear>(m, "proj", D, D), latent(D));
    t.tap(m, "proj_drop", "Dropout", latent(D));
    attn_pool_.norm = &t.tap(t.layer<LayerNorm>(m, "norm", D, c_.norm_eps), latent(D));
    Module& mlp = t.tap(t.child(m, "mlp", "Mlp"), latent(D));
    attn_pool_.fc1 = &t.tap(t.layer<Linear>(mlp, "fc1", D, Hm), latent(Hm));
    declare_timm_mlp_middle(t, mlp, latent(Hm));
    attn_pool_.fc2 = &t.tap(t.layer<Linear>(mlp, "fc2", Hm, D), latent(D));
    t.tap(mlp, "drop2", "Dropout", latent(D));
    const double std = std::pow(static_cast<double>(D), -0.5);
    attn_pool_.latent = &t.layer<Parameter>(m, "latent", Shape{1, 1, D}, CtorInit{CtorInit::trunc_tf, std});
  }

  // Tap point with what hooks need to pool tokens and ablate heads. Patch-only outputs (patch_embed,
  // x_norm_patchtokens) have no prefix tokens.
  enum Tokens { kWithPrefix, kPatches };
  Tensor T(TapSet& taps, const std::string& name, Tensor x, Tokens t = kWithPrefix) const {
    TapContext ctx;
    ctx.num_prefix_tokens = t == kPatches ? 0 : c_.num_prefix_tokens();
    ctx.num_heads = c_.num_heads;
    taps.tap(name, x, ctx);
    return x;
  }

  // timm VisionTransformer._pos_embed (+ pos_drop, patch_drop, norm_pre). x: [B, gh*gw, D].
  Tensor timm_pos_embed(Tensor x, int64_t gh, int64_t gw, TapSet& taps) const {
    const int64_t B = x.size(0), D = c_.embed_dim;
    const Tensor& pos0 = **pos_;
    Tensor pos = pos0;
    const int64_t g = c_.grid();
    if (c_.dynamic_img_size && (gh != g || gw != g)) {
      // resample_abs_pos_embed(new_size=(gh, gw), old_size=grid, bicubic, antialias=True); prefix kept.
      const int64_t np = c_.no_embed_class ? 0 : c_.num_prefix_tokens();
      Tensor grid = pos0.slice(1, np, pos0.size(1)).reshape({1, g, g, D}).permute({0, 3, 1, 2});
      InterpolateOptions io;
      io.size = std::array<int64_t, 2>{gh, gw};
      io.mode = InterpMode::bicubic;
      io.antialias = true;
      Tensor r = ops::interpolate(grid, io).permute({0, 2, 3, 1}).reshape({1, gh * gw, D});
      pos = np ? ops::cat({pos0.slice(1, 0, np), r}, 1) : r;
    }
    std::vector<Tensor> prefix;
    if (cls_) prefix.push_back((**cls_).expand({B, -1, -1}));
    if (reg_) prefix.push_back((**reg_).expand({B, -1, -1}));
    if (c_.no_embed_class) {
      // deit-3 / big_vision: pos-embed covers the patches only; add, then prepend the prefix tokens.
      x = ops::add(x, pos);
      if (!prefix.empty()) {
        prefix.push_back(x);
        x = ops::cat(prefix, 1);
      }
    } else {
      if (!prefix.empty()) {
        prefix.push_back(x);
        x = ops::cat(prefix, 1);
      }
      x = ops::add(x, pos);
    }
    x = T(taps, "pos_drop", x);
    x = T(taps, "patch_drop", x);
    return T(taps, "norm_pre", apply(norm_pre_, x));
  }

  // DinoVisionTransformer.prepare_tokens_with_masks (no masks) with interpolate_pos_encoding. x: [B, gh*gw, D].
  Tensor hub_prepare_tokens(const Tensor& x_patches, int64_t gh, int64_t gw) const {
    const int64_t B = x_patches.size(0), D = c_.embed_dim;
    const Tensor& pos0 = **pos_;
    Tensor x = ops::cat({(**cls_).expand({B, -1, -1}), x_patches}, 1);
    const int64_t N = pos0.size(1) - 1, npatch = gh * gw;
    Tensor pos = pos0;
    if (npatch != N || gh != gw) {
      const int64_t M = c_.grid();  // int(sqrt(N)); param_specs makes the pos-embed grid square
      Tensor patch_pos = pos0.slice(1, 1, pos0.size(1)).reshape({1, M, M, D}).permute({0, 3, 1, 2});
      InterpolateOptions io;
      io.mode = InterpMode::bicubic;
      io.antialias = c_.interpolate_antialias;
      if (c_.interpolate_offset != 0.0) {
        // The hub's "historical kludge": a scale factor (g + offset) / M, so floor(M * s) == g.
        const double m = static_cast<double>(M);
        io.scale_factor = std::array<double, 2>{(static_cast<double>(gh) + c_.interpolate_offset) / m,
                                                (static_cast<double>(gw) + c_.interpolate_offset) / m};
      } else {
        io.size = std::array<int64_t, 2>{gh, gw};
      }
      Tensor r = ops::interpolate(patch_pos, io);
      if (r.size(2) != gh || r.size(3) != gw)
        throw std::runtime_error("arch '" + arch().name + "': pos-embed interpolation gave " + shape_str(r.shape()) +
                                 " for a " + std::to_string(gh) + "x" + std::to_string(gw) + " patch grid");
      r = r.permute({0, 2, 3, 1}).reshape({1, npatch, D});
      pos = ops::cat({pos0.slice(1, 0, 1), r}, 1);
    }
    x = ops::add(x, pos);
    if (reg_) x = ops::cat({x.slice(1, 0, 1), (**reg_).expand({B, -1, -1}), x.slice(1, 1, x.size(1))}, 1);
    return x;
  }

  // AttentionPoolLatent.forward (latent_len 1, pool_type 'token', no pos_embed, q_norm/k_norm Identity).
  // x: the patch tokens [B, P, D]. Returns [B, D].
  Tensor attention_pool(const Tensor& x, TapSet& taps) const {
    const AttnPoolP& a = attn_pool_;
    const int64_t B = x.size(0), P = x.size(1), D = c_.embed_dim, H = c_.num_heads, hd = D / H;
    // q = self.q(latent.expand(B, -1, -1)).reshape(B, 1, H, hd).transpose(1, 2)
    Tensor q = TP(taps, "attn_pool.q", (*a.q)((**a.latent).expand({B, -1, -1}))).reshape({B, 1, H, hd}).transpose(1, 2);
    // kv = self.kv(x).reshape(B, P, 2, H, hd).permute(2, 0, 3, 1, 4)
    Tensor kv = TP(taps, "attn_pool.kv", (*a.kv)(x)).reshape({B, P, 2, H, hd}).permute({2, 0, 3, 1, 4});
    Tensor k = kv.select(0, 0), v = kv.select(0, 1);
    q = TP(taps, "attn_pool.q_norm", q);
    k = TP(taps, "attn_pool.k_norm", k);
    const Tensor o = attention_with_maps(q, k, v, taps.wants("attn_pool.softmax"),
                                         [&](const Tensor& maps) { return TP(taps, "attn_pool.softmax", maps); });
    Tensor y = o.transpose(1, 2).reshape({B, 1, D});
    y = TP(taps, "attn_pool.proj", (*a.proj)(y));
    y = TP(taps, "attn_pool.proj_drop", y);
    // x = x + self.mlp(self.norm(x)); timm Mlp: fc1 -> act -> drop1 -> norm -> fc2 -> drop2
    Tensor m = TP(taps, "attn_pool.norm", (*a.norm)(y));
    m = act_(TP(taps, "attn_pool.mlp.fc1", (*a.fc1)(m)));
    m = TP(taps, "attn_pool.mlp.act", m);
    m = TP(taps, "attn_pool.mlp.drop1", m);
    m = TP(taps, "attn_pool.mlp.norm", m);
    m = TP(taps, "attn_pool.mlp.fc2", (*a.fc2)(m));
    m = TP(taps, "attn_pool.mlp.drop2", m);
    m = TP(taps, "attn_pool.mlp", m);
    y = ops::add(y, m);
    return TP(taps, "attn_pool", y.select(1, 0).contiguous());  // pool_type 'token': x[:, 0]
  }

  // A tap inside the attention pool: its tensors hold no prefix tokens.
  Tensor TP(TapSet& taps, const std::string& name, Tensor x) const { return T(taps, name, std::move(x), kPatches); }

  ViTConfig c_;
  bool hub_;
  MlpActivation act_;  // AttentionPoolLatent's MLP (the blocks keep their own)
  Conv2d* patch_ = nullptr;
  Parameter *cls_ = nullptr, *reg_ = nullptr, *pos_ = nullptr, *mask_token_ = nullptr;
  LayerNorm *norm_pre_ = nullptr, *norm_ = nullptr, *fc_norm_ = nullptr;
  std::vector<ViTBlock> blocks_;
  AttnPoolP attn_pool_;
  Linear* head_ = nullptr;
};

}  // namespace

std::unique_ptr<Model> ViTConfig::construct(const ArchConfig& arch) const { return std::make_unique<ViT>(arch); }

}  // namespace tabula
