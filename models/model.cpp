#include "models/model.h"

#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <set>
#include <stdexcept>

#include "engine/cpu/packed.h"
#include "engine/file_pages.h"
#include "models/device.h"
#include "models/layers.h"

namespace tabula {

std::string LoadReport::message() const {
  std::string m;
  auto list = [](const std::vector<std::string>& v) {
    std::string s;
    const size_t shown = v.size() < 8 ? v.size() : 8;
    for (size_t i = 0; i < shown; ++i) s += (i ? ", " : "") + v[i];
    if (v.size() > shown) s += ", ... (" + std::to_string(v.size()) + " in all)";
    return s;
  };
  if (!missing.empty()) m += "missing keys: " + list(missing);
  if (!unexpected.empty()) m += std::string(m.empty() ? "" : "; ") + "unexpected keys: " + list(unexpected);
  return m;
}

namespace {
bool is_batch_counter(const std::string& k) {
  static const std::string suffix = "num_batches_tracked";
  return k.size() >= suffix.size() && k.compare(k.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

ParamStore::ParamStore(const std::string& arch, const std::vector<ParamSpec>& specs, const WeightMap& weights,
                       bool strict, LoadReport* report)
    : arch_(arch) {
  LoadReport r;
  std::set<std::string> expected;
  std::string pos_mismatch;
  for (const ParamSpec& sp : specs) {
    expected.insert(sp.name);
    if (is_batch_counter(sp.name)) continue;  // BatchNorm's step counter: unused in eval
    auto it = weights.find(sp.name);
    if (it == weights.end()) {
      r.missing.push_back(sp.name);
      continue;
    }
    const Tensor& t = it->second;
    if (t.shape() != sp.shape) {
      const std::string what = "arch '" + arch_ + "': weight '" + sp.name + "' has shape " + shape_str(t.shape()) +
                               ", the model needs " + shape_str(sp.shape);
      // A pos_embed of another grid alone is a checkpoint for another image size, worth saying how to run (a load
      // maps, it does not rewrite); one beside other mismatches (another patch size, width) is another model.
      const bool pos = sp.name.size() >= 9 && sp.name.compare(sp.name.size() - 9, 9, "pos_embed") == 0 &&
                       t.shape().size() == 3 && sp.shape.size() == 3 && t.shape()[2] == sp.shape[2];
      if (!pos) throw std::invalid_argument(what);
      if (pos_mismatch.empty())
        pos_mismatch = what + " (weights for another image size: run the arch they were saved for with "
                              "dynamic_img_size=1, which resamples per input as timm does, or resample them once "
                              "with `tabula weights convert FILE --arch ARCH --out NEW.safetensors`)";
      continue;
    }
    if (t.dtype() != DType::f32 && t.dtype() != DType::f16 && t.dtype() != DType::bf16 && t.dtype() != DType::f64)
      throw std::invalid_argument("arch '" + arch_ + "': weight '" + sp.name + "' has dtype " +
                                  std::string(dtype_name(t.dtype())) + ", expected a float type");
    t_[sp.name] = t;  // converted when a layer takes it (operator[]), so one converted copy lives at a time
  }
  for (const auto& [k, v] : weights)
    if (!expected.count(k) && !is_batch_counter(k)) r.unexpected.push_back(k);
  if (report) *report = r;
  if (!r.missing.empty() || (strict && !r.unexpected.empty()))
    throw std::invalid_argument("arch '" + arch_ + "': the weights do not match the model: " + r.message());
  if (!pos_mismatch.empty()) throw std::invalid_argument(pos_mismatch);
}

ParamStore ParamStore::skeleton(const std::string& arch, const std::vector<ParamSpec>& specs) {
  ParamStore p;
  p.arch_ = arch;
  p.skeleton_ = true;
  const Tensor zero = Tensor::zeros({1});
  for (const ParamSpec& sp : specs) {
    if (is_batch_counter(sp.name)) continue;
    Shape ones(sp.shape.size(), 1);
    p.t_[sp.name] = sp.shape.empty() ? zero.view({}) : zero.view(ones).expand(sp.shape);
  }
  return p;
}

ParamStore ParamStore::recording(const std::string& arch, const std::vector<ParamSpec>& specs) {
  ParamStore p = skeleton(arch, specs);
  p.skeleton_ = false;
  p.views_only_ = true;
  return p;
}

Tensor ParamStore::operator[](const std::string& key) const {
  auto it = t_.find(key);
  if (it == t_.end()) throw std::invalid_argument("arch '" + arch_ + "': no weight '" + key + "'");
  if (record_) record_->push_back(key);
  const Tensor& src = it->second;
  if (skeleton_ || views_only_) return src;
  Tensor t = src.to(DType::f32).contiguous();
  if (!t.shares_storage_with(src)) release_file_pages(src);  // the copy is what the layer keeps
  return t;
}

std::vector<TapInfo> Model::list_taps(const Shape& input) const {
  check_input(input);
  std::vector<TapInfo> t;
  for (auto& [name, shape] : tree_->taps(input)) t.push_back({std::move(name), std::move(shape)});
  return t;
}

double Model::gmacs(const Shape& input) const {
  check_input(input);
  Shape one = input;
  one[0] = 1;
  return tree_->macs(one) / 1e9;
}

std::vector<std::string> Model::tap_order(const Shape& input) const {
  std::vector<std::string> order, open;  // open: containers whose children are still being listed
  auto inside = [](const std::string& child, const std::string& parent) {
    return child.size() > parent.size() && child.compare(0, parent.size(), parent) == 0 && child[parent.size()] == '.';
  };
  const auto taps = list_taps(input);
  for (size_t i = 0; i < taps.size(); ++i) {
    const std::string& n = taps[i].name;
    while (!open.empty() && !inside(n, open.back())) {
      order.push_back(open.back());
      open.pop_back();
    }
    if (i + 1 < taps.size() && inside(taps[i + 1].name, n)) open.push_back(n);
    else order.push_back(n);
  }
  while (!open.empty()) {
    order.push_back(open.back());
    open.pop_back();
  }
  return order;
}

WeightMap to_weight_map(std::vector<NamedTensor> tensors) {
  WeightMap m;
  for (NamedTensor& nt : tensors) {
    Tensor t = Tensor::empty(nt.shape, nt.dtype);
    if (!nt.bytes.empty()) std::memcpy(t.raw(), nt.bytes.data(), nt.bytes.size());
    m[nt.name] = std::move(t);
  }
  return m;
}

void Model::load(const ParamStore& params, int device, const LoadProgress& progress) {
  skeleton_ = params.is_skeleton();
  if (skeleton_) device = -1;
  if (device >= 0) act_dtype_ = activation_dtype(device);
  const auto& layers = tree_->layers();
  for (size_t i = 0; i < layers.size(); ++i) {
    layers[i]->load(params);
    if (!skeleton_) {
      PrepareScope preparing(*layers[i]);
      layers[i]->prepare(device);
    }
    if (progress) progress(i + 1, layers.size());
  }
  device_ = device;
}

const std::vector<std::vector<std::string>>& Model::layer_keys() {
  if (!layer_keys_.empty() || tree_->layers().empty()) return layer_keys_;
  const ParamStore sk = ParamStore::recording(arch_.name, tree_->specs());
  for (const auto& layer : tree_->layers()) {
    std::vector<std::string> keys;
    sk.record(&keys);
    layer->load(sk);
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    layer_keys_.push_back(std::move(keys));
  }
  sk.record(nullptr);
  return layer_keys_;
}

void Model::load_streamed(const std::function<void(const InitSink&)>& produce, int device,
                          const LoadProgress& progress, const std::function<void(Layer&)>& on_loaded) {
  const auto& layers = tree_->layers();
  const auto& keys = layer_keys();
  std::unordered_map<std::string, ParamSpec> spec_of;
  for (const ParamSpec& sp : tree_->specs()) spec_of[sp.name] = sp;
  std::unordered_map<std::string, std::vector<size_t>> readers;  // key -> the layers that read it
  std::vector<size_t> waiting(layers.size());                    // per layer: keys not arrived yet
  for (size_t i = 0; i < layers.size(); ++i) {
    waiting[i] = keys[i].size();
    for (const std::string& k : keys[i]) readers[k].push_back(i);
  }
  struct Arrived {
    Tensor t;
    size_t readers_left;
  };
  std::unordered_map<std::string, Arrived> arrived;
  skeleton_ = false;
  act_dtype_ = device >= 0 ? activation_dtype(device) : DType::f32;
  size_t done = 0;
  auto load_layer = [&](size_t i) {
    std::vector<ParamSpec> specs;
    WeightMap wm;
    for (const std::string& k : keys[i]) {
      specs.push_back(spec_of.at(k));
      wm[k] = arrived.at(k).t;
    }
    layers[i]->load(ParamStore(arch_.name, specs, wm, true));
    wm.clear();
    layers[i]->prepare(device);
    for (const std::string& k : keys[i]) {
      auto it = arrived.find(k);
      if (--it->second.readers_left == 0) arrived.erase(it);
    }
    ++done;
    if (progress) progress(done, layers.size());
    if (on_loaded) on_loaded(*layers[i]);
  };
  for (size_t i = 0; i < layers.size(); ++i)
    if (waiting[i] == 0) load_layer(i);
  const InitSink sink = [&](NamedTensor&& nt) {
    auto r = readers.find(nt.name);
    if (r == readers.end()) return;  // a tensor no layer reads (DINOv3's bias_mask: folded in at init)
    auto bytes = std::make_shared<std::vector<uint8_t>>(std::move(nt.bytes));
    Tensor t = Tensor::from_external(bytes->data(), nt.shape, nt.dtype, bytes);
    arrived[nt.name] = {std::move(t), r->second.size()};
    for (size_t i : r->second)
      if (--waiting[i] == 0) load_layer(i);
  };
  produce(sink);
  for (size_t i = 0; i < layers.size(); ++i)
    if (waiting[i] != 0)
      throw std::logic_error("arch '" + arch_.name + "': streamed load: the weights of the layer reading '" +
                             keys[i].front() + "' never came");
  device_ = device;
}

void Model::unload(Layer& layer) {
  for (const auto& l : tree_->layers()) {
    if (l.get() != &layer) continue;
    layer.release();
    return;
  }
  throw std::logic_error("arch '" + arch_.name + "': unload: not one of this model's layers");
}

void Model::check_weights() const {
  if (skeleton_) throw std::logic_error("arch '" + arch_.name + "': model built without weights (structure only)");
}

void Model::record_bf16_centres(const std::vector<Tensor>& references) {
  if (skeleton_ || device_ >= 0 || ops::cpu_precision() != Precision::bf16) return;
  ops::Bf16CentreRecording recording;
  for (const Tensor& r : references) forward(r);
}

std::vector<Tensor> black_white_inputs(const Shape& input, const std::vector<float>& mean,
                                       const std::vector<float>& std) {
  if (input.size() != 4) throw std::invalid_argument("black_white_inputs: input must be [B, C, H, W]");
  const int64_t C = input[1], HW = input[2] * input[3];
  auto at = [C](const std::vector<float>& v, int64_t c, float none) {
    return v.empty() ? none : v[v.size() == static_cast<size_t>(C) ? static_cast<size_t>(c) : 0];
  };
  std::vector<Tensor> out;
  for (float level : {0.f, 1.f}) {
    Tensor t = Tensor::empty({1, C, input[2], input[3]});
    for (int64_t c = 0; c < C; ++c)
      std::fill_n(t.data<float>() + c * HW, HW, (level - at(mean, c, 0.f)) / at(std, c, 1.f));
    out.push_back(t);
  }
  return out;
}

void Model::to_device(int device) {
  check_weights();
  if (device == device_) return;
  act_dtype_ = activation_dtype(device);
  for (const auto& layer : tree_->layers()) {
    PrepareScope preparing(*layer);
    layer->prepare(device);
  }
  device_ = device;
}

}  // namespace tabula
