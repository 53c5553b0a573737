#include "models/dinov3.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <tuple>
#include <stdexcept>

#include "engine/init.h"
#include "engine/ops.h"
#include "engine/pos_encoding.h"
#include "models/layers.h"
#include "models/model.h"

namespace tabula {

// ---- config ------------------------------------------------------------------------------------------------

int64_t Dinov3Config::ffn_hidden() const {
  const int64_t hidden = static_cast<int64_t>(embed_dim * ffn_ratio);  // int(dim * ffn_ratio)
  if (ffn_layer == "mlp") return hidden;
  // SwiGLUFFN: d = int(hidden * 2 / 3); d + (-d % align_to)
  const int64_t align = ffn_layer == "swiglu" ? 8 : std::stoi(ffn_layer.substr(6));
  const int64_t d = static_cast<int64_t>(static_cast<double>(hidden) * 2.0 / 3.0);
  return (d + align - 1) / align * align;
}

namespace {
RopeNormalize rope_normalize_of(const std::string& s) {
  return s == "min" ? RopeNormalize::min : s == "max" ? RopeNormalize::max : RopeNormalize::separate;
}
std::optional<double> optional_number(const std::string& k, const std::string& v) {
  if (v == "none" || v == "None") return std::nullopt;
  return parse_number_value(k, v);
}
}  // namespace

void Dinov3Config::apply_keys(const KeyValues& kv) {
  auto fail = [](const std::string& why) { throw KeyValueError(why); };
  for (const auto& [k, v] : kv) {
    if (k == "dim" || k == "embed_dim") embed_dim = parse_int_value(k, v, 4);
    else if (k == "depth") depth = parse_int_value(k, v, 0, 1024);
    else if (k == "heads" || k == "num_heads") num_heads = parse_int_value(k, v, 1);
    else if (k == "patch" || k == "patch_size") patch_size = parse_int_value(k, v, 1);
    else if (k == "img" || k == "img_size") img_size = parse_int_value(k, v, 1);
    else if (k == "chans" || k == "in_chans") in_chans = parse_int_value(k, v, 1, 1024);
    else if (k == "ffn_ratio" || k == "mlp_ratio") ffn_ratio = parse_number_value(k, v);
    else if (k == "ffn" || k == "ffn_layer") {
      if (v != "mlp" && v != "swiglu" && v != "swiglu32" && v != "swiglu64" && v != "swiglu128")
        fail("key 'ffn' is one of mlp, swiglu, swiglu32, swiglu64, swiglu128; got '" + v + "'");
      ffn_layer = v;
    } else if (k == "qkv_bias") qkv_bias = parse_bool_value(k, v);
    else if (k == "proj_bias") proj_bias = parse_bool_value(k, v);
    else if (k == "ffn_bias") ffn_bias = parse_bool_value(k, v);
    else if (k == "layerscale" || k == "layerscale_init") layerscale_init = optional_number(k, v);
    else if (k == "norm_eps") norm_eps = parse_number_value(k, v);
    else if (k == "storage" || k == "n_storage_tokens") n_storage_tokens = parse_int_value(k, v, 0, 1024);
    else if (k == "mask_k_bias") mask_k_bias = parse_bool_value(k, v);
    else if (k == "rope_base") rope_base = optional_number(k, v);
    else if (k == "rope_min_period") rope_min_period = optional_number(k, v);
    else if (k == "rope_max_period") rope_max_period = optional_number(k, v);
    else if (k == "rope_normalize") {
      if (v != "min" && v != "max" && v != "separate") fail("key 'rope_normalize' is min, max or separate");
      rope_normalize = v;
    } else if (k == "untie_cls_and_patch_norms") untie_cls_and_patch_norms = parse_bool_value(k, v);
    else if (k == "untie_global_and_local_cls_norm") untie_global_and_local_cls_norm = parse_bool_value(k, v);
    else {
      fail("unknown key '" + k + "' (dinov3 keys: dim, depth, heads, patch, img, chans, ffn_ratio, ffn, qkv_bias, "
           "proj_bias, ffn_bias, layerscale, norm_eps, storage, mask_k_bias, rope_base, rope_min_period, "
           "rope_max_period, rope_normalize, untie_cls_and_patch_norms, untie_global_and_local_cls_norm)");
    }
  }
  if (embed_dim % (4 * num_heads) != 0)
    fail("dim " + std::to_string(embed_dim) + " must be a multiple of 4 * heads (RoPE: head_dim / 4 periods)");
  if (rope_base.has_value() == (rope_min_period && rope_max_period))
    fail("give either rope_base or both rope_min_period and rope_max_period (rope_base=none)");
  if (!(ffn_ratio > 0) || embed_dim * ffn_ratio > kMaxSize) fail("int(dim * ffn_ratio) out of range");
  if (!(norm_eps > 0)) fail("key 'norm_eps' needs a positive number");
  if (mask_k_bias && !qkv_bias) mask_k_bias = false;  // LinearKMaskedBias registers its mask only with a bias
}

// DinoVisionTransformer.init_weights (what the hub constructors run with pretrained=False): the RoPE periods,
// normal_(cls_token, .02), normal_(storage_tokens, .02), zeros(mask_token), then named_apply(init_weights_vit),
// children before parents: Linear trunc_normal_(.02) (torch's) with a zero bias (and the k-bias mask), LayerNorm
// and LayerScale reset (no draws: their constructor values), PatchEmbed.reset_parameters: uniform(+-sqrt(k)) on
// the weight, then the bias, k = 1 / (in_chans * patch^2).
void Dinov3Config::init_weights(const ModuleTree& tree, InitState& s) const {
  const std::vector<float> p = rope_periods(head_dim(), rope_base, rope_min_period, rope_max_period);
  std::copy(p.begin(), p.end(), s.f32("rope_embed.periods"));
  normal_(s.f32("cls_token"), s.numel("cls_token"), 0.0, 0.02, s.gen());
  if (n_storage_tokens > 0) normal_(s.f32("storage_tokens"), s.numel("storage_tokens"), 0.0, 0.02, s.gen());
  // Each tensor is handed on (InitState::done) once the pass has left it, in the forward's order: the prologue's
  // tensors, then block by block (a streamed load or reference holds one block's fp32 weights at a time).
  for (const char* name : {"rope_embed.periods", "cls_token", "storage_tokens", "mask_token"})
    if (s.has(name)) s.done(name);
  for (const Module* m : tree.modules_post_order()) {
    const std::string n = m->name();
    if (m->type == "Linear" || m->type == "LinearKMaskedBias") {
      trunc_normal_(s.f32(n + ".weight"), s.numel(n + ".weight"), s.gen(), 0.0, 0.02);
      if (s.has(n + ".bias")) s.fill(n + ".bias", 0.0f);
      if (s.has(n + ".bias_mask")) {
        float* mask = s.f32(n + ".bias_mask");
        const int64_t o = static_cast<int64_t>(s.numel(n + ".bias_mask"));
        for (int64_t i = 0; i < o; ++i) mask[i] = i >= o / 3 && i < 2 * o / 3 ? 0.0f : 1.0f;
      }
    } else if (m->type == "PatchEmbed") {
      const double bound = std::sqrt(1.0 / (in_chans * patch_size * patch_size));
      uniform_init(s.f32(n + ".proj.weight"), s.shape(n + ".proj.weight"), -bound, bound, s.gen());
      uniform_init(s.f32(n + ".proj.bias"), s.shape(n + ".proj.bias"), -bound, bound, s.gen());
    }
    // done as the pass leaves the module; not at PatchEmbed's Conv2d, which its parent writes after it
    if (m->type == "Linear" || m->type == "LinearKMaskedBias" || m->type == "PatchEmbed" ||
        m->type == "SelfAttentionBlock")
      s.done(*m);
  }
}

namespace {

// transformers DINOv3ViTModel -> hub names (the inverse of its convert script).
WeightMap hub_from_hf(const Dinov3Config& c, const WeightMap& w) {
  const std::string layer = w.count("model.layer.0.norm1.weight") ? "model.layer." : "layer.";
  auto get = [&](const std::string& k) {
    auto it = w.find(k);
    if (it == w.end()) throw std::invalid_argument("DINOv3 transformers weights: missing key '" + k + "'");
    return it->second.to(DType::f32).contiguous();
  };
  const int64_t D = c.embed_dim;
  WeightMap out;
  out["cls_token"] = get("embeddings.cls_token");
  if (out["cls_token"].size(-1) != D)
    throw std::invalid_argument("DINOv3 transformers weights: 'embeddings.cls_token' has width " +
                                std::to_string(out["cls_token"].size(-1)) + ", the arch needs " + std::to_string(D));
  if (c.n_storage_tokens) out["storage_tokens"] = get("embeddings.register_tokens");
  out["mask_token"] = get("embeddings.mask_token").reshape({1, D});
  out["patch_embed.proj.weight"] = get("embeddings.patch_embeddings.weight");
  out["patch_embed.proj.bias"] = get("embeddings.patch_embeddings.bias");
  const std::vector<float> periods = rope_periods(c.head_dim(), c.rope_base, c.rope_min_period, c.rope_max_period);
  out["rope_embed.periods"] = Tensor::from_vector({static_cast<int64_t>(periods.size())}, periods);
  for (int i = 0; i < c.depth; ++i) {
    const std::string h = layer + std::to_string(i) + ".", b = "blocks." + std::to_string(i) + ".";
    out[b + "attn.qkv.weight"] = ops::cat({get(h + "attention.q_proj.weight"), get(h + "attention.k_proj.weight"),
                                           get(h + "attention.v_proj.weight")}, 0);
    if (c.qkv_bias) {
      out[b + "attn.qkv.bias"] = ops::cat({get(h + "attention.q_proj.bias"), Tensor::zeros({D}),
                                           get(h + "attention.v_proj.bias")}, 0);
      if (c.mask_k_bias) {
        std::vector<float> mask(static_cast<size_t>(3 * D), 1.0f);
        std::fill(mask.begin() + D, mask.begin() + 2 * D, 0.0f);
        out[b + "attn.qkv.bias_mask"] = Tensor::from_vector({3 * D}, mask);
      }
    }
    out[b + "attn.proj.weight"] = get(h + "attention.o_proj.weight");
    if (c.proj_bias) out[b + "attn.proj.bias"] = get(h + "attention.o_proj.bias");
    for (const char* n : {"norm1", "norm2"})
      for (const char* t : {".weight", ".bias"}) out[b + n + t] = get(h + n + t);
    if (c.layerscale_init) {
      out[b + "ls1.gamma"] = get(h + "layer_scale1.lambda1");
      out[b + "ls2.gamma"] = get(h + "layer_scale2.lambda1");
    }
    const bool glu = c.ffn_layer != "mlp";
    const std::vector<std::pair<const char*, const char*>> mlp =
        glu ? std::vector<std::pair<const char*, const char*>>{{"w1", "gate_proj"}, {"w2", "up_proj"},
                                                              {"w3", "down_proj"}}
            : std::vector<std::pair<const char*, const char*>>{{"fc1", "up_proj"}, {"fc2", "down_proj"}};
    for (const auto& [hub, hf] : mlp) {
      out[b + "mlp." + hub + ".weight"] = get(h + "mlp." + hf + ".weight");
      if (c.ffn_bias) out[b + "mlp." + hub + ".bias"] = get(h + "mlp." + hf + ".bias");
    }
  }
  out["norm.weight"] = get("norm.weight");
  out["norm.bias"] = get("norm.bias");
  return out;
}

}  // namespace

WeightMap Dinov3Config::from_canonical(const WeightMap& w) const {
  WeightMap out = w.count("embeddings.cls_token") ? hub_from_hf(*this, w) : w;
  // LinearKMaskedBias.forward: F.linear(x, weight, bias * bias_mask): the masked bias is what every forward uses.
  for (int i = 0; i < depth; ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".attn.qkv.";
    auto bias = out.find(b + "bias"), mask = out.find(b + "bias_mask");
    if (bias != out.end() && mask != out.end() && bias->second.shape() == mask->second.shape())
      bias->second = ops::mul(bias->second.to(DType::f32), mask->second.to(DType::f32));
  }
  return out;
}

// ---- the module ----------------------------------------------------------------------------------------------

namespace {

// A persistent buffer (register_buffer): in the state_dict, not among parameters().
class Buffer final : public Layer {
 public:
  Buffer(ModuleTree& t, Module& owner, const std::string& local, Shape shape) : owner_(&owner), local_(local) {
    t.buffer(owner, local, std::move(shape));
  }
  void load(const ParamStore& p) override { value_ = p[owner_->name() + "." + local_]; }
  void prepare(int) override {}  // read on the host (the RoPE tables are built there)
  const Tensor& operator*() const { return value_; }

 private:
  Module* owner_;
  std::string local_;
  Tensor value_;
};

struct BlockP {
  std::string name;
  LayerNorm *norm1 = nullptr, *norm2 = nullptr;
  Linear *qkv = nullptr, *proj = nullptr;
  Parameter *ls1 = nullptr, *ls2 = nullptr;
  Linear *fc1 = nullptr, *fc2 = nullptr;           // Mlp
  Linear *w1 = nullptr, *w2 = nullptr, *w3 = nullptr;  // SwiGLUFFN
};

class Dinov3 final : public Model {
 public:
  // DinoVisionTransformer.__init__, in construction order.
  explicit Dinov3(const ArchConfig& arch) : Model(arch), c_(*arch.as<Dinov3Config>()) {
    ModuleTree& t = module_tree();
    Module& root = t.root();
    const int64_t D = c_.embed_dim, P = c_.patch_size;
    const ShapeRule tok = tokens(D);
    // PatchEmbed(flatten_embedding=False): [B, H / P, W / P, D]; its proj is not a tap (its MACs count)
    Conv2dOptions po;
    po.stride = {P, P};
    Module& pe = t.tap(t.child(root, "patch_embed", "PatchEmbed"), [this](const Shape& in) {
      return Shape{in[0], in[2] / c_.patch_size, in[3] / c_.patch_size, c_.embed_dim};
    });
    patch_ = &t.untapped(t.layer<Conv2d>(pe, "proj", c_.in_chans, D, P, po, true), [this](const Shape& in) {
      return Shape{in[0], c_.embed_dim, in[2] / c_.patch_size, in[3] / c_.patch_size};
    });
    cls_ = &t.layer<Parameter>(root, "cls_token", Shape{1, 1, D});
    if (c_.n_storage_tokens) storage_ = &t.layer<Parameter>(root, "storage_tokens", Shape{1, c_.n_storage_tokens, D});
    Module& rope = t.child(root, "rope_embed", "RopePositionEmbedding");
    periods_ = &t.layer<Buffer>(rope, "periods", Shape{c_.head_dim() / 4});
    Module& blocks = t.tap(t.child(root, "blocks", "ModuleList"), tok);
    for (int i = 0; i < c_.depth; ++i) blocks_.push_back(make_block(t, blocks, i));
    norm_ = &t.tap(t.layer<LayerNorm>(root, "norm", D, c_.norm_eps), tok);  // (the patches' only, when untied)
    if (c_.untie_cls_and_patch_norms) cls_norm_ = &t.layer<LayerNorm>(root, "cls_norm", D, c_.norm_eps);
    if (c_.untie_global_and_local_cls_norm) t.layer<LayerNorm>(root, "local_cls_norm", D, c_.norm_eps);
    mask_token_ = &t.layer<Parameter>(root, "mask_token", Shape{1, D});
    // forward_features()' outputs; head = nn.Identity
    const ShapeRule cls = [D](const Shape& in) { return Shape{in[0], D}; };
    t.tap(root, "x_norm_clstoken", "Output", cls);
    if (c_.n_storage_tokens)
      t.tap(root, "x_storage_tokens", "Output", [this](const Shape& in) {
        return Shape{in[0], c_.n_storage_tokens, c_.embed_dim};
      });
    t.tap(root, "x_norm_patchtokens", "Output", [this](const Shape& in) {
      return Shape{in[0], num_tokens(in) - c_.num_prefix_tokens(), c_.embed_dim};
    });
    t.tap(root, "head", "Identity", cls);
  }

  Shape default_input_shape(int64_t batch) const override { return {batch, c_.in_chans, c_.img_size, c_.img_size}; }

  void check_input(const Shape& s) const override {
    const int64_t P = c_.patch_size;
    if (s.size() != 4 || s[0] < 1 || s[1] != c_.in_chans || s[2] < P || s[3] < P || s[2] % P || s[3] % P)
      throw std::invalid_argument("arch '" + arch().name + "': input must be [B, " + std::to_string(c_.in_chans) +
                                  ", H, W] with H and W multiples of the patch size " + std::to_string(P) +
                                  ", got " + shape_str(s));
  }

  Tensor forward(const Tensor& x_in, TapSet& taps) override {
    check_weights();
    check_input(x_in.shape());
    taps.bind(tap_order(x_in.shape()));
    const int64_t gh = x_in.size(2) / c_.patch_size, gw = x_in.size(3) / c_.patch_size;
    const int64_t prefix = c_.num_prefix_tokens();
    // PatchEmbed(flatten_embedding=False): [B, H, W, D]; prepare_tokens_with_masks flattens it
    Tensor x = T(taps, "patch_embed", patch_embed(x_in), 0);
    if (taps.done()) return x;
    x = prepare_tokens(x);
    const auto [sin, cos] = rope_tables(gh, gw);
    for (const BlockP& b : blocks_) {
      x = T(taps, b.name, block_forward(b, x, sin, cos, taps));
      if (taps.done()) return x;
    }
    x = T(taps, "blocks", x);
    Tensor xn = T(taps, "norm", final_norm(x));
    if (taps.done()) return xn;
    Tensor cls_out = T(taps, "x_norm_clstoken", xn.select(1, 0).contiguous(), 0);
    if (storage_) T(taps, "x_storage_tokens", xn.slice(1, 1, prefix), 0);
    T(taps, "x_norm_patchtokens", xn.slice(1, prefix, xn.size(1)), 0);
    return T(taps, "head", cls_out, 0);  // head = nn.Identity
  }

  std::vector<std::string> default_taps() const override { return {"x_norm_clstoken"}; }

  // x_norm_clstoken of the untrained model of `seed` while its weights are generated: the init pass hands the
  // prologue's tensors, then each block's, then the final norm's on (init_weights declares them done in forward
  // order); each stage runs as soon as its layers are loaded and a block's weights are dropped once it ran. The
  // ops are the forward's, so the result has its bits.
  Tensor forward_streamed(const Tensor& x_in, uint64_t seed, const LoadProgress& progress) {
    check_input(x_in.shape());
    const int64_t gh = x_in.size(2) / c_.patch_size, gw = x_in.size(3) / c_.patch_size;
    const size_t last = blocks_.size() + 1;  // stages: 0 prologue, 1..depth the blocks, depth + 1 the norm
    auto stage_layers = [&](size_t stage) {
      std::vector<Layer*> l;
      if (stage == 0) l = {patch_, cls_, storage_, mask_token_, periods_};
      else if (stage == last) l = {norm_, cls_norm_};
      else {
        const BlockP& b = blocks_[stage - 1];
        l = {b.norm1, b.qkv, b.proj, b.ls1, b.norm2, b.fc1, b.fc2, b.w1, b.w2, b.w3, b.ls2};
      }
      l.erase(std::remove(l.begin(), l.end(), nullptr), l.end());
      return l;
    };
    std::set<const Layer*> loaded;
    size_t next = 0;
    Tensor x, sin, cos, out;
    TapSet none;
    auto advance = [&] {
      for (; next <= last; ++next) {
        const std::vector<Layer*> need = stage_layers(next);
        for (const Layer* l : need)
          if (!loaded.count(l)) return;
        if (next == 0) {
          x = prepare_tokens(patch_embed(x_in));
          std::tie(sin, cos) = rope_tables(gh, gw);
        } else if (next == last) {
          out = final_norm(x).select(1, 0).contiguous();
        } else {
          x = block_forward(blocks_[next - 1], x, sin, cos, none);
          for (Layer* l : need) {
            unload(*l);
            loaded.erase(l);
          }
        }
      }
    };
    load_streamed([&](const InitSink& sink) { init_weights(arch(), tree(), seed, sink); }, -1, progress,
                  [&](Layer& l) {
                    loaded.insert(&l);
                    advance();
                  });
    if (next != last + 1)
      throw std::logic_error("arch '" + arch().name + "': streamed forward: the weights did not come in forward order");
    return out;
  }

 private:
  // PatchEmbed: [B, H / P, W / P, D].
  Tensor patch_embed(const Tensor& x_in) const {
    return (*patch_)(x_in.to(act_dtype())).permute({0, 2, 3, 1}).contiguous();
  }

  // prepare_tokens_with_masks without masks: cls_token + 0 * mask_token, then cat(cls, storage, patches).
  Tensor prepare_tokens(const Tensor& patches) const {
    const int64_t B = patches.size(0), D = c_.embed_dim;
    Tensor cls = ops::add(**cls_, ops::mul(**mask_token_, 0.0f).reshape({1, 1, D})).expand({B, -1, -1});
    std::vector<Tensor> parts{cls};
    if (storage_) parts.push_back((**storage_).expand({B, -1, -1}));
    parts.push_back(patches.reshape({B, patches.size(1) * patches.size(2), D}));
    return ops::cat(parts, 1);
  }

  // rope_embed(H, W) from the periods buffer (eval: no coordinate augmentation); the same for every block. Built
  // on the host (the buffer stays there), then placed beside the class token: f32 on every device, as apply_rope
  // computes in the tables' dtype.
  std::pair<Tensor, Tensor> rope_tables(int64_t gh, int64_t gw) const {
    const Tensor& pt = (**periods_).contiguous();
    const std::vector<float> periods(pt.data<float>(), pt.data<float>() + pt.numel());
    const auto [sin_h, cos_h] = rope_sin_cos(periods, gh, gw, rope_normalize_of(c_.rope_normalize));
    return {to_device_like(sin_h, **cls_), to_device_like(cos_h, **cls_)};
  }

  // norm (untied: cls_norm on the class and storage tokens, norm on the patches).
  Tensor final_norm(const Tensor& x) const {
    const int64_t prefix = c_.num_prefix_tokens();
    if (cls_norm_) return ops::cat({(*cls_norm_)(x.slice(1, 0, prefix)), (*norm_)(x.slice(1, prefix, x.size(1)))}, 1);
    return (*norm_)(x);
  }

  // SelfAttentionBlock: norm1, attn (qkv: LinearKMaskedBias, proj), ls1, norm2, mlp, ls2.
  BlockP make_block(ModuleTree& t, Module& blocks, int i) {
    const int64_t D = c_.embed_dim, Hf = c_.ffn_hidden();
    const ShapeRule tok = tokens(D), hidden = tokens(Hf);
    BlockP b;
    Module& m = t.tap(t.child(blocks, std::to_string(i), "SelfAttentionBlock"), tok);
    b.name = m.name();
    b.norm1 = &t.tap(t.layer<LayerNorm>(m, "norm1", D, c_.norm_eps), tok);
    Module& attn = t.tap(t.child(m, "attn", "SelfAttention"), tok);
    b.qkv = &t.tap(t.layer<Linear>(attn, "qkv", D, 3 * D, c_.qkv_bias), tokens(3 * D));
    if (c_.mask_k_bias) {  // LinearKMaskedBias: nn.Linear's parameters, then bias_mask (NaN until init_weights)
      Module& qkv = *attn.children.back();
      qkv.type = "LinearKMaskedBias";
      t.buffer(qkv, "bias_mask", {3 * D}, CtorInit{CtorInit::constant, std::nan("")});
    }
    // tabula's softmax: the attention maps [B, H, N, N]; q k^T and probs v, 2 * head_dim MACs per entry
    const double hd = c_.head_dim();
    const ShapeRule maps = [this](const Shape& in) {
      return Shape{in[0], c_.num_heads, num_tokens(in), num_tokens(in)};
    };
    const MacRule maps_macs = [hd](const Shape& o) { return 2.0 * hd * static_cast<double>(shape_numel(o)); };
    t.tap(attn, "softmax", "Softmax", maps, maps_macs);
    b.proj = &t.tap(t.layer<Linear>(attn, "proj", D, D, c_.proj_bias), tok);
    const CtorInit ls{CtorInit::constant, c_.layerscale_init.value_or(0.0)};
    auto layer_scale = [&](const char* local) {
      return &t.layer<Parameter>(t.tap(t.child(m, local, "LayerScale"), tok), "gamma", Shape{D}, ls);
    };
    if (c_.layerscale_init) b.ls1 = layer_scale("ls1");
    b.norm2 = &t.tap(t.layer<LayerNorm>(m, "norm2", D, c_.norm_eps), tok);
    if (c_.ffn_layer == "mlp") {
      Module& mlp = t.tap(t.child(m, "mlp", "Mlp"), tok);
      b.fc1 = &t.tap(t.layer<Linear>(mlp, "fc1", D, Hf, c_.ffn_bias), hidden);
      t.tap(mlp, "act", "GELU", hidden);
      b.fc2 = &t.tap(t.layer<Linear>(mlp, "fc2", Hf, D, c_.ffn_bias), tok);
    } else {
      Module& mlp = t.tap(t.child(m, "mlp", "SwiGLUFFN"), tok);
      b.w1 = &t.tap(t.layer<Linear>(mlp, "w1", D, Hf, c_.ffn_bias), hidden);
      b.w2 = &t.tap(t.layer<Linear>(mlp, "w2", D, Hf, c_.ffn_bias), hidden);
      b.w3 = &t.tap(t.layer<Linear>(mlp, "w3", Hf, D, c_.ffn_bias), tok);
    }
    if (c_.layerscale_init) b.ls2 = layer_scale("ls2");
    return b;
  }

  // The taps' output shapes for an input [B, C, H, W]: N tokens (class, storage, H / P * W / P patches).
  int64_t num_tokens(const Shape& in) const {
    return (in[2] / c_.patch_size) * (in[3] / c_.patch_size) + c_.num_prefix_tokens();
  }
  ShapeRule tokens(int64_t width) const {
    return [this, width](const Shape& in) { return Shape{in[0], num_tokens(in), width}; };
  }

  Tensor T(TapSet& taps, const std::string& name, Tensor x, int64_t prefix = -1) const {
    TapContext ctx;
    ctx.num_prefix_tokens = prefix < 0 ? c_.num_prefix_tokens() : prefix;
    ctx.num_heads = c_.num_heads;
    taps.tap(name, x, ctx);
    return x;
  }

  Tensor block_forward(const BlockP& b, const Tensor& x, const Tensor& sin, const Tensor& cos, TapSet& taps) const {
    const std::string& n = b.name;
    Tensor a = attention(b, T(taps, n + ".norm1", (*b.norm1)(x)), sin, cos, taps);
    if (b.ls1) a = T(taps, n + ".ls1", ops::layer_scale(a, **b.ls1));
    const Tensor y = ops::add(x, a);
    Tensor m = T(taps, n + ".mlp", ffn(b, T(taps, n + ".norm2", (*b.norm2)(y)), taps));
    if (b.ls2) m = T(taps, n + ".ls2", ops::layer_scale(m, **b.ls2));
    return ops::add(y, m);
  }

  // SelfAttention.compute_attention: qkv -> [B, N, 3, H, hd] -> q, k, v [B, H, N, hd]; RoPE on the patch tokens
  // of q and k (apply_rope); sdpa; proj.
  Tensor attention(const BlockP& b, const Tensor& x, const Tensor& sin, const Tensor& cos, TapSet& taps) const {
    const std::string n = b.name + ".attn";
    const int64_t B = x.size(0), N = x.size(1), D = c_.embed_dim, H = c_.num_heads, hd = D / H;
    Tensor qkv = T(taps, n + ".qkv", (*b.qkv)(x)).reshape({B, N, 3, H, hd}).permute({2, 0, 3, 1, 4});
    const Tensor q = ops::rope_apply(qkv.select(0, 0), sin, cos), k = ops::rope_apply(qkv.select(0, 1), sin, cos);
    const Tensor v = qkv.select(0, 2);
    Tensor o;
    if (taps.wants(n + ".softmax")) {
      Tensor probs;
      o = ops::scaled_dot_product_attention(q, k, v, std::nullopt, &probs);
      Tensor p2 = T(taps, n + ".softmax", probs);
      if (!p2.shares_storage_with(probs)) o = ops::matmul(p2, v);
    } else {
      o = ops::scaled_dot_product_attention(q, k, v);
    }
    o = T(taps, n + ".proj", (*b.proj)(o.transpose(1, 2).reshape({B, N, D})));
    return T(taps, n, o);
  }

  Tensor ffn(const BlockP& b, const Tensor& x, TapSet& taps) const {
    const std::string n = b.name + ".mlp";
    if (b.fc1) {  // Mlp: fc1 -> GELU -> fc2 (the GELU in fc1's epilogue unless fc1 itself is observed)
      Tensor h = taps.wants(n + ".fc1") ? ops::gelu(T(taps, n + ".fc1", (*b.fc1)(x))) : (*b.fc1)(x, Activation::gelu);
      return T(taps, n + ".fc2", (*b.fc2)(T(taps, n + ".act", h)));
    }
    // SwiGLUFFN: w3(silu(w1(x)) * w2(x))
    Tensor g = T(taps, n + ".w1", (*b.w1)(x));
    Tensor v = T(taps, n + ".w2", (*b.w2)(x));
    return T(taps, n + ".w3", (*b.w3)(ops::mul(ops::silu(g), v)));
  }

  Dinov3Config c_;
  Conv2d* patch_ = nullptr;
  Parameter *cls_ = nullptr, *storage_ = nullptr, *mask_token_ = nullptr;
  Buffer* periods_ = nullptr;
  std::vector<BlockP> blocks_;
  LayerNorm *norm_ = nullptr, *cls_norm_ = nullptr;
};

Dinov3Config dinov3(int dim, int depth, int heads, double ffn_ratio, const char* ffn) {
  Dinov3Config c;
  c.embed_dim = dim;
  c.depth = depth;
  c.num_heads = heads;
  c.ffn_ratio = ffn_ratio;
  c.ffn_layer = ffn;
  return c;
}

Dinov3Config dinov3_7b() {
  Dinov3Config c = dinov3(4096, 40, 32, 3, "swiglu64");
  c.qkv_bias = false;
  c.mask_k_bias = false;
  c.untie_global_and_local_cls_norm = true;
  return c;
}

std::shared_ptr<const ModelConfig> cfg(const Dinov3Config& c) { return std::make_shared<Dinov3Config>(c); }

}  // namespace

std::unique_ptr<Model> Dinov3Config::construct(const ArchConfig& arch) const { return std::make_unique<Dinov3>(arch); }

Tensor dinov3_streamed_forward(const std::string& arch, uint64_t seed, const Tensor& x, const LoadProgress& progress) {
  const ArchConfig a = parse_arch(arch);
  if (!a.as<Dinov3Config>()) throw std::invalid_argument("arch '" + arch + "': the streamed forward is for DINOv3");
  Dinov3 model(a);
  return model.forward_streamed(x, seed, progress);
}

// dinov3/hub/backbones.py (LVD-1689M weights; dinov3_vitl16's SAT-493M weights add local_cls_norm:
// dinov3_vitl16:untie_global_and_local_cls_norm=1).
const Family& dinov3_family() {
  static const Family f{
      "dinov3",
      std::make_shared<Dinov3Config>(),
      {
          {"dinov3_vits16", cfg(dinov3(384, 12, 6, 4, "mlp"))},
          {"dinov3_vits16plus", cfg(dinov3(384, 12, 6, 6, "swiglu"))},
          {"dinov3_vitb16", cfg(dinov3(768, 12, 12, 4, "mlp"))},
          {"dinov3_vitl16", cfg(dinov3(1024, 24, 16, 4, "mlp"))},
          {"dinov3_vith16plus", cfg(dinov3(1280, 32, 20, 6, "swiglu"))},
          {"dinov3_vit7b16", cfg(dinov3_7b())},
      },
      {},
  };
  return f;
}

}  // namespace tabula
