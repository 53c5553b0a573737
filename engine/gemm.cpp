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

#include "engine/gemm_kernels.h"
#include "engine/ops.h"
#include "engine/rowops.h"
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

const char* gemm_kernel_name() { return detail::selected_kernel().name; }

namespace {
constexpr int64_t KC = 256;  // fixed: part of the numerical definition of the result (see above)
constexpr int64_t kNC = 512;

struct Operand {
  const float* p;
  int64_t ld;
  bool trans;
  // element (r, c) of the logical matrix
  float at(int64_t r, int64_t c) const { return trans ? p[c * ld + r] : p[r * ld + c]; }
};
}  // namespace

void gemm(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, bool trans_a, const float* b, int64_t ldb,
          bool trans_b, float* c, int64_t ldc, const GemmEpilogue& ep) {
  if (M <= 0 || N <= 0) return;
  const detail::GemmKernelInfo& kern = detail::selected_kernel();
  const int64_t MR = kern.mr, NR = kern.nr;
  const int64_t MC = MR * 8;
  const Operand A{a, lda, trans_a}, B{b, ldb, trans_b};

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

    const int64_t mtiles = (M + MC - 1) / MC, ntiles = (N + kNC - 1) / kNC;
    parallel_for(mtiles * ntiles, 1, [&](int64_t t0, int64_t t1) {
      thread_local std::vector<float> apack(static_cast<size_t>(16 * 8 * KC));  // >= MC * KC for every kernel
      alignas(64) float tile[16 * 32];
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t ic = (t / ntiles) * MC, jc = (t % ntiles) * kNC;
        const int64_t mc = std::min(MC, M - ic), nc = std::min(kNC, N - jc);
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
          const bool accumulate = pc > 0;
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
            }
          }
        }
        if (ep.bias_row || ep.bias_col || ep.residual || ep.act != Activation::none)
          for (int64_t i = ic; i < ic + mc; ++i) {
            float* ci = c + i * ldc + jc;
            const float br = ep.bias_row ? ep.bias_row[i] : 0.f;
            const float* bc = ep.bias_col ? ep.bias_col + jc : nullptr;
            const float* r = ep.residual ? ep.residual + i * ep.ldr + jc : nullptr;
            for (int64_t j = 0; j < nc; ++j) {
              float v = ci[j] + br;
              if (bc) v += bc[j];
              if (r) v += r[j];
              ci[j] = v;
            }
            detail::activation_inplace(ci, nc, ep.act);
          }
      }
    });
    return;
  }
  // K == 0: epilogue only.
  for (int64_t i = 0; i < M; ++i) {
    float* ci = c + i * ldc;
    for (int64_t j = 0; j < N; ++j)
      ci[j] += (ep.bias_row ? ep.bias_row[i] : 0.f) + (ep.bias_col ? ep.bias_col[j] : 0.f) +
               (ep.residual ? ep.residual[i * ep.ldr + j] : 0.f);
    detail::activation_inplace(ci, N, ep.act);
  }
}

}  // namespace ops
}  // namespace tabula
