#include "models/init_replay.h"

#include <algorithm>
#include <stdexcept>

#include "engine/init.h"

namespace tabula {

namespace {
// The bias registered beside a reset weight (nn.Linear / nn.Conv2d), if any.
std::optional<size_t> reset_bias_of(const ModuleTree& tree, const Param& weight) {
  for (size_t i : weight.owner->params)
    if (tree.at(i).init.kind == CtorInit::reset_bias) return i;
  return std::nullopt;
}
}  // namespace

InitState::InitState(const ModuleTree& tree, uint64_t seed) : tree_(tree), seed_(seed), gen_(seed) {
  tensors_.resize(tree.size());
  written_.assign(tree.size(), false);
  reset_at_.resize(tree.size());
  for (size_t i = 0; i < tree.size(); ++i) {
    const Param& p = tree.at(i);
    NamedTensor& t = tensors_[i];
    t.name = p.name();
    t.shape = p.shape;
    t.dtype = p.dtype;
    t.bytes.assign(static_cast<size_t>(shape_numel(p.shape)) * dtype_size(p.dtype), 0);
    index_[t.name] = i;
  }
  // The constructors, in the order they ran.
  for (size_t i : tree.construction_order()) {
    const Param& p = tree.at(i);
    NamedTensor& t = tensors_[i];
    const size_t n = static_cast<size_t>(t.numel());
    switch (p.init.kind) {
      case CtorInit::constant:
        if (p.init.value != 0.0) std::fill(t.f32(), t.f32() + n, static_cast<float>(p.init.value));
        break;
      case CtorInit::reset:
        reset_at_[i] = gen_;
        gen_.discard(default_reset_draws(p.shape, reset_bias_of(tree, p).has_value()));
        break;
      case CtorInit::reset_bias:  // drawn with its weight
        break;
      case CtorInit::randn: {
        normal_(t.f32(), n, 0.0, 1.0, gen_);
        const float scale = static_cast<float>(p.init.value);
        for (size_t k = 0; k < n; ++k) t.f32()[k] *= scale;
        break;
      }
      case CtorInit::trunc_tf:
        timm_trunc_normal_tf_(t.f32(), n, gen_, 0.0, p.init.value);
        break;
      case CtorInit::trunc:
        timm_trunc_normal_(t.f32(), n, gen_, 0.0, p.init.value);
        break;
    }
  }
}

NamedTensor& InitState::write(const std::string& name) {
  auto it = index_.find(name);
  if (it == index_.end()) throw std::logic_error("init replay: no tensor '" + name + "'");
  written_[it->second] = true;
  return tensors_[it->second];
}

size_t InitState::numel(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw std::logic_error("init replay: no tensor '" + name + "'");
  return static_cast<size_t>(tensors_[it->second].numel());
}

const Shape& InitState::shape(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw std::logic_error("init replay: no tensor '" + name + "'");
  return tensors_[it->second].shape;
}

void InitState::fill(const std::string& name, float v) {
  NamedTensor& t = write(name);
  std::fill(t.f32(), t.f32() + t.numel(), v);
}

std::vector<NamedTensor> InitState::finish() {
  for (size_t i = 0; i < tree_.size(); ++i) {
    if (!reset_at_[i]) continue;
    const std::optional<size_t> bias = reset_bias_of(tree_, tree_.at(i));
    const bool keep_w = !written_[i], keep_b = bias && !written_[*bias];
    if (!keep_w && !keep_b) continue;
    // Drawn in place where the values are kept; what the init pass overwrote is drawn into scratch and dropped.
    TorchGenerator g = *reset_at_[i];
    NamedTensor& w = tensors_[i];
    std::vector<float> scratch_w(keep_w ? 0 : static_cast<size_t>(w.numel()));
    std::vector<float> scratch_b(bias && !keep_b ? static_cast<size_t>(tensors_[*bias].numel()) : 0);
    float* b = bias ? (keep_b ? tensors_[*bias].f32() : scratch_b.data()) : nullptr;
    default_reset_parameters(keep_w ? w.f32() : scratch_w.data(), w.shape, b, g);
  }
  std::vector<NamedTensor> out;
  out.reserve(tensors_.size());
  for (size_t i : tree_.state_dict_order()) out.push_back(std::move(tensors_[i]));
  return out;
}

}  // namespace tabula
