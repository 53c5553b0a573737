// Reference-centred bf16 rounding, the row-wise pieces (bf16_centres.h).
#include "engine/cpu/bf16_centres.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "engine/cpu/gemm_kernels.h"
#include "engine/cpu/indirect_gemm.h"
#include "engine/threads.h"

namespace tabula::detail {

namespace {
thread_local bool t_recording_centres = false;
}  // namespace

bool recording_bf16_centres() { return t_recording_centres; }

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

using namespace igemm;  // NOLINT(google-build-using-namespace)

// Adds centres from a reference forward's input (`rows` rows of cs.K values): its first, middle and mean row,
// rounded to bf16, and their W c: a GEMM of the centres tiled over the `taps` (k = tap * K + channel, the packed
// layout) with the bf16 kernel, exact products and fp32 sums.
// exact_weights: W c with the fp32 weights (W' + W_lo); not for a conv with padding, whose padding pixels read -c
// through the bf16 weights W' (W' c then cancels there exactly; with W c the border pixels would keep W_lo c).
void record_centres(const PackedMatrix& b, int64_t taps, const float* x, int64_t rows, int64_t K, bool exact_weights) {
  Bf16Centres& cs = *b.centres();
  if (rows <= 0 || K <= 0 || (cs.K != 0 && cs.K != K) || cs.count() + 3 > ops::kMaxBf16Centres) return;
  cs.K = K;
  std::vector<double> mean(static_cast<size_t>(K), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < K; ++k) mean[static_cast<size_t>(k)] += x[r * K + k];
  std::vector<std::vector<float>> add = {std::vector<float>(x, x + K),
                                         std::vector<float>(x + rows / 2 * K, x + rows / 2 * K + K), {}};
  for (double m : mean) add[2].push_back(static_cast<float>(m / static_cast<double>(rows)));
  for (const auto& row : add)
    for (float v : row) {
      const uint16_t h = f32_to_bf16(v);
      cs.c.push_back(bf16_to_f32(h));
      cs.neg.push_back(static_cast<uint16_t>(h ^ 0x8000u));
    }
  const int64_t J = cs.count(), N = b.cols(), Kp = b.stored_rows();
  std::vector<uint16_t> a(static_cast<size_t>(J * Kp), 0);
  for (int64_t j = 0; j < J; ++j)
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t k = 0; k < K; ++k)
        a[static_cast<size_t>(j * Kp + t * K + k)] = f32_to_bf16(cs.c[static_cast<size_t>(j * K + k)]);
  cs.wc.assign(static_cast<size_t>(J * N), 0.f);
  ASource<uint16_t> A;
  A.a = a.data();
  A.lda = Kp;
  indirect_gemm(J, A, dense_plan(Kp), bf16_panels_of(b), cs.wc.data(), N, Epilogue{});
  if (exact_weights && cs.w_lo.defined()) {
    std::vector<float> lo(static_cast<size_t>(J * N));
    indirect_gemm(J, A, dense_plan(Kp), BPanels<uint16_t>{cs.w_lo.data<uint16_t>(), Kp, N, b.nr()}, lo.data(), N,
                  Epilogue{});
    for (size_t i = 0; i < lo.size(); ++i) cs.wc[i] += lo[i];
  }
}

// Outside a recording the low halves of the weights are no longer needed (Bf16Centres::w_lo).
void drop_low_weights(const PackedMatrix& b) {
  if (!t_recording_centres && b.centres()->w_lo.defined()) b.centres()->w_lo = Tensor();
}

}  // namespace tabula::detail

namespace tabula::ops {
Bf16CentreRecording::Bf16CentreRecording() : previous_(detail::t_recording_centres) {
  detail::t_recording_centres = true;
}
Bf16CentreRecording::~Bf16CentreRecording() { detail::t_recording_centres = previous_; }
}  // namespace tabula::ops
