// The body of the depthwise kernel, included by depthwise.cpp / depthwise_avx2.cpp / depthwise_avx512.cpp inside
// a namespace named by TABULA_DEPTHWISE_NS, so each ISA's copy is a distinct function. The channel loops are
// plain loops over contiguous floats that GCC vectorises at the TU's -m flags.
#ifndef TABULA_DEPTHWISE_NS
#error "define TABULA_DEPTHWISE_NS before including depthwise_impl.h"
#endif
#include <algorithm>
#include <cstring>

#include "engine/cpu/depthwise.h"

namespace tabula::detail::TABULA_DEPTHWISE_NS {

// Channels in blocks of kCB: the block's accumulators for a strip of kOW output pixels stay in L1 while the
// window is swept, and each input vector loaded serves one FMA per pixel of the strip it falls in.
constexpr int64_t kCB = 64;
constexpr int64_t kOW = 8;

inline void rows(const float* __restrict x, const float* __restrict wt, const float* __restrict bias,
                 const DepthwiseGeom& g, float* __restrict y, int64_t oh0, int64_t oh1) {
  const int64_t C = g.C;
  alignas(64) float acc[kOW][kCB];
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    // window rows inside the input
    const int64_t ih_base = oh * g.sh - g.ph;
    int64_t i0 = 0, i1 = g.kh;
    while (i0 < i1 && ih_base + i0 * g.dh < 0) ++i0;
    while (i1 > i0 && ih_base + (i1 - 1) * g.dh >= g.H) --i1;
    for (int64_t ow0 = 0; ow0 < g.Wo; ow0 += kOW) {
      const int64_t nw = std::min(kOW, g.Wo - ow0);
      for (int64_t c0 = 0; c0 < C; c0 += kCB) {
        const int64_t cb = std::min(kCB, C - c0);
        for (int64_t p = 0; p < nw; ++p)
          for (int64_t c = 0; c < cb; ++c) acc[p][c] = bias ? bias[c0 + c] : 0.0f;
        for (int64_t i = i0; i < i1; ++i) {
          const float* xrow = x + (ih_base + i * g.dh) * g.W * C + c0;
          for (int64_t j = 0; j < g.kw; ++j) {
            const float* wv = wt + (i * g.kw + j) * C + c0;
            for (int64_t p = 0; p < nw; ++p) {
              const int64_t iw = (ow0 + p) * g.sw - g.pw + j * g.dw;
              if (iw < 0 || iw >= g.W) continue;
              const float* xv = xrow + iw * C;
              float* a = acc[p];
              for (int64_t c = 0; c < cb; ++c) a[c] += xv[c] * wv[c];
            }
          }
        }
        for (int64_t p = 0; p < nw; ++p)
          std::memcpy(y + (oh * g.Wo + ow0 + p) * C + c0, acc[p], static_cast<size_t>(cb) * sizeof(float));
      }
    }
  }
}

}  // namespace tabula::detail::TABULA_DEPTHWISE_NS
