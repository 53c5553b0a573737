// Tap points: every module output in a model's forward passes through `taps(name, x)` under its PyTorch module
// name ("layer2.3.conv2", "blocks.7.attn.softmax"). A TapSet says which taps the caller wants (captured), may
// intervene on a tapped value (replace it), and tells the forward when every wanted tap has been seen, so a run
// stops after the deepest requested tap.
//
// This is the models' side of the engine's hooks: engine/hooks.h (pooling on the device, zero/replace/scale,
// head ablation) plugs in through `intervene` and `wants`.
#pragma once
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace tabula {

class TapSet {
 public:
  TapSet() = default;
  // Capture these taps (names as listed by `tabula hooks ARCH`).
  explicit TapSet(std::vector<std::string> names);
  static TapSet all();  // capture every tap (tests, `hooks` validation); never stops early

  void add(const std::string& name) { wanted_.insert(name); }
  // Called with (name, value) at every wanted tap before capture; its result replaces the value downstream.
  void set_intervention(std::function<Tensor(const std::string&, const Tensor&)> fn) { intervene_ = std::move(fn); }
  // Record the (name, shape) of every tap point passed, in forward order (capture or not).
  void set_record_order(bool on) { record_order_ = on; }

  // Does the caller want this tap? A module whose output is wanted runs unfused (pre-fold BN outputs etc.).
  bool wants(const std::string& name) const { return capture_all_ || wanted_.count(name) != 0; }
  // True when a prefix of `name` + "." is wanted (e.g. anything inside "layer1.0"): the block runs unfused.
  bool wants_inside(const std::string& prefix) const;
  // The tap point itself.
  Tensor operator()(const std::string& name, Tensor x);
  // Every wanted tap has been captured: the forward may stop here.
  bool done() const { return !capture_all_ && !wanted_.empty() && seen_wanted_ >= wanted_.size(); }

  const std::map<std::string, Tensor>& captured() const { return captured_; }
  const Tensor& at(const std::string& name) const;  // throws naming the tap when it was not captured
  const std::vector<std::pair<std::string, Shape>>& order() const { return order_; }
  const std::set<std::string>& wanted() const { return wanted_; }
  void clear_captured();

 private:
  std::set<std::string> wanted_;
  bool capture_all_ = false, record_order_ = false;
  size_t seen_wanted_ = 0;
  std::function<Tensor(const std::string&, const Tensor&)> intervene_;
  std::map<std::string, Tensor> captured_;
  std::vector<std::pair<std::string, Shape>> order_;
};

}  // namespace tabula
