// The host emulation of the device preprocessing kernels (engine/preprocess_plan.h): the same steps in the same
// order as engine/cuda/preprocess.cu, each a loop over the per-element functions of engine/preprocess_kernels.h.
#include <stdexcept>
#include <string>

#include "engine/preprocess_kernels.h"
#include "engine/preprocess_plan.h"

namespace tabula {

const char* raw_sample_name(RawSample s) {
  switch (s) {
    case RawSample::u8: return "u8";
    case RawSample::u16: return "u16";
    case RawSample::f32: return "f32";
  }
  return "?";
}

std::vector<float> radix_select_host(const float* v, size_t n, const std::vector<uint64_t>& ranks) {
  std::vector<float> out;
  for (uint64_t r : ranks) {
    if (r >= n) throw std::invalid_argument("radix select: rank " + std::to_string(r) + " of " + std::to_string(n));
    uint32_t prefix = 0;
    uint64_t rank = r;
    for (int pass = 0; pass < 4; ++pass) {
      uint32_t hist[256] = {};
      for (size_t i = 0; i < n; ++i) {
        const uint32_t key = prep::order_key(v[i]);
        if (prep::radix_match(key, pass, prefix)) ++hist[prep::radix_digit(key, pass)];
      }
      prep::radix_choose(hist, pass, &prefix, &rank);
    }
    out.push_back(prep::key_value(prefix));
  }
  return out;
}

namespace {

prep::PassArgs pass_args(const PreprocessPass& p) {
  return {p.axis,  p.src_h,       p.src_w,        p.dst_h,          p.dst_w,       p.out_offset, p.other_offset,
          p.taps,  p.precision,   p.first.data(), p.count.data(),   p.wf.data(),   p.wi.data()};
}

template <class T>
std::vector<T> run_passes(const PreprocessPlan& plan, std::vector<T> cur) {
  for (const PreprocessPass& p : plan.passes) {
    const prep::PassArgs a = pass_args(p);
    std::vector<T> next(size_t(plan.channels) * size_t(p.dst_h) * size_t(p.dst_w));
    for (size_t i = 0; i < next.size(); ++i) next[i] = prep::pass_element(cur.data(), a, int64_t(i));
    cur = std::move(next);
  }
  return cur;
}

}  // namespace

Tensor run_plan_on_host(const PreprocessPlan& plan, const void* raw, const std::vector<const float*>& illum) {
  const size_t hw = plan.plane_size();
  if (plan.illumination && illum.size() != size_t(plan.channels))
    throw std::invalid_argument("preprocess plan: " + std::to_string(illum.size()) + " illumination planes for " +
                                std::to_string(plan.channels) + " channels");
  std::vector<uint8_t> geo8;
  std::vector<float> geo;
  if (plan.u8_path) {
    if (plan.sample != RawSample::u8) throw std::invalid_argument("preprocess plan: the 8-bit path needs u8 planes");
    const uint8_t* r = static_cast<const uint8_t*>(raw);
    geo8 = run_passes(plan, std::vector<uint8_t>(r, r + plan.channels * hw));
  } else {
    std::vector<float> f(plan.channels * hw);
    const bool unit = plan.intensity == PlanIntensity::unit;
    for (int c = 0; c < plan.channels; ++c) {
      const float* il = plan.illumination ? illum[size_t(c)] : nullptr;
      for (size_t i = 0; i < hw; ++i) {
        const int64_t at = int64_t(c * hw + i);
        f[size_t(at)] = prep::unit_value(prep::raw_value(raw, int(plan.sample), at), il, int64_t(i), unit,
                                         plan.max_value);
      }
    }
    if (plan.intensity == PlanIntensity::percentile || plan.intensity == PlanIntensity::minmax) {
      const bool pct = plan.intensity == PlanIntensity::percentile;
      const std::vector<uint64_t> ranks = pct ? std::vector<uint64_t>(plan.ranks, plan.ranks + 4)
                                              : std::vector<uint64_t>{plan.ranks[0], plan.ranks[1]};
      for (int c = 0; c < plan.channels; ++c) {
        float* p = f.data() + c * hw;
        const std::vector<float> os = radix_select_host(p, hw, ranks);
        const double lo = pct ? double(prep::percentile_lerp(os[0], os[1], plan.t_lo)) : double(os[0]);
        const double hi = pct ? double(prep::percentile_lerp(os[2], os[3], plan.t_hi)) : double(os[1]);
        for (size_t i = 0; i < hw; ++i) p[i] = prep::intensity_scale(p[i], lo, hi - lo, pct && plan.clip);
      }
    }
    geo = run_passes(plan, std::move(f));
  }
  const prep::FinalArgs a{plan.inputs,     plan.out_channels,     plan.channels,        plan.out_h,
                          plan.out_w,      plan.u8_path,          plan.mean_of_channels, plan.normalize,
                          int(plan.u8_scale), plan.source.data(), plan.mean.data(),     plan.std.data()};
  Tensor out = Tensor::empty(plan.output_shape());
  float* o = out.data<float>();
  const void* g = plan.u8_path ? static_cast<const void*>(geo8.data()) : static_cast<const void*>(geo.data());
  for (int64_t i = 0; i < out.numel(); ++i) o[i] = prep::final_element(g, a, i);
  return out;
}

}  // namespace tabula
