// Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions (Lavin & Gray 2015): each 2x2 output tile costs 16
// elementwise products per (Cout, Cin) pair instead of 36, i.e. 2.25x fewer multiply-adds in the GEMMs.
//   U[xi] = G g G^T        weights, 16 positions xi of a 4x4 tile: [16][Cout][Cin]
//   V[xi] = B^T d B        input tiles (4x4 patches at stride 2):  [16][Cin][T]
//   M[xi] = U[xi] @ V[xi]  16 GEMMs on the packed micro-kernels
//   Y     = A^T m A        2x2 outputs per tile, + bias + residual, activation, written to NCHW
// Numerically it is a different (well-conditioned) evaluation order than the direct sum: results agree with
// the reference to fp32 rounding, not bit for bit. Deterministic like the rest (fixed tile chunks).
#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/ops.h"
#include "engine/ops_common.h"
#include "engine/rowops.h"
#include "engine/threads.h"
#include "engine/winograd.h"

namespace tabula::detail {

bool winograd_applies(const ConvShapes& s, const Conv2dOptions& o) {
  return s.kh == 3 && s.kw == 3 && o.stride[0] == 1 && o.stride[1] == 1 && o.dilation[0] == 1 &&
         o.dilation[1] == 1 && o.groups == 1 && s.C >= 16 && s.Cout >= 16;
}

void winograd_conv3x3(const float* x, const float* w, const float* bias, const float* res, float* y,
                      const ConvShapes& s, const Conv2dOptions& o, Activation act) {
  const int64_t C = s.C, Co = s.Cout, Ho = s.Ho, Wo = s.Wo, H = s.H, W = s.W;
  const int64_t th = (Ho + 1) / 2, tw = (Wo + 1) / 2, tiles_per_image = th * tw;

  // U = G g G^T, G = [[1,0,0],[1/2,1/2,1/2],[1/2,-1/2,1/2],[0,0,1]]
  std::vector<float> U(static_cast<size_t>(16 * Co * C));
  parallel_for(Co * C, grain_for(Co * C, 64), [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) {
      const float* g = w + q * 9;
      float t[4][3];  // G g
      for (int j = 0; j < 3; ++j) {
        t[0][j] = g[j];
        t[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
        t[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
        t[3][j] = g[6 + j];
      }
      for (int i = 0; i < 4; ++i) {
        const float u[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]), 0.5f * (t[i][0] - t[i][1] + t[i][2]), t[i][2]};
        for (int j = 0; j < 4; ++j) U[(static_cast<size_t>(i * 4 + j) * Co * C) + q] = u[j];
      }
    }
  });

  // Images per chunk: bounds V and M to about 64 MiB together (a function of the shapes only).
  const int64_t per_image = 16 * tiles_per_image * (C + Co);
  const int64_t nb = std::clamp<int64_t>((int64_t{16} << 20) / std::max<int64_t>(per_image, 1), 1, s.N);
  // scratch reused across calls (no re-zeroing or fresh pages per conv)
  // (raw pointers: the worker threads below must use this thread's buffers, not their own thread_locals)
  thread_local std::vector<float> v_buf, m_buf;
  if (v_buf.size() < static_cast<size_t>(16 * C * tiles_per_image * nb)) v_buf.resize(static_cast<size_t>(16 * C * tiles_per_image * nb));
  if (m_buf.size() < static_cast<size_t>(16 * Co * tiles_per_image * nb)) m_buf.resize(static_cast<size_t>(16 * Co * tiles_per_image * nb));
  float* const V = v_buf.data();
  float* const M = m_buf.data();
  for (int64_t n0 = 0; n0 < s.N; n0 += nb) {
    const int64_t nbb = std::min(nb, s.N - n0), T = nbb * tiles_per_image;
    // V = B^T d B, B^T = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]]
    parallel_for(nbb * C, grain_for(nbb * C, tiles_per_image * 64), [&](int64_t q0, int64_t q1) {
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t n = q / C, c = q % C;
        const float* xc = x + ((n0 + n) * C + c) * H * W;
        for (int64_t ty = 0; ty < th; ++ty)
          for (int64_t tx = 0; tx < tw; ++tx) {
            float d[4][4];
            const int64_t y0 = 2 * ty - o.padding[0], x0 = 2 * tx - o.padding[1];
            for (int i = 0; i < 4; ++i)
              for (int j = 0; j < 4; ++j) {
                const int64_t iy = y0 + i, ix = x0 + j;
                d[i][j] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? xc[iy * W + ix] : 0.f;
              }
            float t[4][4];  // B^T d
            for (int j = 0; j < 4; ++j) {
              t[0][j] = d[0][j] - d[2][j];
              t[1][j] = d[1][j] + d[2][j];
              t[2][j] = d[2][j] - d[1][j];
              t[3][j] = d[1][j] - d[3][j];
            }
            const int64_t col = n * tiles_per_image + ty * tw + tx;
            for (int i = 0; i < 4; ++i) {
              const float v[4] = {t[i][0] - t[i][2], t[i][1] + t[i][2], t[i][2] - t[i][1], t[i][1] - t[i][3]};
              for (int j = 0; j < 4; ++j) V[(static_cast<size_t>(i * 4 + j) * C + c) * T + col] = v[j];
            }
          }
      }
    });
    for (int xi = 0; xi < 16; ++xi)
      ops::gemm(Co, T, C, U.data() + static_cast<size_t>(xi) * Co * C, C, false, V + static_cast<size_t>(xi) * C * T,
                T, false, M + static_cast<size_t>(xi) * Co * T, T);
    // Y = A^T m A, A^T = [[1,1,1,0],[0,1,-1,-1]]
    parallel_for(nbb * Co, grain_for(nbb * Co, tiles_per_image * 32), [&](int64_t q0, int64_t q1) {
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t n = q / Co, co = q % Co;
        const int64_t yo = ((n0 + n) * Co + co) * Ho * Wo;
        float* yp = y + yo;
        const float b = bias ? bias[co] : 0.f;
        for (int64_t ty = 0; ty < th; ++ty)
          for (int64_t tx = 0; tx < tw; ++tx) {
            const int64_t col = n * tiles_per_image + ty * tw + tx;
            float m[4][4];
            for (int i = 0; i < 4; ++i)
              for (int j = 0; j < 4; ++j) m[i][j] = M[(static_cast<size_t>(i * 4 + j) * Co + co) * T + col];
            float t[2][4];
            for (int j = 0; j < 4; ++j) {
              t[0][j] = m[0][j] + m[1][j] + m[2][j];
              t[1][j] = m[1][j] - m[2][j] - m[3][j];
            }
            for (int i = 0; i < 2; ++i) {
              const float out[2] = {t[i][0] + t[i][1] + t[i][2], t[i][1] - t[i][2] - t[i][3]};
              const int64_t oy = 2 * ty + i;
              if (oy >= Ho) continue;
              for (int j = 0; j < 2; ++j) {
                const int64_t ox = 2 * tx + j;
                if (ox >= Wo) continue;
                yp[oy * Wo + ox] = out[j] + b;
              }
            }
          }
        if (res) {
          const float* rp = res + yo;
          for (int64_t p = 0; p < Ho * Wo; ++p) yp[p] += rp[p];
        }
        activation_inplace(yp, Ho * Wo, act);
      }
    });
  }
}

}  // namespace tabula::detail
