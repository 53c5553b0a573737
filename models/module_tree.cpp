#include "models/module_tree.h"

#include <algorithm>
#include <functional>
#include <stdexcept>
#include <unordered_map>

#include "models/layers.h"

namespace tabula {

std::string Module::name() const {
  if (!parent) return local;
  const std::string p = parent->name();
  return p.empty() ? local : p + "." + local;
}

namespace {
// The shapes of one walk over the tree (one input), per thread: set by ModuleTree::taps / macs.
thread_local std::unordered_map<const Module*, Shape>* t_shapes = nullptr;

struct ShapeMemo {
  std::unordered_map<const Module*, Shape> shapes;
  std::unordered_map<const Module*, Shape>* outer;
  ShapeMemo() : outer(t_shapes) { t_shapes = &shapes; }
  ~ShapeMemo() { t_shapes = outer; }
  ShapeMemo(const ShapeMemo&) = delete;
  ShapeMemo& operator=(const ShapeMemo&) = delete;
};
}  // namespace

Shape Module::shape(const Shape& input) const {
  if (!out) throw std::logic_error("module tree: '" + name() + "' has no output shape");
  if (!t_shapes) return out(input);
  auto it = t_shapes->find(this);
  if (it != t_shapes->end()) return it->second;
  Shape s = out(input);
  t_shapes->emplace(this, s);
  return s;
}

std::string Param::name() const {
  const std::string p = owner->name();
  return p.empty() ? local : p + "." + local;
}

ModuleTree::ModuleTree() {
  modules_.emplace_back();
  root_ = &modules_.back();
  root_->type = "Model";
}

ModuleTree::~ModuleTree() = default;

Module& ModuleTree::make(const std::string& type) {
  modules_.emplace_back();
  Module& m = modules_.back();
  m.type = type;
  return m;
}

Module& ModuleTree::make_replaced(const std::string& type) {
  Module& m = make(type);
  m.replaced = true;
  return m;
}

void ModuleTree::add(Module& parent, const std::string& local, Module& m) {
  if (m.replaced) throw std::logic_error("module tree: a replaced module cannot be registered");
  if (m.parent) throw std::logic_error("module '" + m.name() + "' is registered twice");
  m.local = local;
  m.parent = &parent;
  parent.children.push_back(&m);
}

Module& ModuleTree::child(Module& parent, const std::string& local, const std::string& type) {
  Module& m = make(type);
  add(parent, local, m);
  return m;
}

size_t ModuleTree::buffer(Module& m, const std::string& local, Shape shape, CtorInit init, DType dt) {
  const size_t i = param(m, local, std::move(shape), init);
  params_[i].is_buffer = true;
  params_[i].dtype = dt;
  return i;
}

size_t ModuleTree::param(Module& m, const std::string& local, Shape shape, CtorInit init) {
  Param p;
  p.local = local;
  p.owner = &m;
  p.shape = std::move(shape);
  p.init = init;
  params_.push_back(std::move(p));
  m.params.push_back(params_.size() - 1);
  ctor_order_.push_back(params_.size() - 1);
  return params_.size() - 1;
}

void ModuleTree::reset_weight_bias(Module& m, Shape weight, bool bias) {
  const int64_t out = weight.empty() ? 0 : weight[0];
  param(m, "weight", std::move(weight), {CtorInit::reset});
  if (bias) param(m, "bias", {out}, {CtorInit::reset_bias});
}

Module& ModuleTree::tap(Module& m, ShapeRule out) {
  untapped(m, std::move(out));
  m.tap = true;
  return m;
}

Module& ModuleTree::tap(Module& parent, const std::string& local, const std::string& type, ShapeRule out,
                        MacRule macs) {
  Module& m = tap(child(parent, local, type), std::move(out));
  m.macs = std::move(macs);
  return m;
}

Module& ModuleTree::untapped(Module& m, ShapeRule out) {
  if (!out) throw std::logic_error("module tree: '" + m.local + "' declared without an output shape");
  m.out = std::move(out);
  return m;
}

std::vector<std::pair<std::string, Shape>> ModuleTree::taps(const Shape& input) const {
  ShapeMemo memo;
  std::vector<std::pair<std::string, Shape>> t;
  for (const Module* m : modules())
    if (m->tap) t.emplace_back(m->name(), m->shape(input));
  return t;
}

double ModuleTree::macs(const Shape& input) const {
  ShapeMemo memo;
  double macs = 0;
  for (const Module* m : modules()) {
    if (!m->macs) continue;
    if (!m->out) throw std::logic_error("module tree: '" + m->name() + "' counts MACs but has no output shape");
    macs += m->macs(m->shape(input));
  }
  return macs;
}

std::vector<size_t> ModuleTree::state_dict_order() const {
  std::vector<size_t> order;
  std::function<void(const Module&)> walk = [&](const Module& m) {
    order.insert(order.end(), m.params.begin(), m.params.end());
    for (const Module* c : m.children) walk(*c);
  };
  walk(*root_);
  size_t replaced = 0;
  for (const Module& m : modules_) replaced += m.replaced ? m.params.size() : 0;
  if (order.size() + replaced != params_.size())
    throw std::logic_error("module tree: a module made with make() was never registered with add()");
  return order;
}

std::vector<ParamSpec> ModuleTree::specs() const {
  std::vector<ParamSpec> s;
  for (size_t i : state_dict_order()) {
    const Param& p = params_[i];
    s.push_back({p.name(), p.shape, p.dtype, p.is_buffer});
  }
  return s;
}

std::vector<const Module*> ModuleTree::modules() const {
  std::vector<const Module*> out;
  std::function<void(const Module&)> walk = [&](const Module& m) {
    out.push_back(&m);
    for (const Module* c : m.children) walk(*c);
  };
  walk(*root_);
  return out;
}

std::vector<const Module*> ModuleTree::modules_post_order() const {
  std::vector<const Module*> out;
  std::function<void(const Module&)> walk = [&](const Module& m) {
    for (const Module* c : m.children) walk(*c);
    out.push_back(&m);
  };
  walk(*root_);
  return out;
}

void ModuleTree::draw_now(size_t param) {
  auto it = std::find(ctor_order_.begin(), ctor_order_.end(), param);
  if (it == ctor_order_.end()) throw std::logic_error("module tree: draw_now of an unknown parameter");
  ctor_order_.erase(it);
  ctor_order_.push_back(param);
}

}  // namespace tabula
