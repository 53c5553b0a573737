// The bodies of the row kernels, included by rowops.cpp / rowops_avx2.cpp / rowops_avx512.cpp inside a
// namespace named by TABULA_ROWOPS_NS, so each ISA's copy is a distinct function (no ODR mixing).
// Everything is branch-free per element so GCC vectorises it at the TU's -m flags (no -ffast-math needed).
#ifndef TABULA_ROWOPS_NS
#error "define TABULA_ROWOPS_NS before including rowops_impl.h"
#endif
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <cmath>
#include <cstring>
#include <limits>

#include "engine/cpu/rowops.h"

namespace tabula::detail::TABULA_ROWOPS_NS {

constexpr int kLanes = 16;

// expf: x = n ln2 + r, e^r by Cephes' degree-6 polynomial, 2^n via the exponent bits; n rounded with the
// 1.5 * 2^23 trick (vectorises without SSE4.1). About 1 ulp on [-87.3, 88.3]; 0 below, +inf above, NaN kept.
inline float exp_f(float x) {
  const float hi = 88.3762626647949f, lo = -87.33654f;
  const bool nan = x != x, over = x > hi, under = x < lo;
  const float xc = x < lo ? lo : (x > hi ? hi : x);
  const float magic = 12582912.0f;  // 1.5 * 2^23
  const float n = (xc * 1.44269504088896341f + magic) - magic;
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = p * r * r + r + 1.0f;
  const int32_t e = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &e, 4);
  float y = er * scale;
  y = under ? 0.0f : y;
  y = over ? std::numeric_limits<float>::infinity() : y;
  return nan ? x : y;
}

// erfc(z) for z >= 0 with relative error < 1.2e-7 (Numerical Recipes' Chebyshev fit `erfcc`), so both
// 1 + erf(x) = erfc(-x) for x < 0 and 1 + erf(x) = 2 - erfc(x) for x >= 0 keep full relative precision.
inline float erfc_pos(float z) {
  const float t = 1.0f / (1.0f + 0.5f * z);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  return t * exp_f(-z * z + p);
}

// nn.GELU(): x * 0.5 * (1 + erf(x / sqrt(2))). Relative error about 1e-6 for |x| <= 6; beyond, the rounding
// of exp's argument (-z^2) grows it to ~1e-5 of values below 1e-9 (torch's float 1 + erf cancels there anyway).
inline float gelu_f(float x) {
  const float z = std::fabs(x) * 0.70710678118654752f;
  const float c = erfc_pos(z);
  return 0.5f * x * (x >= 0.f ? 2.0f - c : c);
}

// 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)): the same function without 1 + tanh's cancellation for x < 0
inline float gelu_tanh_f(float x) {
  const float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
  return x / (1.0f + exp_f(-2.0f * u));
}

inline float silu_f(float x) { return x / (1.0f + exp_f(-x)); }

inline void activation(float* x, int64_t n, Activation act) {
  switch (act) {
    case Activation::none: return;
    case Activation::relu:
      for (int64_t i = 0; i < n; ++i) x[i] = x[i] < 0.f ? 0.f : x[i];  // NaN and -0.0 pass, as torch.relu
      return;
    case Activation::gelu:
      for (int64_t i = 0; i < n; ++i) x[i] = gelu_f(x[i]);
      return;
    case Activation::gelu_tanh:
      for (int64_t i = 0; i < n; ++i) x[i] = gelu_tanh_f(x[i]);
      return;
    case Activation::silu:
      for (int64_t i = 0; i < n; ++i) x[i] = silu_f(x[i]);
      return;
  }
}

inline float lane_sum(const float* part) {
  float s = 0;
  for (int l = 0; l < kLanes; ++l) s += part[l];
  return s;
}

inline float scale_max(float* r, int64_t n, float scale) {
#if defined(__AVX512F__)
  // GCC does not vectorise the conditional max reduction below; max_ps(v, m) is exactly `v > m ? v : m` (it returns
  // the second operand when one is NaN), and max is exact in any order, so this gives the loop's result.
  const __m512 sc = _mm512_set1_ps(scale), ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 m = ninf;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const __m512 v = _mm512_mul_ps(_mm512_loadu_ps(r + i), sc);
    _mm512_storeu_ps(r + i, v);
    m = _mm512_mask_max_ps(m, 0xffff, v, m);  // (masked form: GCC 12 warns on max_ps's pass-through operand)
  }
  if (i < n) {  // the tail: inactive lanes read as -inf
    const __mmask16 k = static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 v = _mm512_mul_ps(_mm512_mask_loadu_ps(ninf, k, r + i), sc);
    _mm512_mask_storeu_ps(r + i, k, v);
    m = _mm512_mask_max_ps(m, 0xffff, v, m);
  }
  alignas(64) float part[kLanes];  // (not _mm512_reduce_max_ps: GCC 12 warns inside it)
  _mm512_store_ps(part, m);
  float mx = part[0];
  for (int l = 1; l < kLanes; ++l) mx = part[l] > mx ? part[l] : mx;
  return mx;
#else
  float part[kLanes];
  for (int l = 0; l < kLanes; ++l) part[l] = -std::numeric_limits<float>::infinity();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const float v = r[i + l] * scale;
      r[i + l] = v;
      part[l] = v > part[l] ? v : part[l];
    }
  float mx = -std::numeric_limits<float>::infinity();
  for (int l = 0; l < kLanes; ++l) mx = part[l] > mx ? part[l] : mx;
  for (; i < n; ++i) {
    r[i] *= scale;
    mx = r[i] > mx ? r[i] : mx;
  }
  return mx;
#endif
}

inline float exp_sum(float* r, int64_t n, float shift) {
  float part[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) part[l] += (r[i + l] = exp_f(r[i + l] - shift));
  if (i < n) {  // the tail as one more vector, padded with -inf (whose exp is 0): no scalar exp per element
    float t[kLanes];
    for (int l = 0; l < kLanes; ++l) t[l] = i + l < n ? r[i + l] : -std::numeric_limits<float>::infinity();
    for (int l = 0; l < kLanes; ++l) part[l] += (t[l] = exp_f(t[l] - shift));
    for (int64_t l = 0; l < n - i; ++l) r[i + l] = t[l];
  }
  return lane_sum(part);
}

inline void softmax(float* r, int64_t n) {
  const float mx = scale_max(r, n, 1.0f);
  const float inv = 1.0f / exp_sum(r, n, mx);
  for (int64_t i = 0; i < n; ++i) r[i] *= inv;
}

inline void layer_norm(const float* x, float* y, int64_t C, const float* w, const float* b, double eps) {
  // two passes (mean, then centred squares): stable for activations with a large common offset
  float part[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= C; c += kLanes)
    for (int l = 0; l < kLanes; ++l) part[l] += x[c + l];
  double sum = lane_sum(part);
  for (; c < C; ++c) sum += x[c];
  const float mean = static_cast<float>(sum / static_cast<double>(C));
  float vpart[kLanes] = {};
  c = 0;
  for (; c + kLanes <= C; c += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const float d = x[c + l] - mean;
      vpart[l] += d * d;
    }
  double var = lane_sum(vpart);
  for (; c < C; ++c) var += static_cast<double>(x[c] - mean) * (x[c] - mean);
  const float rstd = static_cast<float>(1.0 / std::sqrt(var / static_cast<double>(C) + eps));
  if (w && b) {
    for (c = 0; c < C; ++c) y[c] = (x[c] - mean) * rstd * w[c] + b[c];
  } else {
    for (c = 0; c < C; ++c) {
      float v = (x[c] - mean) * rstd;
      if (w) v *= w[c];
      if (b) v += b[c];
      y[c] = v;
    }
  }
}

inline void silu_mul(const float* a, const float* g, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = silu_f(a[i]) * g[i];
}

// One step of a running max-pool: exact compare-and-select, so every ISA gives the same bits; a NaN wins (torch).
inline void max_into(float* best, const float* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) best[i] = (v[i] > best[i] || v[i] != v[i]) ? v[i] : best[i];
}

inline RowKernels kernels(const char* name) {
  return {activation, softmax, scale_max, exp_sum, layer_norm, silu_mul, exp_f, max_into, name};
}

}  // namespace tabula::detail::TABULA_ROWOPS_NS
