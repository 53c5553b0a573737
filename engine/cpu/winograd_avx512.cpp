// AVX-512 Winograd F(4x4, 3x3) transforms: one zmm holds 16 channels of one patch element, the 1-D transforms
// are FMAs on registers, channel tails use masked loads/stores. Same matrices and the same evaluation order per
// lane as winograd_impl.h (the generic / AVX2 bodies). Compiled with -mavx512f; dispatched after a CPU check.
#include <immintrin.h>

#include <algorithm>

#include "engine/cpu/rowops.h"
#include "engine/cpu/winograd.h"

namespace tabula::detail {

namespace {
constexpr int L = 16;

// o = B^T d for 6 values (see winograd_impl.h: bt_1d)
inline void bt6(const __m512* d, __m512* o) {
  const __m512 four = _mm512_set1_ps(4.f), five = _mm512_set1_ps(5.f), two = _mm512_set1_ps(2.f);
  o[0] = _mm512_fmadd_ps(four, d[0], _mm512_fnmadd_ps(five, d[2], d[4]));
  o[1] = _mm512_fnmadd_ps(four, _mm512_add_ps(d[1], d[2]), _mm512_add_ps(d[3], d[4]));
  o[2] = _mm512_fmadd_ps(four, _mm512_sub_ps(d[1], d[2]), _mm512_sub_ps(d[4], d[3]));
  o[3] = _mm512_fmadd_ps(two, _mm512_sub_ps(d[3], d[1]), _mm512_sub_ps(d[4], d[2]));
  o[4] = _mm512_fmadd_ps(two, _mm512_sub_ps(d[1], d[3]), _mm512_sub_ps(d[4], d[2]));
  o[5] = _mm512_fmadd_ps(four, d[1], _mm512_fnmadd_ps(five, d[3], d[5]));
}

// o = A^T m for 6 values (winograd_impl.h: at_1d)
inline void at6(const __m512* m, __m512* o) {
  const __m512 p12 = _mm512_add_ps(m[1], m[2]), d12 = _mm512_sub_ps(m[1], m[2]);
  const __m512 p34 = _mm512_add_ps(m[3], m[4]), d34 = _mm512_sub_ps(m[3], m[4]);
  o[0] = _mm512_add_ps(_mm512_add_ps(m[0], p12), p34);
  o[1] = _mm512_fmadd_ps(_mm512_set1_ps(2.f), d34, d12);
  o[2] = _mm512_fmadd_ps(_mm512_set1_ps(4.f), p34, p12);
  o[3] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.f), d34, d12), m[5]);
}

__mmask16 lanes(int64_t n) { return n >= L ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << n) - 1); }

void input_transform(const WinogradGeometry& g, const float* x, int64_t t0, int64_t t1, float* v, int64_t ps) {
  const int64_t C = g.C, per_image = g.th * g.tw;
  alignas(64) float wbuf[kWinoPoints * L];  // d B, row-major [i][k]
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t n = t / per_image, ty = (t % per_image) / g.tw, tx = t % g.tw;
    const int64_t ih0 = ty * kWinoTile - g.pad_h, iw0 = tx * kWinoTile - g.pad_w;
    bool row_in[6], col_in[6];
    for (int64_t i = 0; i < 6; ++i) row_in[i] = ih0 + i >= 0 && ih0 + i < g.H;
    for (int64_t j = 0; j < 6; ++j) col_in[j] = iw0 + j >= 0 && iw0 + j < g.W;
    const int64_t off0 = ((n * g.H + ih0) * g.W + iw0) * C;  // pixel (ih0, iw0), maybe outside the map
    float* vt = v + (t - t0) * C;  // + xi * ps
    for (int64_t c0 = 0; c0 < C; c0 += L) {
      const __mmask16 m = lanes(C - c0);
      for (int i = 0; i < 6; ++i) {
        __m512 d[6], o[6];
        for (int j = 0; j < 6; ++j)
          d[j] = row_in[i] && col_in[j] ? _mm512_maskz_loadu_ps(m, x + off0 + (i * g.W + j) * C + c0)
                                        : _mm512_setzero_ps();
        bt6(d, o);  // (d B)[i][k] = (B^T d^T)[k][i]: the same 1-D transform along the row
        for (int k = 0; k < 6; ++k) _mm512_store_ps(wbuf + (i * 6 + k) * L, o[k]);
      }
      for (int k = 0; k < 6; ++k) {
        __m512 d[6], o[6];
        for (int i = 0; i < 6; ++i) d[i] = _mm512_load_ps(wbuf + (i * 6 + k) * L);
        bt6(d, o);  // B^T (d B) along the column
        for (int i = 0; i < 6; ++i) _mm512_mask_storeu_ps(vt + (i * 6 + k) * ps + c0, m, o[i]);
      }
    }
  }
}

void output_transform(const WinogradGeometry& g, const float* mres, int64_t ps, int64_t t0, int64_t t1,
                      const WinogradEpilogue& ep, float* y) {
  const int64_t Co = g.Cout, per_image = g.th * g.tw;
  const bool relu = ep.act == Activation::relu, other_act = !relu && ep.act != Activation::none;
  const __m512 zero = _mm512_setzero_ps();
  alignas(64) float tbuf[6 * 4 * L];  // m A, [i][jo]
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t n = t / per_image, ty = (t % per_image) / g.tw, tx = t % g.tw;
    const int64_t oh0 = ty * kWinoTile, ow0 = tx * kWinoTile;
    const int64_t nh = std::min(kWinoTile, g.Ho - oh0), nw = std::min(kWinoTile, g.Wo - ow0);
    const float* mt = mres + (t - t0) * Co;  // + xi * ps
    for (int64_t c0 = 0; c0 < Co; c0 += L) {
      const __mmask16 m = lanes(Co - c0);
      for (int i = 0; i < 6; ++i) {
        __m512 s[6], o[4];
        for (int j = 0; j < 6; ++j) s[j] = _mm512_maskz_loadu_ps(m, mt + (i * 6 + j) * ps + c0);
        at6(s, o);
        for (int jo = 0; jo < 4; ++jo) _mm512_store_ps(tbuf + (i * 4 + jo) * L, o[jo]);
      }
      const __m512 sc = ep.scale ? _mm512_maskz_loadu_ps(m, ep.scale + c0) : zero;
      const __m512 sh = ep.shift ? _mm512_maskz_loadu_ps(m, ep.shift + c0) : zero;
      for (int64_t jo = 0; jo < nw; ++jo) {
        __m512 s[6], o[4];
        for (int i = 0; i < 6; ++i) s[i] = _mm512_load_ps(tbuf + (i * 4 + jo) * L);
        at6(s, o);
        for (int64_t io = 0; io < nh; ++io) {
          const int64_t p = (n * g.Ho + oh0 + io) * g.Wo + ow0 + jo;
          __m512 r = o[io];
          // act(v * scale + shift + residual), as the GEMM kernels' register epilogue
          if (ep.scale) r = _mm512_fmadd_ps(r, sc, sh);
          else if (ep.shift) r = _mm512_add_ps(r, sh);
          if (ep.residual) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, ep.residual + p * Co + c0));
          // max(0, v) returns v when it is NaN, as torch.relu (masked form: see gemm_avx512.cpp)
          if (relu) r = _mm512_mask_max_ps(r, 0xffff, zero, r);
          _mm512_mask_storeu_ps(y + p * Co + c0, m, r);
        }
      }
    }
    if (other_act)  // GELU, SiLU, ...: on the tile's finished pixels
      for (int64_t i = 0; i < nh; ++i)
        for (int64_t j = 0; j < nw; ++j)
          activation_inplace(y + ((n * g.Ho + oh0 + i) * g.Wo + ow0 + j) * Co, Co, ep.act);
  }
}
}  // namespace

WinogradKernels winograd_kernels_avx512() { return {input_transform, output_transform}; }

}  // namespace tabula::detail
