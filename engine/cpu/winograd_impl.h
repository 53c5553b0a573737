// The bodies of the Winograd F(4x4, 3x3) input/output transforms, included by winograd.cpp (generic) and
// winograd_avx2.cpp inside a namespace named by TABULA_WINO_NS, so each ISA's copy is a
// distinct function. Every transform works on 16 channels at once (two AVX2 registers per patch element): the
// lane loops have a constant trip count and no branches, so GCC vectorises them at the TU's -m flags.
#ifndef TABULA_WINO_NS
#error "define TABULA_WINO_NS before including winograd_impl.h"
#endif
#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/cpu/rowops.h"
#include "engine/cpu/winograd.h"

namespace tabula::detail::TABULA_WINO_NS {

constexpr int L = 16;  // channels per step

// V = B^T d B with
//   B^T = [[4,  0, -5,  0, 1, 0],
//          [0, -4, -4,  1, 1, 0],
//          [0,  4, -4, -1, 1, 0],
//          [0, -2, -1,  2, 1, 0],
//          [0,  2, -1, -2, 1, 0],
//          [0,  4,  0, -5, 0, 1]]
// applied to the 6 values s[0 * st], ..., s[5 * st] of every lane, written to o[0 * ot], ..., o[5 * ot].
inline void bt_1d(const float* s, int64_t st, float* o, int64_t ot) {
  for (int l = 0; l < L; ++l) {
    const float d0 = s[l], d1 = s[st + l], d2 = s[2 * st + l], d3 = s[3 * st + l], d4 = s[4 * st + l],
                d5 = s[5 * st + l];
    o[l] = 4.f * d0 - 5.f * d2 + d4;
    o[ot + l] = -4.f * (d1 + d2) + (d3 + d4);
    o[2 * ot + l] = 4.f * (d1 - d2) + (d4 - d3);
    o[3 * ot + l] = 2.f * (d3 - d1) + (d4 - d2);
    o[4 * ot + l] = 2.f * (d1 - d3) + (d4 - d2);
    o[5 * ot + l] = 4.f * d1 - 5.f * d3 + d5;
  }
}

// Y = A^T m A with A^T = [[1, 1,  1, 1,  1, 0],
//                         [0, 1, -1, 2, -2, 0],
//                         [0, 1,  1, 4,  4, 0],
//                         [0, 1, -1, 8, -8, 1]]
inline void at_1d(const float* s, int64_t st, float* o, int64_t ot) {
  for (int l = 0; l < L; ++l) {
    const float m0 = s[l], m1 = s[st + l], m2 = s[2 * st + l], m3 = s[3 * st + l], m4 = s[4 * st + l],
                m5 = s[5 * st + l];
    const float p12 = m1 + m2, d12 = m1 - m2, p34 = m3 + m4, d34 = m3 - m4;
    o[l] = m0 + p12 + p34;
    o[ot + l] = d12 + 2.f * d34;
    o[2 * ot + l] = p12 + 4.f * p34;
    o[3 * ot + l] = d12 + 8.f * d34 + m5;
  }
}

inline void input_transform(const WinogradGeometry& g, const float* x, int64_t t0, int64_t t1, float* v, int64_t ps) {
  const int64_t C = g.C, per_image = g.th * g.tw;
  alignas(64) float d[kWinoPoints * L], tmp[kWinoPoints * L], out[kWinoPoints * L];
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t n = t / per_image, ty = (t % per_image) / g.tw, tx = t % g.tw;
    const int64_t ih0 = ty * kWinoTile - g.pad_h, iw0 = tx * kWinoTile - g.pad_w;
    float* vt = v + (t - t0) * C;  // + xi * ps
    for (int64_t c0 = 0; c0 < C; c0 += L) {
      const int64_t nl = std::min<int64_t>(L, C - c0);
      // the 6x6 patch, 16 channels per element; zero in the padding and in the lanes past C
      for (int64_t i = 0; i < kWinoAlpha; ++i) {
        const int64_t ih = ih0 + i;
        for (int64_t j = 0; j < kWinoAlpha; ++j) {
          const int64_t iw = iw0 + j;
          float* dst = d + (i * kWinoAlpha + j) * L;
          if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) {
            std::fill_n(dst, L, 0.f);
            continue;
          }
          const float* src = x + ((n * g.H + ih) * g.W + iw) * C + c0;
          if (nl == L) {
            std::memcpy(dst, src, sizeof(float) * L);
          } else {
            std::fill_n(dst, L, 0.f);
            std::memcpy(dst, src, sizeof(float) * static_cast<size_t>(nl));
          }
        }
      }
      for (int64_t j = 0; j < kWinoAlpha; ++j) bt_1d(d + j * L, kWinoAlpha * L, tmp + j * L, kWinoAlpha * L);  // B^T d
      for (int64_t i = 0; i < kWinoAlpha; ++i)
        bt_1d(tmp + i * kWinoAlpha * L, L, out + i * kWinoAlpha * L, L);  // (.) B
      for (int64_t xi = 0; xi < kWinoPoints; ++xi) {
        if (nl == L) std::memcpy(vt + xi * ps + c0, out + xi * L, sizeof(float) * L);  // (a fixed-size copy)
        else std::memcpy(vt + xi * ps + c0, out + xi * L, sizeof(float) * static_cast<size_t>(nl));
      }
    }
  }
}

inline void output_transform(const WinogradGeometry& g, const float* m, int64_t ps, int64_t t0, int64_t t1,
                             const WinogradEpilogue& ep, float* y) {
  const int64_t Co = g.Cout, per_image = g.th * g.tw;
  alignas(64) float s[kWinoPoints * L], tmp[4 * kWinoAlpha * L], o[16 * L];
  alignas(64) float sc[L], sh[L], r[L];
  const bool relu = ep.act == Activation::relu, other_act = !relu && ep.act != Activation::none;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t n = t / per_image, ty = (t % per_image) / g.tw, tx = t % g.tw;
    const int64_t oh0 = ty * kWinoTile, ow0 = tx * kWinoTile;
    const int64_t nh = std::min(kWinoTile, g.Ho - oh0), nw = std::min(kWinoTile, g.Wo - ow0);
    const float* mt = m + (t - t0) * Co;  // + xi * ps
    for (int64_t c0 = 0; c0 < Co; c0 += L) {
      const int64_t nl = std::min<int64_t>(L, Co - c0);
      for (int64_t xi = 0; xi < kWinoPoints; ++xi) {
        if (nl == L) {
          std::memcpy(s + xi * L, mt + xi * ps + c0, sizeof(float) * L);
        } else {
          std::fill_n(s + xi * L, L, 0.f);
          std::memcpy(s + xi * L, mt + xi * ps + c0, sizeof(float) * static_cast<size_t>(nl));
        }
      }
      for (int64_t j = 0; j < kWinoAlpha; ++j) at_1d(s + j * L, kWinoAlpha * L, tmp + j * L, kWinoAlpha * L);  // A^T m
      for (int64_t i = 0; i < 4; ++i) at_1d(tmp + i * kWinoAlpha * L, L, o + i * 4 * L, L);                  // (.) A
      for (int l = 0; l < L; ++l) {
        sc[l] = ep.scale && l < nl ? ep.scale[c0 + l] : 1.f;
        sh[l] = ep.shift && l < nl ? ep.shift[c0 + l] : 0.f;
      }
      for (int64_t i = 0; i < nh; ++i)
        for (int64_t j = 0; j < nw; ++j) {
          const int64_t p = (n * g.Ho + oh0 + i) * g.Wo + ow0 + j;
          float* v = o + (i * 4 + j) * L;
          // act(v * scale + shift + residual), as the GEMM kernels' register epilogue
          if (ep.scale) {
            for (int l = 0; l < L; ++l) v[l] = std::fma(v[l], sc[l], sh[l]);
          } else {
            for (int l = 0; l < L; ++l) v[l] += sh[l];
          }
          if (ep.residual) {
            std::fill_n(r, L, 0.f);
            if (nl == L) std::memcpy(r, ep.residual + p * Co + c0, sizeof(float) * L);
            else std::memcpy(r, ep.residual + p * Co + c0, sizeof(float) * static_cast<size_t>(nl));
            for (int l = 0; l < L; ++l) v[l] += r[l];
          }
          if (relu)  // keeps NaN, as torch.relu
            for (int l = 0; l < L; ++l) v[l] = v[l] < 0.f ? 0.f : v[l];
          if (nl == L) std::memcpy(y + p * Co + c0, v, sizeof(float) * L);
          else std::memcpy(y + p * Co + c0, v, sizeof(float) * static_cast<size_t>(nl));
        }
    }
    if (other_act)  // GELU, SiLU, ...: on the tile's finished pixels
      for (int64_t i = 0; i < nh; ++i)
        for (int64_t j = 0; j < nw; ++j)
          ::tabula::detail::activation_inplace(y + ((n * g.Ho + oh0 + i) * g.Wo + ow0 + j) * Co, Co, ep.act);
  }
}

inline WinogradKernels kernels() { return {input_transform, output_transform}; }

}  // namespace tabula::detail::TABULA_WINO_NS
