// AVX2 + FMA GEMM micro-kernel: 6 x 16 tile in 12 ymm accumulators (the classic Haswell shape).
#include <immintrin.h>

#include "engine/gemm_kernels.h"

namespace tabula::detail {

namespace {
constexpr int MR = 6, NR = 16;

void kernel_6x16(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, bool accumulate) {
  __m256 acc[MR][2];
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(bp + k * NR), b1 = _mm256_loadu_ps(bp + k * NR + 8);
    const float* a = ap + k * MR;
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + i);
      acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    float* ci = c + i * ldc;
    if (accumulate) {
      acc[i][0] = _mm256_add_ps(_mm256_loadu_ps(ci), acc[i][0]);
      acc[i][1] = _mm256_add_ps(_mm256_loadu_ps(ci + 8), acc[i][1]);
    }
    _mm256_storeu_ps(ci, acc[i][0]);
    _mm256_storeu_ps(ci + 8, acc[i][1]);
  }
}
}  // namespace

GemmKernelInfo gemm_kernel_avx2() { return {kernel_6x16, MR, NR, "avx2"}; }

}  // namespace tabula::detail
