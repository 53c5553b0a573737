// Winograd F(4x4, 3x3) for 3x3 stride-1 convolutions in channels-last layout (Lavin & Gray 2015), internal: the
// packed conv (packed.cpp) dispatches to it when the weights carry a transformed copy (PackedConv2d::wino).
//
// A 4x4 output tile is computed from a 6x6 input patch through 36 elementwise products per (Cin, Cout) pair
// instead of 16 x 9 = 144 multiply-adds: 4x fewer in the GEMMs.
//   U[xi] = G g G^T          the weights, transformed once at load: 36 matrices [Cin, Cout], packed (xi-major)
//   V[xi] = B^T d B          per tile and input channel (vectorised over 16 channels)
//   M[xi] = V[xi] @ U[xi]    36 GEMMs, M = tiles of the whole batch, K = Cin, N = Cout (the packed micro-kernel)
//   Y     = A^T M A          per tile and output channel, with BatchNorm's scale/shift, the residual and the
//                            activation applied before the one store
// The matrices are Lavin's for the points 0, 1, -1, 2, -2, inf. It is a different evaluation order than the direct
// sum: results agree with the reference to fp32 rounding amplified by the transforms (measured in
// tests/engine/test_winograd.cpp), not bit for bit; they are the same for any thread count.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/ops.h"

namespace tabula::detail {

constexpr int64_t kWinoTile = 4;     // output tile edge
constexpr int64_t kWinoAlpha = 6;    // input patch edge (tile + 3 - 1)
constexpr int64_t kWinoPoints = 36;  // alpha^2 transform points = GEMMs per conv

// B[(xi * cin + ci) * cout + co] = (G g G^T)[xi] of w[co, ci] (w: [cout, cin, 3, 3] contiguous), computed in
// double and rounded once.
std::vector<float> winograd_weight_transform(const float* w, int64_t cout, int64_t cin);

struct WinogradGeometry {
  int64_t N = 0, H = 0, W = 0, C = 0, Cout = 0, Ho = 0, Wo = 0, pad_h = 0, pad_w = 0;
  int64_t th = 0, tw = 0;  // tiles per column / row: ceil(Ho / 4), ceil(Wo / 4)
  int64_t tiles() const { return N * th * tw; }
};

struct WinogradEpilogue {
  const float* scale = nullptr;  // per output channel, y = v * scale + shift
  const float* shift = nullptr;
  const float* residual = nullptr;  // channels-last [N, Ho, Wo, Cout]
  Activation act = Activation::none;
};

// Tiles [t0, t1) (t = (n * th + ty) * tw + tx) of the channels-last input x [N, H, W, C]: the C transformed
// values of point xi of tile t at v + xi * ps + (t - t0) * C (point-major: each point's rows are one dense
// [tiles, C] GEMM operand).
void winograd_input_transform(const WinogradGeometry& g, const float* x, int64_t t0, int64_t t1, float* v,
                              int64_t ps);
// The GEMM results of tiles [t0, t1) (point xi of tile t: Cout values at m + xi * ps + (t - t0) * Cout) back to
// the channels-last output y [N, Ho, Wo, Cout] (pixels past Ho / Wo are dropped), epilogue applied.
void winograd_output_transform(const WinogradGeometry& g, const float* m, int64_t ps, int64_t t0, int64_t t1,
                               const WinogradEpilogue& ep, float* y);

// The per-ISA bodies (winograd_impl.h, winograd_avx512.cpp), chosen once by the two functions above.
struct WinogradKernels {
  void (*input)(const WinogradGeometry&, const float*, int64_t, int64_t, float*, int64_t);
  void (*output)(const WinogradGeometry&, const float*, int64_t, int64_t, int64_t, const WinogradEpilogue&, float*);
};
WinogradKernels winograd_kernels_generic();
WinogradKernels winograd_kernels_avx2();
WinogradKernels winograd_kernels_avx512();

}  // namespace tabula::detail
