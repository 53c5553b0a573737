#include "models/vit_block.h"

#include <algorithm>
#include <initializer_list>

namespace tabula {

MlpActivation::MlpActivation(const std::string& act)
    : kind_(act == "silu" ? Activation::silu : act == "gelu_tanh" ? Activation::gelu_tanh : Activation::gelu),
      quick_gelu_(act == "quick_gelu") {}

// timm's quick_gelu, x * sigmoid(1.702 * x), is written as silu(1.702 x) / 1.702: the engine has no sigmoid op; the
// two roundings more stay within a few ULP.
Tensor MlpActivation::operator()(const Tensor& x) const {
  if (!quick_gelu_) return ops::activation(x, kind_);
  return ops::mul(ops::silu(ops::mul(x, 1.702f)), 1.0f / 1.702f);
}

MacRule attention_macs(int64_t head_dim) {
  const double hd = static_cast<double>(head_dim);
  return [hd](const Shape& maps) { return 2.0 * hd * static_cast<double>(shape_numel(maps)); };
}

Tensor attention_with_maps(const Tensor& q, const Tensor& k, const Tensor& v, bool observed,
                           const std::function<Tensor(const Tensor&)>& tap_maps) {
  if (!observed) return ops::scaled_dot_product_attention(q, k, v);
  Tensor probs;
  const Tensor o = ops::scaled_dot_product_attention(q, k, v, std::nullopt, &probs);
  const Tensor tapped = tap_maps(probs);
  return tapped.shares_storage_with(probs) ? o : ops::matmul(tapped, v);
}

void declare_timm_mlp_middle(ModuleTree& t, Module& mlp, const ShapeRule& hidden) {
  t.tap(mlp, "act", "GELU", hidden);
  t.tap(mlp, "drop1", "Dropout", hidden);
  t.tap(mlp, "norm", "Identity", hidden);
}

namespace {

const char* mlp_type(ViTConfig::Mlp mlp) {
  switch (mlp) {
    case ViTConfig::Mlp::swiglu_packed: return "GluMlp";
    case ViTConfig::Mlp::swiglu: return "SwiGLU";
    case ViTConfig::Mlp::swiglufused: return "SwiGLUFFNFused";
    case ViTConfig::Mlp::mlp: break;
  }
  return "Mlp";
}

// A LayerNorm already declared (q_norm / k_norm, made before the qkv split's taps) as a tap, else nn.Identity.
void tap_norm_or_identity(ModuleTree& t, Module& parent, const char* local, LayerNorm* norm, const ShapeRule& out) {
  if (norm) t.tap(*norm, out);
  else t.tap(parent, local, "Identity", out);
}

}  // namespace

// timm Block.__init__: norm1, attn (qkv, q_norm, k_norm, attn_drop, norm, proj, proj_drop), ls1, drop_path1, norm2,
// mlp, ls2, drop_path2. NestedTensorBlock: the same without the attention's Identity / Dropout placeholders.
ViTBlock::ViTBlock(ModuleTree& t, Module& blocks, int index, const ViTBlockConfig& c) : c_(c), act_(c.act) {
  const bool hub = c_.hub;
  const int64_t D = c_.dim, hd = D / c_.num_heads, H1 = c_.fc1_out, H2 = c_.fc2_in;
  const double eps = c_.norm_eps;
  // The shape rules outlive this object's address (blocks are moved into a vector): they copy what they read.
  const std::function<int64_t(const Shape&)> N = c_.num_tokens;
  const int64_t H = c_.num_heads;
  const auto tokens = [N](int64_t width) -> ShapeRule {
    return [N, width](const Shape& in) { return Shape{in[0], N(in), width}; };
  };
  const ShapeRule tok = tokens(D);
  const ShapeRule heads = [N, H, hd](const Shape& in) { return Shape{in[0], H, N(in), hd}; };  // q / k per head
  const ShapeRule maps = [N, H](const Shape& in) { return Shape{in[0], H, N(in), N(in)}; };   // [B, H, N, N]
  Module& m = t.tap(t.child(blocks, std::to_string(index), hub ? "NestedTensorBlock" : "Block"), tok);
  module_ = &m;
  name_ = m.name();
  norm1_ = &t.tap(t.layer<LayerNorm>(m, "norm1", D, eps), tok);
  Module& attn = t.tap(t.child(m, "attn", "Attention"), tok);
  qkv_ = &t.tap(t.layer<Linear>(attn, "qkv", D, 3 * D, c_.qkv_bias), tokens(3 * D));
  if (c_.qk_norm) {
    q_norm_ = &t.layer<LayerNorm>(attn, "q_norm", hd, eps);
    k_norm_ = &t.layer<LayerNorm>(attn, "k_norm", hd, eps);
  }
  if (!hub) {
    tap_norm_or_identity(t, attn, "q_norm", q_norm_, heads);
    tap_norm_or_identity(t, attn, "k_norm", k_norm_, heads);
  }
  t.tap(attn, "softmax", "Softmax", maps, attention_macs(hd));
  if (!hub) {
    t.tap(attn, "attn_drop", "Dropout", maps);
    t.tap(attn, "norm", "Identity", tok);
  }
  proj_ = &t.tap(t.layer<Linear>(attn, "proj", D, D), tok);
  t.tap(attn, "proj_drop", "Dropout", tok);
  ls1_ = layer_scale(t, "ls1", tok);
  t.tap(m, "drop_path1", "Identity", tok);
  norm2_ = &t.tap(t.layer<LayerNorm>(m, "norm2", D, eps), tok);
  Module& mlp = t.tap(t.child(m, "mlp", mlp_type(c_.mlp)), tok);
  const ShapeRule hidden1 = tokens(H1), hidden2 = tokens(H2);
  switch (c_.mlp) {
    case ViTConfig::Mlp::swiglu:  // fc1_g, fc1_x, act, drop, norm, fc2, drop
      fc1_ = &t.tap(t.layer<Linear>(mlp, "fc1_g", D, H1), hidden1);
      fc1_x_ = &t.tap(t.layer<Linear>(mlp, "fc1_x", D, H1), hidden1);
      declare_timm_mlp_middle(t, mlp, hidden2);
      fc2_ = &t.tap(t.layer<Linear>(mlp, "fc2", H2, D), tok);
      t.tap(mlp, "drop2", "Dropout", tok);
      break;
    case ViTConfig::Mlp::swiglufused:  // SwiGLUFFNFused: w12, w3 (F.silu is not a module)
      fc1_ = &t.tap(t.layer<Linear>(mlp, "w12", D, H1), hidden1);
      fc2_ = &t.tap(t.layer<Linear>(mlp, "w3", H2, D), tok);
      break;
    default:  // timm Mlp / GluMlp: fc1, act, drop1, norm, fc2, drop2; DINOv2 Mlp: fc1, act, fc2, drop
      fc1_ = &t.tap(t.layer<Linear>(mlp, "fc1", D, H1), hidden1);
      if (hub) t.tap(mlp, "act", "GELU", hidden2);
      else declare_timm_mlp_middle(t, mlp, hidden2);
      fc2_ = &t.tap(t.layer<Linear>(mlp, "fc2", H2, D), tok);
      // timm's drop2; the hub Mlp's one Dropout, called after act and after fc2 (the last call is fc2's)
      t.tap(mlp, hub ? "drop" : "drop2", "Dropout", tok);
  }
  ls2_ = layer_scale(t, "ls2", tok);
  t.tap(m, "drop_path2", "Identity", tok);
}

// LayerScale(gamma) when init_values is set, else nn.Identity.
Parameter* ViTBlock::layer_scale(ModuleTree& t, const char* local, const ShapeRule& tok) const {
  if (!c_.init_values) {
    t.tap(*module_, local, "Identity", tok);
    return nullptr;
  }
  const CtorInit gamma{CtorInit::constant, *c_.init_values};
  return &t.layer<Parameter>(t.tap(t.child(*module_, local, "LayerScale"), tok), "gamma", Shape{c_.dim}, gamma);
}

Tensor ViTBlock::T(TapSet& taps, const std::string& name, Tensor x) const {
  TapContext ctx;
  ctx.num_prefix_tokens = c_.num_prefix_tokens;
  ctx.num_heads = c_.num_heads;
  taps.tap(name, x, ctx);
  return x;
}

// Each residual add is handed to the Linear that ends its branch (proj, fc2/w3; on a GPU it runs inside the GEMM,
// cuBLASLt's C operand) when nothing observes the branch before the add: no LayerScale and no hook on the modules
// in between. The hooks that are not asked for pass the value through, so those names then carry x + branch --
// never seen by anyone.
Tensor ViTBlock::operator()(const Tensor& x, TapSet& taps) const {
  const std::string& n = name_;
  auto unobserved = [&](std::initializer_list<const char*> modules) {
    return std::none_of(modules.begin(), modules.end(), [&](const char* m) { return taps.wants(n + m); });
  };
  const bool fuse1 = !ls1_ && unobserved({".attn", ".attn.proj", ".attn.proj_drop", ".ls1", ".drop_path1"});
  Tensor a = attention(T(taps, n + ".norm1", (*norm1_)(x)), taps, fuse1 ? x : Tensor());
  a = T(taps, n + ".ls1", ls1_ ? ops::layer_scale(a, **ls1_) : a);
  a = T(taps, n + ".drop_path1", a);
  Tensor y = fuse1 ? a : ops::add(x, a);
  const bool fuse2 =
      !ls2_ && unobserved({".mlp", ".mlp.fc2", ".mlp.w3", ".mlp.drop", ".mlp.drop2", ".ls2", ".drop_path2"});
  Tensor m = T(taps, n + ".mlp", mlp(T(taps, n + ".norm2", (*norm2_)(y)), taps, fuse2 ? y : Tensor()));
  m = T(taps, n + ".ls2", ls2_ ? ops::layer_scale(m, **ls2_) : m);
  m = T(taps, n + ".drop_path2", m);
  return T(taps, n, fuse2 ? m : ops::add(y, m));
}

// residual (see operator()): added by proj.
Tensor ViTBlock::attention(const Tensor& x, TapSet& taps, const Tensor& residual) const {
  const std::string n = name_ + ".attn";
  const int64_t B = x.size(0), N = x.size(1), D = c_.dim, H = c_.num_heads, hd = D / H;
  // qkv(x).reshape(B, N, 3, H, hd).permute(2, 0, 3, 1, 4) -> q, k, v: [B, H, N, hd] (strided views)
  Tensor qkv = T(taps, n + ".qkv", (*qkv_)(x)).reshape({B, N, 3, H, hd}).permute({2, 0, 3, 1, 4});
  Tensor q = qkv.select(0, 0), k = qkv.select(0, 1), v = qkv.select(0, 2);
  if (!c_.hub) {
    q = T(taps, n + ".q_norm", apply(q_norm_, q));  // LayerNorm(head_dim) per head when qk_norm, else Identity
    k = T(taps, n + ".k_norm", apply(k_norm_, k));
  }
  const bool observed = taps.wants(n + ".softmax") || taps.wants(n + ".attn_drop");
  Tensor o = attention_with_maps(q, k, v, observed, [&](const Tensor& maps) {
    Tensor p = T(taps, n + ".softmax", maps);
    return c_.hub ? p : T(taps, n + ".attn_drop", p);
  });
  o = o.transpose(1, 2).reshape({B, N, D});
  if (!c_.hub) o = T(taps, n + ".norm", o);
  o = T(taps, n + ".proj", (*proj_)(o, residual));
  o = T(taps, n + ".proj_drop", o);
  return T(taps, n, o);
}

Tensor ViTBlock::mlp(const Tensor& x, TapSet& taps, const Tensor& residual) const {
  if (c_.mlp != ViTConfig::Mlp::mlp) return glu_mlp(x, taps, residual);
  const std::string n = name_ + ".mlp";
  const bool hub = c_.hub;
  Tensor h;
  if (taps.wants(n + ".fc1")) {
    h = act_(T(taps, n + ".fc1", (*fc1_)(x)));
  } else {
    // bias + activation (exact GELU by default) fused into the GEMM epilogue
    h = act_.fused() ? (*fc1_)(x, act_.kind()) : act_((*fc1_)(x));
  }
  h = T(taps, n + ".act", h);
  h = T(taps, hub ? n + ".drop" : n + ".drop1", h);
  if (!hub) h = T(taps, n + ".norm", h);
  Tensor y = T(taps, n + ".fc2", (*fc2_)(h, residual));
  return T(taps, hub ? n + ".drop" : n + ".drop2", y);
}

// The gated MLPs (ViTConfig::Mlp): timm GluMlp (SwiGLUPacked) and SwiGLU, DINOv2 SwiGLUFFNFused.
Tensor ViTBlock::glu_mlp(const Tensor& x, TapSet& taps, const Tensor& residual) const {
  const std::string n = name_ + ".mlp";
  const bool hub = c_.hub;
  Tensor h;
  if (c_.mlp == ViTConfig::Mlp::swiglu) {
    // x_gate = fc1_g(x); x = fc1_x(x); x = act(x_gate) * x
    Tensor gate = T(taps, n + ".fc1_g", (*fc1_)(x));
    Tensor val = T(taps, n + ".fc1_x", (*fc1_x_)(x));
    h = ops::mul(T(taps, n + ".act", act_(gate)), val);
  } else {
    // GluMlp(gate_last=False) / SwiGLUFFN: x1, x2 = fc1(x).chunk(2, dim=-1); act(x1) * x2
    Tensor f = T(taps, n + (hub ? ".w12" : ".fc1"), (*fc1_)(x));
    const int64_t last = f.dim() - 1, half = f.size(last) / 2;
    if (!hub && (act_.kind() != Activation::silu || !act_.fused() || taps.wants(n + ".act"))) {
      Tensor a = T(taps, n + ".act", act_(f.slice(last, 0, half)));
      h = ops::mul(a, f.slice(last, half, 2 * half));
    } else {  // no hook on act: the fused op
      h = ops::swiglu(f);  // silu(x1) * x2
    }
  }
  if (!hub) {
    h = T(taps, n + ".drop1", h);
    h = T(taps, n + ".norm", h);
  }
  Tensor y = T(taps, n + (hub ? ".w3" : ".fc2"), (*fc2_)(h, residual));
  return hub ? y : T(taps, n + ".drop2", y);
}

}  // namespace tabula
