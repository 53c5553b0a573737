// AVX512-BF16 GEMM micro-kernel: the 12 x 32 register tile of gemm_avx512.cpp's indirect kernel, with
// `vdpbf16ps` in place of the fp32 FMA -- per instruction 16 columns x one k pair, twice the multiply-adds of an
// fp32 FMA. A rows are bf16 (row pointers, pairs (k, k + 1) broadcast as one 32-bit value); B panels hold bf16
// pairs (PackedMatrix's bf16 layout, packed.h); accumulation and the epilogue are fp32. Compiled with
// -mavx512bf16; dispatched only when cpu_features().has_avx512_bf16().
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "engine/cpu/gemm_kernels.h"
#include "engine/cpu/gemm_tile_avx512.h"

namespace tabula::detail {

namespace {
using avx512_tile::MR;
using avx512_tile::NR;
using avx512_tile::prefetch_tile;
using avx512_tile::store_tile;

inline __m512i broadcast_pair(const uint16_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return _mm512_set1_epi32(v);
}

// One segment of `len` (even) k: per k pair, two B vectors (32 columns x the pair) and 12 broadcast A pairs.
inline void dot_segment(__m512 (&acc)[MR][2], int64_t len, const uint16_t* const* a, const uint16_t*& bp) {
  const uint16_t *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];
  const uint16_t *a6 = a[6], *a7 = a[7], *a8 = a[8], *a9 = a[9], *a10 = a[10], *a11 = a[11];
  for (int64_t k = 0; k < len; k += 2, bp += 2 * NR) {
    // the weight panel 8 k pairs ahead into L1 (a prefetch never faults past the panel's end)
    const uintptr_t ahead = reinterpret_cast<uintptr_t>(bp) + 8 * 2 * NR * sizeof(uint16_t);
    _mm_prefetch(reinterpret_cast<const char*>(ahead), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(ahead + 64), _MM_HINT_T0);
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp), b1 = (__m512bh)_mm512_loadu_si512(bp + NR);
#define TABULA_BF16_ROW(i)                                                  \
  {                                                                         \
    const __m512bh ai = (__m512bh)broadcast_pair(a##i + k);                 \
    acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);                        \
    acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);                        \
  }
    TABULA_BF16_ROW(0) TABULA_BF16_ROW(1) TABULA_BF16_ROW(2) TABULA_BF16_ROW(3)
    TABULA_BF16_ROW(4) TABULA_BF16_ROW(5) TABULA_BF16_ROW(6) TABULA_BF16_ROW(7)
    TABULA_BF16_ROW(8) TABULA_BF16_ROW(9) TABULA_BF16_ROW(10) TABULA_BF16_ROW(11)
#undef TABULA_BF16_ROW
  }
}

void igemm_bf16_12x32(int64_t nseg, int64_t len, const uint16_t* const* a, const uint16_t* bp, float* c,
                      int64_t ldc, bool accumulate, const TileEpilogue* ep) {
  __m512 acc[MR][2];
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  prefetch_tile(c, ldc, accumulate, ep);
  for (int64_t s = 0; s < nseg; ++s, a += MR) dot_segment(acc, len, a, bp);
  store_tile(acc, c, ldc, accumulate, ep);
}

// torch's f32 -> bf16 rounding (dtype.h f32_to_bf16) on 16 lanes: round to nearest even on the bit pattern, a NaN
// stays a (quiet) NaN. Integer arithmetic, so the bits are f32_to_bf16's exactly, subnormals included. (The
// zero-masked forms of the shift and the narrowing: GCC 12 warns about the plain ones' undefined pass-through.)
inline __m256i round_to_bf16(__m512 x) {
  constexpr __mmask16 all = 0xffff;
  const __m512i u = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_maskz_srli_epi32(all, u, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                _mm512_set1_epi32(0x7f800000));
  const __m512i quiet = _mm512_or_si512(u, _mm512_set1_epi32(0x400000));
  return _mm512_maskz_cvtepi32_epi16(all, _mm512_maskz_srli_epi32(all, _mm512_mask_mov_epi32(rounded, nan, quiet), 16));
}

void round_rows_bf16_avx512(int64_t rows, int64_t cols, const float* src, int64_t lds, uint16_t* dst,
                            int64_t ldd) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* s = src + r * lds;
    uint16_t* d = dst + r * ldd;
    int64_t j = 0;
    for (; j + 16 <= cols; j += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + j), round_to_bf16(_mm512_loadu_ps(s + j)));
    if (j < cols) {
      const __mmask16 m = static_cast<__mmask16>((1u << (cols - j)) - 1);
      _mm256_mask_storeu_epi16(d + j, m, round_to_bf16(_mm512_maskz_loadu_ps(m, s + j)));
    }
    for (int64_t e = cols; e < ldd; ++e) d[e] = 0;
  }
}

// The pairs of `n` (<= 16) values of rows r0 and r1 (r1 null: the zero that completes the last pair) as 32-bit
// (k, k + 1) units, zero in the lanes past n.
inline __m512i pair_lanes(const float* r0, const float* r1, int64_t n) {
  constexpr __mmask16 all = 0xffff;  // (zero-masked forms: GCC 12 warns about the plain ones, as above)
  const __mmask16 m = n >= 16 ? all : static_cast<__mmask16>((1u << n) - 1);
  const __m512i lo = _mm512_maskz_cvtepu16_epi32(all, round_to_bf16(_mm512_maskz_loadu_ps(m, r0)));
  if (!r1) return lo;
  const __m512i hi = _mm512_maskz_cvtepu16_epi32(all, round_to_bf16(_mm512_maskz_loadu_ps(m, r1)));
  return _mm512_or_si512(lo, _mm512_maskz_slli_epi32(all, hi, 16));
}

// Panels [p0, p1) of packed_b_bf16's layout (packed.h): panel p holds Kp / 2 rows of NR 32-bit (k, k + 1) pairs.
// Rows of B contiguous (sn == 1: activations, attention's V): 16 columns of two rows per step. Columns contiguous
// (sk == 1: nn.Linear weights [out, in], attention's K^T): a column's consecutive k are already its pairs, rounded
// 16 k at a time and written one pair per panel row. Otherwise one element at a time.
void pack_bf16_avx512(int64_t K, int64_t N, const float* src, int64_t sk, int64_t sn, uint16_t* dst, int64_t p0,
                      int64_t p1) {
  const int64_t Kp = (K + 1) / 2 * 2, pairs = Kp / 2;
  for (int64_t p = p0; p < p1; ++p) {
    uint32_t* panel = reinterpret_cast<uint32_t*>(dst + p * Kp * NR);
    const int64_t n0 = p * NR, nn = std::min<int64_t>(NR, N - n0);
    if (sn == 1) {
      for (int64_t q = 0; q < pairs; ++q) {
        const float* r0 = src + 2 * q * sk + n0;
        const float* r1 = 2 * q + 1 < K ? r0 + sk : nullptr;
        for (int64_t j = 0; j < NR; j += 16)
          _mm512_storeu_si512(panel + q * NR + j, j < nn ? pair_lanes(r0 + j, r1 ? r1 + j : nullptr, nn - j)
                                                         : _mm512_setzero_si512());
      }
      continue;
    }
    for (int64_t j = 0; j < NR; ++j) {
      if (j >= nn) {
        for (int64_t q = 0; q < pairs; ++q) panel[q * NR + j] = 0;
        continue;
      }
      const float* col = src + (n0 + j) * sn;
      if (sk == 1) {
        alignas(64) uint16_t r[32];
        for (int64_t k0 = 0; k0 < K; k0 += 32) {
          const int64_t n = std::min<int64_t>(32, K - k0);
          const __mmask16 m0 = n >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << n) - 1);
          const __mmask16 m1 = n >= 32 ? __mmask16(0xffff) : n <= 16 ? __mmask16(0)
                                                                     : static_cast<__mmask16>((1u << (n - 16)) - 1);
          _mm256_store_si256(reinterpret_cast<__m256i*>(r), round_to_bf16(_mm512_maskz_loadu_ps(m0, col + k0)));
          _mm256_store_si256(reinterpret_cast<__m256i*>(r + 16),
                             round_to_bf16(_mm512_maskz_loadu_ps(m1, col + k0 + 16)));
          for (int64_t e = 0; e < (n + 1) / 2; ++e) {
            uint32_t v;
            std::memcpy(&v, r + 2 * e, sizeof v);
            panel[(k0 / 2 + e) * NR + j] = v;
          }
        }
        continue;
      }
      for (int64_t q = 0; q < pairs; ++q) {
        const float v0 = col[2 * q * sk], v1 = 2 * q + 1 < K ? col[(2 * q + 1) * sk] : 0.f;
        alignas(64) uint16_t r[16];
        _mm256_store_si256(reinterpret_cast<__m256i*>(r), round_to_bf16(_mm512_setr_ps(
                                                              v0, v1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)));
        panel[q * NR + j] = uint32_t{r[0]} | uint32_t{r[1]} << 16;
      }
    }
  }
}

// round_rows of src - centre (the same centre row for every row): the deviation in fp32, then rounded.
void round_rows_centred_bf16_avx512(int64_t rows, int64_t cols, const float* src, int64_t lds, const float* centre,
                                    uint16_t* dst, int64_t ldd) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* s = src + r * lds;
    uint16_t* d = dst + r * ldd;
    int64_t j = 0;
    for (; j + 16 <= cols; j += 16) {
      const __m512 v = _mm512_sub_ps(_mm512_loadu_ps(s + j), _mm512_loadu_ps(centre + j));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + j), round_to_bf16(v));
    }
    if (j < cols) {
      const __mmask16 m = static_cast<__mmask16>((1u << (cols - j)) - 1);
      const __m512 v = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + j), _mm512_maskz_loadu_ps(m, centre + j));
      _mm256_mask_storeu_epi16(d + j, m, round_to_bf16(v));
    }
    for (int64_t e = cols; e < ldd; ++e) d[e] = 0;
  }
}
}  // namespace

GemmBf16KernelInfo gemm_bf16_kernel_avx512bf16() {
  return {igemm_bf16_12x32, round_rows_bf16_avx512, pack_bf16_avx512, MR, NR, "avx512-bf16",
          round_rows_centred_bf16_avx512};
}

}  // namespace tabula::detail
