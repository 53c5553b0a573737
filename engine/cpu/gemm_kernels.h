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
  // bf16 kernel only: row i's shift at row_shift[i] (per column), in place of `shift` -- the bf16 centres' W c,
  // which differs between rows (packed.h Bf16Centres)
  const float* const* row_shift = nullptr;
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

// The bf16 twin of the indirect kernel (--precision bf16 on the CPU): A rows and B panels hold bf16 (uint16_t bit
// patterns), `len` is even and bp holds nseg * len / 2 rows of NR (k, k + 1) pairs (PackedMatrix's bf16 layout);
// each C element accumulates in fp32 as `vdpbf16ps` does: per pair, acc += a[k+1] * b[k+1], then acc += a[k] * b[k]
// (products exact, each sum rounded to nearest even, bf16 subnormals read as zero, fp32 subnormal sums flushed).
// The epilogue is the fp32 kernel's. round_rows writes dst[r * ldd + j] = bf16(src[r * lds + j]) (torch's
// round-to-nearest-even, dtype.h f32_to_bf16) for j < cols and zero for cols <= j < ldd.
using GemmBf16Kernel = void (*)(int64_t nseg, int64_t len, const uint16_t* const* a, const uint16_t* bp, float* c,
                                int64_t ldc, bool accumulate, const TileEpilogue* ep);
using RoundRowsBf16 = void (*)(int64_t rows, int64_t cols, const float* src, int64_t lds, uint16_t* dst,
                               int64_t ldd);
// pack writes panels [p0, p1) of B [K, N] (element (k, n) at src[k * sk + n * sn]) in PackedMatrix's bf16 layout
// for this kernel's nr into dst (the whole packed matrix), rounded as round_rows rounds.
using PackBf16 = void (*)(int64_t K, int64_t N, const float* src, int64_t sk, int64_t sn, uint16_t* dst, int64_t p0,
                          int64_t p1);
// round_rows of src - centre (one row of cols values for all rows): packed.h's reference-centred rounding.
using RoundRowsCentredBf16 = void (*)(int64_t rows, int64_t cols, const float* src, int64_t lds, const float* centre,
                                      uint16_t* dst, int64_t ldd);
struct GemmBf16KernelInfo {
  GemmBf16Kernel fn;
  RoundRowsBf16 round_rows;
  PackBf16 pack;
  int mr, nr;
  const char* name;
  RoundRowsCentredBf16 round_rows_centred;
};
GemmBf16KernelInfo gemm_bf16_kernel_avx512bf16();  // gemm_bf16_avx512bf16.cpp; only when has_avx512_bf16()
// The bf16 kernel of this machine, or nullptr when it has none (no AVX512-BF16; AMX tiles are not used yet).
const GemmBf16KernelInfo* gemm_bf16_kernel();

}  // namespace tabula::detail
