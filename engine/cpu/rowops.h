// Vectorised elementwise/row kernels (internal), compiled three times (generic SSE2, AVX2+FMA, AVX-512) from
// rowops_impl.h and picked once at runtime like the GEMM micro-kernels. Sums use 16 fixed lanes combined in a
// fixed order, so results do not depend on threads (they may differ in the last bits between ISAs).
#pragma once
#include <cstdint>

#include "engine/ops.h"

namespace tabula::detail {

struct RowKernels {
  void (*activation)(float* x, int64_t n, Activation act);  // in place
  void (*softmax)(float* r, int64_t n);                      // in place, max-subtracted
  float (*scale_max)(float* r, int64_t n, float scale);      // r *= scale; returns the max (or the running one)
  float (*exp_sum)(float* r, int64_t n, float shift);        // r = exp(r - shift); returns the sum
  void (*layer_norm)(const float* x, float* y, int64_t C, const float* w, const float* b, double eps);
  void (*silu_mul)(const float* a, const float* g, float* y, int64_t n);  // y = silu(a) * g
  float (*exp)(float);
  void (*max_into)(float* best, const float* v, int64_t n);  // best = v where v > best or v is NaN (max-pool)
  const char* name;
};

const RowKernels& row_kernels();
RowKernels row_kernels_generic();
RowKernels row_kernels_avx2();    // rowops_avx2.cpp
RowKernels row_kernels_avx512();  // rowops_avx512.cpp

inline void activation_inplace(float* x, int64_t n, Activation act) { row_kernels().activation(x, n, act); }

}  // namespace tabula::detail
