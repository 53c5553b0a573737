#include "models/swin.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <stdexcept>
#include <tuple>

#include "engine/backend.h"
#include "engine/init.h"
#include "engine/ops.h"
#include "engine/threads.h"
#include "models/device.h"
#include "models/layers.h"
#include "models/model.h"

namespace tabula {

namespace {

std::vector<int> parse_int_list(const std::string& k, const std::string& v, int lo, int hi) {
  std::vector<int> out;
  size_t start = 0;
  while (true) {
    const size_t comma = v.find(',', start);
    out.push_back(parse_int_value(k, v.substr(start, comma - start), lo, hi));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace

void SwinConfig::apply_keys(const KeyValues& kv) {
  auto fail = [](const std::string& why) { throw KeyValueError(why); };
  for (const auto& [k, v] : kv) {
    if (k == "dim" || k == "embed_dim") embed_dim = parse_int_value(k, v, 1);
    else if (k == "depths") depths = parse_int_list(k, v, 0, 1024);
    else if (k == "heads" || k == "num_heads") num_heads = parse_int_list(k, v, 1, 4096);
    else if (k == "window" || k == "window_size") window_size = parse_int_value(k, v, 1, 1024);
    else if (k == "patch" || k == "patch_size") patch_size = parse_int_value(k, v, 1);
    else if (k == "img" || k == "img_size") img_size = parse_int_value(k, v, 1);
    else if (k == "chans" || k == "in_chans") in_chans = parse_int_value(k, v, 1, 1024);
    else if (k == "classes" || k == "num_classes") num_classes = parse_int_value(k, v, 0);
    else if (k == "mlp_ratio") mlp_ratio = parse_number_value(k, v);
    else if (k == "qkv_bias") qkv_bias = parse_bool_value(k, v);
    else if (k == "embed_layer") {
      if (v != "patch" && v != "convstem") fail("key 'embed_layer' is patch or convstem; got '" + v + "'");
      embed_layer = v;
    } else {
      fail("unknown key '" + k +
           "' (swin keys: dim, depths, heads, window, patch, img, chans, classes, mlp_ratio, "
           "qkv_bias, embed_layer)");
    }
  }
  if (depths.empty() || depths.size() > 8) fail("key 'depths' needs 1 to 8 stages");
  if (num_heads.size() != depths.size())
    fail("keys 'depths' and 'heads' need one value per stage (" + std::to_string(depths.size()) + " and " +
         std::to_string(num_heads.size()) + " given)");
  if (static_cast<double>(embed_dim) * (1 << (stages() - 1)) * 4 > kMaxSize) fail("dim * 2^(stages-1) too large");
  for (int i = 0; i < stages(); ++i)
    if (dim(i) / num_heads[static_cast<size_t>(i)] < 1)
      fail("stage " + std::to_string(i) + " has more heads than dims");
  if (!(mlp_ratio > 0) || num_features() * mlp_ratio > kMaxSize) fail("int(dim * mlp_ratio) out of range");
  if (img_size < patch_size) fail("img smaller than the patch");
  if (embed_layer == "convstem" && (patch_size != 4 || embed_dim % 8 != 0 || in_chans != 3))
    fail("embed_layer=convstem needs patch=4, dim a multiple of 8 and chans=3 (HEST's ConvStem asserts)");
}

// SwinTransformer.init_weights(needs_reset=False) = named_apply(init_weights_vit_timm), children first: every
// nn.Linear trunc_normal_(std=.02) (timm's) with a zero bias. The rest keeps its constructor values: the convs'
// reset_parameters(), LayerNorm/BatchNorm constants, and the relative position tables, drawn by WindowAttention's
// constructor (CtorInit::trunc).
void SwinConfig::init_weights(const ModuleTree& tree, InitState& s) const {
  for (const Module* m : tree.modules_post_order()) {
    if (m->type != "Linear") continue;
    const std::string n = m->name();
    timm_trunc_normal_(s.f32(n + ".weight"), s.numel(n + ".weight"), s.gen(), 0.0, 0.02);
    if (s.has(n + ".bias")) s.fill(n + ".bias", 0.0f);
  }
}

namespace {

// get_relative_position_index(win_h, win_w): [N, N] indices into the bias table.
std::vector<int64_t> relative_position_index(int64_t wh, int64_t ww) {
  const int64_t N = wh * ww;
  std::vector<int64_t> idx(static_cast<size_t>(N * N));
  for (int64_t a = 0; a < N; ++a)
    for (int64_t b = 0; b < N; ++b) {
      const int64_t dh = a / ww - b / ww + wh - 1, dw = a % ww - b % ww + ww - 1;
      idx[static_cast<size_t>(a * N + b)] = dh * (2 * ww - 1) + dw;
    }
  return idx;
}

// The window and shift of one block: timm's _calc_window_shift for the block's input resolution at `img`.
struct WindowShift {
  int64_t wh, ww, sh, sw;
};
WindowShift window_shift(int64_t res_h, int64_t res_w, int64_t window, bool shifted) {
  const int64_t s = shifted ? window / 2 : 0;
  WindowShift w{};
  w.wh = res_h <= window ? res_h : window;
  w.ww = res_w <= window ? res_w : window;
  w.sh = res_h <= w.wh ? 0 : s;
  w.sw = res_w <= w.ww ? 0 : s;
  return w;
}

// The block resolutions of stage i for a patch grid (iterated ceil halving, as PatchMerging pads to even).
std::pair<int64_t, int64_t> stage_resolution(int64_t gh, int64_t gw, int stage) {
  for (int i = 1; i <= stage; ++i) gh = (gh + 1) / 2, gw = (gw + 1) / 2;
  return {gh, gw};
}

}  // namespace

// Original Swin / timm 0.5.x names (CTransPath's ctranspath.pth) -> timm 1.0's, as timm's checkpoint_filter_fn;
// the derived buffers dropped (relative_position_index checked against the derivation first).
WeightMap SwinConfig::from_canonical(const WeightMap& w) const {
  const bool old = w.count("layers.0.downsample.reduction.weight") != 0;
  WeightMap out;
  for (const auto& [k, t] : w) {
    if (k.find("attn_mask") != std::string::npos) continue;
    if (k.find("relative_position_index") != std::string::npos) {
      // layers.N.blocks.M.attn.relative_position_index: must be the one the block's window derives
      const int64_t n = t.dim() == 2 ? t.size(0) : -1;
      const int64_t side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(std::max<int64_t>(n, 0)))));
      bool same = n > 0 && t.size(1) == n && side * side == n;
      if (same) {
        const std::vector<int64_t> want = relative_position_index(side, side);
        const Tensor got = t.to(DType::f32).contiguous();
        for (int64_t i = 0; i < n * n && same; ++i) same = got.data<float>()[i] == static_cast<float>(want[i]);
      }
      if (!same)
        throw std::invalid_argument("Swin weights: '" + k + "' " + t.str() +
                                    " is not the relative position index of a square window");
      continue;
    }
    std::string key = k;
    if (old) {
      const size_t p = key.find(".downsample.");
      if (key.rfind("layers.", 0) == 0 && p != std::string::npos) {
        const int stage = std::stoi(key.substr(7, p - 7));
        key = "layers." + std::to_string(stage + 1) + key.substr(p);
      }
      if (key.rfind("head.", 0) == 0) {
        if (num_classes == 0) continue;  // HEST: model.head = nn.Identity(), load_state_dict(strict=False)
        key = "head.fc." + key.substr(5);
      }
    }
    out[key] = t;
  }
  return out;
}

namespace {

// WindowAttention.relative_position_bias_table, and the [heads, N, N] bias it gives through the index (gathered
// once at load; the table is a parameter, its constructor draw comes after qkv and proj: ModuleTree::draw_now).
class RelPosBias final : public Layer {
 public:
  RelPosBias(ModuleTree& t, Module& attn, const WindowShift& w, int64_t heads) : attn_(&attn), w_(w), heads_(heads) {
    index_ = t.param(attn, "relative_position_bias_table", {(2 * w.wh - 1) * (2 * w.ww - 1), heads},
                     CtorInit{CtorInit::trunc, 0.02});
  }
  size_t param_index() const { return index_; }
  void load(const ParamStore& p) override {
    const Tensor table = p[attn_->name() + ".relative_position_bias_table"];
    if (p.is_skeleton()) return;
    const Tensor tb = table.contiguous();
    const int64_t N = w_.wh * w_.ww;
    const std::vector<int64_t> idx = relative_position_index(w_.wh, w_.ww);
    bias_ = Tensor::empty({heads_, N, N});
    for (int64_t h = 0; h < heads_; ++h)
      for (int64_t a = 0; a < N * N; ++a)
        bias_.data<float>()[h * N * N + a] = tb.data<float>()[idx[static_cast<size_t>(a)] * heads_ + h];
  }
  void prepare(int device) override {
    if (device >= 0) bias_ = upload(bias_, device);
  }
  const Tensor& operator*() const { return bias_; }

 private:
  Module* attn_;
  WindowShift w_;
  int64_t heads_;
  size_t index_;
  Tensor bias_;
};

// nn.Conv2d(bias=False) + nn.BatchNorm2d (eval) + ReLU of the ConvStem, BN folded into the conv at load.
class ConvBNReLU final : public Layer {
 public:
  // `shape`: the conv's output for the model input (not a tap; its MACs count).
  ConvBNReLU(ModuleTree& t, Module& seq, int index, int64_t in, int64_t out, ShapeRule shape) {
    Conv2dOptions o;
    o.stride = {2, 2};
    o.padding = {1, 1};
    opt_ = o;
    conv_ = &t.child(seq, std::to_string(index), "Conv2d");
    t.reset_weight_bias(*conv_, {out, in, 3, 3}, false);
    t.untapped(*conv_, std::move(shape)).macs = [in](const Shape& y) {
      return static_cast<double>(shape_numel(y)) * static_cast<double>(in * 9);
    };
    bn_ = &t.child(seq, std::to_string(index + 1), "BatchNorm2d");
    t.param(*bn_, "weight", {out}, {CtorInit::constant, 1.0});
    t.param(*bn_, "bias", {out});
    t.buffer(*bn_, "running_mean", {out});
    t.buffer(*bn_, "running_var", {out}, {CtorInit::constant, 1.0});
    t.buffer(*bn_, "num_batches_tracked", {}, {}, DType::i64);
    t.child(seq, std::to_string(index + 2), "ReLU");
  }
  void load(const ParamStore& p) override {
    const std::string c = conv_->name(), b = bn_->name();
    w_ = p[c + ".weight"];
    if (p.is_skeleton()) return;
    std::tie(wf_, bf_) = fold_batch_norm(w_, Tensor(), p[b + ".weight"], p[b + ".bias"], p[b + ".running_mean"],
                                         p[b + ".running_var"], 1e-5);
  }
  void prepare(int device) override {
    if (device < 0) return;
    wf_ = upload_conv_weight(wf_, device);
    bf_ = upload(bf_, device);
  }
  Tensor operator()(const Tensor& x) const { return ops::conv2d(x, wf_, bf_, opt_, Activation::relu); }

 private:
  Module *conv_ = nullptr, *bn_ = nullptr;
  Conv2dOptions opt_;
  Tensor w_, wf_, bf_;
};

struct BlockP {
  std::string name;
  WindowShift win{};
  int64_t heads = 0, head_dim = 0;
  LayerNorm *norm1 = nullptr, *norm2 = nullptr;
  RelPosBias* bias = nullptr;
  Linear *qkv = nullptr, *proj = nullptr, *fc1 = nullptr, *fc2 = nullptr;
};

struct StageP {
  std::string name;
  int64_t dim = 0;
  LayerNorm* merge_norm = nullptr;  // PatchMerging (stages after the first)
  Linear* reduction = nullptr;
  std::vector<BlockP> blocks;
};

// torch.roll along one dim: out[i] = x[(i - shift) mod n].
Tensor roll(const Tensor& x, int64_t shift, int64_t dim) {
  const int64_t n = x.size(dim), s = ((shift % n) + n) % n;
  if (s == 0) return x;
  return ops::cat({x.slice(dim, n - s, n), x.slice(dim, 0, n - s)}, dim);
}

// Zeros of x's storage type where x lives, for F.pad.
Tensor zeros_like_at(const Shape& shape, const Tensor& x) {
  const Tensor z = Tensor::zeros(shape);
  return on_gpu(x) ? backend("swin pad", x.device()).to_device_like(z, x) : z;
}

// F.pad(x, (0, 0, 0, pw, 0, ph)) of x [B, H, W, C].
Tensor pad_hw(const Tensor& x, int64_t ph, int64_t pw) {
  Tensor y = x;
  const int64_t B = x.size(0), C = x.size(3);
  if (pw) y = ops::cat({y, zeros_like_at({B, y.size(1), pw, C}, x)}, 2);
  if (ph) y = ops::cat({y, zeros_like_at({B, ph, y.size(2), C}, x)}, 1);
  return y;
}

// The CPU form of _attn's data movement, one pass each way: the cyclic shift by -shift, the zero padding to whole
// windows and window_partition as one gather into [B * windows, N, C]; window_reverse, the crop, the shift back and
// the block's residual add as one gather out of it. Pure copies and one add per element: the bits of the tensor ops.
Tensor partition_windows_cpu(const Tensor& x, const WindowShift& w, int64_t Hp, int64_t Wp) {
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  const int64_t nh = Hp / w.wh, nw = Wp / w.ww, N = w.wh * w.ww;
  Tensor out = Tensor::empty({B * nh * nw, N, C});
  const float* xp = x.data<float>();
  float* op = out.data<float>();
  const int64_t rows = B * Hp;  // one padded, shifted image row per item
  parallel_for(rows, grain_for(rows, Wp * C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / Hp, hs = r % Hp, a = hs / w.wh, i = hs % w.wh;
      for (int64_t ws = 0; ws < Wp; ++ws) {
        float* dst = op + (((b * nh + a) * nw + ws / w.ww) * N + i * w.ww + ws % w.ww) * C;
        if (hs >= H || ws >= W) {
          std::fill(dst, dst + C, 0.0f);
          continue;
        }
        const float* src = xp + ((b * H + (hs + w.sh) % H) * W + (ws + w.sw) % W) * C;
        std::copy(src, src + C, dst);
      }
    }
  });
  return out;
}

Tensor reverse_windows_add_cpu(const Tensor& o, const Tensor& x, const WindowShift& w, int64_t Hp, int64_t Wp) {
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  const int64_t nh = Hp / w.wh, nw = Wp / w.ww, N = w.wh * w.ww;
  Tensor y = Tensor::empty(x.shape());
  const float* xp = x.data<float>();
  const float* opp = o.data<float>();
  float* yp = y.data<float>();
  parallel_for(B * H, grain_for(B * H, W * C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / H, h = r % H, hs = (h - w.sh % H + H) % H, a = hs / w.wh, i = hs % w.wh;
      for (int64_t c = 0; c < W; ++c) {
        const int64_t cs = (c - w.sw % W + W) % W;
        const float* src = opp + (((b * nh + a) * nw + cs / w.ww) * N + i * w.ww + cs % w.ww) * C;
        const float* xr = xp + (r * W + c) * C;
        float* dst = yp + (r * W + c) * C;
        for (int64_t k = 0; k < C; ++k) dst[k] = xr[k] + src[k];
      }
    }
  });
  return y;
}

class Swin final : public Model {
 public:
  // SwinTransformer.__init__, in construction order.
  explicit Swin(const ArchConfig& arch) : Model(arch), c_(*arch.as<SwinConfig>()) {
    ModuleTree& t = module_tree();
    Module& root = t.root();
    const int64_t D = c_.embed_dim;
    const ShapeRule grid = [this](const Shape& in) {  // PatchEmbed.proj's output
      return Shape{in[0], c_.embed_dim, in[2] / c_.patch_size, in[3] / c_.patch_size};
    };
    if (c_.embed_layer == "convstem") {
      Module& pe = t.tap(t.child(root, "patch_embed", "ConvStem"), tokens(-1));
      Module& seq = t.tap(t.child(pe, "proj", "Sequential"), grid);
      // stride-2 3x3 convs to D / 8 (2x the grid) and D / 4 (the grid) channels, then a 1x1 conv to D
      stem_[0] = &t.layer<ConvBNReLU>(seq, 0, 3, D / 8, [this](const Shape& in) {
        return Shape{in[0], c_.embed_dim / 8, 2 * (in[2] / c_.patch_size), 2 * (in[3] / c_.patch_size)};
      });
      stem_[1] = &t.layer<ConvBNReLU>(seq, 3, D / 8, D / 4, [this](const Shape& in) {
        return Shape{in[0], c_.embed_dim / 4, in[2] / c_.patch_size, in[3] / c_.patch_size};
      });
      stem_out_ = &t.untapped(t.layer<Conv2d>(seq, "6", D / 4, D, 1, Conv2dOptions{}, true), grid);
      patch_norm_ = &t.tap(t.layer<LayerNorm>(pe, "norm", D, 1e-5), tokens(-1));
    } else {
      Module& pe = t.tap(t.child(root, "patch_embed", "PatchEmbed"), tokens(-1));
      Conv2dOptions po;
      po.stride = {c_.patch_size, c_.patch_size};
      patch_ = &t.tap(t.layer<Conv2d>(pe, "proj", c_.in_chans, D, c_.patch_size, po, true), grid);
      patch_norm_ = &t.tap(t.layer<LayerNorm>(pe, "norm", D, 1e-5), tokens(-1));
    }
    const ShapeRule last = tokens(c_.stages() - 1);
    Module& layers = t.tap(t.child(root, "layers", "Sequential"), last);
    for (int i = 0; i < c_.stages(); ++i) stages_.push_back(make_stage(t, layers, i));
    norm_ = &t.tap(t.layer<LayerNorm>(root, "norm", c_.num_features(), 1e-5), last);
    const ShapeRule pooled = [this](const Shape& in) { return Shape{in[0], c_.num_features()}; };
    const ShapeRule logits = [this](const Shape& in) { return Shape{in[0], c_.num_classes}; };
    Module& head = t.tap(t.child(root, "head", "ClassifierHead"), c_.num_classes > 0 ? logits : pooled);
    t.tap(head, "global_pool", "SelectAdaptivePool2d", pooled);
    if (c_.num_classes > 0) fc_ = &t.tap(t.layer<Linear>(head, "fc", c_.num_features(), c_.num_classes, true), logits);
  }

  Shape default_input_shape(int64_t batch) const override { return {batch, c_.in_chans, c_.img_size, c_.img_size}; }

  void check_input(const Shape& s) const override {
    const int64_t P = c_.patch_size;
    if (s.size() != 4 || s[0] < 1 || s[1] != c_.in_chans || s[2] < P || s[3] < P || s[2] % P || s[3] % P)
      throw std::invalid_argument("arch '" + arch().name + "': input must be [B, " + std::to_string(c_.in_chans) +
                                  ", H, W] with H and W multiples of the patch size " + std::to_string(P) + ", got " +
                                  shape_str(s));
  }

  Tensor forward(const Tensor& x_in, TapSet& taps) override {
    check_weights();
    check_input(x_in.shape());
    taps.bind(tap_order(x_in.shape()));
    Tensor x;
    if (patch_) {
      x = T(taps, "patch_embed.proj", (*patch_)(x_in));
    } else {
      x = (*stem_out_)((*stem_[1])((*stem_[0])(x_in)));
      x = T(taps, "patch_embed.proj", x);
    }
    x = x.permute({0, 2, 3, 1}).contiguous();  // output_fmt NHWC
    x = T4(taps, "patch_embed.norm", (*patch_norm_)(x));
    x = T4(taps, "patch_embed", x);
    if (taps.done()) return x;
    for (const StageP& s : stages_) {
      if (s.reduction) x = patch_merging(s, x, taps);
      for (const BlockP& b : s.blocks) {
        x = T4(taps, b.name, block_forward(b, x, taps));
        if (taps.done()) return x;
      }
      x = T4(taps, s.name + ".blocks", x);
      x = T4(taps, s.name, x);
      if (taps.done()) return x;
    }
    x = T4(taps, "layers", x);
    x = T4(taps, "norm", (*norm_)(x));
    if (taps.done()) return x;
    const int64_t B = x.size(0), C = x.size(3);
    Tensor pooled = T(taps, "head.global_pool", ops::pool(x.reshape({B, x.size(1) * x.size(2), C}), Pool::avg, 0));
    if (fc_) pooled = T(taps, "head.fc", (*fc_)(pooled));
    return T(taps, "head", pooled);
  }

  std::vector<std::string> default_taps() const override { return {"head"}; }

 private:
  // The token grid of stage i (-1: the patch embedding) for the model input: PatchMerging pads odd sizes.
  std::pair<int64_t, int64_t> grid_of(const Shape& in, int i) const {
    int64_t h = in[2] / c_.patch_size, w = in[3] / c_.patch_size;
    for (int s = 1; s <= i; ++s) h = (h + 1) / 2, w = (w + 1) / 2;
    return {h, w};
  }
  // Stage i's tokens [B, h * w, width] (width 0: the stage's dim; stage -1: the embedding's).
  ShapeRule tokens(int i, int64_t width = 0) const {
    return [this, i, width](const Shape& in) {
      const auto [h, w] = grid_of(in, i);
      return Shape{in[0], h * w, width ? width : i < 0 ? c_.embed_dim : c_.dim(i)};
    };
  }
  // A window attention output of stage i, tapped per image: [B, windows * N, width] for tokens; the maps
  // [B, windows * heads, N, N] for width 0.
  ShapeRule windows(int i, const WindowShift& win, int64_t width, int64_t heads = 0) const {
    return [this, i, win, width, heads](const Shape& in) {
      const auto [h, w] = grid_of(in, i);
      const int64_t N = win.wh * win.ww, nW = ((h + win.wh - 1) / win.wh) * ((w + win.ww - 1) / win.ww);
      return heads ? Shape{in[0], nW * heads, N, N} : Shape{in[0], nW * N, width};
    };
  }

  // SwinTransformerStage.__init__ (downsample, blocks) with each SwinTransformerBlock's norm1, attn (qkv, proj;
  // tabula's attn.softmax between), norm2, mlp (fc1, act, fc2): the modules the forward taps.
  StageP make_stage(ModuleTree& t, Module& layers, int i) {
    StageP s;
    const ShapeRule tok = tokens(i);
    Module& m = t.tap(t.child(layers, std::to_string(i), "SwinTransformerStage"), tok);
    s.name = m.name();
    s.dim = c_.dim(i);
    if (i > 0) {
      Module& ds = t.tap(t.child(m, "downsample", "PatchMerging"), tok);
      s.merge_norm = &t.tap(t.layer<LayerNorm>(ds, "norm", 2 * s.dim, 1e-5), tokens(i, 2 * s.dim));
      s.reduction = &t.tap(t.layer<Linear>(ds, "reduction", 2 * s.dim, s.dim, false), tok);
    }
    const auto [rh, rw] = stage_resolution(c_.grid(), c_.grid(), i);
    Module& blocks = t.tap(t.child(m, "blocks", "Sequential"), tok);
    for (int j = 0; j < c_.depths[static_cast<size_t>(i)]; ++j) {
      BlockP b;
      Module& bm = t.tap(t.child(blocks, std::to_string(j), "SwinTransformerBlock"), tok);
      b.name = bm.name();
      b.win = window_shift(rh, rw, c_.window_size, j % 2 == 1);
      b.heads = c_.num_heads[static_cast<size_t>(i)];
      b.head_dim = s.dim / b.heads;
      const int64_t A = b.heads * b.head_dim, Hf = static_cast<int64_t>(static_cast<double>(s.dim) * c_.mlp_ratio);
      b.norm1 = &t.tap(t.layer<LayerNorm>(bm, "norm1", s.dim, 1e-5), tok);
      Module& attn = t.tap(t.child(bm, "attn", "WindowAttention"), windows(i, b.win, s.dim));
      b.bias = &t.layer<RelPosBias>(attn, b.win, b.heads);
      b.qkv = &t.tap(t.layer<Linear>(attn, "qkv", s.dim, 3 * A, c_.qkv_bias), windows(i, b.win, 3 * A));
      // q k^T and attn v over the padded windows: 2 * head_dim products per map entry
      const double hd = static_cast<double>(b.head_dim);
      t.tap(attn, "softmax", "Softmax", windows(i, b.win, 0, b.heads),
            [hd](const Shape& o) { return 2.0 * static_cast<double>(shape_numel(o)) * hd; });
      b.proj = &t.tap(t.layer<Linear>(attn, "proj", A, s.dim, true), windows(i, b.win, s.dim));
      t.draw_now(b.bias->param_index());  // WindowAttention.reset_parameters(), at the end of its __init__
      b.norm2 = &t.tap(t.layer<LayerNorm>(bm, "norm2", s.dim, 1e-5), tok);
      Module& mlp = t.tap(t.child(bm, "mlp", "Mlp"), tok);
      b.fc1 = &t.tap(t.layer<Linear>(mlp, "fc1", s.dim, Hf, true), tokens(i, Hf));
      t.tap(mlp, "act", "GELU", tokens(i, Hf));
      b.fc2 = &t.tap(t.layer<Linear>(mlp, "fc2", Hf, s.dim, true), tok);
      s.blocks.push_back(b);
    }
    return s;
  }

  Tensor T(TapSet& taps, const std::string& name, Tensor x) const {
    TapContext ctx;
    ctx.num_prefix_tokens = 0;
    taps.tap(name, x, ctx);
    return x;
  }
  // A per-window output [B * windows, ...], tapped per image: [B, windows * N, C] for tokens (window by window),
  // [B, windows * heads, N, N] for attention maps (the same memory; embed's rows stay images).
  Tensor TW(TapSet& taps, const std::string& name, const Tensor& x, int64_t images) const {
    Shape per = x.shape();
    per[0] = images;
    per[1] = x.size(1) * (x.size(0) / images);
    return T(taps, name, x.reshape(per)).reshape(x.shape());
  }
  // An NHWC map, tapped as its [B, H*W, C] token sequence.
  Tensor T4(TapSet& taps, const std::string& name, const Tensor& x) const {
    const int64_t B = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
    return T(taps, name, x.reshape({B, H * W, C})).reshape({B, H, W, C});
  }

  // PatchMerging: pad to even, [B, H/2, 2, W/2, 2, C] -> permute(0, 1, 3, 4, 2, 5) -> flatten, norm, reduction.
  Tensor patch_merging(const StageP& s, const Tensor& x_in, TapSet& taps) const {
    const std::string n = s.name + ".downsample";
    Tensor x = pad_hw(x_in, x_in.size(1) % 2, x_in.size(2) % 2);
    const int64_t B = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
    x = x.reshape({B, H / 2, 2, W / 2, 2, C})
            .permute({0, 1, 3, 4, 2, 5})
            .contiguous()
            .reshape({B, H / 2, W / 2, 4 * C});
    x = T4(taps, n + ".norm", (*s.merge_norm)(x));
    x = T4(taps, n + ".reduction", (*s.reduction)(x));
    return T4(taps, n, x);
  }

  // SwinTransformerBlock.forward: x + _attn(norm1(x)), then x + mlp(norm2(x)) over the tokens.
  Tensor block_forward(const BlockP& b, const Tensor& x, TapSet& taps) {
    const std::string& n = b.name;
    const int64_t B = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
    const Tensor y = attn_residual(b, x, T4(taps, n + ".norm1", (*b.norm1)(x)), taps).reshape({B, H * W, C});
    const Tensor h = T(taps, n + ".norm2", (*b.norm2)(y));
    const std::string m = n + ".mlp";
    Tensor out;
    if (!taps.wants(m) && !taps.wants(m + ".fc1") && !taps.wants(m + ".act") && !taps.wants(m + ".fc2")) {
      out = (*b.fc2)((*b.fc1)(h, Activation::gelu), y);  // GELU in fc1's epilogue, the residual in fc2's
    } else {
      Tensor a = taps.wants(m + ".fc1") ? ops::gelu(T(taps, m + ".fc1", (*b.fc1)(h))) : (*b.fc1)(h, Activation::gelu);
      a = T(taps, m + ".fc2", (*b.fc2)(T(taps, m + ".act", a)));
      out = ops::add(y, T(taps, m, a));
    }
    return out.reshape({B, H, W, C});
  }

  // x + SwinTransformerBlock._attn(h): roll by -shift, pad to whole windows, window_partition, WindowAttention,
  // window_reverse, crop, roll back (one gather each way on the CPU), then the residual.
  Tensor attn_residual(const BlockP& b, const Tensor& x, const Tensor& h, TapSet& taps) {
    const int64_t B = h.size(0), H = h.size(1), W = h.size(2), C = h.size(3);
    const int64_t wh = b.win.wh, ww = b.win.ww, N = wh * ww;
    const bool shift = b.win.sh || b.win.sw;
    const int64_t ph = (wh - H % wh) % wh, pw = (ww - W % ww) % ww;
    const int64_t Hp = H + ph, Wp = W + pw, nh = Hp / wh, nw = Wp / ww;
    const Tensor mask = shift ? attn_mask(b.win, Hp, Wp, h) : Tensor();
    const bool cpu = !on_gpu(h) && h.dtype() == DType::f32;
    Tensor win;
    if (cpu) {
      win = partition_windows_cpu(h.contiguous(), b.win, Hp, Wp);
    } else {
      Tensor s = shift ? roll(roll(h, -b.win.sh, 1), -b.win.sw, 2) : h;
      s = pad_hw(s, ph, pw);
      win = s.reshape({B, nh, wh, nw, ww, C}).permute({0, 1, 3, 2, 4, 5}).contiguous().reshape({B * nh * nw, N, C});
    }
    Tensor o = attention(b, win, mask, B, taps);
    if (cpu && !on_gpu(o) && o.dtype() == DType::f32)
      return reverse_windows_add_cpu(o.contiguous(), x.contiguous(), b.win, Hp, Wp);
    o = o.reshape({B, nh, nw, wh, ww, C}).permute({0, 1, 3, 2, 4, 5}).contiguous().reshape({B, Hp, Wp, C});
    if (ph || pw) o = o.slice(1, 0, H).slice(2, 0, W);
    if (shift) o = roll(roll(o, b.win.sh, 1), b.win.sw, 2);
    return ops::add(x, o.contiguous());
  }

  // WindowAttention.forward on [B * windows, N, C].
  Tensor attention(const BlockP& b, const Tensor& x, const Tensor& mask, int64_t images, TapSet& taps) const {
    const std::string n = b.name + ".attn";
    const int64_t Bw = x.size(0), N = x.size(1), H = b.heads, hd = b.head_dim;
    Tensor qkv = TW(taps, n + ".qkv", (*b.qkv)(x), images).reshape({Bw, N, 3, H, hd}).permute({2, 0, 3, 1, 4});
    const Tensor q = qkv.select(0, 0), k = qkv.select(0, 1), v = qkv.select(0, 2);
    Tensor o;
    if (taps.wants(n + ".softmax")) {
      Tensor probs;
      o = ops::biased_attention(q, k, v, **b.bias, mask, std::nullopt, &probs);
      Tensor p2 = TW(taps, n + ".softmax", probs, images);
      if (!p2.shares_storage_with(probs)) o = ops::matmul(p2, v);
    } else {
      o = ops::biased_attention(q, k, v, **b.bias, mask);
    }
    o = TW(taps, n + ".proj", (*b.proj)(o.transpose(1, 2).reshape({Bw, N, H * hd})), images);
    return TW(taps, n, o, images);
  }

  // SwinTransformerBlock.get_attn_mask for the padded map Hp x Wp: region labels 0..8 from the slices
  // (0, -window), (-window, -shift), (-shift, None) per axis, -100 between tokens of a window whose labels differ.
  // Built on the host once per (window, shift, size), kept where x lives.
  const Tensor& attn_mask(const WindowShift& w, int64_t Hp, int64_t Wp, const Tensor& x) {
    const auto key = std::make_tuple(w.wh, w.ww, w.sh, w.sw, Hp, Wp, static_cast<int>(x.device()), x.dtype());
    auto it = masks_.find(key);
    if (it != masks_.end()) return it->second;
    auto label = [](int64_t i, int64_t n, int64_t win, int64_t s) { return i < n - win ? 0 : i < n - s ? 1 : 2; };
    const int64_t nh = Hp / w.wh, nw = Wp / w.ww, N = w.wh * w.ww;
    Tensor m = Tensor::empty({nh * nw, N, N});
    std::vector<int> lab(static_cast<size_t>(N));
    for (int64_t a = 0; a < nh; ++a)
      for (int64_t c = 0; c < nw; ++c) {
        for (int64_t t = 0; t < N; ++t)
          lab[static_cast<size_t>(t)] =
              label(a * w.wh + t / w.ww, Hp, w.wh, w.sh) * 3 + label(c * w.ww + t % w.ww, Wp, w.ww, w.sw);
        float* mw = m.data<float>() + (a * nw + c) * N * N;
        for (int64_t i = 0; i < N; ++i)
          for (int64_t j = 0; j < N; ++j)
            mw[i * N + j] = lab[static_cast<size_t>(i)] == lab[static_cast<size_t>(j)] ? 0.f : -100.f;
      }
    if (on_gpu(x)) m = backend("swin mask", x.device()).to_device_like(m, x);
    return masks_.emplace(key, m).first->second;
  }

  SwinConfig c_;
  Conv2d* patch_ = nullptr;
  ConvBNReLU* stem_[2] = {nullptr, nullptr};
  Conv2d* stem_out_ = nullptr;
  LayerNorm *patch_norm_ = nullptr, *norm_ = nullptr;
  std::vector<StageP> stages_;
  Linear* fc_ = nullptr;
  std::map<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, DType>, Tensor> masks_;
};

std::shared_ptr<const ModelConfig> swin(int dim, std::vector<int> depths, std::vector<int> heads, int window = 7,
                                        int img = 224) {
  SwinConfig c;
  c.embed_dim = dim;
  c.depths = std::move(depths);
  c.num_heads = std::move(heads);
  c.window_size = window;
  c.img_size = img;
  return std::make_shared<SwinConfig>(c);
}

// HEST's ctranspath(): timm_ctp's swin_tiny_patch4_window7_224 with embed_layer=ConvStem, head = nn.Identity.
std::shared_ptr<const ModelConfig> ctranspath() {
  SwinConfig c;
  c.embed_layer = "convstem";
  c.num_classes = 0;
  return std::make_shared<SwinConfig>(c);
}

}  // namespace

std::unique_ptr<Model> SwinConfig::construct(const ArchConfig& arch) const { return std::make_unique<Swin>(arch); }

// timm/models/swin_transformer.py's registered constructors.
const Family& swin_family() {
  static const Family f{
      "swin",
      std::make_shared<SwinConfig>(),
      {
          {"swin_tiny_patch4_window7_224", swin(96, {2, 2, 6, 2}, {3, 6, 12, 24})},
          {"swin_small_patch4_window7_224", swin(96, {2, 2, 18, 2}, {3, 6, 12, 24})},
          {"swin_base_patch4_window7_224", swin(128, {2, 2, 18, 2}, {4, 8, 16, 32})},
          {"swin_base_patch4_window12_384", swin(128, {2, 2, 18, 2}, {4, 8, 16, 32}, 12, 384)},
          {"swin_large_patch4_window7_224", swin(192, {2, 2, 18, 2}, {6, 12, 24, 48})},
          {"swin_large_patch4_window12_384", swin(192, {2, 2, 18, 2}, {6, 12, 24, 48}, 12, 384)},
          {"ctranspath", ctranspath()},
      },
      {},
  };
  return f;
}

}  // namespace tabula
