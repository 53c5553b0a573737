// Reference-centred bf16 rounding, the row-wise pieces (bf16_centres.h).
#include "engine/cpu/bf16_centres.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "engine/cpu/gemm_kernels.h"
#include "engine/cpu/indirect_gemm.h"
#include "engine/threads.h"

namespace tabula::detail {

namespace {
thread_local bool t_recording_centres = false;
std::atomic<int64_t> g_low_weight_bytes{0};
std::atomic<bool> g_low_weights_told{false};

// The budget in MiB: TABULA_BF16_LOW_WEIGHTS_MIB, else 4096.
int64_t low_weight_budget_mib() {
  static const int64_t mib = [] {
    const char* e = std::getenv("TABULA_BF16_LOW_WEIGHTS_MIB");
    if (!e || !*e) return int64_t{4096};
    char* end = nullptr;
    const long long v = std::strtoll(e, &end, 10);
    if (*end != '\0' || v < 0)
      throw std::invalid_argument(std::string("TABULA_BF16_LOW_WEIGHTS_MIB must be a number of MiB >= 0, got '") +
                                  e + "'");
    return static_cast<int64_t>(v);
  }();
  return mib;
}
}  // namespace

bool reserve_low_weights(int64_t bytes) {
  const int64_t budget = low_weight_budget_mib() << 20;
  int64_t held = g_low_weight_bytes.load();
  do {
    if (held + bytes > budget) {
      if (!g_low_weights_told.exchange(true))
        std::fprintf(stderr,
                     "tabula: bf16: the weights' fp32 low halves are kept for %lld MiB of weights only "
                     "(TABULA_BF16_LOW_WEIGHTS_MIB); past that the centres' W c uses the bf16 weights (slightly less "
                     "close to fp32)\n",
                     static_cast<long long>(budget >> 20));
      return false;
    }
  } while (!g_low_weight_bytes.compare_exchange_weak(held, held + bytes));
  return true;
}

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

CentredShifts linear_centred_shifts(const Bf16Centres& cs, const std::vector<int8_t>& choice, int64_t N,
                                    const float* scale, const float* shift) {
  CentredShifts r;
  r.table = centred_shifts(cs, N, scale, shift);
  r.index.resize(choice.size());
  for (size_t i = 0; i < choice.size(); ++i) r.index[i] = choice[i] + 1;
  return r;
}

namespace {
// The kernel taps [first, last) of one axis inside the map for each output position, as ids of the distinct
// ranges (ranges: their list).
std::vector<int32_t> tap_ranges(int64_t out, int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dilation,
                                std::vector<std::pair<int64_t, int64_t>>& ranges) {
  std::vector<int32_t> id(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) {
    int64_t t0 = 0, t1 = k;
    while (t0 < k && o * stride - pad + t0 * dilation < 0) ++t0;
    while (t1 > t0 && o * stride - pad + (t1 - 1) * dilation >= in) --t1;
    const auto it = std::find(ranges.begin(), ranges.end(), std::make_pair(t0, t1));
    id[static_cast<size_t>(o)] = static_cast<int32_t>(it - ranges.begin());
    if (it == ranges.end()) ranges.emplace_back(t0, t1);
  }
  return id;
}
}  // namespace

CentredShifts conv_centred_shifts(const Bf16Centres& cs, const std::vector<int8_t>& image_centre,
                                  const ConvGeometry& g, int64_t Cout, const float* scale, const float* shift) {
  const int64_t J = cs.count(), kh = cs.kh, kw = cs.kw, P = (kh + 1) * (kw + 1);
  std::vector<std::pair<int64_t, int64_t>> rows, cols;  // the distinct in-map tap ranges
  std::vector<int32_t> row_id(static_cast<size_t>(g.Ho), 0), col_id(static_cast<size_t>(g.Wo), 0);
  if (cs.lo_prefix.empty()) {  // W c the same for every pixel
    rows = {{0, kh}}, cols = {{0, kw}};
  } else {
    row_id = tap_ranges(g.Ho, g.H, kh, g.o.stride[0], g.o.padding[0], g.o.dilation[0], rows);
    col_id = tap_ranges(g.Wo, g.W, kw, g.o.stride[1], g.o.padding[1], g.o.dilation[1], cols);
  }
  const int64_t R = static_cast<int64_t>(rows.size()), C = static_cast<int64_t>(cols.size());
  CentredShifts r;
  r.table.assign(static_cast<size_t>((1 + J * R * C) * Cout), 0.f);
  for (int64_t n = 0; n < Cout; ++n) r.table[static_cast<size_t>(n)] = shift ? shift[n] : 0.f;
  for (int64_t j = 0; j < J; ++j)
    for (int64_t a = 0; a < R; ++a)
      for (int64_t b = 0; b < C; ++b) {
        float* d = r.table.data() + (1 + (j * R + a) * C + b) * Cout;
        const auto [i0, i1] = rows[static_cast<size_t>(a)];
        const auto [k0, k1] = cols[static_cast<size_t>(b)];
        auto pre = [&](int64_t i, int64_t k) { return cs.lo_prefix.data() + (j * P + i * (kw + 1) + k) * Cout; };
        for (int64_t n = 0; n < Cout; ++n) {
          float wc = cs.wc[static_cast<size_t>(j * Cout + n)];
          if (!cs.lo_prefix.empty())
            wc += static_cast<float>(pre(i1, k1)[n] - pre(i0, k1)[n] - pre(i1, k0)[n] + pre(i0, k0)[n]);
          const float sh = shift ? shift[n] : 0.f;
          d[n] = scale ? std::fma(wc, scale[n], sh) : wc + sh;
        }
      }
  r.index.resize(static_cast<size_t>(g.N * g.Ho * g.Wo));
  for (int64_t n = 0; n < g.N; ++n) {
    const int j = image_centre[static_cast<size_t>(n)];
    for (int64_t oh = 0; oh < g.Ho; ++oh)
      for (int64_t ow = 0; ow < g.Wo; ++ow)
        r.index[static_cast<size_t>((n * g.Ho + oh) * g.Wo + ow)] =
            j < 0 ? 0
                  : static_cast<int32_t>(1 + (j * R + row_id[static_cast<size_t>(oh)]) * C +
                                         col_id[static_cast<size_t>(ow)]);
  }
  return r;
}

namespace {
// The mean of each of `cols` columns over `rows` rows (row stride lds): summed in double, rounded once to fp32.
std::vector<float> column_means(int64_t rows, int64_t cols, const float* src, int64_t lds) {
  std::vector<double> m(static_cast<size_t>(cols), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) m[static_cast<size_t>(c)] += src[r * lds + c];
  std::vector<float> mf(static_cast<size_t>(cols));
  for (size_t c = 0; c < mf.size(); ++c) mf[c] = static_cast<float>(m[c] / static_cast<double>(rows));
  return mf;
}
}  // namespace

void centre_rows(int64_t rows, int64_t cols, const float* src, int64_t lds, float* dst, float* mean) {
  const std::vector<float> mf = column_means(rows, cols, src, lds);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[r * cols + c] = src[r * lds + c] - mf[static_cast<size_t>(c)];
  if (mean) std::copy(mf.begin(), mf.end(), mean);
}

using namespace igemm;  // NOLINT(google-build-using-namespace)

// Adds centres from a reference forward's input (`rows` rows of cs.K values): its first, middle and mean row,
// rounded to bf16, and their W c: a GEMM of the centres tiled over the taps (k = tap * K + channel, the packed
// layout) with the bf16 kernel, exact products and fp32 sums; with the low halves the same over W_lo, added to W c
// (unpadded) or kept per tap as prefix sums (padded: the border pixels take only their in-map taps' share).
void record_centres(const PackedMatrix& b, int64_t kh, int64_t kw, const float* x, int64_t rows, int64_t K,
                    bool padded) {
  Bf16Centres& cs = *b.centres();
  if (rows <= 0 || K <= 0 || (cs.K != 0 && cs.K != K) || cs.count() + 3 > ops::kMaxBf16Centres) return;
  cs.K = K;
  const std::vector<std::vector<float>> add = {std::vector<float>(x, x + K),
                                               std::vector<float>(x + rows / 2 * K, x + rows / 2 * K + K),
                                               column_means(rows, K, x, K)};
  for (const auto& row : add)
    for (float v : row) {
      const uint16_t h = f32_to_bf16(v);
      cs.c.push_back(bf16_to_f32(h));
      cs.neg.push_back(static_cast<uint16_t>(h ^ 0x8000u));
    }
  const int64_t J = cs.count(), N = b.cols(), Kp = b.stored_rows(), taps = kh * kw;
  cs.kh = kh, cs.kw = kw;
  // row (j, t) of `a`: centre j at tap t (one_tap) or at every tap
  auto centres_at_taps = [&](bool one_tap) {
    const int64_t per = one_tap ? taps : 1;
    std::vector<uint16_t> a(static_cast<size_t>(J * per * Kp), 0);
    for (int64_t j = 0; j < J; ++j)
      for (int64_t t = 0; t < taps; ++t)
        for (int64_t k = 0; k < K; ++k)
          a[static_cast<size_t>((j * per + (one_tap ? t : 0)) * Kp + t * K + k)] =
              f32_to_bf16(cs.c[static_cast<size_t>(j * K + k)]);
    return a;
  };
  auto product = [&](const std::vector<uint16_t>& a, const uint16_t* panels, std::vector<float>& out) {
    const int64_t M = static_cast<int64_t>(a.size()) / Kp;
    out.assign(static_cast<size_t>(M * N), 0.f);
    ASource<uint16_t> A;
    A.a = a.data();
    A.lda = Kp;
    indirect_gemm(M, A, dense_plan(Kp), BPanels<uint16_t>{panels, Kp, N, b.nr()}, out.data(), N, Epilogue{});
  };
  const std::vector<uint16_t> all = centres_at_taps(false);
  product(all, b.panel_bf16(0), cs.wc);
  cs.lo_prefix.clear();
  if (!cs.w_lo.defined()) return;
  std::vector<float> lo;
  if (!padded) {
    product(all, cs.w_lo.data<uint16_t>(), lo);
    for (size_t i = 0; i < lo.size(); ++i) cs.wc[i] += lo[i];
    return;
  }
  product(centres_at_taps(true), cs.w_lo.data<uint16_t>(), lo);
  const int64_t P = (kh + 1) * (kw + 1);
  cs.lo_prefix.assign(static_cast<size_t>(J * P * N), 0.0);
  for (int64_t j = 0; j < J; ++j)
    for (int64_t i = 1; i <= kh; ++i)
      for (int64_t i2 = 1; i2 <= kw; ++i2) {
        double* d = cs.lo_prefix.data() + (j * P + i * (kw + 1) + i2) * N;
        const double* up = d - (kw + 1) * N;
        const float* t = lo.data() + (j * taps + (i - 1) * kw + (i2 - 1)) * N;
        for (int64_t n = 0; n < N; ++n) d[n] = double{t[n]} + up[n] + d[n - N] - up[n - N];
      }
}

// Outside a recording the low halves of the weights are no longer needed (Bf16Centres::w_lo).
void drop_low_weights(const PackedMatrix& b) {
  if (!t_recording_centres) b.centres()->release_low_weights();
}

}  // namespace tabula::detail

namespace tabula {
void Bf16Centres::release_low_weights() {
  if (!w_lo.defined()) return;
  detail::g_low_weight_bytes -= static_cast<int64_t>(w_lo.nbytes());
  w_lo = Tensor();
}
Bf16Centres::~Bf16Centres() { release_low_weights(); }
}  // namespace tabula

namespace tabula::ops {
Bf16CentreRecording::Bf16CentreRecording() : previous_(detail::t_recording_centres) {
  detail::t_recording_centres = true;
}
Bf16CentreRecording::~Bf16CentreRecording() { detail::t_recording_centres = previous_; }
}  // namespace tabula::ops
