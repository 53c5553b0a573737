// timm's ConvNeXt (timm/models/convnext.py, timm 1.0.31), eval mode, and the DINOv3 ConvNeXt checkpoints:
//   stem: Conv2d(in, dims[0], patch, stride patch) + LayerNorm2d; four stages, stage i > 0 starting with a
//   downsample LayerNorm2d + Conv2d(k 2, stride 2); ConvNeXtBlock: depthwise Conv2d(k 7, pad 3) -> LayerNorm over
//   channels -> Mlp (fc1 4x, GELU, fc2: nn.Linear on NHWC, or 1x1 Conv2d with LayerNorm2d when conv_mlp, as
//   atto..nano) -> x * gamma (LayerScale 1e-6) -> + shortcut (drop_path off at eval); norm_pre = Identity; head
//   NormMlpClassifierHead: global avg pool -> LayerNorm2d (head.norm) -> flatten -> fc (Identity when classes=0).
// Activations stay channels-last in memory (an NCHW tensor whose strides are NHWC's): the depthwise conv reads and
// writes that layout on the CPU and every per-pixel op (LayerNorm, the MLP, LayerScale, the residual) is then a
// row op on the contiguous [B, H, W, C] view; fc2, gamma and the residual add share one GEMM epilogue on the CPU
// unless a tap observes them. Taps carry timm's module names and torch's shapes.
// DINOv3 (facebookresearch/dinov3, models/convnext.py) is the original ConvNeXt code: the same computation
// (its channels-first LayerNorm is written out, its head is LayerNorm(mean over H, W) = timm's head.norm with
// classes=0, its x_norm_clstoken) under other names (downsample_layers.N, stages.N.M.dwconv / pwconv1 / pwconv2,
// norm, and norms.3 = norm again); from_canonical maps them as timm's checkpoint_filter_fn does. The untrained
// weights of every arch here are timm's (DINOv3's own init_weights, torch's trunc_normal_, is not replayed).
#include <algorithm>
#include <array>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>

#include "engine/init.h"
#include "engine/ops.h"
#include "engine/cpu/packed.h"
#include "models/device.h"
#include "models/layers.h"
#include "models/model.h"

namespace tabula {

namespace {
constexpr int kMaxBlocks = 1024;  // per stage; convnext_xxlarge has 30
}

// timm ConvNeXt(...) keyword arguments (the patch stem, output_stride 32, no GRN, LayerNorm, GELU).
struct ConvNeXtConfig final : ModelConfig {
  int in_chans = 3;
  int num_classes = 1000;
  std::array<int, 4> depths{3, 3, 9, 3};
  std::array<int, 4> dims{96, 192, 384, 768};
  int kernel_size = 7;
  std::optional<double> ls_init_value = 1e-6;
  int patch_size = 4;
  double head_init_scale = 1.0;
  bool conv_mlp = false;
  bool conv_bias = true;
  double norm_eps = 1e-6;  // norm_eps=None: timm's LayerNorm / LayerNorm2d default
  int img_size = 224;      // the default input (pretrained_cfg input_size); any H, W >= 8 * patch run

  std::unique_ptr<ModelConfig> clone() const override { return std::make_unique<ConvNeXtConfig>(*this); }
  std::string family() const override { return "timm ConvNeXt"; }
  void apply_keys(const KeyValues& keys) override;
  std::unique_ptr<Model> construct(const ArchConfig& arch) const override;
  void init_weights(const ModuleTree& tree, InitState& state) const override;
  WeightMap from_canonical(const WeightMap& weights) const override;
};

namespace {
std::array<int, 4> four_ints(const std::string& k, const std::string& v, int lo, int hi) {
  std::array<int, 4> out{};
  size_t p = 0, n = 0;
  while (p <= v.size()) {
    size_t q = v.find(',', p);
    if (q == std::string::npos) q = v.size();
    if (n == 4) throw KeyValueError("key '" + k + "' needs 4 values (one per stage), got '" + v + "'");
    out[n++] = parse_int_value(k, v.substr(p, q - p), lo, hi);
    p = q + 1;
  }
  if (n != 4) throw KeyValueError("key '" + k + "' needs 4 values (one per stage), got '" + v + "'");
  return out;
}
}  // namespace

void ConvNeXtConfig::apply_keys(const KeyValues& kv) {
  for (const auto& [k, v] : kv) {
    if (k == "depths") depths = four_ints(k, v, 0, kMaxBlocks);
    else if (k == "dims") dims = four_ints(k, v, 1, kMaxSize / 4);  // the MLP is 4 * dim wide
    else if (k == "classes" || k == "num_classes") num_classes = parse_int_value(k, v, 0);
    else if (k == "chans" || k == "in_chans") in_chans = parse_int_value(k, v, 1, 1024);
    else if (k == "kernel" || k == "kernel_size") {
      kernel_size = parse_int_value(k, v, 1, 63);
      if (kernel_size % 2 == 0) throw KeyValueError("key 'kernel' needs an odd size (timm pads it by k // 2)");
    } else if (k == "ls_init" || k == "ls_init_value") {
      ls_init_value = v == "none" || v == "None" ? std::nullopt : std::optional<double>(parse_number_value(k, v));
    } else if (k == "patch" || k == "patch_size") patch_size = parse_int_value(k, v, 1, 64);
    else if (k == "head_init_scale") head_init_scale = parse_number_value(k, v);
    else if (k == "conv_mlp") conv_mlp = parse_bool_value(k, v);
    else if (k == "conv_bias") conv_bias = parse_bool_value(k, v);
    else if (k == "norm_eps") {
      norm_eps = parse_number_value(k, v);
      if (!(norm_eps > 0)) throw KeyValueError("key 'norm_eps' needs a positive number");
    } else if (k == "img" || k == "img_size") img_size = parse_int_value(k, v, 1);
    else {
      throw KeyValueError("unknown key '" + k + "' (convnext keys: depths, dims, classes, chans, kernel, ls_init, "
                          "patch, head_init_scale, conv_mlp, conv_bias, norm_eps, img)");
    }
  }
}

// convnext._init_weights over named_apply (children first): Conv2d and Linear weights timm trunc_normal_(std .02)
// and zero biases; the head's Linear then scaled by head_init_scale. LayerNorms keep (1, 0), gamma its 1e-6.
void ConvNeXtConfig::init_weights(const ModuleTree& tree, InitState& s) const {
  for (const Module* m : tree.modules_post_order()) {
    if (m->type != "Conv2d" && m->type != "Linear") continue;
    const std::string n = m->name();
    timm_trunc_normal_(s.f32(n + ".weight"), s.numel(n + ".weight"), s.gen(), 0.0, 0.02);
    if (s.has(n + ".bias")) s.fill(n + ".bias", 0.0f);
    if (m->type == "Linear" && n.find("head.") != std::string::npos && head_init_scale != 1.0) {
      const float k = static_cast<float>(head_init_scale);
      for (const char* t : {".weight", ".bias"}) {
        float* p = s.f32(n + t);
        for (size_t i = 0; i < s.numel(n + t); ++i) p[i] *= k;
      }
    }
  }
}

// DINOv3 / the original ConvNeXt names -> timm's (timm convnext.checkpoint_filter_fn); timm names pass through.
WeightMap ConvNeXtConfig::from_canonical(const WeightMap& w) const {
  if (!w.count("downsample_layers.0.0.weight")) return w;
  static const std::regex block(R"(^stages\.([0-9]+)\.([0-9]+)\.)");
  static const std::regex down(R"(^downsample_layers\.([0-9]+)\.([0-9]+)\.)");
  WeightMap out;
  for (const auto& [key, t] : w) {
    if (key.rfind("norms.", 0) == 0 || key.rfind("projectors.", 0) == 0) continue;  // norms.3 is `norm` again
    std::string k = key;
    if (k.rfind("downsample_layers.0.", 0) == 0) k = "stem." + k.substr(20);
    k = std::regex_replace(k, block, "stages.$1.blocks.$2.");
    k = std::regex_replace(k, down, "stages.$1.downsample.$2.");
    for (const auto& [from, to] : {std::pair<std::string, std::string>{".dwconv.", ".conv_dw."},
                                   {".pwconv1.", ".mlp.fc1."}, {".pwconv2.", ".mlp.fc2."}}) {
      const size_t at = k.find(from);
      if (at != std::string::npos) k.replace(at, from.size(), to);
    }
    if (k.rfind("head.", 0) == 0) k = "head.fc." + k.substr(5);
    if (k.rfind("norm.", 0) == 0) k = "head." + k;
    Tensor v = t;
    // the original code's 1x1 convs are Linear ([out, in]); timm's conv_mlp variants hold [out, in, 1, 1]
    if (conv_mlp && v.dim() == 2 && k.find(".mlp.fc") != std::string::npos) v = v.reshape({v.size(0), v.size(1), 1, 1});
    out[k] = v;
  }
  return out;
}

namespace {

int64_t conv_out(int64_t in, int64_t k, int64_t s, int64_t p) { return (in + 2 * p - k) / s + 1; }

// Mlp's fc1 / fc2 over channels-last pixels: nn.Linear ([out, in]), or the 1x1 nn.Conv2d of conv_mlp
// ([out, in, 1, 1], the same numbers in memory), so either is one GEMM over [B * H * W, in]. On the CPU the
// weight is packed once; fc2 may also carry the block's LayerScale for the fused form (scaled()).
class PixelLinear final : public Layer {
 public:
  PixelLinear(ModuleTree& t, Module& parent, const std::string& local, int64_t in, int64_t out, bool conv)
      : module_(&t.child(parent, local, conv ? "Conv2d" : "Linear")) {
    t.reset_weight_bias(*module_, conv ? Shape{out, in, 1, 1} : Shape{out, in}, true);
    module_->macs = [in](const Shape& o) { return static_cast<double>(shape_numel(o)) * static_cast<double>(in); };
  }
  Module& module() const { return *module_; }
  // The block's gamma, which this layer reads itself (layers are loaded and prepared one by one, and the gamma
  // comes after fc2): scaled() then needs no pass of its own.
  void set_layer_scale(const Parameter* gamma) { gamma_ = gamma; }
  void load(const ParamStore& p) override {
    const std::string n = module_->name();
    const Tensor& w = p[n + ".weight"];
    weight_ = w.reshape({w.size(0), w.size(1)});
    bias_ = p[n + ".bias"];
    if (gamma_) gamma_value_ = p[gamma_->name()];
  }
  void prepare(int device) override {
    if (device < 0) {
      packed_ = PackedLinear(weight_.contiguous());
      weight_ = Tensor();
      if (gamma_) shift_ = ops::mul(bias_, gamma_value_);
      return;
    }
    weight_ = upload_linear_weight(packed_.defined() ? packed_.weight() : weight_, device);
    packed_ = PackedLinear();
    shift_ = Tensor();
    gamma_value_ = Tensor();
    bias_ = upload_activation_param(bias_, device);
  }
  // x [..., in] -> act(x W^T + b) [..., out]
  Tensor operator()(const Tensor& x, Activation act = Activation::none) const {
    return packed_.defined() ? ops::linear(x, packed_, bias_, act) : ops::linear(x, weight_, bias_, act);
  }
  // (x W^T + b) * gamma + residual in the GEMM's epilogue, as x W^T * gamma + b * gamma (within an ulp or two of
  // torch's mul after the Linear); undefined where there is no fused form (on a GPU, or without gamma).
  Tensor scaled(const Tensor& x, const Tensor& residual) const {
    if (!packed_.defined() || !gamma_) return Tensor();
    return ops::linear_scale_shift(x, packed_, gamma_value_, shift_, residual);
  }

 private:
  Module* module_;
  const Parameter* gamma_ = nullptr;
  Tensor weight_, bias_, shift_, gamma_value_;
  PackedLinear packed_;
};

struct BlockP {
  std::string name;
  int64_t dim = 0;
  Conv2d* conv_dw = nullptr;
  LayerNorm* norm = nullptr;  // LayerNorm (channels last) or LayerNorm2d (conv_mlp): the same numbers
  PixelLinear *fc1 = nullptr, *fc2 = nullptr;
  Parameter* gamma = nullptr;
};

struct StageP {
  std::string name;
  LayerNorm* down_norm = nullptr;  // downsample.0 (LayerNorm2d)
  Conv2d* down_conv = nullptr;     // downsample.1
  std::vector<BlockP> blocks;
};

// [B, C, H, W] <-> [B, H, W, C]: views (no copy), contiguous when the memory is channels-last.
Tensor to_nhwc(const Tensor& x) { return x.permute({0, 2, 3, 1}); }
Tensor to_nchw(const Tensor& x) { return x.permute({0, 3, 1, 2}); }

class ConvNeXt final : public Model {
 public:
  // ConvNeXt.__init__ (stem, ConvNeXtStage: downsample, ConvNeXtBlock: conv_dw, norm, mlp, gamma), in order.
  explicit ConvNeXt(const ArchConfig& arch) : Model(arch), c_(*arch.as<ConvNeXtConfig>()) {
    ModuleTree& t = module_tree();
    Module& root = t.root();
    const double eps = c_.norm_eps;
    const ShapeRule s0 = stage(0);
    Module& stem = t.tap(t.child(root, "stem", "Sequential"), s0);
    Conv2dOptions so;
    so.stride = {c_.patch_size, c_.patch_size};
    stem_conv_ = &t.tap(t.layer<Conv2d>(stem, "0", c_.in_chans, c_.dims[0], c_.patch_size, so, c_.conv_bias), s0);
    stem_norm_ = &t.tap(t.layer<LayerNorm>(stem, "1", c_.dims[0], eps), s0);
    const ShapeRule last = stage(3);
    Module& stages = t.tap(t.child(root, "stages", "Sequential"), last);
    int64_t prev = c_.dims[0];
    for (int i = 0; i < 4; ++i) {
      StageP s;
      const ShapeRule sh = stage(i);
      Module& st = t.tap(t.child(stages, std::to_string(i), "ConvNeXtStage"), sh);
      s.name = st.name();
      const int64_t out = c_.dims[i];
      if (i > 0) {  // stride 2; stage 0 keeps dims[0] channels at stride 1: nn.Identity
        Module& ds = t.tap(t.child(st, "downsample", "Sequential"), sh);
        s.down_norm = &t.tap(t.layer<LayerNorm>(ds, "0", prev, eps), stage(i - 1));
        Conv2dOptions o;
        o.stride = {2, 2};
        s.down_conv = &t.tap(t.layer<Conv2d>(ds, "1", prev, out, 2, o, c_.conv_bias), sh);
      } else {
        t.tap(st, "downsample", "Identity", sh);
      }
      Module& blocks = t.tap(t.child(st, "blocks", "Sequential"), sh);
      for (int j = 0; j < c_.depths[i]; ++j) s.blocks.push_back(make_block(t, blocks, j, i));
      stages_.push_back(std::move(s));
      prev = out;
    }
    t.tap(root, "norm_pre", "Identity", last);
    // NormMlpClassifierHead.__init__: global_pool (pool, flatten), norm, flatten, pre_logits, drop, fc
    const ShapeRule pooled = [this](const Shape& in) { return Shape{in[0], c_.dims[3], 1, 1}; };
    const ShapeRule flat = [this](const Shape& in) { return Shape{in[0], c_.dims[3]}; };
    const ShapeRule logits = [this](const Shape& in) {
      return Shape{in[0], c_.num_classes > 0 ? c_.num_classes : c_.dims[3]};
    };
    Module& head = t.tap(t.child(root, "head", "NormMlpClassifierHead"), logits);
    Module& gp = t.tap(t.child(head, "global_pool", "SelectAdaptivePool2d"), pooled);
    t.tap(gp, "pool", "AdaptiveAvgPool2d", pooled);
    t.tap(gp, "flatten", "Identity", pooled);
    head_norm_ = &t.tap(t.layer<LayerNorm>(head, "norm", prev, eps), pooled);
    t.tap(head, "flatten", "Flatten", flat);
    t.tap(head, "pre_logits", "Identity", flat);
    t.tap(head, "drop", "Dropout", flat);
    if (c_.num_classes > 0)
      head_fc_ = &t.tap(t.layer<Linear>(head, "fc", prev, c_.num_classes, true, /*pack=*/false), logits);
    else
      t.tap(head, "fc", "Identity", flat);
  }

  Shape default_input_shape(int64_t batch) const override { return {batch, c_.in_chans, c_.img_size, c_.img_size}; }

  void check_input(const Shape& s) const override {
    const int64_t m = int64_t{8} * c_.patch_size;  // the stem's stride, then three 2x2 stride-2 downsamples
    if (s.size() != 4 || s[0] < 1 || s[1] != c_.in_chans || s[2] < m || s[3] < m)
      throw std::invalid_argument("arch '" + arch().name + "': input must be [B, " + std::to_string(c_.in_chans) +
                                  ", H, W] with H, W >= " + std::to_string(m) + " (stride " +
                                  std::to_string(m) + " at the last stage), got " + shape_str(s));
  }

  Tensor forward(const Tensor& x_in, TapSet& taps) override {
    check_weights();
    check_input(x_in.shape());
    taps.bind(tap_order(x_in.shape()));
    Tensor x = tap(taps, "stem.0", (*stem_conv_)(x_in.to(act_dtype())));
    x = tap(taps, "stem", tap(taps, "stem.1", ln2d(*stem_norm_, x)));
    if (taps.done()) return x;
    for (const StageP& s : stages_) {
      if (s.down_conv) {
        const std::string d = s.name + ".downsample";
        x = tap(taps, d + ".0", ln2d(*s.down_norm, x));
        x = tap(taps, d, tap(taps, d + ".1", (*s.down_conv)(x)));
      } else {
        x = tap(taps, s.name + ".downsample", x);  // nn.Identity
      }
      if (taps.done()) return x;
      for (const BlockP& b : s.blocks) {
        x = tap(taps, b.name, block_forward(b, x, taps));
        if (taps.done()) return x;
      }
      x = tap(taps, s.name, tap(taps, s.name + ".blocks", x));
      if (taps.done()) return x;
    }
    x = tap(taps, "norm_pre", tap(taps, "stages", x));
    if (taps.done()) return x;
    // NormMlpClassifierHead: global_pool (SelectAdaptivePool2d: pool, flatten=Identity) -> norm -> flatten ->
    // pre_logits (Identity) -> drop -> fc
    x = tap(taps, "head.global_pool.pool", ops::adaptive_avg_pool2d(x, {1, 1}));
    x = tap(taps, "head.global_pool", tap(taps, "head.global_pool.flatten", x));
    x = tap(taps, "head.norm", ln2d(*head_norm_, x));
    x = tap(taps, "head.drop", tap(taps, "head.pre_logits", tap(taps, "head.flatten", x.flatten(1))));
    if (taps.done()) return x;
    x = tap(taps, "head.fc", head_fc_ ? (*head_fc_)(x) : x);
    return tap(taps, "head", x);
  }

  // forward_head(pre_logits=True): LayerNorm of the pooled last stage (DINOv3's x_norm_clstoken)
  std::vector<std::string> default_taps() const override { return {"head.pre_logits"}; }

 private:
  // The feature map of stage i (after its downsample) for the model input: [B, dims[i], h, w].
  Shape stage_shape(const Shape& in, int i) const {
    const int64_t P = c_.patch_size;
    int64_t h = conv_out(in[2], P, P, 0), w = conv_out(in[3], P, P, 0);
    for (int s = 1; s <= i; ++s) {
      h = conv_out(h, 2, 2, 0);
      w = conv_out(w, 2, 2, 0);
    }
    return {in[0], c_.dims[i], h, w};
  }
  ShapeRule stage(int i) const {
    return [this, i](const Shape& in) { return stage_shape(in, i); };
  }
  // A per-pixel module's output at stage i with `widen` x the channels: NCHW with conv_mlp, else NHWC.
  ShapeRule pixels(int i, int64_t widen) const {
    return [this, i, widen](const Shape& in) {
      const Shape s = stage_shape(in, i);
      return c_.conv_mlp ? Shape{s[0], widen * s[1], s[2], s[3]} : Shape{s[0], s[2], s[3], widen * s[1]};
    };
  }

  // ConvNeXtBlock.__init__ (conv_dw, norm, mlp, gamma, shortcut, drop_path) of stage i.
  BlockP make_block(ModuleTree& t, Module& blocks, int j, int i) {
    const int64_t C = c_.dims[i];
    const ShapeRule sh = stage(i), pix = pixels(i, 1), hid = pixels(i, 4);
    BlockP b;
    Module& m = t.tap(t.child(blocks, std::to_string(j), "ConvNeXtBlock"), sh);
    b.name = m.name();
    b.dim = C;
    Conv2dOptions o;
    const int64_t k = c_.kernel_size;
    o.padding = {k / 2, k / 2};
    o.groups = C;
    b.conv_dw = &t.tap(t.layer<Conv2d>(m, "conv_dw", C, C, k, o, c_.conv_bias), sh);
    b.norm = &t.tap(t.layer<LayerNorm>(m, "norm", C, c_.norm_eps), pix);
    Module& mlp = t.tap(t.child(m, "mlp", "Mlp"), pix);  // Mlp.__init__: fc1, act, drop1, norm, fc2, drop2
    b.fc1 = &t.tap(t.layer<PixelLinear>(mlp, "fc1", C, 4 * C, c_.conv_mlp), hid);
    t.tap(mlp, "act", "GELU", hid);
    t.tap(mlp, "drop1", "Dropout", hid);
    t.tap(mlp, "norm", "Identity", hid);
    b.fc2 = &t.tap(t.layer<PixelLinear>(mlp, "fc2", 4 * C, C, c_.conv_mlp), pix);
    t.tap(mlp, "drop2", "Dropout", pix);
    if (c_.ls_init_value) {
      b.gamma = &t.layer<Parameter>(m, "gamma", Shape{C}, CtorInit{CtorInit::constant, *c_.ls_init_value});
      b.fc2->set_layer_scale(b.gamma);
    }
    t.tap(m, "shortcut", "Identity", sh);
    t.tap(m, "drop_path", "Identity", sh);
    return b;
  }

  // LayerNorm2d: F.layer_norm over the channels of the NHWC view, back to NCHW.
  static Tensor ln2d(const LayerNorm& norm, const Tensor& x) { return to_nchw(norm(to_nhwc(x))); }

  // A tap on a per-pixel value held as [B, H, W, C]: torch's module returns it NHWC (Linear MLP) or NCHW
  // (conv_mlp); either way the forward continues with the NHWC view of what the tap kept.
  Tensor tap_pix(TapSet& taps, const std::string& name, Tensor nhwc) const {
    if (!c_.conv_mlp) return tap(taps, name, std::move(nhwc));
    return to_nhwc(tap(taps, name, to_nchw(nhwc)));
  }

  // ConvNeXtBlock.forward: conv_dw -> (permute) norm -> mlp -> (permute) * gamma -> + shortcut.
  Tensor block_forward(const BlockP& b, const Tensor& x, TapSet& taps) const {
    const std::string& n = b.name;
    Tensor y = to_nhwc(tap(taps, n + ".conv_dw", (*b.conv_dw)(x)));
    y = tap_pix(taps, n + ".norm", (*b.norm)(y));
    const std::string m = n + ".mlp";
    if (taps.wants(m + ".fc1")) {
      y = tap_pix(taps, m + ".fc1", (*b.fc1)(y));
      y = ops::gelu(y);
    } else {
      y = (*b.fc1)(y, Activation::gelu);
    }
    y = tap_pix(taps, m + ".norm", tap_pix(taps, m + ".drop1", tap_pix(taps, m + ".act", y)));
    // nothing observes fc2's output before the residual: fc2, gamma and the add in one GEMM epilogue
    const bool observed = taps.wants(m + ".fc2") || taps.wants(m + ".drop2") || taps.wants(m) ||
                          taps.wants(n + ".drop_path") || taps.wants(n + ".shortcut");
    if (!observed) {
      Tensor out = b.fc2->scaled(y, to_nhwc(x));
      if (out.defined()) return to_nchw(out);
    }
    y = tap_pix(taps, m + ".drop2", tap_pix(taps, m + ".fc2", (*b.fc2)(y)));
    y = tap_pix(taps, m, y);
    if (b.gamma) y = ops::layer_scale(y, **b.gamma);  // x.mul(gamma.reshape(1, -1, 1, 1))
    const Tensor shortcut = tap(taps, n + ".shortcut", x);  // (tap_order: named_modules' order)
    y = to_nhwc(tap(taps, n + ".drop_path", to_nchw(y)));
    return to_nchw(ops::add(y, to_nhwc(shortcut)));  // drop_path(x) + shortcut(shortcut)
  }

  ConvNeXtConfig c_;
  Conv2d* stem_conv_ = nullptr;
  LayerNorm* stem_norm_ = nullptr;
  std::vector<StageP> stages_;
  LayerNorm* head_norm_ = nullptr;
  Linear* head_fc_ = nullptr;
};

ConvNeXtConfig convnext(std::array<int, 4> depths, std::array<int, 4> dims, bool conv_mlp) {
  ConvNeXtConfig c;
  c.depths = depths;
  c.dims = dims;
  c.conv_mlp = conv_mlp;
  return c;
}

std::shared_ptr<const ModelConfig> cfg(const ConvNeXtConfig& c) { return std::make_shared<ConvNeXtConfig>(c); }

}  // namespace

std::unique_ptr<Model> ConvNeXtConfig::construct(const ArchConfig& arch) const {
  return std::make_unique<ConvNeXt>(arch);
}

// timm's convnext_* entry points (model_args); dinov3_convnext_* are the same networks without a classifier
// (dinov3/hub/backbones.py, convnext_sizes), loaded from the hub .pth layout.
const Family& convnext_family() {
  static const Family f{
      "convnext",
      std::make_shared<ConvNeXtConfig>(),
      {
          {"convnext_atto", cfg(convnext({2, 2, 6, 2}, {40, 80, 160, 320}, true))},
          {"convnext_femto", cfg(convnext({2, 2, 6, 2}, {48, 96, 192, 384}, true))},
          {"convnext_pico", cfg(convnext({2, 2, 6, 2}, {64, 128, 256, 512}, true))},
          {"convnext_nano", cfg(convnext({2, 2, 8, 2}, {80, 160, 320, 640}, true))},
          {"convnext_tiny", cfg(convnext({3, 3, 9, 3}, {96, 192, 384, 768}, false))},
          {"convnext_small", cfg(convnext({3, 3, 27, 3}, {96, 192, 384, 768}, false))},
          {"convnext_base", cfg(convnext({3, 3, 27, 3}, {128, 256, 512, 1024}, false))},
          {"convnext_large", cfg(convnext({3, 3, 27, 3}, {192, 384, 768, 1536}, false))},
      },
      {
          {"dinov3_convnext_tiny", "convnext_tiny:classes=0"},
          {"dinov3_convnext_small", "convnext_small:classes=0"},
          {"dinov3_convnext_base", "convnext_base:classes=0"},
          {"dinov3_convnext_large", "convnext_large:classes=0"},
      },
  };
  return f;
}

}  // namespace tabula
