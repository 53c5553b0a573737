#include "models/ca_vit.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "engine/init.h"
#include "engine/ops.h"
#include "engine/pos_encoding.h"
#include "models/layers.h"
#include "models/model.h"

namespace tabula {

// ---- config ------------------------------------------------------------------------------------------------

void CaViTConfig::apply_keys(const KeyValues& kv) {
  auto fail = [](const std::string& why) { throw KeyValueError(why); };
  for (const auto& [k, v] : kv) {
    if (k == "dim" || k == "embed_dim") embed_dim = parse_int_value(k, v, 4);
    else if (k == "depth") depth = parse_int_value(k, v, 0, 1024);
    else if (k == "heads" || k == "num_heads") num_heads = parse_int_value(k, v, 1);
    else if (k == "patch" || k == "patch_size") patch_size = parse_int_value(k, v, 1);
    else if (k == "img" || k == "img_size") img_size = parse_int_value(k, v, 1);
    else if (k == "mlp_ratio") mlp_ratio = parse_number_value(k, v);
    else if (k == "max_chans" || k == "max_in_chans") max_in_chans = parse_int_value(k, v, 1, 1024);
    else if (k == "chans" || k == "in_chans") backbone_in_chans = parse_int_value(k, v, 1, 1024);
    else if (k == "init_values") init_values = parse_number_value(k, v);
    else if (k == "qkv_bias") qkv_bias = parse_bool_value(k, v);
    else if (k == "qk_norm") qk_norm = parse_bool_value(k, v);
    else if (k == "norm_eps") norm_eps = parse_number_value(k, v);
    else if (k == "global_pool") {
      if (v != "avg" && v != "token") fail("key 'global_pool' is avg or token, got '" + v + "'");
      global_pool = v;
    } else {
      fail("unknown key '" + k + "' (ca_vit keys: dim, depth, heads, patch, img, mlp_ratio, max_chans, chans, "
           "init_values, qkv_bias, qk_norm, norm_eps, global_pool)");
    }
  }
  if (embed_dim % num_heads != 0)
    fail("dim " + std::to_string(embed_dim) + " is not divisible by heads " + std::to_string(num_heads));
  if (embed_dim % 4 != 0) fail("dim " + std::to_string(embed_dim) + " must be a multiple of 4 (sin-cos table)");
  if (img_size % patch_size != 0)
    fail("img " + std::to_string(img_size) + " is not a multiple of patch " + std::to_string(patch_size));
  const double tokens = 1.0 + static_cast<double>(max_in_chans) * grid() * grid();
  if (tokens > kMaxSize) fail(std::to_string(static_cast<int64_t>(tokens)) + " position rows is too many");
  if (!(mlp_ratio > 0) || embed_dim * mlp_ratio > kMaxSize) fail("int(dim * mlp_ratio) out of range");
  if (!(norm_eps > 0)) fail("key 'norm_eps' needs a positive number");
}

// timm VisionTransformer.init_weights('') (timm 1.0.31), then what vit.py does to the built backbone:
//   trunc_normal_(pos_embed, .02) over timm's own [1, 1 + g^2, D] table (drawn, then replaced), normal_(cls_token,
//   1e-6), named_apply(init_weights_vit_timm): every Linear trunc_normal_(.02) with a zero bias, children first;
//   channel_agnostic_vit: ChannelAgnosticPatchEmbed's PatchEmbed.__init__ builds a Conv2d(1, D, P) (drawn, then
//   replaced by) its own Conv2d(1, D, P); pos_embed = the 2D sin-cos table for max_in_chans channels.
void CaViTConfig::init_weights(const ModuleTree& tree, InitState& s) const {
  const int64_t D = embed_dim, P = patch_size;
  std::vector<float> timm_pos(static_cast<size_t>((1 + grid() * grid()) * D));
  timm_trunc_normal_(timm_pos.data(), timm_pos.size(), s.gen(), 0.0, 0.02);
  normal_(s.f32("cls_token"), s.numel("cls_token"), 0.0, 1e-6, s.gen());
  for (const Module* m : tree.modules_post_order()) {
    if (m->type != "Linear") continue;
    const std::string w = m->name() + ".weight", b = m->name() + ".bias";
    timm_trunc_normal_(s.f32(w), s.numel(w), s.gen(), 0.0, 0.02);
    if (s.has(b)) s.fill(b, 0.0f);
  }
  const Shape proj{D, 1, P, P};
  s.gen().discard(default_reset_draws(proj, true));
  default_reset_parameters(s.f32("patch_embed.proj.weight"), proj, s.f32("patch_embed.proj.bias"), s.gen());
  const Tensor pos = sincos_2d_pos_embed(D, grid(), 10000.0, true, max_in_chans);
  std::copy(pos.data<float>(), pos.data<float>() + pos.numel(), s.f32("pos_embed"));
}

WeightMap CaViTConfig::from_canonical(const WeightMap& w) const {
  static const std::string kEncoder = "encoder.vit_backbone.";
  if (!w.count(kEncoder + "cls_token")) return w;
  WeightMap out;
  for (const auto& [k, t] : w)  // the decoder, its projections and the loss modules are for training only
    if (k.compare(0, kEncoder.size(), kEncoder) == 0) out[k.substr(kEncoder.size())] = t;
  return out;
}

// ---- the module ----------------------------------------------------------------------------------------------

namespace {

// timm ParallelScalingBlock: in_norm -> in_proj = [mlp hidden | q | k | v] in one Linear; attention (qk_norm)
// and GELU(x_mlp + mlp_bias) in parallel; y = attn_out_proj(x_attn) + mlp_out_proj(x_mlp); x + ls(y).
struct ParallelBlockP {
  std::string name;
  LayerNorm* in_norm = nullptr;
  Linear* in_proj = nullptr;
  Parameter* mlp_bias = nullptr;  // when qkv_bias=False (else folded into in_proj.bias)
  LayerNorm* q_norm = nullptr;
  LayerNorm* k_norm = nullptr;
  Linear* attn_out_proj = nullptr;
  Linear* mlp_out_proj = nullptr;
  Parameter* ls = nullptr;
};

class CaViT final : public Model {
 public:
  // ChannelAgnosticViT built as vit.py builds it (VisionTransformer.__init__, then channel_agnostic_vit).
  explicit CaViT(const ArchConfig& arch) : Model(arch), c_(*arch.as<CaViTConfig>()) {
    ModuleTree& t = module_tree();
    Module& root = t.root();
    const int64_t D = c_.embed_dim, P = c_.patch_size;
    // timm's PatchEmbed(in_chans=6).proj: constructed first (its reset_parameters draws), then replaced.
    t.reset_weight_bias(t.make_replaced("Conv2d"), {D, c_.backbone_in_chans, P, P}, true);
    // The replacement's Conv2d(1, D, P) draws after init_weights (CaViTConfig::init_weights writes it). Its
    // output, C x g^2 patch tokens [B, C * g^2, D], each a dot product of P * P pixels.
    Module& pe = t.tap(t.child(root, "patch_embed", "ChannelAgnosticPatchEmbed"), [this](const Shape& in) {
      return Shape{in[0], num_tokens(in) - 1, c_.embed_dim};
    });
    pe.macs = [P](const Shape& out) { return static_cast<double>(shape_numel(out)) * static_cast<double>(P * P); };
    Module& proj = t.child(pe, "proj", "Conv2d");
    proj_w_ = &t.layer<Parameter>(proj, "weight", Shape{D, 1, P, P});
    proj_b_ = &t.layer<Parameter>(proj, "bias", Shape{D});
    cls_ = &t.layer<Parameter>(root, "cls_token", Shape{1, 1, D});
    pos_ = &t.layer<Parameter>(root, "pos_embed", Shape{1, 1 + c_.max_in_chans * c_.grid() * c_.grid(), D});
    const ShapeRule tok = tokens(D), pooled = [D](const Shape& in) { return Shape{in[0], D}; };
    t.tap(root, "pos_drop", "Dropout", tok);
    t.tap(root, "patch_drop", "Identity", tok);
    t.tap(root, "norm_pre", "Identity", tok);
    Module& blocks = t.tap(t.child(root, "blocks", "Sequential"), tok);
    for (int i = 0; i < c_.depth; ++i) blocks_.push_back(make_block(t, blocks, i));
    // global_pool 'avg': norm is an Identity and fc_norm a LayerNorm; 'token': the other way round
    if (c_.global_pool == "avg") {
      t.tap(root, "norm", "Identity", tok);
      fc_norm_ = &t.tap(t.layer<LayerNorm>(root, "fc_norm", D, c_.norm_eps), pooled);
    } else {
      norm_ = &t.tap(t.layer<LayerNorm>(root, "norm", D, c_.norm_eps), tok);
      t.tap(root, "fc_norm", "Identity", pooled);
    }
    t.tap(root, "head_drop", "Dropout", pooled);
    t.tap(root, "head", "Identity", pooled);
  }

  Shape default_input_shape(int64_t batch) const override { return {batch, 6, c_.img_size, c_.img_size}; }

  void check_input(const Shape& s) const override {
    const std::string what = "arch '" + arch().name + "': ";
    if (s.size() != 4 || s[0] < 1 || s[1] < 1 || s[1] > c_.max_in_chans)
      throw std::invalid_argument(what + "input must be [B, C, H, W] with 1 to " + std::to_string(c_.max_in_chans) +
                                  " channels (the sin-cos table's rows), got " + shape_str(s));
    // pos_embed[:, :N] assigns the rows of a g x g grid in order: other sizes would silently misplace them
    if (s[2] != c_.img_size || s[3] != c_.img_size)
      throw std::invalid_argument(what + "input must be " + std::to_string(c_.img_size) + "x" +
                                  std::to_string(c_.img_size) + " (the position table's grid), got " + shape_str(s));
  }

  Tensor forward(const Tensor& x_in, TapSet& taps) override {
    check_weights();
    check_input(x_in.shape());
    taps.bind(tap_order(x_in.shape()));
    const int64_t B = x_in.size(0), C = x_in.size(1), D = c_.embed_dim, g2 = c_.grid() * c_.grid();
    // ChannelAgnosticPatchEmbed: stack([proj(x[:, i:i+1]) for i in range(C)], dim=2).flatten(2).transpose(1, 2),
    // i.e. one conv over the B*C single-channel images, tokens ordered channel by channel.
    Conv2dOptions po;
    po.stride = {c_.patch_size, c_.patch_size};
    const Tensor xa = x_in.to(act_dtype()).contiguous();
    Tensor per = ops::conv2d(xa.reshape({B * C, 1, c_.img_size, c_.img_size}), **proj_w_, **proj_b_, po);
    Tensor x = per.reshape({B, C, D, g2}).permute({0, 1, 3, 2}).reshape({B, C * g2, D});
    x = T(taps, "patch_embed", x, 0);
    if (taps.done()) return x;
    // ChannelAgnosticViT._pos_embed: cat(cls, x) then + pos_embed[:, :N] for the actual N.
    x = ops::cat({(**cls_).expand({B, -1, -1}), x}, 1);
    x = ops::add(x, (**pos_).slice(1, 0, x.size(1)));
    x = T(taps, "pos_drop", x);
    x = T(taps, "patch_drop", x);
    x = T(taps, "norm_pre", x);
    if (taps.done()) return x;
    for (const ParallelBlockP& b : blocks_) {
      x = T(taps, b.name, block_forward(b, x, taps));
      if (taps.done()) return x;
    }
    x = T(taps, "blocks", x);
    x = T(taps, "norm", apply(norm_, x));
    if (taps.done()) return x;
    // forward_head: pool (avg of the patch tokens / the class token) -> fc_norm -> head_drop -> head (Identity)
    Tensor pooled = ops::pool(x, fc_norm_ ? Pool::avg : Pool::cls, 1);
    pooled = T(taps, "fc_norm", apply(fc_norm_, pooled));
    pooled = T(taps, "head_drop", pooled);
    return T(taps, "head", pooled);
  }

  // MAEModel.predict's input: the last block's tokens (`norm` is an Identity), pooled over the patch tokens.
  std::vector<std::string> default_taps() const override { return {"norm"}; }

 private:
  ParallelBlockP make_block(ModuleTree& t, Module& blocks, int i) {
    const int64_t D = c_.embed_dim, Hm = c_.mlp_hidden(), hd = D / c_.num_heads;
    const ShapeRule tok = tokens(D);
    ParallelBlockP b;
    Module& m = t.tap(t.child(blocks, std::to_string(i), "ParallelScalingBlock"), tok);
    b.name = m.name();
    b.in_norm = &t.tap(t.layer<LayerNorm>(m, "in_norm", D, c_.norm_eps), tok);
    b.in_proj = &t.tap(t.layer<Linear>(m, "in_proj", D, Hm + 3 * D, c_.qkv_bias), tokens(Hm + 3 * D));
    if (!c_.qkv_bias) b.mlp_bias = &t.layer<Parameter>(m, "mlp_bias", Shape{Hm});
    // per head, before the transpose: [B, N, H, hd]; nn.Identity without qk_norm
    const ShapeRule heads = [this](const Shape& in) {
      return Shape{in[0], num_tokens(in), c_.num_heads, c_.embed_dim / c_.num_heads};
    };
    if (c_.qk_norm) {
      b.q_norm = &t.tap(t.layer<LayerNorm>(m, "q_norm", hd, c_.norm_eps), heads);
      b.k_norm = &t.tap(t.layer<LayerNorm>(m, "k_norm", hd, c_.norm_eps), heads);
    } else {
      t.tap(m, "q_norm", "Identity", heads);
      t.tap(m, "k_norm", "Identity", heads);
    }
    // tabula's attention maps [B, H, N, N] (the block has no attn module): q k^T and probs v, 2 * hd MACs each
    const double hdd = static_cast<double>(hd);
    const ShapeRule maps = [this](const Shape& in) {
      return Shape{in[0], c_.num_heads, num_tokens(in), num_tokens(in)};
    };
    const MacRule maps_macs = [hdd](const Shape& o) { return 2.0 * hdd * static_cast<double>(shape_numel(o)); };
    t.tap(m, "attn.softmax", "Softmax", maps, maps_macs);
    t.tap(m, "mlp_act", "GELU", tokens(Hm));
    b.attn_out_proj = &t.tap(t.layer<Linear>(m, "attn_out_proj", D, D), tok);
    b.mlp_out_proj = &t.tap(t.layer<Linear>(m, "mlp_out_proj", Hm, D), tok);
    b.ls = &t.layer<Parameter>(t.tap(t.child(m, "ls", "LayerScale"), tok), "gamma", Shape{D},
                               CtorInit{CtorInit::constant, c_.init_values});
    return b;
  }

  // The taps' output shapes for an input [B, C, H, W]: N = 1 + C * g^2 tokens (class token first).
  int64_t num_tokens(const Shape& in) const { return 1 + in[1] * c_.grid() * c_.grid(); }
  ShapeRule tokens(int64_t width) const {
    return [this, width](const Shape& in) { return Shape{in[0], num_tokens(in), width}; };
  }

  Tensor T(TapSet& taps, const std::string& name, Tensor x, int64_t prefix = 1) const {
    TapContext ctx;
    ctx.num_prefix_tokens = prefix;
    ctx.num_heads = c_.num_heads;
    taps.tap(name, x, ctx);
    return x;
  }

  Tensor block_forward(const ParallelBlockP& b, const Tensor& x, TapSet& taps) const {
    const std::string& n = b.name;
    const int64_t B = x.size(0), N = x.size(1), D = c_.embed_dim, H = c_.num_heads, hd = D / H;
    const int64_t Hm = c_.mlp_hidden();
    Tensor y = T(taps, n + ".in_proj", (*b.in_proj)(T(taps, n + ".in_norm", (*b.in_norm)(x))));
    // torch.split(y, [Hm, D, D, D], dim=-1): strided views
    Tensor x_mlp = y.slice(2, 0, Hm);
    Tensor q = y.slice(2, Hm, Hm + D).reshape({B, N, H, hd});
    Tensor k = y.slice(2, Hm + D, Hm + 2 * D).reshape({B, N, H, hd});
    Tensor v = y.slice(2, Hm + 2 * D, Hm + 3 * D).reshape({B, N, H, hd}).transpose(1, 2);
    if (b.mlp_bias) x_mlp = ops::add(x_mlp, **b.mlp_bias);
    q = T(taps, n + ".q_norm", apply(b.q_norm, q)).transpose(1, 2);
    k = T(taps, n + ".k_norm", apply(b.k_norm, k)).transpose(1, 2);
    Tensor o;
    if (taps.wants(n + ".attn.softmax")) {
      Tensor probs;
      o = ops::scaled_dot_product_attention(q, k, v, std::nullopt, &probs);
      Tensor p2 = T(taps, n + ".attn.softmax", probs);
      if (!p2.shares_storage_with(probs)) o = ops::matmul(p2, v);
    } else {
      o = ops::scaled_dot_product_attention(q, k, v);
    }
    o = o.transpose(1, 2).reshape({B, N, D});
    x_mlp = T(taps, n + ".mlp_act", ops::gelu(x_mlp));
    Tensor out;
    if (taps.wants(n + ".attn_out_proj") || taps.wants(n + ".mlp_out_proj")) {
      Tensor a = T(taps, n + ".attn_out_proj", (*b.attn_out_proj)(o));
      Tensor m = T(taps, n + ".mlp_out_proj", (*b.mlp_out_proj)(x_mlp));
      out = ops::add(a, m);
    } else {  // attn_out_proj(x_attn) + mlp_out_proj(x_mlp): the sum in the second projection's epilogue
      out = (*b.attn_out_proj)(o, (*b.mlp_out_proj)(x_mlp));
    }
    out = T(taps, n + ".ls", ops::layer_scale(out, **b.ls));
    return ops::add(x, out);
  }

  CaViTConfig c_;
  Parameter *proj_w_ = nullptr, *proj_b_ = nullptr, *cls_ = nullptr, *pos_ = nullptr;
  std::vector<ParallelBlockP> blocks_;
  LayerNorm *norm_ = nullptr, *fc_norm_ = nullptr;
};

CaViTConfig ca_vit(int dim, int depth, int heads) {
  CaViTConfig c;
  c.embed_dim = dim;
  c.depth = depth;
  c.num_heads = heads;
  return c;
}

}  // namespace

std::unique_ptr<Model> CaViTConfig::construct(const ArchConfig& arch) const { return std::make_unique<CaViT>(arch); }

// vit.py's vit_{small,base,large}_patch16_256 as MAEModel builds them (global_pool='avg', max_in_chans 11).
const Family& ca_vit_family() {
  static const Family f{
      "ca_vit",
      std::make_shared<CaViTConfig>(),
      {
          {"ca_vit_small_patch16_256", std::make_shared<CaViTConfig>(ca_vit(384, 12, 6))},
          {"ca_vit_base_patch16_256", std::make_shared<CaViTConfig>(ca_vit(768, 12, 12))},
          {"ca_vit_large_patch16_256", std::make_shared<CaViTConfig>(ca_vit(1024, 24, 16))},
      },
      {},
  };
  return f;
}

}  // namespace tabula
