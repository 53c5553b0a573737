#include <immintrin.h>

#include "engine/cpu/fma_peak.h"

namespace tabula::detail {

// 24 independent vdpbf16ps chains x 16 lanes x one k pair: 24 * 16 * 2 multiply-adds = 1536 FLOP per iteration.
// The same chain count as the FMA probe, so the two peaks compare the instructions, not the latency hiding.
double dpbf16_chains_avx512bf16(long iterations) {
  __m512 acc[24];
  for (int i = 0; i < 24; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i) * 1e-3f);
  // a pair of bf16 values (1.0, 1.0) and (2^-24, 2^-24): the sums stay finite and normal
  const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = (__m512bh)_mm512_set1_epi32(0x33803380);
  for (long it = 0; it < iterations; ++it) {
#pragma GCC unroll 24
    for (int i = 0; i < 24; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  }
  __m512 s = acc[0];
  for (int i = 1; i < 24; ++i) s = _mm512_add_ps(s, acc[i]);
  alignas(64) float v[16];
  _mm512_store_ps(v, s);
  double sum = 0;
  for (float x : v) sum += x;
  return sum;
}

}  // namespace tabula::detail
