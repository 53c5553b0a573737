// A model's module tree, declared once by its constructor the way a torch nn.Module builds itself: every
// module and parameter in constructor order, each parameter with its shape and the value its constructor
// gives it. From that one declaration come
//   - the state_dict layout (param_specs): own parameters first, then the children, in registration order;
//   - the untrained weights (init_weights): the constructor draws replayed in construction order, then the
//     model's init_weights() pass over modules(), exactly as torch draws them for a seed;
//   - the loading: every layer (models/layers.h) takes its tensors from a ParamStore under its own names;
//   - the tap list and the MAC count (Model::list_taps, Model::gmacs): a module declared a tap (`tap`) carries
//     its output shape as a rule of the model input, the modules without parameters (activations, dropouts,
//     identities, pooling, tabula's attn.softmax) included, each declared where the reference's __init__
//     registers it; Linear and Conv2d count their multiply-accumulates from that shape.
// A module constructed before it is registered (torchvision's downsample, built by _make_layer and handed to
// the block) is made with `make` and registered later with `add`, so its draws come first and its keys last.
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/dtype.h"
#include "engine/rng.h"
#include "engine/tensor.h"

namespace tabula {

struct ParamSpec {
  std::string name;
  Shape shape;
  DType dtype = DType::f32;
  bool is_buffer = false;  // BatchNorm running stats and num_batches_tracked
};

// What a parameter's constructor puts in it, as far as the random stream is concerned.
struct CtorInit {
  enum Kind {
    constant,     // torch.zeros / torch.ones / init_values * torch.ones (no draws); `value`
    reset,        // nn.Linear / nn.Conv2d reset_parameters(): weight and bias drawn together (on the weight)
    reset_bias,   // the bias half of `reset` (drawn with its weight)
    randn,        // torch.randn(shape) * value (timm <= 1.0.22's pos_embed)
    trunc_tf,     // timm trunc_normal_tf_(std=value) (AttentionPoolLatent's latent, in its constructor)
    trunc,        // timm trunc_normal_(std=value) (Swin's relative_position_bias_table, in its constructor)
  };
  Kind kind = constant;
  double value = 0.0;
};

class ModuleTree;
class Layer;

// A module's output shape for the model input [B, C, H, W], computed from the config (no forward runs).
using ShapeRule = std::function<Shape(const Shape& input)>;
// The multiply-accumulates a module computes, given its output shape (nn.Linear: numel(out) * in_features).
using MacRule = std::function<double(const Shape& out)>;

struct Module {
  std::string local;  // name inside the parent ("qkv"); "" for the root
  std::string type;   // the torch class ("Linear", "Conv2d", "LayerNorm", "GluMlp", ...): what init passes test
  Module* parent = nullptr;
  std::vector<size_t> params;      // own parameters and buffers (indices into the tree), registration order
  std::vector<Module*> children;   // registration order
  bool replaced = false;           // see ModuleTree::make_replaced
  ShapeRule out;                   // its output shape (ModuleTree::tap / untapped); empty: not a tap
  bool tap = false;                // listed by Model::list_taps (`tabula hooks`), passed by the forward
  MacRule macs;                    // set by the layers that compute (Linear, Conv2d) and the attention maps
  std::string name() const;        // the dotted path ("blocks.0.attn.qkv")
  // out(input), computed once per module during ModuleTree::taps / macs: what a rule that builds on another
  // module's shape calls (ResNet's chain of convs), so the walk stays linear in the number of modules.
  Shape shape(const Shape& input) const;
};

struct Param {
  std::string local;  // "weight"
  Module* owner = nullptr;
  Shape shape;
  DType dtype = DType::f32;
  bool is_buffer = false;
  CtorInit init;
  std::string name() const;  // owner's path + local
};

class ModuleTree {
 public:
  ModuleTree();
  ~ModuleTree();
  ModuleTree(const ModuleTree&) = delete;
  ModuleTree& operator=(const ModuleTree&) = delete;

  Module& root() { return *root_; }
  // A registered child of `parent` (created now, so its parameters draw now).
  Module& child(Module& parent, const std::string& local, const std::string& type = "Module");
  // A module created now and registered later (add): see the header comment.
  Module& make(const std::string& type);
  void add(Module& parent, const std::string& local, Module& m);
  // A module constructed and then replaced by another before the state_dict exists (vit.py swaps timm's
  // patch embedding for its own): its constructor draws count, its parameters have no keys.
  Module& make_replaced(const std::string& type);

  // A parameter (or buffer) of `m`, registered now; its constructor value follows `init`.
  size_t param(Module& m, const std::string& local, Shape shape, CtorInit init = {});
  size_t buffer(Module& m, const std::string& local, Shape shape, CtorInit init = {}, DType dt = DType::f32);
  // A parameter registered earlier whose constructor value is drawn now: timm's WindowAttention registers its
  // relative_position_bias_table first (state_dict order) and fills it after building qkv and proj.
  void draw_now(size_t param);
  // nn.Linear / nn.Conv2d: weight and (optional) bias drawn by reset_parameters().
  void reset_weight_bias(Module& m, Shape weight, bool bias);

  // Declares `m` a tap with its output shape: the forward passes it under m.name().
  Module& tap(Module& m, ShapeRule out);
  // A module without parameters (activation, dropout, nn.Identity, pooling, a forward_features output, tabula's
  // attn.softmax), declared where the reference's __init__ registers it (it draws nothing, so only its place in
  // named_modules() matters), and a tap. `local` may hold a dot where the reference has no module to hold it
  // (ParallelScalingBlock's "attn.softmax").
  Module& tap(Module& parent, const std::string& local, const std::string& type, ShapeRule out, MacRule macs = {});
  // A module whose MACs count although the forward does not tap it (DINOv3's patch_embed.proj).
  Module& untapped(Module& m, ShapeRule out);
  // The same for a layer (Linear, LayerNorm, Conv2d: anything with module()).
  template <class L>
  L& tap(L& layer, ShapeRule out) {
    tap(layer.module(), std::move(out));
    return layer;
  }
  template <class L>
  L& untapped(L& layer, ShapeRule out) {
    untapped(layer.module(), std::move(out));
    return layer;
  }

  // Layers (models/layers.h) register here so that load / prepare reach every one of them.
  template <class L, class... Args>
  L& layer(Args&&... args) {
    auto l = std::make_unique<L>(*this, std::forward<Args>(args)...);
    L& ref = *l;
    layers_.push_back(std::move(l));
    return ref;
  }

  // torch's state_dict() order: a module's own parameters, then each child's, depth first.
  std::vector<size_t> state_dict_order() const;
  std::vector<ParamSpec> specs() const;
  // named_modules() order (pre-order) and named_apply(depth_first=True)'s (post-order).
  std::vector<const Module*> modules() const;
  std::vector<const Module*> modules_post_order() const;
  // The taps (Module::tap) in named_modules() order, with their output shapes for `input`.
  std::vector<std::pair<std::string, Shape>> taps(const Shape& input) const;
  // Multiply-accumulates of the forward on `input` (every module with a MacRule; its out rule gives the shape).
  double macs(const Shape& input) const;

  const Param& at(size_t i) const { return params_[i]; }
  size_t size() const { return params_.size(); }
  // Parameters in the order their constructors ran (draw order).
  const std::vector<size_t>& construction_order() const { return ctor_order_; }
  const std::vector<std::unique_ptr<Layer>>& layers() const { return layers_; }

 private:
  std::deque<Module> modules_;  // stable addresses
  Module* root_;
  std::vector<Param> params_;
  std::vector<size_t> ctor_order_;
  std::vector<std::unique_ptr<Layer>> layers_;
};

}  // namespace tabula
