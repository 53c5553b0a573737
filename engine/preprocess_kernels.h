// The per-element math of device preprocessing, shared by the CUDA kernels (engine/cuda/preprocess.cu) and their
// host emulation (engine/preprocess_host.cpp), so a CPU test checks the very arithmetic the GPU runs. Each function
// mirrors a step of data/preprocess.cpp, data/interpolate.cpp or data/pillow_resample.cpp operation by operation;
// float and double operations go through *_rn helpers, which on the device are the round-to-nearest intrinsics:
// nvcc would otherwise contract a * b + c into an FMA, and the CPU path (built without FMA contraction) does not.
// Plain C++ when not compiled by nvcc.
#pragma once
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define TABULA_HD __host__ __device__ __forceinline__
#else
#define TABULA_HD inline
#endif

namespace tabula::prep {

// ---- rounding-exact arithmetic ----
TABULA_HD float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
TABULA_HD float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
TABULA_HD float sub_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
TABULA_HD float div_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
TABULA_HD double dadd_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
TABULA_HD double dsub_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
TABULA_HD double ddiv_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}

// ---- raw samples -> float, illumination, unit scaling ----
// sample: 0 u8, 1 u16, 2 f32 (RawSample). Every u8 / u16 value is exact in float.
TABULA_HD float raw_value(const void* raw, int sample, int64_t i) {
  if (sample == 0) return float(static_cast<const uint8_t*>(raw)[i]);
  if (sample == 1) return float(static_cast<const uint16_t*>(raw)[i]);
  return static_cast<const float*>(raw)[i];
}
// load_sample's divide_illumination (p /= f), then scale_to_unit (v /= max_value, skipped when it is 1).
TABULA_HD float unit_value(float v, const float* illum, int64_t i, bool unit, float max_value) {
  if (illum) v = div_rn(v, illum[i]);
  if (unit && max_value != 1.0f) v = div_rn(v, max_value);
  return v;
}

// ---- exact order statistics by radix select ----
// A float's order key: unsigned keys compare as the floats do (negative values reversed), with -0.0 taken as +0.0
// (nth_element does not tell them apart either).
TABULA_HD uint32_t order_key(float f) {
  if (f == 0.0f) f = 0.0f;
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
TABULA_HD float key_value(uint32_t k) {
  const uint32_t u = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
// Pass p (0..3) looks at bits [31 - 8p, 24 - 8p] of the keys that agree with `prefix` on the bits above them.
TABULA_HD bool radix_match(uint32_t key, int pass, uint32_t prefix) {
  return pass == 0 || (key >> (32 - 8 * pass)) == (prefix >> (32 - 8 * pass));
}
TABULA_HD int radix_digit(uint32_t key, int pass) { return int((key >> (24 - 8 * pass)) & 255u); }
// After pass p's 256-bin histogram of the matching keys: the bin holding the element of rank *rank among them
// becomes the prefix's digit, and *rank the rank within that bin.
TABULA_HD void radix_choose(const uint32_t* hist, int pass, uint32_t* prefix, uint64_t* rank) {
  uint64_t below = 0;
  for (int b = 0; b < 256; ++b) {
    if (*rank < below + hist[b]) {
      *prefix |= uint32_t(b) << (24 - 8 * pass);
      *rank -= below;
      return;
    }
    below += hist[b];
  }
}
// numpy's _lerp on float32 data: a + (b - a) * t, or b - (b - a) * (1 - t) for t >= 0.5 (data/preprocess.cpp).
TABULA_HD float percentile_lerp(float a, float b, float t) {
  const float diff = sub_rn(b, a);
  return t >= 0.5f ? sub_rn(b, mul_rn(diff, sub_rn(1.0f, t))) : add_rn(a, mul_rn(diff, t));
}
// percentile_scale / minmax_scale per element: (x - lo) / range in double, clipped to [0, 1] when asked, 0 for a
// channel without range.
TABULA_HD float intensity_scale(float v, double lo, double range, bool clip) {
  double x = range > 0 ? ddiv_rn(dsub_rn(double(v), lo), range) : 0.0;
  if (clip) x = x < 0.0 ? 0.0 : (x > 1.0 ? 1.0 : x);
  return float(x);
}

// ---- resampling ----
// ATen's antialiased float path: acc = s[0] * w[0]; acc += s[k] * w[k], in float (data/interpolate.cpp).
TABULA_HD float resample_f32(const float* s, int64_t step, const float* w, int count) {
  float acc = count > 0 ? mul_rn(s[0], w[0]) : 0.0f;
  for (int k = 1; k < count; ++k) acc = add_rn(acc, mul_rn(s[k * step], w[k]));
  return acc;
}
// Pillow's ImagingResample*_8bpc (and torch's uint8 kernel with its own precision): an int32 sum from half a unit,
// shifted and clipped to 0..255.
TABULA_HD uint8_t resample_u8(const uint8_t* s, int64_t step, const int32_t* k, int count, int precision) {
  int32_t ss = precision > 0 ? int32_t(1) << (precision - 1) : 0;
  for (int x = 0; x < count; ++x) ss += int32_t(s[x * step]) * k[x];
  const int32_t v = ss >> precision;
  return uint8_t(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// What a pass kernel needs of engine/preprocess_plan.h's PreprocessPass, with device pointers to its tables.
struct PassArgs {
  int axis, src_h, src_w, dst_h, dst_w, out_offset, other_offset, taps, precision;
  const int32_t* first;
  const int32_t* count;
  const float* wf;
  const int32_t* wi;
};
// Element idx of the pass's output (planes after planes of dst_h x dst_w), from src (planes of src_h x src_w).
template <class T>
TABULA_HD T pass_element(const T* src, const PassArgs& a, int64_t idx) {
  const int64_t hw = int64_t(a.dst_h) * a.dst_w;
  const int64_t p = idx / hw, y = (idx % hw) / a.dst_w, x = idx % a.dst_w;
  const T* plane = src + p * int64_t(a.src_h) * a.src_w;
  if (a.axis < 0) return plane[(y + a.out_offset) * a.src_w + x + a.other_offset];
  const int64_t o = a.axis == 0 ? x + a.out_offset : y + a.out_offset;
  const T* s = a.axis == 0 ? plane + (y + a.other_offset) * a.src_w + a.first[o]
                           : plane + int64_t(a.first[o]) * a.src_w + x + a.other_offset;
  const int64_t step = a.axis == 0 ? 1 : a.src_w;
  if constexpr (sizeof(T) == 1) {
    return resample_u8(s, step, a.wi + o * a.taps, a.count[o], a.precision);
  } else {
    return resample_f32(s, step, a.wf + o * a.taps, a.count[o]);
  }
}

// ---- model inputs: channel strategy, 8-bit scaling, Normalize ----
struct FinalArgs {
  int inputs, out_channels, channels, h, w;
  bool u8, mean_of_channels, normalize;
  int u8_scale;  // PlanU8Scale
  const int32_t* source;
  const float* mean;
  const float* std;
};
TABULA_HD float geometry_value(const void* geo, const FinalArgs& a, int c, int64_t pix) {
  const int64_t i = int64_t(c) * a.h * a.w + pix;
  if (!a.u8) return static_cast<const float*>(geo)[i];
  const float v = float(static_cast<const uint8_t*>(geo)[i]);
  if (a.u8_scale == 1) return div_rn(v, 255.0f);                      // ToTensor: x.float().div(255)
  if (a.u8_scale == 2) return mul_rn(v, float(1.0 / 255.0));          // ToDtype(scale=True): x * float(1/255)
  return v;
}
// Element idx of the [inputs, out_channels, h, w] output: apply_channel_strategy, then normalize ((x - m) / s).
TABULA_HD float final_element(const void* geo, const FinalArgs& a, int64_t idx) {
  const int64_t hw = int64_t(a.h) * a.w;
  const int64_t i = idx / (a.out_channels * hw), k = (idx / hw) % a.out_channels, pix = idx % hw;
  float v;
  if (a.mean_of_channels) {
    double acc = 0;
    for (int c = 0; c < a.channels; ++c) acc = dadd_rn(acc, double(geometry_value(geo, a, c, pix)));
    v = float(ddiv_rn(acc, double(a.channels)));
  } else {
    v = geometry_value(geo, a, a.source[i * a.out_channels + k], pix);
  }
  if (a.normalize) v = div_rn(sub_rn(v, a.mean[k]), a.std[k]);
  return v;
}

}  // namespace tabula::prep
