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
// The reset weight a reset_bias is drawn with.
size_t reset_weight_of(const ModuleTree& tree, const Param& bias) {
  for (size_t i : bias.owner->params)
    if (tree.at(i).init.kind == CtorInit::reset) return i;
  throw std::logic_error("init replay: bias '" + bias.name() + "' has no reset weight beside it");
}
}  // namespace

InitState::InitState(const ModuleTree& tree, uint64_t seed, InitSink sink)
    : tree_(tree), seed_(seed), gen_(seed), sink_(std::move(sink)) {
  tensors_.resize(tree.size());
  stage_.assign(tree.size(), Stage::none);
  written_.assign(tree.size(), false);
  final_.assign(tree.size(), false);
  reset_at_.resize(tree.size());
  for (size_t i = 0; i < tree.size(); ++i) {
    const Param& p = tree.at(i);
    NamedTensor& t = tensors_[i];
    t.name = p.name();
    t.shape = p.shape;
    t.dtype = p.dtype;
    index_[t.name] = i;
  }
  // The constructors, in the order they ran. Constants and reset values are materialised when needed; the
  // tensors drawn here (few and small: class / position tokens, latents, bias tables) now.
  for (size_t i : tree.construction_order()) {
    const Param& p = tree.at(i);
    switch (p.init.kind) {
      case CtorInit::constant:
      case CtorInit::reset_bias:  // drawn with its weight
        break;
      case CtorInit::reset:
        reset_at_[i] = gen_;
        gen_.discard(default_reset_draws(p.shape, reset_bias_of(tree, p).has_value()));
        break;
      case CtorInit::randn: {
        NamedTensor& t = materialise(i);
        const size_t n = static_cast<size_t>(t.numel());
        normal_(t.f32(), n, 0.0, 1.0, gen_);
        const float scale = static_cast<float>(p.init.value);
        for (size_t k = 0; k < n; ++k) t.f32()[k] *= scale;
        break;
      }
      case CtorInit::trunc_tf: {
        NamedTensor& t = materialise(i);
        timm_trunc_normal_tf_(t.f32(), static_cast<size_t>(t.numel()), gen_, 0.0, p.init.value);
        break;
      }
      case CtorInit::trunc: {
        NamedTensor& t = materialise(i);
        timm_trunc_normal_(t.f32(), static_cast<size_t>(t.numel()), gen_, 0.0, p.init.value);
        break;
      }
    }
  }
}

NamedTensor& InitState::materialise(size_t i) {
  NamedTensor& t = tensors_[i];
  if (stage_[i] != Stage::none) return t;
  const Param& p = tree_.at(i);
  const size_t n = static_cast<size_t>(t.numel());
  t.bytes.assign(n * dtype_size(p.dtype), 0);
  if (p.init.kind == CtorInit::constant && p.init.value != 0.0)
    std::fill(t.f32(), t.f32() + n, static_cast<float>(p.init.value));
  stage_[i] = Stage::live;
  return t;
}

size_t InitState::index_of(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw std::logic_error("init replay: no tensor '" + name + "'");
  return it->second;
}

NamedTensor& InitState::write(const std::string& name) {
  const size_t i = index_of(name);
  if (final_[i]) throw std::logic_error("init replay: '" + name + "' written after the init pass declared it done");
  written_[i] = true;
  return materialise(i);
}

size_t InitState::numel(const std::string& name) const {
  return static_cast<size_t>(tensors_[index_of(name)].numel());
}

const Shape& InitState::shape(const std::string& name) const { return tensors_[index_of(name)].shape; }

void InitState::fill(const std::string& name, float v) {
  NamedTensor& t = write(name);
  std::fill(t.f32(), t.f32() + t.numel(), v);
}

void InitState::draw_reset(size_t wi) {
  const std::optional<size_t> bias = reset_bias_of(tree_, tree_.at(wi));
  const bool keep_w = !written_[wi], keep_b = bias && !written_[*bias];
  if (!keep_w && !keep_b) return;
  // Drawn in place where the values are kept; what the init pass overwrote is drawn into scratch and dropped.
  TorchGenerator g = *reset_at_[wi];
  NamedTensor& w = tensors_[wi];
  std::vector<float> scratch_w(keep_w ? 0 : static_cast<size_t>(w.numel()));
  std::vector<float> scratch_b(bias && !keep_b ? static_cast<size_t>(tensors_[*bias].numel()) : 0);
  float* b = bias ? (keep_b ? tensors_[*bias].f32() : scratch_b.data()) : nullptr;
  default_reset_parameters(keep_w ? w.f32() : scratch_w.data(), w.shape, b, g);
}

void InitState::finalise(size_t i) {
  if (final_[i]) return;
  const Param& p = tree_.at(i);
  std::vector<size_t> group{i};
  if (p.init.kind == CtorInit::reset || p.init.kind == CtorInit::reset_bias) {
    // weight and bias come out of one reset_parameters() call: final together
    const size_t w = p.init.kind == CtorInit::reset ? i : reset_weight_of(tree_, p);
    group = {w};
    if (const std::optional<size_t> b = reset_bias_of(tree_, tree_.at(w))) group.push_back(*b);
    for (size_t k : group) materialise(k);
    draw_reset(w);
  } else {
    materialise(i);
  }
  for (size_t k : group) {
    final_[k] = true;
    if (!sink_) continue;
    sink_(std::move(tensors_[k]));
    tensors_[k].bytes = std::vector<uint8_t>();  // a moved-from vector need not be empty
    stage_[k] = Stage::handed;
  }
}

void InitState::finalise_subtree(const Module& m) {
  for (size_t i : m.params) finalise(i);
  for (const Module* c : m.children) finalise_subtree(*c);
}

void InitState::done(const Module& m) { finalise_subtree(m); }

void InitState::done(const std::string& name) { finalise(index_of(name)); }

std::vector<NamedTensor> InitState::finish() {
  const std::vector<size_t> order = tree_.state_dict_order();
  for (size_t i : order) finalise(i);
  // parameters outside the state_dict (a replaced module's) draw nothing more and are dropped
  std::vector<NamedTensor> out;
  if (sink_) return out;
  out.reserve(order.size());
  for (size_t i : order) out.push_back(std::move(tensors_[i]));
  return out;
}

}  // namespace tabula
