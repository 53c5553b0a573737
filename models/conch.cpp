// The CONCH v1 vision tower (models/conch.h): config keys, init replay, the module, the family.
#include "models/conch.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "engine/cpu/packed.h"
#include "engine/init.h"
#include "engine/ops.h"
#include "models/device.h"
#include "models/layers.h"
#include "models/model.h"
#include "models/vit_block.h"

namespace tabula {

// ---- config --------------------------------------------------------------------------------------------------

void ConchConfig::apply_keys(const KeyValues& kv) {
  auto fail = [](const std::string& why) { throw KeyValueError(why); };
  for (const auto& [k, v] : kv) {
    if (k == "dim" || k == "width") width = parse_int_value(k, v, 1);
    else if (k == "depth" || k == "layers") depth = parse_int_value(k, v, 0, 1024);
    else if (k == "heads" || k == "num_heads") heads = parse_int_value(k, v, 1);
    else if (k == "patch" || k == "patch_size") patch_size = parse_int_value(k, v, 1);
    else if (k == "img" || k == "img_size" || k == "image_size") img_size = parse_int_value(k, v, 1);
    else if (k == "mlp_ratio") mlp_ratio = parse_number_value(k, v);
    else if (k == "embed_dim") embed_dim = parse_int_value(k, v, 1);
    else if (k == "caption_dim" || k == "embed_dim_caption") embed_dim_caption = parse_int_value(k, v, 1);
    else if (k == "pool_heads" || k == "attn_pooler_heads") pool_heads = parse_int_value(k, v, 1);
    else if (k == "queries_contrast" || k == "n_queries_contrast") queries_contrast = parse_int_value(k, v, 1);
    else if (k == "queries_caption" || k == "n_queries_caption") queries_caption = parse_int_value(k, v, 1);
    else if (k == "legacy_init") legacy_init = parse_bool_value(k, v);
    else
      fail("unknown key '" + k +
           "' (conch keys: dim, depth, heads, patch, img, mlp_ratio, embed_dim, caption_dim, "
           "pool_heads, queries_contrast, queries_caption, legacy_init)");
  }
  auto divisible = [&](int dim, int h, const char* what) {
    if (dim % h != 0)
      fail(std::string(what) + " " + std::to_string(dim) + " is not divisible by its heads " + std::to_string(h));
  };
  divisible(width, heads, "dim");
  // nn.MultiheadAttention asserts embed_dim % num_heads == 0
  divisible(embed_dim, pool_heads, "embed_dim");
  divisible(embed_dim_caption, pool_heads, "caption_dim");
  if (img_size % patch_size != 0)
    fail("img " + std::to_string(img_size) + " is not a multiple of patch " + std::to_string(patch_size));
  const double tokens = 1.0 + static_cast<double>(grid()) * grid();
  if (tokens > kMaxSize) fail(std::to_string(static_cast<int64_t>(tokens)) + " tokens is too many");
  const double hidden = static_cast<double>(width) * mlp_ratio;
  if (!(hidden >= 1.0 && hidden < kMaxSize + 1.0)) fail("int(dim * mlp_ratio) must be from 1 to 2^24");
}

namespace {

const char* const kTrunk = "visual.trunk.";

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

// AttentionalPooler.__init__: query = torch.randn(n_queries, d_model), then nn.MultiheadAttention(d_model, n_head,
// kdim=context_dim, vdim=context_dim): out_proj = nn.Linear(d, d) (its reset_parameters() draws), then
// _reset_parameters(): xavier_uniform_ of in_proj_weight (or q_proj, k_proj, v_proj in turn), zero in_proj_bias and
// out_proj.bias. ln_q / ln_k draw nothing.
void pooler_init(const std::string& p, InitState& s) {
  normal_(s.f32(p + ".query"), s.numel(p + ".query"), 0.0, 1.0, s.gen());
  const std::string a = p + ".attn.";
  default_reset_parameters(s.f32(a + "out_proj.weight"), s.shape(a + "out_proj.weight"), s.f32(a + "out_proj.bias"),
                           s.gen());
  if (s.has(a + "in_proj_weight")) {
    xavier_uniform_(s.f32(a + "in_proj_weight"), s.shape(a + "in_proj_weight"), s.gen());
  } else {
    for (const char* w : {"q_proj_weight", "k_proj_weight", "v_proj_weight"})
      xavier_uniform_(s.f32(a + w), s.shape(a + w), s.gen());
  }
  s.fill(a + "in_proj_bias", 0.0f);
  s.fill(a + "out_proj.bias", 0.0f);
}

}  // namespace

void ConchConfig::init_weights(const ModuleTree& tree, InitState& s) const {
  const std::string t = kTrunk;
  // timm VisionTransformer.init_weights(''), which ends the trunk's constructor (before VisualModel builds the rest)
  timm_trunc_normal_(s.f32(t + "pos_embed"), s.numel(t + "pos_embed"), s.gen(), 0.0, 0.02);
  normal_(s.f32(t + "cls_token"), s.numel(t + "cls_token"), 0.0, 1e-6, s.gen());
  for (const Module* m : tree.modules_post_order()) {  // named_apply(init_weights_vit_timm, trunk)
    if (m->type != "Linear" || !starts_with(m->name(), t)) continue;
    const std::string w = m->name() + ".weight", b = m->name() + ".bias";
    timm_trunc_normal_(s.f32(w), s.numel(w), s.gen(), 0.0, 0.02);
    if (s.has(b)) s.fill(b, 0.0f);
  }
  // VisualModel.__init__ after the trunk: attn_pool_contrast, ln_contrast, proj_contrast, attn_pool_caption, ln_caption
  pooler_init("visual.attn_pool_contrast", s);
  float* proj = s.f32("visual.proj_contrast");
  const size_t n = s.numel("visual.proj_contrast");
  normal_(proj, n, 0.0, 1.0, s.gen());
  // scale * torch.randn(...): the Python float rounded to float32, one float multiply per element
  const float scale = static_cast<float>(std::pow(static_cast<double>(width), -0.5));
  for (size_t i = 0; i < n; ++i) proj[i] *= scale;
  pooler_init("visual.attn_pool_caption", s);
}

WeightMap ConchConfig::from_canonical(const WeightMap& w_in) const {
  static const std::string kModule = "module.";
  const WeightMap* w = &w_in;
  WeightMap unwrapped;
  // read_state_dict strips a DataParallel prefix when the first key has it
  if (!w_in.empty() && starts_with(w_in.begin()->first, kModule) &&
      std::all_of(w_in.begin(), w_in.end(), [](const auto& kv) { return starts_with(kv.first, kModule); })) {
    for (const auto& [k, t] : w_in) unwrapped[k.substr(kModule.size())] = t;
    w = &unwrapped;
  }
  WeightMap out;
  if (!w->count("visual.trunk.cls_token") && w->count("trunk.cls_token")) {  // model.visual.state_dict()
    for (const auto& [k, t] : *w) out["visual." + k] = t;
    return out;
  }
  for (const auto& [k, t] : *w) {  // the text tower, the multimodal decoder and the temperature are not the image's
    if (starts_with(k, "text.") || starts_with(k, "text_decoder.") || k == "logit_scale") continue;
    out[k] = t;
  }
  return out;
}

// ---- the module --------------------------------------------------------------------------------------------------

namespace {

// One input projection of nn.MultiheadAttention, F.linear(x, W, b) with rows of its in_proj weights and bias: kept
// packed for the CPU GEMM, or in the torch layout on a GPU.
struct Projection {
  Tensor weight, bias;
  PackedLinear packed;

  void prepare(int device) {
    if (device < 0) {
      packed = PackedLinear(weight.contiguous());
      weight = Tensor();
      bias = bias.contiguous();
      return;
    }
    weight = upload_linear_weight(packed.defined() ? packed.weight() : weight, device);
    packed = PackedLinear();
    bias = upload_activation_param(bias, device);
  }
  Tensor operator()(const Tensor& x) const {
    return packed.defined() ? ops::linear(x, packed, bias) : ops::linear(x, weight, bias);
  }
};

// nn.MultiheadAttention(d, heads, kdim=kv_dim, vdim=kv_dim) as AttentionalPooler calls it (query != key is value,
// no masks, eval): q = query W_q^T + b_q; k, v from the context in one GEMM ([W_k; W_v]); scaled dot-product
// attention per head (scale head_dim^-0.5); out_proj.
class MultiheadAttention final : public Layer {
 public:
  MultiheadAttention(ModuleTree& t, Module& parent, int64_t d, int64_t kv_dim, int64_t heads)
      : module_(&t.child(parent, "attn", "MultiheadAttention")), d_(d), kv_dim_(kv_dim), heads_(heads) {
    // Registration order of nn.MultiheadAttention.__init__; every draw happens in _reset_parameters and out_proj's
    // constructor, replayed by ConchConfig::init_weights (they follow the trunk's init pass).
    Module& m = *module_;
    if (packed_in()) {
      t.param(m, "in_proj_weight", {3 * d, d});
    } else {
      t.param(m, "q_proj_weight", {d, d});
      t.param(m, "k_proj_weight", {d, kv_dim});
      t.param(m, "v_proj_weight", {d, kv_dim});
    }
    t.param(m, "in_proj_bias", {3 * d});
    Module& out = t.child(m, "out_proj", "NonDynamicallyQuantizableLinear");
    t.param(out, "weight", {d, d});
    t.param(out, "bias", {d});
  }

  void load(const ParamStore& p) override {
    const std::string n = module_->name() + ".";
    const Tensor& b = p[n + "in_proj_bias"];
    q_.bias = b.slice(0, 0, d_);
    kv_.bias = b.slice(0, d_, 3 * d_);
    if (packed_in()) {
      const Tensor& w = p[n + "in_proj_weight"];
      q_.weight = w.slice(0, 0, d_);
      kv_.weight = w.slice(0, d_, 3 * d_);
    } else {
      q_.weight = p[n + "q_proj_weight"];
      k_weight_ = p[n + "k_proj_weight"];
      v_weight_ = p[n + "v_proj_weight"];
    }
    out_.weight = p[n + "out_proj.weight"];
    out_.bias = p[n + "out_proj.bias"];
  }

  void prepare(int device) override {
    if (k_weight_.defined()) {
      kv_.weight = ops::cat({k_weight_, v_weight_}, 0);  // [W_k; W_v]: k and v in one GEMM over the tokens
      k_weight_ = v_weight_ = Tensor();
    }
    q_.prepare(device);
    kv_.prepare(device);
    out_.prepare(device);
  }

  // query_in: ln_q(query), [Lq, d] shared by every image (AttentionalPooler._repeat; projected once) or [B, Lq, d];
  // context: ln_k(x) [B, N, kv_dim]. Returns [B, Lq, d]. The attention maps [B, heads, Lq, N] pass `softmax_tap`
  // when a hook wants them (a hook that replaces them gives o = probs @ v).
  Tensor operator()(const Tensor& query_in, const Tensor& context, TapSet& taps, const std::string& softmax_tap,
                    const TapContext& ctx) const {
    const bool shared = query_in.dim() == 2;
    const int64_t B = context.size(0), N = context.size(1), H = heads_, hd = d_ / H;
    const int64_t Lq = query_in.size(shared ? 0 : 1);
    Tensor q = q_(query_in).reshape({shared ? 1 : B, Lq, H, hd}).permute({0, 2, 1, 3});
    if (shared) q = q.expand({B, H, Lq, hd});
    q = q.contiguous();
    Tensor kv = kv_(context).reshape({B, N, 2, H, hd}).permute({2, 0, 3, 1, 4});
    Tensor k = kv.select(0, 0), v = kv.select(0, 1);
    const Tensor o = attention_with_maps(q, k, v, taps.wants(softmax_tap), [&](const Tensor& maps) {
      Tensor p = maps;
      taps.tap(softmax_tap, p, ctx);
      return p;
    });
    return out_(o.transpose(1, 2).reshape({B, Lq, d_}));
  }

  bool packed_in() const { return kv_dim_ == d_; }  // _qkv_same_embed_dim
  Module& module() const { return *module_; }

 private:
  Module* module_;
  int64_t d_, kv_dim_, heads_;
  Projection q_, kv_, out_;
  Tensor k_weight_, v_weight_;  // separate k/v projections until prepare() stacks them
};

// AttentionalPooler(d_model, context_dim, n_head, n_queries): query, attn, ln_q, ln_k (open_clip LayerNorm, eps 1e-5).
struct PoolerP {
  std::string name;
  Parameter* query = nullptr;
  MultiheadAttention* attn = nullptr;
  LayerNorm *ln_q = nullptr, *ln_k = nullptr;
  int64_t d = 0, queries = 0;
};

class Conch final : public Model {
 public:
  // VisualModel as _build_vision_tower builds it: the timm trunk first (its constructor ends with init_weights),
  // then the poolers, ln_contrast, proj_contrast, ln_caption.
  explicit Conch(const ArchConfig& arch) : Model(arch), c_(*arch.as<ConchConfig>()) {
    ModuleTree& t = module_tree();
    Module& visual = t.child(t.root(), "visual", "VisualModel");
    const int64_t D = c_.width, P = c_.patch_size, E = c_.embed_dim, Ec = c_.embed_dim_caption;
    const ShapeRule tok = tokens(D);
    Module& trunk = t.tap(t.child(visual, "trunk", "VisionTransformer"), tok);  // forward_features
    // PatchEmbed(output_fmt NHWC): proj, norm (Identity)
    const ShapeRule grid = [this](const Shape& in) {
      return Shape{in[0], in[2] / c_.patch_size, in[3] / c_.patch_size, c_.width};
    };
    Module& pe = t.tap(t.child(trunk, "patch_embed", "PatchEmbed"), grid);
    Conv2dOptions po;
    po.stride = {P, P};
    patch_ = &t.tap(t.layer<Conv2d>(pe, "proj", 3, D, P, po, true), [this](const Shape& in) {
      return Shape{in[0], c_.width, in[2] / c_.patch_size, in[3] / c_.patch_size};
    });
    t.tap(pe, "norm", "Identity", grid);
    cls_ = &t.layer<Parameter>(trunk, "cls_token", Shape{1, 1, D});
    const CtorInit pos_init = c_.legacy_init ? CtorInit{CtorInit::randn, 0.02} : CtorInit{};
    pos_ = &t.layer<Parameter>(trunk, "pos_embed", Shape{1, 1 + c_.grid() * c_.grid(), D}, pos_init);
    t.tap(trunk, "pos_drop", "Dropout", tok);
    t.tap(trunk, "patch_drop", "Identity", tok);
    t.tap(trunk, "norm_pre", "Identity", tok);
    Module& blocks = t.tap(t.child(trunk, "blocks", "Sequential"), tok);
    // timm Block(init_values=None, qk_norm=False, Mlp with exact GELU, LayerNorm eps 1e-6)
    ViTBlockConfig bc;
    bc.dim = D;
    bc.num_heads = c_.heads;
    bc.fc1_out = bc.fc2_in = c_.mlp_hidden();
    bc.num_tokens = [this](const Shape& in) { return num_tokens(in); };
    for (int i = 0; i < c_.depth; ++i) blocks_.emplace_back(t, blocks, i, bc);
    norm_ = &t.tap(t.layer<LayerNorm>(trunk, "norm", D, 1e-6), tok);
    // The embedding's forward counts the contrastive pooler's MACs, not the captioning one's (not on that path).
    contrast_ = make_pooler(t, visual, "attn_pool_contrast", E, c_.queries_contrast, true);
    const ShapeRule emb = [this](const Shape& in) { return Shape{in[0], c_.embed_dim}; };
    ln_contrast_ = &t.tap(t.layer<LayerNorm>(visual, "ln_contrast", E, 1e-5), emb);
    proj_contrast_ = &t.layer<Parameter>(visual, "proj_contrast", Shape{E, E});
    t.tap(visual, "proj_contrast", "Matmul", emb);  // x @ proj_contrast: a parameter in torch, tapped by its name
    caption_ = make_pooler(t, visual, "attn_pool_caption", Ec, c_.queries_caption, false);
    ln_caption_ = &t.tap(t.layer<LayerNorm>(visual, "ln_caption", Ec, 1e-5), [this](const Shape& in) {
      return Shape{in[0], c_.queries_caption, c_.embed_dim_caption};
    });
  }

  Shape default_input_shape(int64_t batch) const override { return {batch, 3, c_.img_size, c_.img_size}; }

  void check_input(const Shape& s) const override {
    const std::string what = "arch '" + arch().name + "': ";
    if (s.size() != 4 || s[1] != 3 || s[0] < 1)
      throw std::invalid_argument(what + "input must be [B, 3, H, W], got " + shape_str(s));
    // dynamic_img_size=True: any multiple of the patch, the pos-embed resampled to the grid
    if (s[2] % c_.patch_size != 0 || s[3] % c_.patch_size != 0 || s[2] < c_.patch_size || s[3] < c_.patch_size)
      throw std::invalid_argument(what + "input height and width must be multiples of the patch size " +
                                  std::to_string(c_.patch_size) + ", got " + shape_str(s));
  }

  Tensor forward(const Tensor& x_in, TapSet& taps) override {
    check_weights();
    check_input(x_in.shape());
    taps.bind(tap_order(x_in.shape()));
    const int64_t B = x_in.size(0), D = c_.width;
    const int64_t gh = x_in.size(2) / c_.patch_size, gw = x_in.size(3) / c_.patch_size;
    const std::string t = kTrunk;
    // PatchEmbed (output_fmt NHWC with dynamic_img_size): proj, permute, norm (Identity)
    Tensor x = T(taps, t + "patch_embed.proj", (*patch_)(x_in.to(act_dtype())));
    x = x.permute({0, 2, 3, 1}).contiguous();
    x = T(taps, t + "patch_embed.norm", x, 0);
    x = T(taps, t + "patch_embed", x, 0);
    if (taps.done()) return x;
    x = pos_embed(x.reshape({B, gh * gw, D}), gh, gw);
    x = T(taps, t + "pos_drop", x);
    x = T(taps, t + "patch_drop", x);
    x = T(taps, t + "norm_pre", x);
    if (taps.done()) return x;
    for (const ViTBlock& b : blocks_) {
      x = b(x, taps);
      if (taps.done()) return x;
    }
    x = T(taps, t + "blocks", x);
    x = T(taps, t + "norm", (*norm_)(x));
    x = T(taps, "visual.trunk", x);  // trunk.forward = forward_features
    if (taps.done()) return x;
    // VisualModel.forward_no_head: ln_contrast(attn_pool_contrast(x)[:, 0]) -- encode_image(proj_contrast=False)
    Tensor pooled = pooler(contrast_, x, taps);
    if (taps.done()) return pooled;
    Tensor emb = T(taps, "visual.ln_contrast", (*ln_contrast_)(pooled.select(1, 0).contiguous()), 0);
    if (taps.done()) return emb;
    T(taps, "visual.proj_contrast", ops::matmul(emb, **proj_contrast_), 0);  // encode_image(proj_contrast=True)
    if (taps.done()) return emb;
    // VisualModel.forward's captioning tokens: ln_caption(attn_pool_caption(x))
    Tensor cap = pooler(caption_, x, taps);
    T(taps, "visual.ln_caption", (*ln_caption_)(cap), 0);
    return emb;
  }

  std::vector<std::string> default_taps() const override { return {"visual.ln_contrast"}; }

 private:
  // The trunk's tokens (class token + patches) for the model input, `width` wide: [B, N, width].
  int64_t num_tokens(const Shape& in) const { return (in[2] / c_.patch_size) * (in[3] / c_.patch_size) + 1; }
  ShapeRule tokens(int64_t width) const {
    return [this, width](const Shape& in) { return Shape{in[0], num_tokens(in), width}; };
  }

  // AttentionalPooler.__init__: query, attn (then tabula's attn.softmax), ln_q, ln_k. With `count`, its MACs:
  // the query and out projections on attn ([B, Lq, d]: 2 d products per output), the maps and the k/v projection
  // of the N context tokens on attn.softmax ([B, heads, Lq, N]).
  PoolerP make_pooler(ModuleTree& t, Module& visual, const std::string& local, int64_t d, int64_t queries,
                      bool count) {
    PoolerP p;
    const ShapeRule out = [d, queries](const Shape& in) { return Shape{in[0], queries, d}; };
    Module& m = t.tap(t.child(visual, local, "AttentionalPooler"), out);
    p.name = m.name();
    p.d = d, p.queries = queries;
    p.query = &t.layer<Parameter>(m, "query", Shape{queries, d});
    p.attn = &t.layer<MultiheadAttention>(m, d, c_.width, c_.pool_heads);
    Module& attn = t.tap(p.attn->module(), out);
    const ShapeRule maps = [this, queries](const Shape& in) {
      return Shape{in[0], c_.pool_heads, queries, num_tokens(in)};
    };
    MacRule map_macs;
    if (count) {
      const double dd = static_cast<double>(d), hd = static_cast<double>(d / c_.pool_heads);
      attn.macs = [dd](const Shape& o) { return static_cast<double>(shape_numel(o)) * 2.0 * dd; };
      map_macs = [this, dd, hd](const Shape& o) {
        const double kv = static_cast<double>(o[0] * o[3]) * static_cast<double>(c_.width) * 2.0 * dd;
        return 2.0 * static_cast<double>(shape_numel(o)) * hd + kv;
      };
    }
    t.tap(attn, "softmax", "Softmax", maps, map_macs);
    p.ln_q = &t.tap(t.layer<LayerNorm>(m, "ln_q", d, 1e-5), out);
    p.ln_k = &t.tap(t.layer<LayerNorm>(m, "ln_k", c_.width, 1e-5), tokens(c_.width));
    return p;
  }

  // Tap point; `prefix`: the tokens before the patches (the class token), 0 for pooled / query outputs.
  Tensor T(TapSet& taps, const std::string& name, Tensor x, int64_t prefix = 1) const {
    TapContext ctx;
    ctx.num_prefix_tokens = prefix;
    ctx.num_heads = prefix == 1 ? c_.heads : 0;
    taps.tap(name, x, ctx);
    return x;
  }

  // timm _pos_embed with dynamic_img_size: resample_abs_pos_embed to the grid (bicubic, antialias, by size; the
  // class position kept), then cat(cls, x) + pos_embed.
  Tensor pos_embed(const Tensor& patches, int64_t gh, int64_t gw) const {
    const int64_t B = patches.size(0), D = c_.width, g = c_.grid();
    const Tensor& pos0 = **pos_;
    Tensor pos = pos0;
    if (gh != g || gw != g) {
      Tensor grid = pos0.slice(1, 1, pos0.size(1)).reshape({1, g, g, D}).permute({0, 3, 1, 2});
      InterpolateOptions io;
      io.size = std::array<int64_t, 2>{gh, gw};
      io.mode = InterpMode::bicubic;
      io.antialias = true;
      Tensor r = ops::interpolate(grid, io).permute({0, 2, 3, 1}).reshape({1, gh * gw, D});
      pos = ops::cat({pos0.slice(1, 0, 1), r}, 1);
    }
    return ops::add(ops::cat({(**cls_).expand({B, -1, -1}), patches}, 1), pos);
  }

  // AttentionalPooler.forward: x = ln_k(x); q = ln_q(query); attn(q repeated per image, x, x); batch-first out.
  Tensor pooler(const PoolerP& p, const Tensor& x, TapSet& taps) const {
    const int64_t B = x.size(0);
    Tensor kx = T(taps, p.name + ".ln_k", (*p.ln_k)(x));
    Tensor q = (*p.ln_q)(**p.query);
    // observed (or intervened on) per image, as the attention receives it
    if (taps.wants(p.name + ".ln_q"))
      q = T(taps, p.name + ".ln_q", q.reshape({1, p.queries, p.d}).expand({B, -1, -1}).contiguous(), 0);
    TapContext ctx;
    ctx.num_prefix_tokens = 0;
    Tensor o = (*p.attn)(q, kx, taps, p.name + ".attn.softmax", ctx);
    o = T(taps, p.name + ".attn", o, 0);
    return T(taps, p.name, o, 0);
  }

  ConchConfig c_;
  Conv2d* patch_ = nullptr;
  Parameter *cls_ = nullptr, *pos_ = nullptr, *proj_contrast_ = nullptr;
  std::vector<ViTBlock> blocks_;
  LayerNorm *norm_ = nullptr, *ln_contrast_ = nullptr, *ln_caption_ = nullptr;
  PoolerP contrast_, caption_;
};

}  // namespace

std::unique_ptr<Model> ConchConfig::construct(const ArchConfig& arch) const { return std::make_unique<Conch>(arch); }

// conch_ViT-B-16.json: the published CONCH v1 (the only CONCH config the repository ships).
const Family& conch_family() {
  static const Family f{
      "conch",
      std::make_shared<ConchConfig>(),
      {{"conch_vit_b16", std::make_shared<ConchConfig>()}},
      {{"conch_ViT-B-16", "conch_vit_b16"}},
  };
  return f;
}

}  // namespace tabula
