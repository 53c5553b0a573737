// The interface every model implements (ResNet, ViT/DINOv2), and what the registry hands out. A model's
// constructor declares its module tree (models/module_tree.h) with the layers of models/layers.h; `load` then
// gives every layer its tensors, and `to_device` moves them.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/hooks.h"
#include "engine/tensor.h"
#include "models/arch.h"

namespace tabula {

struct TapInfo {
  std::string name;  // PyTorch module name ("layer2.3.conv2", "blocks.0.attn.softmax")
  Shape shape;       // output shape for the given input
};

class ParamStore;

// Called by Model::load after each layer has its weights in their final form (`done` of `total` layers).
using LoadProgress = std::function<void(size_t done, size_t total)>;

class Model {
 public:
  explicit Model(const ArchConfig& arch) : arch_(arch), tree_(std::make_unique<ModuleTree>()) {}
  virtual ~Model() = default;
  const ArchConfig& arch() const { return arch_; }
  // The module tree the constructor declared (state_dict layout, init replay, the layers).
  const ModuleTree& tree() const { return *tree_; }
  // Gives every layer its tensors by name (a skeleton store: shapes only, and the forward then throws) and
  // prepares them, layer by layer: the CPU forms (packed weights) for device -1, else straight to GPU `device`
  // (as to_device, without packing for the CPU first; call cuda::set_precision before). A source range read from
  // a file mapping is released as soon as its layer holds its own copy (engine/file_pages.h), so a weights file
  // is never held beside its packed copy.
  void load(const ParamStore& params, int device = -1, const LoadProgress& progress = {});
  // The same for weights an init pass hands on as they become final (InitState's sink): `produce` runs the pass
  // with the sink it is given; each layer is loaded and prepared as soon as every tensor it reads has arrived,
  // and an arrived fp32 tensor is dropped once no layer still waits for it, so the peak is the prepared weights
  // plus the tensors of the layers not complete yet. `on_loaded` hears of each layer once prepared. Throws
  // std::logic_error naming a layer whose tensors never came.
  void load_streamed(const std::function<void(const InitSink&)>& produce, int device = -1,
                     const LoadProgress& progress = {}, const std::function<void(Layer&)>& on_loaded = {});
  // [batch, C, H, W] at the model's default (pretrained) input size.
  virtual Shape default_input_shape(int64_t batch = 1) const = 0;
  // Runs the forward on x [B, C, H, W] (f32, CPU). Binds `taps` to tap_order(x.shape()) (so a hook pattern
  // that names no tap throws, listing the taps that exist), then passes every module output through it; the
  // forward stops at the first block boundary after the deepest capture (returning the value there rather than
  // the model output), so a layer sweep never runs the layers after its last tap.
  // Captures from an earlier forward are cleared (TapSet::bind resets).
  virtual Tensor forward(const Tensor& x, TapSet& taps) = 0;
  Tensor forward(const Tensor& x) {
    TapSet none;
    return forward(x, none);
  }
  // Every tap the forward passes, in the reference's named_modules() order, with its output shape for `input`
  // (computed from the config, no forward run). Throws std::invalid_argument for an input the model rejects.
  // Derived from the module tree (the modules the constructor declared with ModuleTree::tap); a family that
  // writes its own list still may override it.
  virtual std::vector<TapInfo> list_taps(const Shape& input) const;
  // The same names in the order the forward first passes them (what TapSet::bind needs): list_taps in
  // post-order, i.e. a container module ("layer1", "blocks.3", "blocks.3.attn") after everything inside it.
  std::vector<std::string> tap_order(const Shape& input) const;
  // The taps `tabula embed` captures when none are given (the model's feature output).
  virtual std::vector<std::string> default_taps() const = 0;
  // Multiply-accumulates of one image's forward, in billions, as torchvision's "GFLOPS" column counts
  // (conv/linear/attention matmuls; elementwise ops excluded). Derived from the module tree (the MacRule of
  // every Linear, Conv2d and attention map, at its declared output shape for a batch of one); overridable.
  virtual double gmacs(const Shape& input) const;
  // Checks an input shape before running (message names the expected shape).
  virtual void check_input(const Shape& input) const = 0;
  // Moves the weights to GPU `device` (cuda:N), once, before the first forward there; every later forward then
  // takes inputs on that device and runs each op there (ops:: dispatches on the tensor's device), and captures
  // come back to the host pooled. Call cuda::set_precision first: linear weights are converted for it.
  // A no-op when the model was loaded onto that device already (load(params, device)).
  void to_device(int device);
  // -1 on the CPU, else the GPU the weights are on.
  int device() const { return device_; }
  // CPU bf16 (weights packed in bf16): records the centres around which the bf16 GEMMs round their inputs
  // (engine/cpu/packed.h Bf16Centres) from a forward of each reference input ([1, C, H, W]: black_white_inputs);
  // once per model, before the forwards whose inputs look like them. A no-op for fp32 weights and on a GPU.
  void record_bf16_centres(const std::vector<Tensor>& references);

 protected:
  ModuleTree& module_tree() { return *tree_; }
  // Drops a loaded layer's weights (one the streamed reference has run and will not run again): Layer::release.
  // Throws std::logic_error for a layer not of this model.
  void unload(Layer& layer);
  // Throws for a model built without weights (structure only).
  void check_weights() const;
  // The activations' storage type (f32 on the CPU; bf16/f16 on a GPU in those precisions).
  DType act_dtype() const { return act_dtype_; }

 private:
  // The state_dict keys each layer reads (layers() order), recorded from a load of ParamStore::recording; computed
  // before the weights are loaded (it loads every layer).
  const std::vector<std::vector<std::string>>& layer_keys();

  ArchConfig arch_;
  std::unique_ptr<ModuleTree> tree_;
  std::vector<std::vector<std::string>> layer_keys_;
  bool skeleton_ = true;
  DType act_dtype_ = DType::f32;
  int device_ = -1;
};

// The model inputs [1, C, H, W] (C, H, W of `input`) of an all-black and an all-white image: per channel
// (0 - mean) / std and (1 - mean) / std (mean, std: one or C values; empty: no normalisation).
std::vector<Tensor> black_white_inputs(const Shape& input, const std::vector<float>& mean,
                                       const std::vector<float>& std);

// A tap point: passes x through `taps` (which may replace it) and returns what the forward continues with.
inline Tensor tap(TapSet& taps, std::string_view name, Tensor x, const TapContext& ctx = {}) {
  taps.tap(name, x, ctx);
  return x;
}

// Missing and unexpected keys when loading a state_dict (num_batches_tracked is never required).
struct LoadReport {
  std::vector<std::string> missing, unexpected;
  bool ok() const { return missing.empty() && unexpected.empty(); }
  std::string message() const;  // "missing keys: a, b; unexpected keys: c"
};

// Weights resolved against a model's state_dict layout: shape-checked f32 tensors by key.
class ParamStore {
 public:
  // Throws std::invalid_argument naming the key for a shape mismatch or a non-float tensor; with strict, also
  // for any missing or unexpected key (LoadReport::message()).
  ParamStore(const std::string& arch, const std::vector<ParamSpec>& specs, const WeightMap& weights, bool strict,
             LoadReport* report = nullptr);
  // A skeleton: every parameter a zero-stride view of one zero (shapes only, no memory), for list_taps and
  // gmacs of models too large to initialise just to print their structure.
  static ParamStore skeleton(const std::string& arch, const std::vector<ParamSpec>& specs);
  // The weight as f32, contiguous (a view of the file's bytes when they are already that; a 16-bit source is
  // converted here, when its layer asks, and its mapped pages released). Throws naming the key when absent.
  Tensor operator[](const std::string& key) const;
  // A skeleton that does not say it is one (is_skeleton() false), so that a layer reads every key it reads
  // when loading real weights: what Model::load_streamed records each layer's keys from.
  static ParamStore recording(const std::string& arch, const std::vector<ParamSpec>& specs);
  bool has(const std::string& key) const { return t_.count(key) != 0; }
  bool is_skeleton() const { return skeleton_; }
  // Every key operator[] is asked for from now on is appended to `keys` (nullptr: stop).
  void record(std::vector<std::string>* keys) const { record_ = keys; }

 private:
  ParamStore() = default;
  std::string arch_;
  std::map<std::string, Tensor> t_;
  bool skeleton_ = false, views_only_ = false;
  mutable std::vector<std::string>* record_ = nullptr;
};

// init_weights() as a WeightMap (the untrained weights of a seed).
WeightMap to_weight_map(std::vector<NamedTensor> tensors);

}  // namespace tabula
