#include "engine/hooks.h"

#include <algorithm>

#include "engine/arena.h"
#include "engine/backend.h"

namespace tabula {

bool Hook::matches(std::string_view name) const {
  if (pattern == "all") return true;
  if (!pattern.empty() && pattern.back() == '*') {
    std::string_view prefix(pattern.data(), pattern.size() - 1);
    return name.substr(0, prefix.size()) == prefix;
  }
  return name == pattern;
}

TapSet& TapSet::add(Hook h) {
  if (h.pattern.empty()) op_error("TapSet", "empty tap name");
  hooks_.push_back(std::move(h));
  return *this;
}
TapSet& TapSet::capture(std::string pattern, Pool pool) {
  Hook h;
  h.pattern = std::move(pattern);
  h.pool = pool;
  return add(std::move(h));
}
TapSet& TapSet::zero(std::string pattern) {
  Hook h;
  h.pattern = std::move(pattern);
  h.action = HookAction::zero;
  return add(std::move(h));
}
TapSet& TapSet::replace(std::string pattern, Tensor value) {
  Hook h;
  h.pattern = std::move(pattern);
  h.action = HookAction::replace;
  h.value = std::move(value);
  if (!h.value.defined()) op_error("TapSet", "replace at '" + h.pattern + "' needs a tensor");
  return add(std::move(h));
}
TapSet& TapSet::scale(std::string pattern, float factor) {
  Hook h;
  h.pattern = std::move(pattern);
  h.action = HookAction::scale;
  h.factor = factor;
  return add(std::move(h));
}
TapSet& TapSet::ablate_heads(std::string pattern, std::vector<int64_t> heads) {
  Hook h;
  h.pattern = std::move(pattern);
  h.action = HookAction::ablate_heads;
  h.heads = std::move(heads);
  if (h.heads.empty()) op_error("TapSet", "ablate_heads at '" + h.pattern + "' needs at least one head");
  return add(std::move(h));
}

void TapSet::bind(const std::vector<std::string>& taps) {
  order_ = taps;
  stop_after_ = -1;
  for (const Hook& h : hooks_) {
    int64_t last = -1;
    for (size_t i = 0; i < taps.size(); ++i)
      if (h.matches(taps[i])) last = static_cast<int64_t>(i);
    if (last < 0) {
      std::string some;
      for (size_t i = 0; i < taps.size() && i < 8; ++i) {
        if (i) some += ", ";
        some += taps[i];
      }
      if (taps.size() > 8) some += ", ... (" + std::to_string(taps.size()) + " taps; `tabula hooks ARCH` lists all)";
      op_error("TapSet", "no tap named '" + h.pattern + "'; taps are: " + some);
    }
    if (h.action == HookAction::capture) stop_after_ = std::max(stop_after_, last);
  }
  reset();
}

bool TapSet::wants(std::string_view name) const {
  return std::any_of(hooks_.begin(), hooks_.end(), [&](const Hook& h) { return h.matches(name); });
}

std::string TapSet::key_for(std::string_view name, const Hook& h) const {
  int captures = 0;
  for (const Hook& o : hooks_) captures += o.action == HookAction::capture && o.matches(name);
  std::string key(name);
  if (captures > 1) {
    key += ':';
    key += pool_name(h.pool);
  }
  return key;
}

std::vector<std::string> TapSet::capture_keys() const {
  std::vector<std::string> keys;
  for (const std::string& t : order_)
    for (const Hook& h : hooks_)
      if (h.action == HookAction::capture && h.matches(t)) {
        std::string k = key_for(t, h);
        if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
      }
  return keys;
}

void TapSet::reset() {
  captured_.clear();
  done_ = false;
}

bool TapSet::tap(std::string_view name, Tensor& x, const TapContext& ctx) {
  if (trace_) trace_->emplace_back(std::string(name), x.shape());
  int64_t index = -1;
  if (!order_.empty()) {
    auto it = std::find(order_.begin(), order_.end(), name);
    if (it == order_.end())
      op_error("TapSet", "the forward reached tap '" + std::string(name) + "' that bind() did not list");
    index = it - order_.begin();
  }
  const std::string where = "tap '" + std::string(name) + "'";
  // Interventions build their value on the host; a GPU forward gets it back on its device.
  const bool gpu = on_gpu(x);
  auto place = [&](const Tensor& host) { return gpu ? backend("TapSet", x.device()).to_device_like(host, x) : host; };
  // Interventions first, in the order given; each replaces x (never writes into storage others may share).
  for (const Hook& h : hooks_) {
    if (h.action == HookAction::capture || !h.matches(name)) continue;
    switch (h.action) {
      case HookAction::zero:
        x = place(Tensor::zeros(x.shape()));
        break;
      case HookAction::replace:
        if (h.value.shape() != x.shape())
          op_error("TapSet",
                   "replace at " + where + ": value " + h.value.str() + " does not match the output " + x.str());
        x = place(h.value.to(DType::f32).contiguous().clone());
        break;
      case HookAction::scale:
        x = ops::mul(x, h.factor);
        break;
      case HookAction::ablate_heads: {
        if (ctx.num_heads <= 0 || x.size(-1) % ctx.num_heads)
          op_error("TapSet", "ablate_heads at " + where + ": not an attention output with heads (" + x.str() + ")");
        const int64_t hd = x.size(-1) / ctx.num_heads;
        Tensor y = gpu ? to_host(x) : x.contiguous().clone();
        Tensor rows = y.view({-1, y.size(-1)});
        for (int64_t head : h.heads) {
          if (head < 0 || head >= ctx.num_heads)
            op_error("TapSet", "ablate_heads at " + where + ": head " + std::to_string(head) + " out of range [0, " +
                                   std::to_string(ctx.num_heads) + ")");
          rows.narrow(1, head * hd, hd).fill_(0.f);
        }
        x = place(y);
        break;
      }
      case HookAction::capture: break;
    }
  }
  for (const Hook& h : hooks_) {
    if (h.action != HookAction::capture || !h.matches(name)) continue;
    // captures outlive the batch: never from the activation arena
    ArenaScope heap_only(nullptr);
    // pooled where x lives (on the GPU only the [B, C] result crosses to the host)
    Tensor pooled = h.pool == Pool::none ? (gpu ? to_host(x) : x.contiguous().clone())
                                         : to_host(ops::pool(x, h.pool, ctx.num_prefix_tokens));
    if (pooled.shares_storage_with(x) || pooled.storage()->kind == Storage::Kind::arena) pooled = heap_copy(pooled);
    captured_[key_for(name, h)] = pooled;
  }
  if (index >= 0 && stop_after_ >= 0 && index >= stop_after_) done_ = true;
  return done_;
}

}  // namespace tabula
