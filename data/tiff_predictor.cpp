#include "data/tiff_predictor.h"

#include <algorithm>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace tabula::data {

namespace {

// Any stride, one sample at a time: the running sums of `stride` interleaved rows.
template <class T>
void undo_scalar(T* row, size_t from, size_t n, size_t stride) {
  for (size_t i = std::max(from, stride); i < n; ++i) row[i] = T(row[i] + row[i - stride]);
}

}  // namespace

// Within a vector the prefix sum takes log2(lanes) shift-and-add steps; the carry from the previous vector is its
// last lane broadcast, so the only serial dependency is one add per vector.
void undo_horizontal_predictor(uint16_t* row, size_t n, int stride) {
  size_t i = 0;
#if defined(__SSE2__)
  if (stride == 1) {
    __m128i carry = _mm_setzero_si128();
    for (; i + 8 <= n; i += 8) {
      __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + i));
      x = _mm_add_epi16(x, _mm_slli_si128(x, 2));
      x = _mm_add_epi16(x, _mm_slli_si128(x, 4));
      x = _mm_add_epi16(x, _mm_slli_si128(x, 8));
      x = _mm_add_epi16(x, carry);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(row + i), x);
      carry = _mm_shufflehi_epi16(x, 0xFF);
      carry = _mm_unpackhi_epi64(carry, carry);
    }
  }
#endif
  undo_scalar(row, i, n, size_t(stride));
}

void undo_horizontal_predictor(uint8_t* row, size_t n, int stride) {
  size_t i = 0;
#if defined(__SSE2__)
  if (stride == 1) {
    __m128i carry = _mm_setzero_si128();
    for (; i + 16 <= n; i += 16) {
      __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + i));
      x = _mm_add_epi8(x, _mm_slli_si128(x, 1));
      x = _mm_add_epi8(x, _mm_slli_si128(x, 2));
      x = _mm_add_epi8(x, _mm_slli_si128(x, 4));
      x = _mm_add_epi8(x, _mm_slli_si128(x, 8));
      x = _mm_add_epi8(x, carry);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(row + i), x);
      __m128i last = _mm_srli_si128(x, 15);  // the last byte in lane 0, broadcast to all 16
      last = _mm_unpacklo_epi8(last, last);
      last = _mm_unpacklo_epi16(last, last);
      carry = _mm_shuffle_epi32(last, 0);
    }
  }
#endif
  undo_scalar(row, i, n, size_t(stride));
}

void undo_horizontal_predictor(uint32_t* row, size_t n, int stride) { undo_scalar(row, 0, n, size_t(stride)); }

}  // namespace tabula::data
