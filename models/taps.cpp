#include "models/taps.h"

#include <stdexcept>

namespace tabula {

TapSet::TapSet(std::vector<std::string> names) {
  for (auto& n : names) wanted_.insert(std::move(n));
}

TapSet TapSet::all() {
  TapSet t;
  t.capture_all_ = true;
  return t;
}

bool TapSet::wants_inside(const std::string& prefix) const {
  if (capture_all_) return true;
  const std::string p = prefix + ".";
  auto it = wanted_.lower_bound(p);
  return it != wanted_.end() && it->compare(0, p.size(), p) == 0;
}

Tensor TapSet::operator()(const std::string& name, Tensor x) {
  if (record_order_) order_.emplace_back(name, x.shape());
  if (!wants(name)) return x;
  if (intervene_) x = intervene_(name, x);
  if (!capture_all_ && captured_.count(name) == 0) ++seen_wanted_;
  captured_[name] = x;
  return x;
}

const Tensor& TapSet::at(const std::string& name) const {
  auto it = captured_.find(name);
  if (it == captured_.end()) throw std::out_of_range("tap '" + name + "' was not captured in this forward");
  return it->second;
}

void TapSet::clear_captured() {
  captured_.clear();
  order_.clear();
  seen_wanted_ = 0;
}

}  // namespace tabula
