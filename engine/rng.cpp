#include "engine/rng.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "engine/system.h"

// Every multiply-add below is written as torch's compiled code performs it: an explicit fma where GCC
// contracted torch's source (or torch wrote one), a separate multiply and add where it did not. So no
// contraction may happen here, whatever -march the file is built with.
#if defined(__clang__)
#pragma clang fp contract(off)
#else
#pragma GCC optimize("fp-contract=off")
#endif

namespace tabula {

void Mt19937::seed_with(uint32_t seed) {
  state_[0] = seed;
  for (int i = 1; i < kN; ++i)
    state_[i] = 1812433253u * (state_[i - 1] ^ (state_[i - 1] >> 30)) + static_cast<uint32_t>(i);
  index_ = kN;
}

void Mt19937::twist() {
  constexpr int kM = 397;
  constexpr uint32_t kMatrixA = 0x9908b0dfu, kUpper = 0x80000000u, kLower = 0x7fffffffu;
  auto step = [](uint32_t cur, uint32_t next, uint32_t far) {
    const uint32_t y = (cur & kUpper) | (next & kLower);
    return far ^ (y >> 1) ^ ((y & 1u) ? kMatrixA : 0u);
  };
  // Three independent stretches (no element is read after it is rewritten within one), so each loop
  // vectorises.
  for (int i = 0; i < kN - kM; ++i) state_[i] = step(state_[i], state_[i + 1], state_[i + kM]);
  for (int i = kN - kM; i < kN - 1; ++i) state_[i] = step(state_[i], state_[i + 1], state_[i + kM - kN]);
  state_[kN - 1] = step(state_[kN - 1], state_[0], state_[kM - 1]);
  index_ = 0;
}

void Mt19937::discard(uint64_t n) {
  while (n > 0) {
    if (index_ >= kN) twist();
    const uint64_t take = std::min<uint64_t>(n, static_cast<uint64_t>(kN - index_));
    index_ += static_cast<int>(take);
    n -= take;
  }
}

void Mt19937::fill(uint32_t* out, size_t n) {
  while (n > 0) {
    if (index_ >= kN) twist();
    const size_t take = std::min<size_t>(n, static_cast<size_t>(kN - index_));
    const uint32_t* s = state_ + index_;
    for (size_t k = 0; k < take; ++k) {
      uint32_t y = s[k];
      y ^= y >> 11;
      y ^= (y << 7) & 0x9d2c5680u;
      y ^= (y << 15) & 0xefc60000u;
      out[k] = y ^ (y >> 18);
    }
    index_ += static_cast<int>(take);
    out += take;
    n -= take;
  }
}

void TorchGenerator::manual_seed(uint64_t seed) {
  seed_ = seed;
  engine_.seed_with(static_cast<uint32_t>(seed & 0xffffffffu));  // at::mt19937 keeps the low 32 bits
  next_double_normal_sample.reset();
}

namespace {

inline uint32_t bits_of(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float float_of(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

// at::uniform_real_distribution<float>: 24 random bits -> [0, 1), then one fused multiply-add.
inline float uniform_float(TorchGenerator& gen, float from, float to) {
  const float x = static_cast<float>(gen.random() & ((1u << 24) - 1)) * (1.0f / static_cast<float>(1u << 24));
  return __builtin_fmaf(x, to - from, from);
}

// at::uniform_real_distribution<double>: 53 random bits of random64().
inline double uniform_double(TorchGenerator& gen) {
  return static_cast<double>(gen.random64() & ((uint64_t{1} << 53) - 1)) *
         (1.0 / static_cast<double>(uint64_t{1} << 53));
}

// ---- avx_mathfun.h (Cephes single precision, as compiled into torch's AVX2 kernels), one lane ----------
// log256_ps. The FMAs are where GCC contracted torch's _mm256_mul_ps/_mm256_add_ps pairs.
inline float cephes_logf(float x) {
  const bool invalid = x <= 0.0f;
  const float min_norm = float_of(0x00800000u);
  x = x > min_norm ? x : min_norm;  // _mm256_max_ps(x, min_norm_pos)
  int32_t imm0 = static_cast<int32_t>(bits_of(x) >> 23);
  x = float_of((bits_of(x) & ~0x7f800000u) | bits_of(0.5f));
  imm0 -= 0x7f;
  float e = static_cast<float>(imm0);
  e = e + 1.0f;
  const bool mask = x < 0.707106781186547524f;
  const float tmp = mask ? x : 0.0f;
  x = x - 1.0f;
  e = e - (mask ? 1.0f : 0.0f);
  x = x + tmp;
  const float z = x * x;
  float y = 7.0376836292E-2f;
  y = __builtin_fmaf(y, x, -1.1514610310E-1f);
  y = __builtin_fmaf(y, x, 1.1676998740E-1f);
  y = __builtin_fmaf(y, x, -1.2420140846E-1f);
  y = __builtin_fmaf(y, x, 1.4249322787E-1f);
  y = __builtin_fmaf(y, x, -1.6668057665E-1f);
  y = __builtin_fmaf(y, x, 2.0000714765E-1f);
  y = __builtin_fmaf(y, x, -2.4999993993E-1f);
  y = __builtin_fmaf(y, x, 3.3333331174E-1f);
  y = y * x;
  y = __builtin_fmaf(y, z, e * -2.12194440e-4f);  // y*z + e*q1: the earlier product is the fused one
  y = __builtin_fmaf(-z, 0.5f, y);
  x = __builtin_fmaf(e, 0.693359375f, x + y);
  return invalid ? float_of(0xffffffffu) : x;  // _mm256_or_ps with the all-ones mask: NaN
}

// sincos256_ps for 0 <= x < 8192 (Box-Muller angles lie in [0, 2*pi)).
inline void cephes_sincosf(float x, float* s, float* c) {
  uint32_t sign_bit_sin = bits_of(x) & 0x80000000u;
  x = float_of(bits_of(x) & 0x7fffffffu);
  float y = x * 1.27323954473516f;  // 4 / pi
  int32_t imm2 = static_cast<int32_t>(y);  // _mm256_cvttps_epi32
  imm2 = (imm2 + 1) & ~1;
  y = static_cast<float>(imm2);
  int32_t imm4 = imm2;
  const uint32_t swap_sign_bit_sin = static_cast<uint32_t>(imm2 & 4) << 29;
  const bool poly_mask = (imm2 & 2) == 0;
  // Extended precision modular arithmetic: x = ((x - y*DP1) - y*DP2) - y*DP3, each step fused.
  x = __builtin_fmaf(y, -0.78515625f, x);
  x = __builtin_fmaf(y, -2.4187564849853515625e-4f, x);
  x = __builtin_fmaf(y, -3.77489497744594108e-8f, x);
  imm4 = imm4 - 2;
  const uint32_t sign_bit_cos = (static_cast<uint32_t>(~imm4) & 4u) << 29;
  sign_bit_sin ^= swap_sign_bit_sin;
  const float z = x * x;
  float yc = __builtin_fmaf(2.443315711809948E-005f, z, -1.388731625493765E-003f);
  yc = __builtin_fmaf(yc, z, 4.166664568298827E-002f);
  yc = yc * z;
  yc = __builtin_fmaf(yc, z, -(z * 0.5f));  // y*z - z*0.5: again the earlier product is fused
  yc = yc + 1.0f;
  float ys = __builtin_fmaf(-1.9515295891E-4f, z, 8.3321608736E-3f);
  ys = __builtin_fmaf(ys, z, -1.6666654611E-1f);
  ys = ys * z;
  ys = __builtin_fmaf(ys, x, x);
  const float ysin2 = poly_mask ? ys : 0.0f;
  const float ysin1 = poly_mask ? 0.0f : yc;
  ys = ys - ysin2;
  yc = yc - ysin1;
  const float xmm1 = ysin1 + ysin2;
  const float xmm2 = yc + ys;
  *s = float_of(bits_of(xmm1) ^ sign_bit_sin);
  *c = float_of(bits_of(xmm2) ^ sign_bit_cos);
}

// NormalFill16<float> (AVX2): u1 = 1 - data[j], u2 = data[j + 8] for the 8 lanes.
inline void normal_fill_16_body(float* data, float mean, float std) {
  const float two_pi = static_cast<float>(2.0f * 3.14159265358979323846);  // _mm256_set1_ps(2.0f * pi<double>)
  for (int j = 0; j < 8; ++j) {
    const float u1 = 1.0f - data[j];
    const float u2 = data[j + 8];
    const float radius = std::sqrt(-2.0f * cephes_logf(u1));
    const float theta = two_pi * u2;
    float sin_theta, cos_theta;
    cephes_sincosf(theta, &sin_theta, &cos_theta);
    data[j] = __builtin_fmaf(radius * cos_theta, std, mean);
    data[j + 8] = __builtin_fmaf(radius * sin_theta, std, mean);
  }
}

}  // namespace

namespace detail {

float uniform_value(uint32_t draw, float from, float to) {
  const float x = static_cast<float>(draw & ((1u << 24) - 1)) * (1.0f / static_cast<float>(1u << 24));
  const float v = __builtin_fmaf(x, to - from, from);
  return v == to ? from : v;  // torch: a value rounded up to the bound is mapped back to `from`
}

void parallel_chunks(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn) {
  const size_t hw = std::max(1u, std::thread::hardware_concurrency());
  const size_t nthreads = std::min<size_t>(std::min<size_t>(hw, 16), n / grain);
  if (nthreads <= 1) {
    fn(size_t{0}, n);
    return;
  }
  std::vector<std::thread> pool;
  const size_t step = (n + nthreads - 1) / nthreads;
  for (size_t t = 1; t < nthreads; ++t) {
    const size_t b = std::min(n, t * step), e = std::min(n, b + step);
    if (b < e) pool.emplace_back(fn, b, e);
  }
  fn(size_t{0}, std::min(n, step));
  for (auto& th : pool) th.join();
}

void normal_fill_16_portable(float* data, float mean, float std) { normal_fill_16_body(data, mean, std); }
bool normal_fill_uses_avx2() { return cpu_features().has_avx2_fma(); }

}  // namespace detail

namespace {
// The next n draws, in order, held as their bits in `data` (a state block at a time), then each replaced by
// value(draw): element-wise, so on any number of threads with the same result.
template <class Value>
void draws_then(float* data, size_t n, TorchGenerator& gen, Value value) {
  gen.fill_random(reinterpret_cast<uint32_t*>(data), n);
  detail::parallel_chunks(n, 1 << 16, [data, value](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) {
      uint32_t d;
      std::memcpy(&d, data + i, 4);
      data[i] = value(d);
    }
  });
}
}  // namespace

void uniform_(float* data, size_t n, double from_d, double to_d, TorchGenerator& gen) {
  if (!(from_d <= to_d))
    throw std::invalid_argument("uniform_ expects to return a [from, to) range, but found from=" +
                                std::to_string(from_d) + " > to=" + std::to_string(to_d));
  const float from = static_cast<float>(from_d), to = static_cast<float>(to_d);
  draws_then(data, n, gen, [from, to](uint32_t d) { return detail::uniform_value(d, from, to); });
}

void normal_(float* data, size_t n, double mean_d, double std_d, TorchGenerator& gen) {
  if (!(std_d >= 0.0)) throw std::invalid_argument("normal expects std >= 0.0, but found std " + std::to_string(std_d));
  if (n >= 16) {
    const float mean = static_cast<float>(mean_d), std = static_cast<float>(std_d);
    auto fill16 = detail::normal_fill_uses_avx2() ? detail::normal_fill_16_avx2 : detail::normal_fill_16_portable;
    // uniform_float(gen, 0, 1): fma(x, 1, 0) is x itself
    draws_then(data, n, gen, [](uint32_t d) {
      return static_cast<float>(d & ((1u << 24) - 1)) * (1.0f / static_cast<float>(1u << 24));
    });
    // Box-Muller blocks are independent once the uniforms are drawn.
    detail::parallel_chunks(n / 16, 1 << 15, [&](size_t b, size_t e) {
      for (size_t blk = b; blk < e; ++blk) fill16(data + 16 * blk, mean, std);
    });
    if (n % 16 != 0) {  // torch recomputes the last 16 values from fresh uniforms
      float* tail = data + n - 16;
      for (int i = 0; i < 16; ++i) tail[i] = uniform_float(gen, 0.0f, 1.0f);
      fill16(tail, mean, std);
    }
    return;
  }
  // at::normal_distribution<double>, one per element, sharing the generator's cached sample.
  for (size_t i = 0; i < n; ++i) {
    double ret;
    if (gen.next_double_normal_sample) {
      ret = *gen.next_double_normal_sample;
      gen.next_double_normal_sample.reset();
    } else {
      const double u1 = uniform_double(gen);
      const double u2 = uniform_double(gen);
      const double r = std::sqrt(-2.0 * std::log1p(-u2));
      const double theta = 2.0 * 3.14159265358979323846 * u1;
      gen.next_double_normal_sample = r * std::sin(theta);
      ret = r * std::cos(theta);
    }
    data[i] = static_cast<float>(ret * std_d + mean_d);
  }
}

// ATen/native/Math.h calc_erfinv (Pavlis' rational approximation + Newton steps), here in double. torch's
// has two Newton steps; in double one already converges (the start is good to ~1e-7, Newton squares the
// error): the float results are identical to two steps on 2*10^5 inputs, at half the erf/exp calls.
double calc_erfinv(double y) {
  static constexpr double a[4] = {0.886226899, -1.645349621, 0.914624893, -0.140543331};
  static constexpr double b[4] = {-2.118377725, 1.442710462, -0.329097515, 0.012229801};
  static constexpr double c[4] = {-1.970840454, -1.624906493, 3.429567803, 1.641345311};
  static constexpr double d[2] = {3.543889200, 1.637067800};
  const double y_abs = std::fabs(y);
  if (y_abs > 1.0) return std::numeric_limits<double>::quiet_NaN();
  if (y_abs == 1.0) return std::copysign(std::numeric_limits<double>::infinity(), y);
  double x;
  if (y_abs <= 0.7) {
    const double z = y * y;
    const double num = ((a[3] * z + a[2]) * z + a[1]) * z + a[0];
    const double dem = (((b[3] * z + b[2]) * z + b[1]) * z + b[0]) * z + 1.0;
    x = y * num / dem;
  } else {
    const double z = std::sqrt(-std::log((1.0 - y_abs) / 2.0));
    const double num = ((c[3] * z + c[2]) * z + c[1]) * z + c[0];
    const double dem = (d[1] * z + d[0]) * z + 1.0;
    x = std::copysign(num, y) / dem;
  }
  const double two_over_sqrt_pi = 1.12837916709551257390;
  x = x - (std::erf(x) - y) / (two_over_sqrt_pi * std::exp(-x * x));
  return x;
}

void erfinv_(float* data, size_t n) {
  detail::parallel_chunks(n, 1 << 16, [data](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) data[i] = static_cast<float>(calc_erfinv(static_cast<double>(data[i])));
  });
}

}  // namespace tabula
