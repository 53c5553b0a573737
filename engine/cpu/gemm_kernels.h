// GEMM micro-kernels (internal). A micro-kernel computes one MR x NR tile of C from packed panels:
//   ap[k * MR + i] (A rows i of the tile, k-major), bp[k * NR + j] (B columns j, k-major), k in [0, kc).
// accumulate=false stores the product, true adds it to C. Partial tiles are handled by the caller.
#pragma once
#include <cstdint>

namespace tabula::detail {

using GemmMicroKernel = void (*)(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, bool accumulate);

struct GemmKernelInfo {
  GemmMicroKernel fn;
  int mr, nr;
  const char* name;
};

GemmKernelInfo gemm_kernel_avx512();  // defined in gemm_avx512.cpp; call only when cpu_features().has_avx512()
GemmKernelInfo gemm_kernel_avx2();    // gemm_avx2.cpp; only when has_avx2_fma()
GemmKernelInfo gemm_kernel_generic();

// Indirect ("pointer") micro-kernel for GEMMs whose B operand was packed once (weights, PackedMatrix) and whose A
// operand is read in place through row pointers, without packing: the K range of one call is `nseg` segments of
// `len` consecutive k each; for segment s, a[s * MR + i] points at the `len` values of row i (a conv tap's input
// channels in NHWC, a token's features, or a zero row for padding). bp holds nseg * len k-rows of NR packed
// columns. The tile is C[i * ldc + j] (i < MR, j < NR): stored (accumulate = false) or added to (true); when `ep`
// is non-null (the last K block of a full tile) the epilogue runs in registers before the store.
struct TileEpilogue {
  const float* scale = nullptr;     // per column (output channel): folded BatchNorm's gamma / sqrt(var + eps)
  const float* shift = nullptr;     // per column: bias, or BatchNorm's beta - mean * scale
  const float* residual = nullptr;  // row i at residual + i * ldr
  int64_t ldr = 0;
  bool relu = false;
};
using GemmIndirectKernel = void (*)(int64_t nseg, int64_t len, const float* const* a, const float* bp, float* c,
                                    int64_t ldc, bool accumulate, const TileEpilogue* ep);
struct GemmIndirectKernelInfo {
  GemmIndirectKernel fn;
  int mr, nr;
  const char* name;
};
GemmIndirectKernelInfo gemm_indirect_kernel_avx512();
GemmIndirectKernelInfo gemm_indirect_kernel_avx2();
GemmIndirectKernelInfo gemm_indirect_kernel_generic();
// The kernel this machine dispatches to (chosen once, like the packed GEMM's).
const GemmIndirectKernelInfo& gemm_indirect_kernel();

}  // namespace tabula::detail
