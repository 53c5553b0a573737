#include "models/resnet.h"

#include <stdexcept>
#include <utility>

#include "engine/file_pages.h"
#include "engine/ops.h"
#include "engine/cpu/packed.h"
#include "models/device.h"
#include "models/layers.h"
#include "models/model.h"

namespace tabula {
namespace {

int64_t conv_out(int64_t in, int64_t k, int64_t s, int64_t p) { return (in + 2 * p - k) / s + 1; }

// The output shape of a module that keeps its input's (`m`'s output) shape: ReLU, a block, a layer.
ShapeRule same_as(const Module* m) {
  return [m](const Shape& in) { return m->shape(in); };
}

// nn.Conv2d(bias=False) followed by nn.BatchNorm2d, two modules registered side by side (conv1, bn1 or
// downsample.0, downsample.1). Ungrouped convs keep one copy of the weights, packed at load for the fast CPU
// path (engine/cpu/packed.h), with the BatchNorm applied as a per-channel scale/shift in the conv's epilogue; grouped
// convs (ResNeXt) keep the original and the BN-folded weights for the generic conv path.
class ConvBN final : public Layer {
 public:
  ConvBN(ModuleTree& t, Module& parent, const std::string& conv_local, const std::string& bn_local, int64_t in,
         int64_t out, int64_t kernel, Conv2dOptions o)
      : opt(o), wshape{out, in / o.groups, kernel, kernel} {
    conv_ = &t.child(parent, conv_local, "Conv2d");
    t.reset_weight_bias(*conv_, wshape, false);
    bn_ = &t.child(parent, bn_local, "BatchNorm2d");
    t.param(*bn_, "weight", {out}, {CtorInit::constant, 1.0});
    t.param(*bn_, "bias", {out});
    t.buffer(*bn_, "running_mean", {out});
    t.buffer(*bn_, "running_var", {out}, {CtorInit::constant, 1.0});
    t.buffer(*bn_, "num_batches_tracked", {}, {}, DType::i64);
  }

  // The output shape of the conv and the BN (both taps) for a model input, from the shape of `from`'s output
  // (nullptr: the input image); the conv counts its MACs.
  const Module& declare_shapes(ModuleTree& t, const Module* from) {
    const ShapeRule out = [this, from](const Shape& in) {
      const Shape x = from ? from->shape(in) : in;
      return Shape{x[0], wshape[0], conv_out(x[2], wshape[2], opt.stride[0], opt.padding[0]),
                   conv_out(x[3], wshape[3], opt.stride[1], opt.padding[1])};
    };
    t.tap(*conv_, out).macs = [this](const Shape& o) {
      return static_cast<double>(shape_numel(o)) * static_cast<double>(macs_per_output());
    };
    return t.tap(*bn_, out);
  }

  std::string conv, bn;  // module names (known once the tree is complete: set by load)
  Conv2dOptions opt;
  Shape wshape;  // [Cout, Cin / groups, kh, kw]

  void load(const ParamStore& p) override {
    conv = conv_->name();
    bn = bn_->name();
    w = p[conv + ".weight"];
    gamma = p[bn + ".weight"];
    beta = p[bn + ".bias"];
    mean = p[bn + ".running_mean"];
    var = p[bn + ".running_var"];
  }
  void prepare(int device) override {
    if (device < 0) {
      if (opt.groups == 1) {
        packed = PackedConv2d(w, opt);
        std::tie(scale, shift) = batch_norm_scale_shift(gamma, beta, mean, var, 1e-5);
        release_file_pages(w);  // the packed copy is the only one read from now on
        w = Tensor();
      } else {
        std::tie(wf, bf) = fold_batch_norm(w, Tensor(), gamma, beta, mean, var, 1e-5);
      }
      return;
    }
    // The GPU takes the torch layout: the weight comes back out of the packed copy (exactly), BN is folded as
    // for grouped convs, and the CPU-only packed copy is released.
    if (packed.defined()) {
      w = packed.weight();
      packed = PackedConv2d();
      scale = shift = Tensor();
    }
    // Loaded straight onto the GPU (Model::load with a device), nothing was folded yet.
    if (!wf.defined()) std::tie(wf, bf) = fold_batch_norm(w, Tensor(), gamma, beta, mean, var, 1e-5);
    for (Tensor* t : {&gamma, &beta, &mean, &var, &bf}) *t = upload(*t, device);
    for (Tensor* t : {&w, &wf}) *t = upload_conv_weight(*t, device);  // 16-bit channels-last in those precisions
  }

  int64_t out_channels() const { return wshape[0]; }
  int64_t macs_per_output() const { return wshape[1] * wshape[2] * wshape[3]; }
  // conv -> tap -> bn -> tap, as the two torch modules.
  Tensor unfused(const Tensor& x, TapSet& taps) const {
    Tensor y = packed.defined() ? ops::conv2d(x, packed, Tensor(), Tensor()) : ops::conv2d(x, w, Tensor(), opt);
    y = tap(taps, conv, y);
    return tap(taps, bn, ops::batch_norm(y, gamma, beta, mean, var, 1e-5));
  }
  // act(bn(conv(x)) + residual) in one conv.
  Tensor fused(const Tensor& x, Activation act, const Tensor& residual = {}) const {
    if (packed.defined()) return ops::conv2d(x, packed, scale, shift, act, residual);
    return ops::conv2d(x, wf, bf, opt, act, residual);
  }
  // max_pool2d(relu(bn(conv(x)))), the ResNet stem, in one pass where the weights are packed.
  Tensor fused_max_pool(const Tensor& x, std::array<int64_t, 2> k, std::array<int64_t, 2> s,
                        std::array<int64_t, 2> p) const {
    if (packed.defined()) return ops::conv2d_max_pool2d(x, packed, scale, shift, Activation::relu, k, s, p);
    return ops::max_pool2d(fused(x, Activation::relu), k, s, p);
  }
  // The same for a block's last conv, which is given the identity: when nothing else holds the identity, the
  // output is written over it (ops::conv2d_into_residual; the same values, no fresh map to fetch into cache).
  Tensor fused_into(const Tensor& x, Activation act, Tensor residual) const {
    if (packed.defined() && residual.storage().use_count() == 1)
      return ops::conv2d_into_residual(x, packed, scale, shift, act, std::move(residual));
    return fused(x, act, residual);
  }

 private:
  Module* conv_;
  Module* bn_;
  Tensor gamma, beta, mean, var;
  PackedConv2d packed;  // groups == 1, on the CPU
  Tensor scale, shift;  // BatchNorm as y = conv * scale + shift (with `packed`)
  Tensor w, wf, bf;     // the conv weight as loaded; folded weight and bias (groups > 1, and on a GPU)
};

Conv2dOptions conv_opt(int64_t stride, int64_t pad, int64_t groups = 1) {
  Conv2dOptions o;
  o.stride = {stride, stride};
  o.padding = {pad, pad};
  o.groups = groups;
  return o;
}

struct Block {
  std::string name;  // "layer1.0"
  bool bottleneck = false;
  ConvBN* c1 = nullptr;
  ConvBN* c2 = nullptr;
  ConvBN* c3 = nullptr;    // Bottleneck only
  ConvBN* down = nullptr;  // downsample.0 / downsample.1, when the block changes shape
  std::vector<const ConvBN*> convs() const {
    std::vector<const ConvBN*> v;
    for (const ConvBN* c : {c1, c2, c3, down})
      if (c) v.push_back(c);
    return v;
  }
};

class ResNet final : public Model {
 public:
  // torchvision ResNet.__init__ and _make_layer: the module tree in construction order.
  explicit ResNet(const ArchConfig& arch) : Model(arch), c_(*arch.as<ResNetConfig>()) {
    ModuleTree& t = module_tree();
    Module& root = t.root();
    stem_ = &t.layer<ConvBN>(root, "conv1", "bn1", c_.in_chans, 64, 7, conv_opt(2, 3));
    const Module* x = &stem_->declare_shapes(t, nullptr);  // the module whose output feeds the next
    x = &t.tap(root, "relu", "ReLU", same_as(x));
    x = &t.tap(root, "maxpool", "MaxPool2d", [x](const Shape& in) {
      const Shape s = x->shape(in);
      return Shape{s[0], s[1], conv_out(s[2], 3, 2, 1), conv_out(s[3], 3, 2, 1)};
    });
    int64_t inplanes = 64;
    const int64_t e = c_.expansion();
    const bool bottleneck = c_.block == ResNetConfig::Block::bottleneck;
    for (int li = 0; li < 4; ++li) {
      const int64_t planes = c_.channels[static_cast<size_t>(li)];
      Module& layer = t.child(root, "layer" + std::to_string(li + 1), "Sequential");
      for (int bi = 0; bi < c_.layers[static_cast<size_t>(li)]; ++bi) {
        Block b;
        b.name = layer.local + "." + std::to_string(bi);
        b.bottleneck = bottleneck;
        const int64_t stride = (bi == 0 && li > 0) ? 2 : 1;
        // _make_layer builds the downsample before the block that registers it last.
        Module* down = nullptr;
        if (bi == 0 && (stride != 1 || inplanes != planes * e)) {
          down = &t.make("Sequential");
          b.down = &t.layer<ConvBN>(*down, "0", "1", inplanes, planes * e, 1, conv_opt(stride, 0));
          t.tap(*down, same_as(&b.down->declare_shapes(t, x)));
        }
        Module& m = t.child(layer, std::to_string(bi), bottleneck ? "Bottleneck" : "BasicBlock");
        // named_modules() order: conv1, bn1, [relu,] conv2, bn2, [conv3, bn3, relu,] downsample
        const Module* y;
        if (bottleneck) {
          // torchvision Bottleneck: 1x1, 3x3 (stride, groups), 1x1 expansion.
          const int64_t width = c_.width(planes);
          b.c1 = &t.layer<ConvBN>(m, "conv1", "bn1", inplanes, width, 1, conv_opt(1, 0));
          y = &b.c1->declare_shapes(t, x);
          b.c2 = &t.layer<ConvBN>(m, "conv2", "bn2", width, width, 3, conv_opt(stride, 1, c_.groups));
          y = &b.c2->declare_shapes(t, y);
          b.c3 = &t.layer<ConvBN>(m, "conv3", "bn3", width, planes * e, 1, conv_opt(1, 0));
          y = &b.c3->declare_shapes(t, y);
          t.tap(m, "relu", "ReLU", same_as(y));  // the one ReLU, called 3 times: the last call's shape
        } else {
          b.c1 = &t.layer<ConvBN>(m, "conv1", "bn1", inplanes, planes, 3, conv_opt(stride, 1));
          y = &b.c1->declare_shapes(t, x);
          Module& relu = t.child(m, "relu", "ReLU");  // shape below
          b.c2 = &t.layer<ConvBN>(m, "conv2", "bn2", planes, planes, 3, conv_opt(1, 1));
          y = &b.c2->declare_shapes(t, y);
          t.tap(relu, same_as(y));
        }
        if (down) t.add(m, "downsample", *down);
        x = &t.tap(m, same_as(y));
        blocks_.push_back(std::move(b));
        inplanes = planes * e;
      }
      t.tap(layer, same_as(x));
    }
    x = &t.tap(root, "avgpool", "AdaptiveAvgPool2d", [x](const Shape& in) {
      const Shape s = x->shape(in);
      return Shape{s[0], s[1], 1, 1};
    });
    // classes=0: timm's num_classes=0, fc is nn.Identity (no parameters, no draws)
    if (c_.num_classes > 0) {
      fc_ = &t.tap(t.layer<Linear>(root, "fc", c_.channels[3] * e, c_.num_classes, true, /*pack=*/false),  // a row per image
                   [this](const Shape& in) { return Shape{in[0], c_.num_classes}; });
    } else {
      t.tap(root, "fc", "Identity", [this, e](const Shape& in) { return Shape{in[0], c_.channels[3] * e}; });
    }
  }

  Shape default_input_shape(int64_t batch) const override { return {batch, c_.in_chans, 224, 224}; }

  void check_input(const Shape& s) const override {
    if (s.size() != 4 || s[1] != c_.in_chans || s[2] < 1 || s[3] < 1)
      throw std::invalid_argument("arch '" + arch().name + "': input must be [B, " + std::to_string(c_.in_chans) +
                                  ", H, W], got " + shape_str(s));
    // Any H, W >= 1 works, as in torchvision: every padded window keeps at least one output pixel.
    if (s[0] < 1) throw std::invalid_argument("arch '" + arch().name + "': empty batch in input " + shape_str(s));
  }

  Tensor forward(const Tensor& x_in, TapSet& taps) override {
    check_weights();
    check_input(x_in.shape());
    taps.bind(tap_order(x_in.shape()));
    const Tensor xa = x_in.to(act_dtype());
    Tensor x;
    if (taps.wants("conv1") || taps.wants("bn1") || taps.wants("relu")) {
      if (taps.wants("conv1") || taps.wants("bn1")) {
        x = stem_->unfused(xa, taps);
        x = tap(taps, "relu", ops::relu(x));
      } else {
        x = tap(taps, "relu", stem_->fused(xa, Activation::relu));
      }
      if (taps.done()) return x;
      x = ops::max_pool2d(x, {3, 3}, {2, 2}, {1, 1});
    } else {
      // nothing observes the stem's conv, BN or ReLU: conv + BN + ReLU and the max-pool in bands of rows, so the
      // 112x112x64 map never leaves L2 (ops::conv2d_max_pool2d, the same bits)
      x = stem_->fused_max_pool(xa, {3, 3}, {2, 2}, {1, 1});
    }
    x = tap(taps, "maxpool", x);
    if (taps.done()) return x;
    size_t bi = 0;
    for (int li = 0; li < 4; ++li) {
      for (int k = 0; k < c_.layers[static_cast<size_t>(li)]; ++k, ++bi) {
        x = tap(taps, blocks_[bi].name, block_forward(blocks_[bi], std::move(x), taps));
        if (taps.done()) return x;
      }
      x = tap(taps, "layer" + std::to_string(li + 1), x);
      if (taps.done()) return x;
    }
    x = tap(taps, "avgpool", ops::adaptive_avg_pool2d(x, {1, 1}));
    if (taps.done()) return x;
    x = x.flatten(1);  // torch.flatten(x, 1)
    return tap(taps, "fc", fc_ ? (*fc_)(x) : x);
  }

  std::vector<std::string> default_taps() const override { return {"avgpool"}; }

 private:
  // Does any hook act inside the block (on a pre-fold output, the shared ReLU or the downsample)?
  static bool wants_inside(const Block& b, const TapSet& taps) {
    if (taps.wants(b.name + ".relu") || taps.wants(b.name + ".downsample")) return true;
    for (const ConvBN* cb : b.convs())
      if (taps.wants(cb->conv) || taps.wants(cb->bn)) return true;
    return false;
  }

  // torchvision BasicBlock.forward / Bottleneck.forward.
  // Takes the block input by value so that it is freed as soon as it is no longer needed (after conv1 and the
  // downsample): the live activations at conv3 are then identity, conv2's output and the block output only.
  Tensor block_forward(const Block& b, Tensor x, TapSet& taps) const {
    const std::string& n = b.name;
    if (!wants_inside(b, taps)) {
      Tensor identity = b.down ? b.down->fused(x, Activation::none) : x;
      Tensor out = b.c1->fused(x, Activation::relu);
      x = Tensor();
      if (!b.bottleneck) return b.c2->fused_into(out, Activation::relu, std::move(identity));
      out = b.c2->fused(out, Activation::relu);
      return b.c3->fused_into(out, Activation::relu, std::move(identity));
    }
    const std::string relu = n + ".relu";
    Tensor out = tap(taps, relu, ops::relu(b.c1->unfused(x, taps)));
    out = b.c2->unfused(out, taps);
    if (b.bottleneck) {
      out = tap(taps, relu, ops::relu(out));
      out = b.c3->unfused(out, taps);
    }
    Tensor identity = x;
    if (b.down) identity = tap(taps, n + ".downsample", b.down->unfused(x, taps));
    return tap(taps, relu, ops::relu(ops::add(out, identity)));
  }

  ResNetConfig c_;
  ConvBN* stem_;
  std::vector<Block> blocks_;
  Linear* fc_ = nullptr;
};

}  // namespace

std::unique_ptr<Model> ResNetConfig::construct(const ArchConfig& arch) const { return std::make_unique<ResNet>(arch); }

}  // namespace tabula
