// The layers models are built from, each the torch module it mirrors: it declares its parameters in the module
// tree when constructed (name, shape, constructor init), takes its tensors from a ParamStore by those names, and
// keeps the forms each backend reads (`prepare`), so a model's forward never asks where it runs.
//   Parameter  a bare nn.Parameter (cls_token, pos_embed, LayerScale's gamma)
//   Linear     nn.Linear: packed once for the CPU GEMM; on a GPU the torch layout in the precision's type
//   LayerNorm  nn.LayerNorm(dim, eps)
//   Conv2d     nn.Conv2d (ViT's patch embedding; ResNet's conv + BatchNorm pairs live in models/resnet.cpp)
// Each can release its tensors (Model::unload); run while it holds none, it throws naming its module.
// Linear and Conv2d count their multiply-accumulates from the output shape a model declares for them
// (ModuleTree::tap); module() is the module they declared.
#pragma once
#include <string>

#include "engine/ops.h"
#include "engine/cpu/packed.h"
#include "models/module_tree.h"

namespace tabula {

class ParamStore;

// Layers keep their module, not its name: a module made before it is registered (ModuleTree::make) gets its
// name when it is added, and load() reads it then.
//
// The Layer rule: Model::load loads and prepares the layers one after another in declaration order (so a weight
// file is never held beside its prepared copy), and Model::to_device prepares them one by one again. A layer's
// prepare() may therefore read only the tensors its own load() took: another layer's may not be loaded yet
// (declared later) or may already be in its packed or device form. A layer that needs another module's tensor
// takes it itself in load(), by name (ConvNeXt's fc2 reads its block's gamma). PrepareScope checks the one route
// by which layers reach each other's tensors, a Parameter's value: read while another layer prepares, it throws.
class Layer {
 public:
  virtual ~Layer() = default;
  // Takes the layer's tensors by their state_dict names (a skeleton store: shapes only).
  virtual void load(const ParamStore& p) = 0;
  // -1: the CPU forms (after load); N: moves everything to GPU N in the forms its kernels read. Reads only what
  // load() took (the Layer rule above).
  virtual void prepare(int device) = 0;
  // Drops the tensors load() took and every form prepare() made, so that a streamed forward holds only the blocks
  // it has still to run (Model::unload); load() brings them back. The layers below override it; the default, for
  // a layer no model releases, throws std::logic_error.
  virtual void release();
};

// Thrown when a layer holding no tensors (released, or never loaded) is run: names the layer.
[[noreturn]] void throw_no_weights(const std::string& layer);

// Marks `layer` as the one being prepared while it lives (Model::load, Model::to_device): a Parameter's value read
// by any other layer in the meantime throws std::logic_error naming the parameter (the Layer rule).
class PrepareScope {
 public:
  explicit PrepareScope(const Layer& layer);
  ~PrepareScope();
  PrepareScope(const PrepareScope&) = delete;
  PrepareScope& operator=(const PrepareScope&) = delete;

 private:
  const Layer* outer_;
};

class Parameter final : public Layer {
 public:
  Parameter(ModuleTree& t, Module& owner, const std::string& local, Shape shape, CtorInit init = {});
  void load(const ParamStore& p) override;
  void prepare(int device) override;
  void release() override { value_ = Tensor(); }
  // Its value; throws when another layer's prepare() reads it (the Layer rule) or when it holds none.
  const Tensor& operator*() const {
    check_not_read_by_other_prepare();
    if (!value_.defined()) throw_no_weights(name());
    return value_;
  }
  std::string name() const;  // its state_dict key

 private:
  void check_not_read_by_other_prepare() const;

  Module* owner_;
  std::string local_;
  Tensor value_;
};

class Linear final : public Layer {
 public:
  // `pack`: the CPU keeps the weight packed for the blocked GEMM (else the plain GEMM on the torch layout).
  Linear(ModuleTree& t, Module& parent, const std::string& local, int64_t in, int64_t out, bool bias = true,
         bool pack = true);
  void load(const ParamStore& p) override;
  void prepare(int device) override;
  void release() override;
  // act(x W^T + b), the activation in the GEMM epilogue.
  Tensor operator()(const Tensor& x, Activation act = Activation::none) const;
  // x W^T + b + residual, the add inside the GEMM's epilogue on either backend (cuBLASLt's C operand on a GPU):
  // (acc + b) + x has the bits of x + (acc + b).
  Tensor operator()(const Tensor& x, const Tensor& residual) const;
  Module& module() const { return *module_; }

 private:
  Module* module_;
  bool has_bias_, pack_;
  Tensor weight_;       // torch layout: after load (released by prepare(-1) when packed) and on a GPU
  PackedLinear packed_; // the CPU form, the only copy kept there
  Tensor bias_;
};

class LayerNorm final : public Layer {
 public:
  LayerNorm(ModuleTree& t, Module& parent, const std::string& local, int64_t dim, double eps);
  void load(const ParamStore& p) override;
  void prepare(int device) override;
  void release() override;
  // (ops::layer_norm reads an undefined weight as elementwise_affine=False: a released norm must not run as one)
  Tensor operator()(const Tensor& x) const {
    if (!weight_.defined()) throw_no_weights(module_->name());
    return ops::layer_norm(x, weight_, bias_, eps_);
  }
  Module& module() const { return *module_; }

 private:
  Module* module_;
  double eps_;
  Tensor weight_, bias_;
};

class Conv2d final : public Layer {
 public:
  Conv2d(ModuleTree& t, Module& parent, const std::string& local, int64_t in, int64_t out, int64_t kernel,
         const Conv2dOptions& opt, bool bias = true);
  void load(const ParamStore& p) override;
  void prepare(int device) override;
  void release() override;
  Tensor operator()(const Tensor& x) const {
    if (!weight_.defined()) throw_no_weights(module_->name());
    return ops::conv2d(x, weight_, bias_, opt_);
  }
  Module& module() const { return *module_; }

 private:
  Module* module_;
  bool has_bias_;
  Conv2dOptions opt_;
  Tensor weight_, bias_;
};

// An optional module (nn.Identity when absent): apply(norm, x).
template <class L>
Tensor apply(const L* layer, const Tensor& x) {
  return layer ? (*layer)(x) : x;
}

}  // namespace tabula
