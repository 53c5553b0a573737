// AVX-512 GEMM micro-kernel: 12 x 32 tile in 24 zmm accumulators; per k, two B vectors are loaded and each A
// element is broadcast once (12 broadcasts, 24 FMAs). Compiled with -mavx512f; dispatched after a CPU check.
#include <immintrin.h>

#include "engine/gemm_kernels.h"

namespace tabula::detail {

namespace {
constexpr int MR = 12, NR = 32;

void kernel_12x32(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, bool accumulate) {
  __m512 acc[MR][2];
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_loadu_ps(bp + k * NR), b1 = _mm512_loadu_ps(bp + k * NR + 16);
    const float* a = ap + k * MR;
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
    float* ci = c + i * ldc;
    if (accumulate) {
      acc[i][0] = _mm512_add_ps(_mm512_loadu_ps(ci), acc[i][0]);
      acc[i][1] = _mm512_add_ps(_mm512_loadu_ps(ci + 16), acc[i][1]);
    }
    _mm512_storeu_ps(ci, acc[i][0]);
    _mm512_storeu_ps(ci + 16, acc[i][1]);
  }
}
}  // namespace

GemmKernelInfo gemm_kernel_avx512() { return {kernel_12x32, MR, NR, "avx512"}; }

}  // namespace tabula::detail
