// Blocked, packed SGEMM (the BLIS/GotoBLAS structure) with a fused epilogue.
//
//   for each C block of MC x NC (one task of the thread pool; tasks never share output elements)
//     for pc over K in fixed KC steps          <- fixed order: the sum order of every C element is the same
//       pack A[ic:ic+MC, pc:pc+KC]                whatever the thread count, so results are bit-identical
//       for jr over NC by NR, ir over MC by MR: micro-kernel (first pc stores, later ones accumulate)
//     epilogue on the block while it is in cache: + bias (row or column) + residual, activation
// B is packed once per call into NR-wide k-major panels shared by all tasks.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/cpu/gemm_kernels.h"
#include "engine/cpu/packed.h"
#include "engine/ops.h"
#include "engine/cpu/rowops.h"
#include "engine/system.h"
#include "engine/threads.h"

namespace tabula {
namespace detail {

namespace {
constexpr int kGenericMR = 4, kGenericNR = 16;

void kernel_generic(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, bool accumulate) {
  float acc[kGenericMR][kGenericNR] = {};
  for (int64_t k = 0; k < kc; ++k)
    for (int i = 0; i < kGenericMR; ++i) {
      const float a = ap[k * kGenericMR + i];
      for (int j = 0; j < kGenericNR; ++j) acc[i][j] = std::fma(a, bp[k * kGenericNR + j], acc[i][j]);
    }
  for (int i = 0; i < kGenericMR; ++i)
    for (int j = 0; j < kGenericNR; ++j) c[i * ldc + j] = accumulate ? c[i * ldc + j] + acc[i][j] : acc[i][j];
}
}  // namespace

GemmKernelInfo gemm_kernel_generic() { return {kernel_generic, kGenericMR, kGenericNR, "generic"}; }

namespace {
void igemm_generic(int64_t nseg, int64_t len, const float* const* a, const float* bp, float* c, int64_t ldc,
                   bool accumulate, const TileEpilogue* ep) {
  float acc[kGenericMR][kGenericNR] = {};
  for (int64_t s = 0; s < nseg; ++s, a += kGenericMR)
    for (int64_t k = 0; k < len; ++k, bp += kGenericNR)
      for (int i = 0; i < kGenericMR; ++i)
        for (int j = 0; j < kGenericNR; ++j) acc[i][j] = std::fma(a[i][k], bp[j], acc[i][j]);
  for (int i = 0; i < kGenericMR; ++i)
    for (int j = 0; j < kGenericNR; ++j) {
      float v = accumulate ? c[i * ldc + j] + acc[i][j] : acc[i][j];
      if (ep) {
        if (ep->scale) v = std::fma(v, ep->scale[j], ep->shift ? ep->shift[j] : 0.f);
        else if (ep->shift) v += ep->shift[j];
        if (ep->residual) v += ep->residual[i * ep->ldr + j];
        if (ep->relu) v = v > 0.f || std::isnan(v) ? v : 0.f;
      }
      c[i * ldc + j] = v;
    }
}
}  // namespace

GemmIndirectKernelInfo gemm_indirect_kernel_generic() { return {igemm_generic, kGenericMR, kGenericNR, "generic"}; }

const GemmIndirectKernelInfo& gemm_indirect_kernel() {
  static const GemmIndirectKernelInfo k = [] {
    const CpuFeatures& f = cpu_features();
    if (f.has_avx512()) return gemm_indirect_kernel_avx512();
    if (f.has_avx2_fma()) return gemm_indirect_kernel_avx2();
    return gemm_indirect_kernel_generic();
  }();
  return k;
}

static const GemmKernelInfo& selected_kernel() {
  static const GemmKernelInfo k = [] {
    const CpuFeatures& f = cpu_features();
    if (f.has_avx512()) return gemm_kernel_avx512();
    if (f.has_avx2_fma()) return gemm_kernel_avx2();
    return gemm_kernel_generic();
  }();
  return k;
}

}  // namespace detail

namespace ops {

const char* gemm_kernel_name() {
  // under --precision bf16 the packed weights' GEMMs (convs, linears) run the bf16 kernel
  if (cpu_precision() == Precision::bf16 && detail::gemm_bf16_kernel()) return detail::gemm_bf16_kernel()->name;
  return detail::selected_kernel().name;
}

namespace {
constexpr int64_t KC = 256;  // fixed: part of the numerical definition of the result (see above)
// Upper bound of a task's column block: its KC x NC slice of packed B stays in L2 (2 MiB on the build machine).
constexpr int64_t kMaxNC = 1536;

struct Operand {
  const float* p;
  int64_t ld;
  bool trans;
  // element (r, c) of the logical matrix
  float at(int64_t r, int64_t c) const { return trans ? p[c * ld + r] : p[r * ld + c]; }
};
}  // namespace

// C[i0:i0+ni, j0:j0+nj] = act(C + bias_row + bias_col + residual), in that order (torch's conv/linear + add + act).
static void apply_epilogue(const GemmEpilogue& ep, float* c, int64_t ldc, int64_t i0, int64_t ni, int64_t j0,
                           int64_t nj) {
  for (int64_t i = i0; i < i0 + ni; ++i) {
    float* ci = c + i * ldc + j0;
    const float br = ep.bias_row ? ep.bias_row[i] : 0.f;
    const float* bc = ep.bias_col ? ep.bias_col + j0 : nullptr;
    const float* r = ep.residual ? ep.residual + i * ep.ldr + j0 : nullptr;
    for (int64_t j = 0; j < nj; ++j) {
      float v = ci[j] + br;
      if (bc) v += bc[j];
      if (r) v += r[j];
      ci[j] = v;
    }
    detail::activation_inplace(ci, nj, ep.act);
  }
}

void gemm(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, bool trans_a, const float* b, int64_t ldb,
          bool trans_b, float* c, int64_t ldc, const GemmEpilogue& ep) {
  if (M <= 0 || N <= 0) return;
  const detail::GemmKernelInfo& kern = detail::selected_kernel();
  const int64_t MR = kern.mr, NR = kern.nr;
  const int64_t MC = MR * 8;
  const Operand A{a, lda, trans_a}, B{b, ldb, trans_b};
  const bool has_epilogue = ep.bias_row || ep.bias_col || ep.residual || ep.act != Activation::none;

  if (K == 0) {
    for (int64_t i = 0; i < M; ++i) std::fill_n(c + i * ldc, N, 0.f);
  } else {
    // Pack B: panel p (columns p*NR ..), block pc: bp[p][pc*NR*.. ] laid out k-major, zero-padded columns.
    const int64_t panels = (N + NR - 1) / NR;
    // Scratch reused across calls (attention calls gemm per block): grows, never shrinks, never re-zeroed.
    thread_local std::vector<float> bpack_buf;
    if (bpack_buf.size() < static_cast<size_t>(panels * NR * K)) bpack_buf.resize(static_cast<size_t>(panels * NR * K));
    float* const bpack = bpack_buf.data();
    parallel_for(panels, grain_for(panels, K * NR, 1 << 16), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        float* dst = bpack + p * NR * K;
        const int64_t j0 = p * NR, nj = std::min(NR, N - j0);
        for (int64_t k = 0; k < K; ++k) {
          float* row = dst + k * NR;
          if (!B.trans) {
            std::memcpy(row, B.p + k * B.ld + j0, static_cast<size_t>(nj) * sizeof(float));
          } else {
            for (int64_t j = 0; j < nj; ++j) row[j] = B.p[(j0 + j) * B.ld + k];
          }
          for (int64_t j = nj; j < NR; ++j) row[j] = 0.f;
        }
      }
    });

    // Column blocks as wide as possible (A is re-packed once per column block) while leaving >= 4 tasks per
    // thread. The tiling does not change any element's arithmetic (that is fixed by KC), so it may depend on
    // the thread count without affecting the bits.
    const int64_t mtiles = (M + MC - 1) / MC;
    const int64_t want_ntiles = std::max<int64_t>(1, (4 * get_num_threads() + mtiles - 1) / mtiles);
    const int64_t NC = std::min(kMaxNC, (((N + want_ntiles - 1) / want_ntiles + NR - 1) / NR) * NR);
    const int64_t ntiles = (N + NC - 1) / NC;
    parallel_for(mtiles * ntiles, 1, [&](int64_t t0, int64_t t1) {
      thread_local std::vector<float> apack(static_cast<size_t>(16 * 8 * KC));  // >= MC * KC for every kernel
      alignas(64) float tile[16 * 32];
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t ic = (t / ntiles) * MC, jc = (t % ntiles) * NC;
        const int64_t mc = std::min(MC, M - ic), nc = std::min(NC, N - jc);
        for (int64_t pc = 0; pc < K; pc += KC) {
          const int64_t kc = std::min(KC, K - pc);
          // Pack A rows [ic, ic+mc) x [pc, pc+kc) into MR-row panels, k-major, zero-padded rows.
          for (int64_t ir = 0; ir < mc; ir += MR) {
            float* dst = apack.data() + ir * kc;
            const int64_t ni = std::min(MR, mc - ir);
            if (!A.trans) {
              for (int64_t i = 0; i < ni; ++i) {
                const float* src = A.p + (ic + ir + i) * A.ld + pc;
                for (int64_t k = 0; k < kc; ++k) dst[k * MR + i] = src[k];
              }
            } else {
              for (int64_t k = 0; k < kc; ++k) {
                const float* src = A.p + (pc + k) * A.ld + ic + ir;
                std::memcpy(dst + k * MR, src, static_cast<size_t>(ni) * sizeof(float));
              }
            }
            if (ni < MR)
              for (int64_t k = 0; k < kc; ++k)
                for (int64_t i = ni; i < MR; ++i) dst[k * MR + i] = 0.f;
          }
          const bool accumulate = pc > 0, last = pc + kc == K;
          for (int64_t jr = 0; jr < nc; jr += NR) {
            const float* bp = bpack + ((jc + jr) / NR) * NR * K + pc * NR;
            const int64_t nj = std::min(NR, nc - jr);
            for (int64_t ir = 0; ir < mc; ir += MR) {
              const int64_t ni = std::min(MR, mc - ir);
              float* cp = c + (ic + ir) * ldc + jc + jr;
              if (ni == MR && nj == NR) {
                kern.fn(kc, apack.data() + ir * kc, bp, cp, ldc, accumulate);
              } else {
                // Partial tile: compute into a scratch tile, copy the valid part (same arithmetic as a full tile).
                if (accumulate)
                  for (int64_t i = 0; i < ni; ++i) std::memcpy(tile + i * NR, cp + i * ldc, nj * sizeof(float));
                kern.fn(kc, apack.data() + ir * kc, bp, tile, NR, accumulate);
                for (int64_t i = 0; i < ni; ++i) std::memcpy(cp + i * ldc, tile + i * NR, nj * sizeof(float));
              }
              // Epilogue on the tile just finished, while it is in L1 (a separate pass over C would cost a
              // full extra read and write of the output, which dominates convs with small K).
              if (last && has_epilogue) apply_epilogue(ep, c, ldc, ic + ir, ni, jc + jr, nj);
            }
          }
        }
      }
    });
    return;
  }
  // K == 0: C is zero, epilogue only.
  apply_epilogue(ep, c, ldc, 0, M, 0, N);
}

}  // namespace ops
}  // namespace tabula
