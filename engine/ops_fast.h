// Internal helpers of the fast CPU path: vectorisable elementwise math.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "engine/ops.h"

namespace tabula::detail {

// expf without a libm call, so loops over it vectorise: x = n ln2 + r, |r| <= ln2/2, e^r by a degree-6
// polynomial (Cephes expf coefficients), 2^n by exponent bits. Max error about 1 ulp for x in [-87, 88];
// below -87.34 it returns 0 (true value < 2^-126), above 88.376 +inf; NaN stays NaN.
inline float fast_exp(float x) {
  const float hi = 88.3762626647949f, lo = -87.33654f;  // keeps 2^n a normal float
  const bool nan = x != x;
  const bool over = x > hi, under = x < lo;
  float xc = x < lo ? lo : (x > hi ? hi : x);
  float n = std::nearbyint(xc * 1.44269504088896341f);
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float er = p * r * r + r + 1.0f;
  int32_t e = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &e, 4);
  float y = er * scale;
  y = under ? 0.0f : y;
  y = over ? INFINITY : y;
  return nan ? x : y;
}

void activation_inplace(float* x, int64_t n, Activation act);

}  // namespace tabula::detail
