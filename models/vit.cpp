#include "models/vit.h"

#include <algorithm>
#include <stdexcept>

#include "engine/backend.h"
#include "engine/ops.h"
#include "engine/cpu/packed.h"
#include "models/device.h"

namespace tabula {
namespace {

struct LayerNormP {
  Tensor w, b;
  bool on = false;
  void load(const ParamStore& p, const std::string& n) {
    on = true;
    w = p[n + ".weight"];
    b = p[n + ".bias"];
  }
  double eps = 1e-6;  // timm's LayerNorm and DINOv2's: 1e-6; CLIP towers 1e-5 (ViTConfig::norm_eps)
  Tensor operator()(const Tensor& x) const { return on ? ops::layer_norm(x, w, b, eps) : x; }
  void to_device(int dev) {
    w = upload(w, dev);
    b = upload(b, dev);
  }
};

struct LinearP {
  PackedLinear w;  // packed once at load for the fast CPU path; the only copy of the weight kept
  Tensor b;
  Tensor dw;  // after to_device: the torch-layout weight on the GPU (converted for the precision), w released
  void load(const ParamStore& p, const std::string& n) {
    if (!p.is_skeleton()) w = PackedLinear(p[n + ".weight"]);
    if (p.has(n + ".bias")) b = p[n + ".bias"];
  }
  bool defined() const { return w.defined() || dw.defined(); }
  Tensor operator()(const Tensor& x, Activation act = Activation::none) const {
    return dw.defined() ? ops::linear(x, dw, b, act) : ops::linear(x, w, b, act);
  }
  // x W^T + b + residual with the add in the GEMM's epilogue (see ViT::block_forward).
  Tensor operator()(const Tensor& x, const Tensor& residual) const {
    return dw.defined() ? ops::linear(x, dw, b, Activation::none, residual)
                        : ops::linear(x, w, b, Activation::none, residual);
  }
  void to_device(int dev) {
    if (w.defined()) dw = upload_linear_weight(w.weight(), dev);
    w = PackedLinear();
    b = upload_activation_param(b, dev);
  }
};

struct BlockP {
  std::string name;
  LayerNormP norm1, norm2;
  LinearP qkv, proj, fc1, fc2;
  Tensor ls1, ls2;  // LayerScale gamma, undefined when init_values is None (nn.Identity)
  LayerNormP q_norm, k_norm;  // qk_norm (off: nn.Identity)
  LinearP fc1_x;              // timm SwiGLU's value branch (fc1 holds its gate, fc1_g); DINOv2: fc1 = w12, fc2 = w3
};

// timm AttentionPoolLatent (global_pool='map'): one latent query attends over the patch tokens, then
// x + mlp(norm(x)), pooled as the latent token.
struct AttnPoolP {
  Tensor latent;
  LinearP q, kv, proj, fc1, fc2;
  LayerNormP norm;
};

Activation activation_of(const std::string& act) {
  if (act == "silu") return Activation::silu;
  if (act == "gelu_tanh") return Activation::gelu_tanh;
  return Activation::gelu;
}

class ViT final : public Model {
 public:
  ViT(const ArchConfig& arch, const ParamStore& p, const ViTOptions& opt)
      : arch_(arch), c_(arch.vit()), opt_(opt), hub_(c_.flavor == ViTConfig::Flavor::dinov2),
        skeleton_(p.is_skeleton()), act_(activation_of(c_.act)), quick_gelu_(c_.act == "quick_gelu") {
    opt_.dynamic_img_size = opt_.dynamic_img_size || c_.dynamic_img_size;  // the ViTConfig key or the option
    if (hub_ && opt_.dynamic_img_size)
      throw std::invalid_argument("arch '" + arch.name + "': dynamic_img_size is a timm option; the DINOv2 hub "
                                  "model always interpolates its pos-embed");
    if (p.has("cls_token")) cls_ = p["cls_token"];
    if (p.has("reg_token")) reg_ = p["reg_token"];
    if (p.has("register_tokens")) reg_ = p["register_tokens"];
    pos_ = p["pos_embed"];
    patch_w_ = p["patch_embed.proj.weight"];
    if (p.has("patch_embed.proj.bias")) patch_b_ = p["patch_embed.proj.bias"];
    if (!hub_ && c_.pre_norm) norm_pre_.load(p, "norm_pre");
    for (int i = 0; i < c_.depth; ++i) {
      BlockP b;
      b.name = "blocks." + std::to_string(i);
      b.norm1.load(p, b.name + ".norm1");
      b.norm2.load(p, b.name + ".norm2");
      b.qkv.load(p, b.name + ".attn.qkv");
      b.proj.load(p, b.name + ".attn.proj");
      if (c_.mlp == ViTConfig::Mlp::swiglu) {
        b.fc1.load(p, b.name + ".mlp.fc1_g");
        b.fc1_x.load(p, b.name + ".mlp.fc1_x");
        b.fc2.load(p, b.name + ".mlp.fc2");
      } else if (c_.mlp == ViTConfig::Mlp::swiglufused) {
        b.fc1.load(p, b.name + ".mlp.w12");
        b.fc2.load(p, b.name + ".mlp.w3");
      } else {
        b.fc1.load(p, b.name + ".mlp.fc1");
        b.fc2.load(p, b.name + ".mlp.fc2");
      }
      if (c_.qk_norm) {
        b.q_norm.load(p, b.name + ".attn.q_norm");
        b.k_norm.load(p, b.name + ".attn.k_norm");
      }
      if (p.has(b.name + ".ls1.gamma")) b.ls1 = p[b.name + ".ls1.gamma"];
      if (p.has(b.name + ".ls2.gamma")) b.ls2 = p[b.name + ".ls2.gamma"];
      blocks_.push_back(std::move(b));
    }
    if (p.has("norm.weight")) norm_.load(p, "norm");
    if (p.has("fc_norm.weight")) fc_norm_.load(p, "fc_norm");
    if (p.has("attn_pool.latent")) {
      attn_pool_.latent = p["attn_pool.latent"];
      attn_pool_.q.load(p, "attn_pool.q");
      attn_pool_.kv.load(p, "attn_pool.kv");
      attn_pool_.proj.load(p, "attn_pool.proj");
      attn_pool_.norm.load(p, "attn_pool.norm");
      attn_pool_.fc1.load(p, "attn_pool.mlp.fc1");
      attn_pool_.fc2.load(p, "attn_pool.mlp.fc2");
    }
    // timm builds every norm with the one norm_layer (partial(LayerNorm, eps=...)).
    for (LayerNormP* ln : {&norm_pre_, &norm_, &fc_norm_, &attn_pool_.norm}) ln->eps = c_.norm_eps;
    for (BlockP& b : blocks_)
      for (LayerNormP* ln : {&b.norm1, &b.norm2, &b.q_norm, &b.k_norm}) ln->eps = c_.norm_eps;
    if (p.has("head.weight")) head_.load(p, "head");
  }

  const ArchConfig& arch() const override { return arch_; }
  Shape default_input_shape(int64_t batch) const override { return {batch, c_.in_chans, c_.img_size, c_.img_size}; }

  void to_device(int dev) override {
    if (skeleton_) throw std::logic_error("arch '" + arch_.name + "': model built without weights (structure only)");
    act_dtype_ = activation_dtype(dev);
    for (Tensor* t : {&cls_, &reg_, &pos_, &patch_b_}) *t = upload(*t, dev);
    patch_w_ = upload_conv_weight(patch_w_, dev);
    for (LayerNormP* n : {&norm_pre_, &norm_, &fc_norm_, &attn_pool_.norm}) n->to_device(dev);
    for (BlockP& b : blocks_) {
      for (LayerNormP* n : {&b.norm1, &b.norm2, &b.q_norm, &b.k_norm}) n->to_device(dev);
      for (LinearP* l : {&b.qkv, &b.proj, &b.fc1, &b.fc2, &b.fc1_x}) l->to_device(dev);
      b.ls1 = upload(b.ls1, dev);
      b.ls2 = upload(b.ls2, dev);
    }
    attn_pool_.latent = upload(attn_pool_.latent, dev);
    for (LinearP* l : {&attn_pool_.q, &attn_pool_.kv, &attn_pool_.proj, &attn_pool_.fc1, &attn_pool_.fc2}) l->to_device(dev);
    head_.to_device(dev);
  }

  void check_input(const Shape& s) const override {
    const std::string what = "arch '" + arch_.name + "': ";
    if (s.size() != 4 || s[1] != c_.in_chans || s[0] < 1)
      throw std::invalid_argument(what + "input must be [B, " + std::to_string(c_.in_chans) + ", H, W], got " +
                                  shape_str(s));
    const bool any_size = hub_ || opt_.dynamic_img_size;
    if (!any_size && (s[2] != c_.img_size || s[3] != c_.img_size))
      throw std::invalid_argument(what + "input must be " + std::to_string(c_.img_size) + "x" +
                                  std::to_string(c_.img_size) + " (timm strict_img_size; add dynamic_img_size=1 "
                                  "for other sizes), got " + shape_str(s));
    if (s[2] % c_.patch_size != 0 || s[3] % c_.patch_size != 0 || s[2] < c_.patch_size || s[3] < c_.patch_size)
      throw std::invalid_argument(what + "input height and width must be multiples of the patch size " +
                                  std::to_string(c_.patch_size) + ", got " + shape_str(s));
  }

  Tensor forward(const Tensor& x_in, TapSet& taps) override {
    if (skeleton_) throw std::logic_error("arch '" + arch_.name + "': model built without weights (structure only)");
    check_input(x_in.shape());
    taps.bind(tap_order(x_in.shape()));
    const int64_t B = x_in.size(0), D = c_.embed_dim;
    const int64_t gh = x_in.size(2) / c_.patch_size, gw = x_in.size(3) / c_.patch_size;
    // PatchEmbed: proj (conv k=s=patch), flatten(2).transpose(1, 2) (NHWC for dynamic_img_size), norm (Identity).
    Conv2dOptions po;
    po.stride = {c_.patch_size, c_.patch_size};
    // The input in the activations' storage type (f32 on the CPU; bf16/fp16 on a GPU in those precisions).
    Tensor x = T(taps, "patch_embed.proj", ops::conv2d(x_in.to(act_dtype_), patch_w_, patch_b_, po));
    // flatten(2).transpose(1, 2) as the [B, gh, gw, D] permute reshaped: no copy when the conv returned
    // channels-last (the CPU fast path and 16-bit GPU convs do), one copy otherwise.
    x = opt_.dynamic_img_size ? x.permute({0, 2, 3, 1}).contiguous() : x.permute({0, 2, 3, 1}).reshape({B, gh * gw, D});
    x = T(taps, "patch_embed.norm", x, kPatches);
    x = T(taps, "patch_embed", x, kPatches);
    if (taps.done()) return x;
    x = hub_ ? hub_prepare_tokens(x, gh, gw) : timm_pos_embed(x.reshape({B, gh * gw, D}), gh, gw, taps);
    if (taps.done()) return x;
    for (const BlockP& b : blocks_) {
      x = T(taps, b.name, block_forward(b, x, taps));
      if (taps.done()) return x;
    }
    x = T(taps, "blocks", x);
    x = T(taps, "norm", norm_(x));
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
    x = T(taps, "fc_norm", fc_norm_(pooled));
    x = T(taps, "head_drop", x);
    if (head_.defined()) x = head_(x);
    return T(taps, "head", x);
  }

  std::vector<TapInfo> list_taps(const Shape& input) const override {
    check_input(input);
    const int64_t B = input[0], D = c_.embed_dim;
    const int64_t gh = input[2] / c_.patch_size, gw = input[3] / c_.patch_size;
    const int64_t N = gh * gw + c_.num_prefix_tokens(), H = c_.num_heads, hd = D / H, Hm = c_.mlp_hidden();
    const Shape tok{B, N, D};
    const Shape pe = opt_.dynamic_img_size ? Shape{B, gh, gw, D} : Shape{B, gh * gw, D};
    std::vector<TapInfo> t;
    t.push_back({"patch_embed", pe});
    t.push_back({"patch_embed.proj", {B, D, gh, gw}});
    t.push_back({"patch_embed.norm", pe});
    if (!hub_) {
      t.push_back({"pos_drop", tok});
      t.push_back({"patch_drop", tok});
      t.push_back({"norm_pre", tok});
    }
    t.push_back({"blocks", tok});
    for (const BlockP& b : blocks_) {
      const std::string& n = b.name;
      t.push_back({n, tok});
      t.push_back({n + ".norm1", tok});
      t.push_back({n + ".attn", tok});
      t.push_back({n + ".attn.qkv", {B, N, 3 * D}});
      if (!hub_) {
        t.push_back({n + ".attn.q_norm", {B, H, N, hd}});
        t.push_back({n + ".attn.k_norm", {B, H, N, hd}});
      }
      t.push_back({n + ".attn.softmax", {B, H, N, N}});
      if (!hub_) {
        t.push_back({n + ".attn.attn_drop", {B, H, N, N}});
        t.push_back({n + ".attn.norm", tok});
      }
      t.push_back({n + ".attn.proj", tok});
      t.push_back({n + ".attn.proj_drop", tok});
      t.push_back({n + ".ls1", tok});
      t.push_back({n + ".drop_path1", tok});
      t.push_back({n + ".norm2", tok});
      t.push_back({n + ".mlp", tok});
      if (c_.mlp != ViTConfig::Mlp::mlp) {
        mlp_glu_taps(t, n + ".mlp", {B, N, D});
      } else {
      t.push_back({n + ".mlp.fc1", {B, N, Hm}});
      t.push_back({n + ".mlp.act", {B, N, Hm}});
      if (hub_) {
        t.push_back({n + ".mlp.fc2", tok});
        t.push_back({n + ".mlp.drop", tok});  // Mlp's one Dropout, called after act and after fc2: the last call
      } else {
        t.push_back({n + ".mlp.drop1", {B, N, Hm}});
        t.push_back({n + ".mlp.norm", {B, N, Hm}});
        t.push_back({n + ".mlp.fc2", tok});
        t.push_back({n + ".mlp.drop2", tok});
      }
      }
      t.push_back({n + ".ls2", tok});
      t.push_back({n + ".drop_path2", tok});
    }
    t.push_back({"norm", tok});
    if (hub_) {
      t.push_back({"x_norm_clstoken", {B, D}});
      t.push_back({"x_norm_patchtokens", {B, gh * gw, D}});
      t.push_back({"head", {B, D}});
      return t;
    }
    const Shape pooled = c_.global_pool.empty() ? tok : Shape{B, D};
    if (attn_pool_.latent.defined()) attn_pool_taps(t, B, gh * gw);
    t.push_back({"fc_norm", pooled});
    t.push_back({"head_drop", pooled});
    Shape head = pooled;
    if (c_.num_classes > 0) head.back() = c_.num_classes;
    t.push_back({"head", head});
    return t;
  }

  std::vector<std::string> default_taps() const override {
    if (hub_) return {"x_norm_clstoken"};
    return {c_.num_classes > 0 ? "head_drop" : "head"};
  }

  double gmacs(const Shape& input) const override {
    check_input(input);
    const double D = c_.embed_dim, Hm = c_.mlp_hidden();
    const double P = static_cast<double>((input[2] / c_.patch_size) * (input[3] / c_.patch_size));
    const double N = P + c_.num_prefix_tokens();
    double macs = P * D * c_.in_chans * c_.patch_size * c_.patch_size;
    if (c_.mlp == ViTConfig::Mlp::mlp) {
      macs += c_.depth * (N * D * 3 * D + 2 * N * N * D + N * D * D + 2 * N * D * Hm);
    } else {  // fc1 (both halves / fc1_g + fc1_x / w12) and fc2 (w3)
      const double h1 = static_cast<double>(c_.mlp_fc1_out()) * (c_.mlp == ViTConfig::Mlp::swiglu ? 2 : 1);
      const double h2 = static_cast<double>(c_.mlp_fc2_in());
      macs += c_.depth * (N * D * 3 * D + 2 * N * N * D + N * D * D + N * D * (h1 + h2));
    }
    if (attn_pool_.latent.defined())  // q (one latent), kv over the patches, attention, proj, mlp
      macs += D * D + P * D * 2 * D + 2 * P * D + D * D + 2 * D * Hm;
    if (!hub_ && c_.num_classes > 0) macs += (c_.global_pool.empty() ? N : 1.0) * D * c_.num_classes;
    return macs / 1e9;
  }

 private:
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
    Tensor pos = pos_;
    const int64_t g = c_.grid();
    if (opt_.dynamic_img_size && (gh != g || gw != g)) {
      // resample_abs_pos_embed(new_size=(gh, gw), old_size=grid, bicubic, antialias=True); prefix kept.
      const int64_t np = c_.no_embed_class ? 0 : c_.num_prefix_tokens();
      Tensor grid = pos_.slice(1, np, pos_.size(1)).reshape({1, g, g, D}).permute({0, 3, 1, 2});
      InterpolateOptions io;
      io.size = std::array<int64_t, 2>{gh, gw};
      io.mode = InterpMode::bicubic;
      io.antialias = true;
      Tensor r = ops::interpolate(grid, io).permute({0, 2, 3, 1}).reshape({1, gh * gw, D});
      pos = np ? ops::cat({pos_.slice(1, 0, np), r}, 1) : r;
    }
    std::vector<Tensor> prefix;
    if (cls_.defined()) prefix.push_back(cls_.expand({B, -1, -1}));
    if (reg_.defined()) prefix.push_back(reg_.expand({B, -1, -1}));
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
    return T(taps, "norm_pre", norm_pre_(x));
  }

  // DinoVisionTransformer.prepare_tokens_with_masks (no masks) with interpolate_pos_encoding. x: [B, gh*gw, D].
  Tensor hub_prepare_tokens(const Tensor& x_patches, int64_t gh, int64_t gw) const {
    const int64_t B = x_patches.size(0), D = c_.embed_dim;
    Tensor x = ops::cat({cls_.expand({B, -1, -1}), x_patches}, 1);
    const int64_t N = pos_.size(1) - 1, npatch = gh * gw;
    Tensor pos = pos_;
    if (npatch != N || gh != gw) {
      const int64_t M = c_.grid();  // int(sqrt(N)); param_specs makes the pos-embed grid square
      Tensor patch_pos = pos_.slice(1, 1, pos_.size(1)).reshape({1, M, M, D}).permute({0, 3, 1, 2});
      InterpolateOptions io;
      io.mode = InterpMode::bicubic;
      io.antialias = c_.interpolate_antialias;
      if (c_.interpolate_offset != 0.0) {
        // The hub's "historical kludge": a scale factor (g + offset) / M, so floor(M * s) == g.
        io.scale_factor = std::array<double, 2>{(static_cast<double>(gh) + c_.interpolate_offset) / static_cast<double>(M),
                                                (static_cast<double>(gw) + c_.interpolate_offset) / static_cast<double>(M)};
      } else {
        io.size = std::array<int64_t, 2>{gh, gw};
      }
      Tensor r = ops::interpolate(patch_pos, io);
      if (r.size(2) != gh || r.size(3) != gw)
        throw std::runtime_error("arch '" + arch_.name + "': pos-embed interpolation gave " + shape_str(r.shape()) +
                                 " for a " + std::to_string(gh) + "x" + std::to_string(gw) + " patch grid");
      r = r.permute({0, 2, 3, 1}).reshape({1, npatch, D});
      pos = ops::cat({pos_.slice(1, 0, 1), r}, 1);
    }
    x = ops::add(x, pos);
    if (reg_.defined())
      x = ops::cat({x.slice(1, 0, 1), reg_.expand({B, -1, -1}), x.slice(1, 1, x.size(1))}, 1);
    return x;
  }

  // timm Block.forward / DINOv2 NestedTensorBlock.forward (eval: drop paths are identities):
  //   x = x + ls1(attn(norm1(x))); x = x + ls2(mlp(norm2(x)))
  //
  // Each residual add runs inside the GEMM that ends its branch (proj, fc2/w3: the GEMM epilogue, cuBLASLt's C
  // operand on a GPU) when nothing observes the branch before the add: no LayerScale and no hook on the modules in
  // between. The hooks that are not asked for pass the value through, so those names then carry x + branch --
  // never seen by anyone. (acc + bias) + x is the bits of x + (acc + bias): the fusion changes no value.
  Tensor block_forward(const BlockP& b, const Tensor& x, TapSet& taps) const {
    const std::string& n = b.name;
    auto unobserved = [&](std::initializer_list<const char*> modules) {
      return std::none_of(modules.begin(), modules.end(), [&](const char* m) { return taps.wants(n + m); });
    };
    const bool fuse1 = !b.ls1.defined() && unobserved({".attn", ".attn.proj", ".attn.proj_drop", ".ls1", ".drop_path1"});
    Tensor a = attention(b, T(taps, n + ".norm1", b.norm1(x)), taps, fuse1 ? x : Tensor());
    a = T(taps, n + ".ls1", b.ls1.defined() ? ops::layer_scale(a, b.ls1) : a);
    a = T(taps, n + ".drop_path1", a);
    Tensor y = fuse1 ? a : ops::add(x, a);
    const bool fuse2 = !b.ls2.defined() &&
                       unobserved({".mlp", ".mlp.fc2", ".mlp.w3", ".mlp.drop", ".mlp.drop2", ".ls2", ".drop_path2"});
    Tensor m = T(taps, n + ".mlp", mlp(b, T(taps, n + ".norm2", b.norm2(y)), taps, fuse2 ? y : Tensor()));
    m = T(taps, n + ".ls2", b.ls2.defined() ? ops::layer_scale(m, b.ls2) : m);
    m = T(taps, n + ".drop_path2", m);
    return fuse2 ? m : ops::add(y, m);
  }

  // residual (see block_forward): added by the proj GEMM.
  Tensor attention(const BlockP& b, const Tensor& x, TapSet& taps, const Tensor& residual = {}) const {
    const std::string n = b.name + ".attn";
    const int64_t B = x.size(0), N = x.size(1), D = c_.embed_dim, H = c_.num_heads, hd = D / H;
    // qkv(x).reshape(B, N, 3, H, hd).permute(2, 0, 3, 1, 4) -> q, k, v: [B, H, N, hd] (strided views)
    Tensor qkv = T(taps, n + ".qkv", b.qkv(x)).reshape({B, N, 3, H, hd}).permute({2, 0, 3, 1, 4});
    Tensor q = qkv.select(0, 0), k = qkv.select(0, 1), v = qkv.select(0, 2);
    if (!hub_) {
      q = T(taps, n + ".q_norm", b.q_norm(q));  // LayerNorm(head_dim) per head when qk_norm, else Identity
      k = T(taps, n + ".k_norm", b.k_norm(k));
    }
    const bool want_probs = taps.wants(n + ".softmax") || taps.wants(n + ".attn_drop");
    Tensor probs;
    Tensor o;
    if (want_probs) {
      // The attention maps are materialised (and may be replaced by an intervention): o = probs @ v.
      o = ops::scaled_dot_product_attention(q, k, v, std::nullopt, &probs);
      Tensor p2 = T(taps, n + ".softmax", probs);
      if (!hub_) p2 = T(taps, n + ".attn_drop", p2);
      if (!p2.shares_storage_with(probs)) o = ops::matmul(p2, v);
    } else {
      o = ops::scaled_dot_product_attention(q, k, v);
    }
    o = o.transpose(1, 2).reshape({B, N, D});
    if (!hub_) o = T(taps, n + ".norm", o);
    o = T(taps, n + ".proj", b.proj(o, residual));
    o = T(taps, n + ".proj_drop", o);
    return T(taps, n, o);
  }

  Tensor mlp(const BlockP& b, const Tensor& x, TapSet& taps, const Tensor& residual = {}) const {
    if (c_.mlp != ViTConfig::Mlp::mlp) return glu_mlp(b, x, taps, residual);
    const std::string n = b.name + ".mlp";
    Tensor h;
    if (taps.wants(n + ".fc1")) {
      h = activation(T(taps, n + ".fc1", b.fc1(x)));
    } else {
      // bias + activation (exact GELU by default) fused into the GEMM epilogue
      h = quick_gelu_ ? activation(b.fc1(x)) : b.fc1(x, act_);
    }
    h = T(taps, n + ".act", h);
    h = T(taps, hub_ ? n + ".drop" : n + ".drop1", h);
    if (!hub_) h = T(taps, n + ".norm", h);
    Tensor y = T(taps, n + ".fc2", b.fc2(h, residual));
    return T(taps, hub_ ? n + ".drop" : n + ".drop2", y);
  }

  // The gated MLPs (ViTConfig::Mlp): timm GluMlp (SwiGLUPacked) and SwiGLU, DINOv2 SwiGLUFFNFused.
  Tensor glu_mlp(const BlockP& b, const Tensor& x, TapSet& taps, const Tensor& residual = {}) const {
    const std::string n = b.name + ".mlp";
    Tensor h;
    if (c_.mlp == ViTConfig::Mlp::swiglu) {
      // x_gate = fc1_g(x); x = fc1_x(x); x = act(x_gate) * x
      Tensor gate = T(taps, n + ".fc1_g", b.fc1(x));
      Tensor val = T(taps, n + ".fc1_x", b.fc1_x(x));
      h = ops::mul(T(taps, n + ".act", activation(gate)), val);
    } else {
      // GluMlp(gate_last=False) / SwiGLUFFN: x1, x2 = fc1(x).chunk(2, dim=-1); act(x1) * x2
      Tensor f = T(taps, n + (hub_ ? ".w12" : ".fc1"), b.fc1(x));
      const int64_t last = f.dim() - 1, half = f.size(last) / 2;
      if (!hub_ && (act_ != Activation::silu || quick_gelu_ || taps.wants(n + ".act"))) {
        Tensor a = T(taps, n + ".act", activation(f.slice(last, 0, half)));
        h = ops::mul(a, f.slice(last, half, 2 * half));
      } else {  // no hook on act: the fused op
        h = ops::swiglu(f);  // silu(x1) * x2
      }
    }
    if (!hub_) {
      h = T(taps, n + ".drop1", h);
      h = T(taps, n + ".norm", h);
    }
    Tensor y = T(taps, n + (hub_ ? ".w3" : ".fc2"), b.fc2(h, residual));
    return hub_ ? y : T(taps, n + ".drop2", y);
  }

  void mlp_glu_taps(std::vector<TapInfo>& t, const std::string& n, const Shape& tok) const {
    const int64_t B = tok[0], N = tok[1];
    const int64_t h1 = c_.mlp_fc1_out(), h2 = c_.mlp_fc2_in();
    if (hub_) {  // SwiGLUFFN: w12, w3 (F.silu is not a module)
      t.push_back({n + ".w12", {B, N, h1}});
      t.push_back({n + ".w3", tok});
      return;
    }
    if (c_.mlp == ViTConfig::Mlp::swiglu) {
      t.push_back({n + ".fc1_g", {B, N, h1}});
      t.push_back({n + ".fc1_x", {B, N, h1}});
    } else {
      t.push_back({n + ".fc1", {B, N, h1}});
    }
    t.push_back({n + ".act", {B, N, h2}});
    t.push_back({n + ".drop1", {B, N, h2}});
    t.push_back({n + ".norm", {B, N, h2}});
    t.push_back({n + ".fc2", tok});
    t.push_back({n + ".drop2", tok});
  }

  // AttentionPoolLatent.forward (latent_len 1, pool_type 'token', no pos_embed, q_norm/k_norm Identity).
  // x: the patch tokens [B, P, D]. Returns [B, D].
  Tensor attention_pool(const Tensor& x, TapSet& taps) const {
    const AttnPoolP& a = attn_pool_;
    const int64_t B = x.size(0), P = x.size(1), D = c_.embed_dim, H = c_.num_heads, hd = D / H;
    // q = self.q(latent.expand(B, -1, -1)).reshape(B, 1, H, hd).transpose(1, 2)
    Tensor q = TP(taps, "attn_pool.q", a.q(a.latent.expand({B, -1, -1}))).reshape({B, 1, H, hd}).transpose(1, 2);
    // kv = self.kv(x).reshape(B, P, 2, H, hd).permute(2, 0, 3, 1, 4)
    Tensor kv = TP(taps, "attn_pool.kv", a.kv(x)).reshape({B, P, 2, H, hd}).permute({2, 0, 3, 1, 4});
    Tensor k = kv.select(0, 0), v = kv.select(0, 1);
    q = TP(taps, "attn_pool.q_norm", q);
    k = TP(taps, "attn_pool.k_norm", k);
    Tensor o;
    if (taps.wants("attn_pool.softmax")) {
      Tensor probs;
      o = ops::scaled_dot_product_attention(q, k, v, std::nullopt, &probs);
      Tensor p2 = TP(taps, "attn_pool.softmax", probs);
      if (!p2.shares_storage_with(probs)) o = ops::matmul(p2, v);
    } else {
      o = ops::scaled_dot_product_attention(q, k, v);
    }
    Tensor y = o.transpose(1, 2).reshape({B, 1, D});
    y = TP(taps, "attn_pool.proj", a.proj(y));
    y = TP(taps, "attn_pool.proj_drop", y);
    // x = x + self.mlp(self.norm(x)); timm Mlp: fc1 -> act -> drop1 -> norm -> fc2 -> drop2
    Tensor m = TP(taps, "attn_pool.norm", a.norm(y));
    m = activation(TP(taps, "attn_pool.mlp.fc1", a.fc1(m)));
    m = TP(taps, "attn_pool.mlp.act", m);
    m = TP(taps, "attn_pool.mlp.drop1", m);
    m = TP(taps, "attn_pool.mlp.norm", m);
    m = TP(taps, "attn_pool.mlp.fc2", a.fc2(m));
    m = TP(taps, "attn_pool.mlp.drop2", m);
    m = TP(taps, "attn_pool.mlp", m);
    y = ops::add(y, m);
    return TP(taps, "attn_pool", y.select(1, 0).contiguous());  // pool_type 'token': x[:, 0]
  }

  void attn_pool_taps(std::vector<TapInfo>& t, int64_t B, int64_t P) const {
    const int64_t D = c_.embed_dim, H = c_.num_heads, hd = D / H, Hm = c_.mlp_hidden();
    const Shape one{B, 1, D};
    t.push_back({"attn_pool", {B, D}});
    t.push_back({"attn_pool.q", one});
    t.push_back({"attn_pool.kv", {B, P, 2 * D}});
    t.push_back({"attn_pool.q_norm", {B, H, 1, hd}});
    t.push_back({"attn_pool.k_norm", {B, H, P, hd}});
    t.push_back({"attn_pool.softmax", {B, H, 1, P}});  // the latent's attention map (tabula's extra tap)
    t.push_back({"attn_pool.proj", one});
    t.push_back({"attn_pool.proj_drop", one});
    t.push_back({"attn_pool.norm", one});
    t.push_back({"attn_pool.mlp", one});
    t.push_back({"attn_pool.mlp.fc1", {B, 1, Hm}});
    t.push_back({"attn_pool.mlp.act", {B, 1, Hm}});
    t.push_back({"attn_pool.mlp.drop1", {B, 1, Hm}});
    t.push_back({"attn_pool.mlp.norm", {B, 1, Hm}});
    t.push_back({"attn_pool.mlp.fc2", one});
    t.push_back({"attn_pool.mlp.drop2", one});
  }

  // The MLP activation (ViTConfig::act). timm's quick_gelu, x * sigmoid(1.702 * x) (CLIP's QuickGELU), is written
  // as silu(1.702 x) / 1.702: the engine has no sigmoid op; the two roundings more stay within a few ULP.
  Tensor activation(const Tensor& x) const {
    if (!quick_gelu_) return ops::activation(x, act_);
    return ops::mul(ops::silu(ops::mul(x, 1.702f)), 1.0f / 1.702f);
  }

  // A tap inside the attention pool: its tensors hold no prefix tokens.
  Tensor TP(TapSet& taps, const std::string& name, Tensor x) const { return T(taps, name, std::move(x), kPatches); }

  ArchConfig arch_;
  ViTConfig c_;
  ViTOptions opt_;
  bool hub_, skeleton_;
  Activation act_;
  bool quick_gelu_;
  DType act_dtype_ = DType::f32;  // storage type of the activations (to_device: bf16/f16 in those precisions)
  AttnPoolP attn_pool_;
  Tensor cls_, reg_, pos_, patch_w_, patch_b_;
  LayerNormP norm_pre_, norm_, fc_norm_;
  std::vector<BlockP> blocks_;
  LinearP head_;
};

}  // namespace

std::unique_ptr<Model> make_vit(const ArchConfig& arch, const ParamStore& params, const ViTOptions& opt) {
  if (arch.is_resnet()) throw std::invalid_argument("arch '" + arch.name + "' is not a ViT");
  return std::make_unique<ViT>(arch, params, opt);
}

}  // namespace tabula
