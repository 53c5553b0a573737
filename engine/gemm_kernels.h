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

}  // namespace tabula::detail
