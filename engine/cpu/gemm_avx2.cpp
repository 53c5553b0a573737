// AVX2 + FMA GEMM micro-kernel: 6 x 16 tile in 12 ymm accumulators (the classic Haswell shape).
#include <immintrin.h>

#include "engine/cpu/gemm_kernels.h"

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

// The indirect kernel (see gemm_kernels.h) at AVX2 width: 6 row pointers, 6 x 16 tile, epilogue in registers.
void igemm_6x16(int64_t nseg, int64_t len, const float* const* a, const float* bp, float* c, int64_t ldc,
                bool accumulate, const TileEpilogue* ep) {
  __m256 acc[MR][2];
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (int64_t s = 0; s < nseg; ++s, a += MR) {
    const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];
    for (int64_t k = 0; k < len; ++k, bp += NR) {
      const __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
#define TABULA_IGEMM_ROW(i)                                     \
  {                                                             \
    const __m256 ai = _mm256_broadcast_ss(a##i + k);            \
    acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);             \
    acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);             \
  }
      TABULA_IGEMM_ROW(0) TABULA_IGEMM_ROW(1) TABULA_IGEMM_ROW(2)
      TABULA_IGEMM_ROW(3) TABULA_IGEMM_ROW(4) TABULA_IGEMM_ROW(5)
#undef TABULA_IGEMM_ROW
    }
  }
  const __m256 zero = _mm256_setzero_ps();
  __m256 sc0 = zero, sc1 = zero, sh0 = zero, sh1 = zero;
  if (ep && ep->scale) sc0 = _mm256_loadu_ps(ep->scale), sc1 = _mm256_loadu_ps(ep->scale + 8);
  if (ep && ep->shift) sh0 = _mm256_loadu_ps(ep->shift), sh1 = _mm256_loadu_ps(ep->shift + 8);
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    float* ci = c + i * ldc;
    __m256 v0 = acc[i][0], v1 = acc[i][1];
    if (accumulate) v0 = _mm256_add_ps(_mm256_loadu_ps(ci), v0), v1 = _mm256_add_ps(_mm256_loadu_ps(ci + 8), v1);
    if (ep) {
      if (ep->scale) v0 = _mm256_fmadd_ps(v0, sc0, sh0), v1 = _mm256_fmadd_ps(v1, sc1, sh1);
      else if (ep->shift) v0 = _mm256_add_ps(v0, sh0), v1 = _mm256_add_ps(v1, sh1);
      if (ep->residual) {
        const float* r = ep->residual + i * ep->ldr;
        v0 = _mm256_add_ps(v0, _mm256_loadu_ps(r)), v1 = _mm256_add_ps(v1, _mm256_loadu_ps(r + 8));
      }
      if (ep->relu) v0 = _mm256_max_ps(zero, v0), v1 = _mm256_max_ps(zero, v1);  // keeps NaN, as torch.relu
    }
    _mm256_storeu_ps(ci, v0);
    _mm256_storeu_ps(ci + 8, v1);
  }
}
}  // namespace

GemmKernelInfo gemm_kernel_avx2() { return {kernel_6x16, MR, NR, "avx2"}; }
GemmIndirectKernelInfo gemm_indirect_kernel_avx2() { return {igemm_6x16, MR, NR, "avx2"}; }

}  // namespace tabula::detail
