// The 12 x 32 fp32 register tile's C side, shared by the AVX-512 indirect kernels (gemm_avx512.cpp, fp32 FMA;
// gemm_bf16_avx512bf16.cpp, vdpbf16ps): the prefetch of the tile's lines and the one store with the epilogue.
// Include only from translation units compiled with AVX-512 (engine/CMakeLists.txt: *_avx512*.cpp).
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "engine/cpu/gemm_kernels.h"

namespace tabula::detail::avx512_tile {
// (internal linkage: the two including units are compiled with different -m flags, so no shared inline copy)
namespace {

constexpr int MR = 12, NR = 32;

// The tile's output lines (for writing) and residual lines, requested before the dot products so that they
// arrive while the multiply-adds run: a conv's output is a fresh map whose lines are in no cache yet, and with a
// short K (layer1's K = 64: 64 k per call) the misses of the 24 stores and 24 residual loads would otherwise stall
// the epilogue (ResNet-50 layer1 1x1 convs +5-13 %, the other 1x1 convs unchanged; bench/RESULTS_engine.md).
// When accumulating (a later K block) the tile was written by the previous block and is still cached.
inline void prefetch_tile(float* c, int64_t ldc, bool accumulate, const TileEpilogue* ep) {
  if (!accumulate)
    for (int i = 0; i < MR; ++i) {
      __builtin_prefetch(c + i * ldc, 1, 3);
      __builtin_prefetch(c + i * ldc + 16, 1, 3);
    }
  if (ep && ep->residual)
    for (int i = 0; i < MR; ++i) {
      __builtin_prefetch(ep->residual + i * ep->ldr, 0, 3);
      __builtin_prefetch(ep->residual + i * ep->ldr + 16, 0, 3);
    }
}

// C (+)= acc, then scale/shift (or the row's shift), residual and ReLU in fp32, on the accumulators before the
// one store.
inline void store_tile(__m512 (&acc)[MR][2], float* c, int64_t ldc, bool accumulate, const TileEpilogue* ep) {
  const __m512 zero = _mm512_setzero_ps();
  __m512 sc0 = zero, sc1 = zero, sh0 = zero, sh1 = zero;
  if (ep && ep->scale) sc0 = _mm512_loadu_ps(ep->scale), sc1 = _mm512_loadu_ps(ep->scale + 16);
  if (ep && ep->shift) sh0 = _mm512_loadu_ps(ep->shift), sh1 = _mm512_loadu_ps(ep->shift + 16);
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
    float* ci = c + i * ldc;
    __m512 v0 = acc[i][0], v1 = acc[i][1];
    if (accumulate) v0 = _mm512_add_ps(_mm512_loadu_ps(ci), v0), v1 = _mm512_add_ps(_mm512_loadu_ps(ci + 16), v1);
    if (ep) {
      __m512 s0 = sh0, s1 = sh1;
      if (ep->row_shift) s0 = _mm512_loadu_ps(ep->row_shift[i]), s1 = _mm512_loadu_ps(ep->row_shift[i] + 16);
      if (ep->scale) v0 = _mm512_fmadd_ps(v0, sc0, s0), v1 = _mm512_fmadd_ps(v1, sc1, s1);
      else if (ep->shift || ep->row_shift) v0 = _mm512_add_ps(v0, s0), v1 = _mm512_add_ps(v1, s1);
      if (ep->residual) {
        const float* r = ep->residual + i * ep->ldr;
        v0 = _mm512_add_ps(v0, _mm512_loadu_ps(r)), v1 = _mm512_add_ps(v1, _mm512_loadu_ps(r + 16));
      }
      // max(0, v) keeps a NaN (the second operand is returned when either is NaN), as torch.relu does
      // (the masked form: GCC 12 warns about _mm512_max_ps's undefined pass-through operand)
      if (ep->relu) v0 = _mm512_mask_max_ps(v0, 0xffff, zero, v0), v1 = _mm512_mask_max_ps(v1, 0xffff, zero, v1);
    }
    _mm512_storeu_ps(ci, v0);
    _mm512_storeu_ps(ci + 16, v1);
  }
}

}  // namespace
}  // namespace tabula::detail::avx512_tile
