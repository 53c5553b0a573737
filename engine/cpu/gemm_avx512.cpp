// AVX-512 GEMM micro-kernel: 12 x 32 tile in 24 zmm accumulators; per k, two B vectors are loaded and each A
// element is broadcast once (12 broadcasts, 24 FMAs). Compiled with -mavx512f; dispatched after a CPU check.
#include <immintrin.h>

#include <cstdint>

#include "engine/cpu/gemm_kernels.h"
#include "engine/cpu/gemm_tile_avx512.h"

namespace tabula::detail {

namespace {
using avx512_tile::MR;
using avx512_tile::NR;

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

// The indirect kernel (see gemm_kernels.h): the same 12 x 32 register tile, A broadcast straight from 12 row
// pointers (kept in registers for a segment), so activations are never packed; the epilogue runs on the
// accumulators before the one store (gemm_tile_avx512.h).
void igemm_12x32(int64_t nseg, int64_t len, const float* const* a, const float* bp, float* c, int64_t ldc,
                 bool accumulate, const TileEpilogue* ep) {
  __m512 acc[MR][2];
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  avx512_tile::prefetch_tile(c, ldc, accumulate, ep);
  for (int64_t s = 0; s < nseg; ++s, a += MR) {
    const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];
    const float *a6 = a[6], *a7 = a[7], *a8 = a[8], *a9 = a[9], *a10 = a[10], *a11 = a[11];
    for (int64_t k = 0; k < len; ++k, bp += NR) {
      // the weight panel's rows 8 k ahead into L1 (+1.5-2.6 % on ViT-B's linears; past the panel's end it
      // touches whatever follows, harmlessly: a prefetch never faults, and the address is computed as an integer)
      const uintptr_t ahead = reinterpret_cast<uintptr_t>(bp) + 8 * NR * sizeof(float);
      _mm_prefetch(reinterpret_cast<const char*>(ahead), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(ahead + 64), _MM_HINT_T0);
      const __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
#define TABULA_IGEMM_ROW(i)                                     \
  {                                                             \
    const __m512 ai = _mm512_set1_ps(a##i[k]);                  \
    acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);             \
    acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);             \
  }
      TABULA_IGEMM_ROW(0) TABULA_IGEMM_ROW(1) TABULA_IGEMM_ROW(2) TABULA_IGEMM_ROW(3)
      TABULA_IGEMM_ROW(4) TABULA_IGEMM_ROW(5) TABULA_IGEMM_ROW(6) TABULA_IGEMM_ROW(7)
      TABULA_IGEMM_ROW(8) TABULA_IGEMM_ROW(9) TABULA_IGEMM_ROW(10) TABULA_IGEMM_ROW(11)
#undef TABULA_IGEMM_ROW
    }
  }
  avx512_tile::store_tile(acc, c, ldc, accumulate, ep);
}
}  // namespace

GemmKernelInfo gemm_kernel_avx512() { return {kernel_12x32, MR, NR, "avx512"}; }
GemmIndirectKernelInfo gemm_indirect_kernel_avx512() { return {igemm_12x32, MR, NR, "avx512"}; }

}  // namespace tabula::detail
