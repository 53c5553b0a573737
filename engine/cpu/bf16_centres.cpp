// Reference-centred bf16 rounding, the row-wise pieces (bf16_centres.h).
#include "engine/cpu/bf16_centres.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "engine/cpu/gemm_kernels.h"
#include "engine/threads.h"

namespace tabula::detail {

// The centre of each group of `per` consecutive rows (per = 1: of each row): the one nearest to the group's rows
// (squared distance over the first 16 values -- one cache line -- of at most 64 evenly spaced rows per group: the
// choice only needs to tell a class token from a patch token, a dark image from a bright one), -1 when none is nearer
// than zero (plain rounding). Each group's choice reads only its own rows.
std::vector<int8_t> choose_centres(int64_t rows, int64_t per, int64_t cols, const float* src, int64_t lds,
                                   const Bf16Centres& cs) {
  const int64_t groups = rows / per, J = cs.count(), S = std::min<int64_t>(cols, 16);
  const int64_t R = std::min<int64_t>(per, 64);
  std::vector<int8_t> choice(static_cast<size_t>(groups), -1);
  parallel_for(groups, grain_for(groups, R * S * (J + 1)), [&](int64_t g0, int64_t g1) {
    std::array<float, ops::kMaxBf16Centres + 1> d{};
    for (int64_t g = g0; g < g1; ++g) {
      d.fill(0.f);
      for (int64_t ri = 0; ri < R; ++ri) {
        const float* x = src + (g * per + ri * per / R) * lds;
        for (int64_t si = 0; si < S; ++si) {
          const int64_t k = si;
          d[0] += x[k] * x[k];
          for (int64_t j = 0; j < J; ++j) {
            const float t = x[k] - cs.c[static_cast<size_t>(j * cs.K + k)];
            d[static_cast<size_t>(j + 1)] += t * t;
          }
        }
      }
      int64_t best = 0;
      for (int64_t j = 1; j <= J; ++j)
        if (d[static_cast<size_t>(j)] < d[static_cast<size_t>(best)]) best = j;
      choice[static_cast<size_t>(g)] = static_cast<int8_t>(best - 1);
    }
  });
  return choice;
}

// round_activations of x - c, c the centre of the row's group (none: x itself).
Tensor round_centred(int64_t rows, int64_t per, int64_t cols, const float* src, int64_t lds, int64_t ldd,
                     const Bf16Centres& cs, const std::vector<int8_t>& choice) {
  Tensor t = Tensor::empty({std::max<int64_t>(rows * ldd, 1)}, DType::bf16);
  uint16_t* dst = t.data<uint16_t>();
  const GemmBf16KernelInfo& kern = *gemm_bf16_kernel();
  parallel_for(rows, grain_for(rows, std::max<int64_t>(cols, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1;) {  // runs of rows with one centre
      const int j = choice[static_cast<size_t>(r / per)];
      int64_t e = r + 1;
      while (e < r1 && choice[static_cast<size_t>(e / per)] == j) ++e;
      if (j < 0) kern.round_rows(e - r, cols, src + r * lds, lds, dst + r * ldd, ldd);
      else kern.round_rows_centred(e - r, cols, src + r * lds, lds, cs.c.data() + j * cs.K, dst + r * ldd, ldd);
      r = e;
    }
  });
  return t;
}

// The shifts of the centres' rows: row 0 (no centre) the shift (or zeros), row j + 1 W c_j * scale + shift (so
// that act(acc * scale + shift') = act((acc + W c) * scale + shift) but for rounding), or W c_j + shift without a
// scale.
std::vector<float> centred_shifts(const Bf16Centres& cs, int64_t N, const float* scale, const float* shift) {
  const int64_t J = cs.count();
  std::vector<float> t(static_cast<size_t>((J + 1) * N), 0.f);
  for (int64_t n = 0; n < N; ++n) {
    const float sh = shift ? shift[n] : 0.f;
    t[static_cast<size_t>(n)] = sh;
    for (int64_t j = 0; j < J; ++j) {
      const float wc = cs.wc[static_cast<size_t>(j * N + n)];
      t[static_cast<size_t>((j + 1) * N + n)] = scale ? std::fma(wc, scale[n], sh) : wc + sh;
    }
  }
  return t;
}

}  // namespace tabula::detail
