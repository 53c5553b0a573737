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

// Interior strips (every window tap inside the row) of kOW output pixels x 16 channels: constant trip counts and
// one 16-float vector per pixel (GCC vector extensions: one zmm, two ymm or four xmm at the TU's flags), so the
// strip's accumulators stay in registers while the window is swept and each weight vector is loaded once per tap.
// Everything else (image borders, channel tails) goes through the general loop below, which keeps a strip of
// accumulators in L1 instead. Both sum each pixel's taps in the same (i, j) order.
typedef float v16 __attribute__((vector_size(64)));
constexpr int64_t kVB = 16;
#if defined(__AVX512F__)
constexpr int64_t kOW = 8;  // 8 accumulators + weight + input of 32 zmm
#else
constexpr int64_t kOW = 4;  // 4 x 2 ymm accumulators of 16
#endif
constexpr int64_t kCB = 64;

// (by reference: a 64-byte vector returned by value would change the ABI of the non-AVX-512 builds)
inline void load16(v16& v, const float* p) { std::memcpy(&v, p, sizeof v); }

inline void interior_strip(const float* __restrict x, const float* __restrict wt, const float* __restrict bias,
                           const DepthwiseGeom& g, float* __restrict y, int64_t oh, int64_t ow0, int64_t c0,
                           int64_t i0, int64_t i1) {
  const int64_t C = g.C, ih_base = oh * g.sh - g.ph, step = g.sw * C;
  v16 b0{};
  if (bias) load16(b0, bias + c0);
  v16 acc[kOW];
#pragma GCC unroll 8
  for (int64_t p = 0; p < kOW; ++p) acc[p] = b0;
  for (int64_t i = i0; i < i1; ++i) {
    const float* xrow = x + (ih_base + i * g.dh) * g.W * C + c0;
    for (int64_t j = 0; j < g.kw; ++j) {
      v16 wv, xv;
      load16(wv, wt + (i * g.kw + j) * C + c0);
      const float* xp = xrow + (ow0 * g.sw - g.pw + j * g.dw) * C;
#pragma GCC unroll 8
      for (int64_t p = 0; p < kOW; ++p) {
        load16(xv, xp + p * step);
        acc[p] += xv * wv;
      }
    }
  }
#pragma GCC unroll 8
  for (int64_t p = 0; p < kOW; ++p) std::memcpy(y + (oh * g.Wo + ow0 + p) * C + c0, &acc[p], sizeof(v16));
}

inline void rows(const float* __restrict x, const float* __restrict wt, const float* __restrict bias,
                 const DepthwiseGeom& g, float* __restrict y, int64_t oh0, int64_t oh1) {
  const int64_t C = g.C, cv = C / kVB * kVB;  // channels the interior strips cover
  // output columns whose whole window row is inside the input: [lo, hi)
  const int64_t lo = std::min(g.Wo, (g.pw + g.sw - 1) / g.sw);
  const int64_t last = g.W - 1 - (g.kw - 1) * g.dw + g.pw;  // ow * sw <= last
  const int64_t hi = last < 0 ? lo : std::max(lo, std::min(g.Wo, last / g.sw + 1));
  alignas(64) float acc[kOW][kCB];
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    // window rows inside the input
    const int64_t ih_base = oh * g.sh - g.ph;
    int64_t i0 = 0, i1 = g.kh;
    while (i0 < i1 && ih_base + i0 * g.dh < 0) ++i0;
    while (i1 > i0 && ih_base + (i1 - 1) * g.dh >= g.H) --i1;
    for (int64_t ow0 = 0; ow0 < g.Wo;) {
      const bool inner = ow0 >= lo && ow0 + kOW <= hi && cv > 0;
      const int64_t nw = std::min(kOW, g.Wo - ow0);
      if (inner)
        for (int64_t c0 = 0; c0 < cv; c0 += kVB) interior_strip(x, wt, bias, g, y, oh, ow0, c0, i0, i1);
      // the general loop: border strips whole, interior strips' channel tail
      const int64_t cstart = inner ? cv : 0;
      const int64_t pw_n = inner ? kOW : (ow0 < lo ? std::min(nw, lo - ow0) : nw);
      for (int64_t c0 = cstart; c0 < C; c0 += kCB) {
        const int64_t cb = std::min(kCB, C - c0);
        for (int64_t p = 0; p < pw_n; ++p)
          for (int64_t c = 0; c < cb; ++c) acc[p][c] = bias ? bias[c0 + c] : 0.0f;
        for (int64_t i = i0; i < i1; ++i) {
          const float* xrow = x + (ih_base + i * g.dh) * g.W * C + c0;
          for (int64_t j = 0; j < g.kw; ++j) {
            const float* wv = wt + (i * g.kw + j) * C + c0;
            for (int64_t p = 0; p < pw_n; ++p) {
              const int64_t iw = (ow0 + p) * g.sw - g.pw + j * g.dw;
              if (iw < 0 || iw >= g.W) continue;
              const float* xv = xrow + iw * C;
              float* a = acc[p];
              for (int64_t c = 0; c < cb; ++c) a[c] += xv[c] * wv[c];
            }
          }
        }
        for (int64_t p = 0; p < pw_n; ++p)
          std::memcpy(y + (oh * g.Wo + ow0 + p) * C + c0, acc[p], static_cast<size_t>(cb) * sizeof(float));
      }
      ow0 += pw_n;
    }
  }
}

}  // namespace tabula::detail::TABULA_DEPTHWISE_NS
