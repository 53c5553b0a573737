#include "data/interpolate.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace tabula::data {

namespace {

// ATen's HelperInterpLinear/HelperInterpCubic::aa_filter<float>: float arithmetic, a = -0.5 for bicubic
// (PIL's Keys coefficient), cubic_convolution1/2 as in UpSample.h.
float aa_filter_f32(Interp mode, float x) {
  x = std::fabs(x);
  if (mode == Interp::bilinear) return x < 1.0f ? float(1.0 - double(x)) : 0.0f;
  constexpr float A = -0.5f;
  if (x < 1.0f) return ((A + 2) * x - (A + 3)) * x * x + 1;
  if (x < 2.0f) return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
  return 0.0f;
}

// ATen's get_cubic_upsample_coefficients with A = -0.75 (the non-antialiased bicubic).
void cubic_coeffs(double t, double c[4]) {
  constexpr double A = -0.75;
  auto cc1 = [](double x) { return ((A + 2) * x - (A + 3)) * x * x + 1; };
  auto cc2 = [](double x) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; };
  c[0] = cc2(t + 1.0);
  c[1] = cc1(t);
  c[2] = cc1(1.0 - t);
  c[3] = cc2(2.0 - t);
}

}  // namespace

InterpWeights torch_interp_weights(int64_t in_size, int64_t out_size, Interp mode, bool antialias) {
  if (in_size <= 0 || out_size <= 0) throw std::invalid_argument("interpolate: sizes must be positive");
  InterpWeights W;
  W.first.resize(size_t(out_size));
  W.count.resize(size_t(out_size));
  const double scale = double(in_size) / double(out_size);
  if (antialias) {
    // ATen computes these in the tensor's dtype (float here), including the tap positions: with center
    // near 300 a float's spacing is 3e-5, which moves outputs by up to ~1e-5. Reproduced operation by
    // operation (double temporaries where ATen's expressions mix in double literals).
    const float fscale = float(in_size) / float(out_size);
    const int interp_size = mode == Interp::bilinear ? 2 : 4;
    const float support = fscale >= 1.0 ? float((interp_size * 0.5) * fscale) : float(interp_size * 0.5);
    const float invscale = fscale >= 1.0 ? float(1.0 / fscale) : 1.0f;
    W.max_taps = int64_t(std::ceil(support)) * 2 + 1;
    W.weights.assign(size_t(out_size * W.max_taps), 0.0);
    std::vector<float> w(size_t(W.max_taps));
    for (int64_t i = 0; i < out_size; ++i) {
      const float center = float(fscale * (double(i) + 0.5));
      const int64_t xmin = std::max<int64_t>(int64_t(double(center - support) + 0.5), 0);
      int64_t xsize = std::min<int64_t>(int64_t(double(center + support) + 0.5), in_size) - xmin;
      xsize = std::clamp<int64_t>(xsize, 0, W.max_taps);
      float total = 0.0f;
      for (int64_t j = 0; j < xsize; ++j) {
        const float arg = float((double(float(j + xmin) - center) + 0.5) * double(invscale));
        w[size_t(j)] = aa_filter_f32(mode, arg);
        total += w[size_t(j)];
      }
      for (int64_t j = 0; j < xsize; ++j) {
        if (total != 0.0f) w[size_t(j)] /= total;
        W.weights[size_t(i * W.max_taps + j)] = w[size_t(j)];
      }
      W.first[size_t(i)] = xmin;
      W.count[size_t(i)] = xsize;
    }
    W.float_accumulate = true;
    return W;
  }
  if (mode == Interp::bilinear) {
    W.max_taps = 2;
    W.weights.assign(size_t(out_size * 2), 0.0);
    for (int64_t i = 0; i < out_size; ++i) {
      double x = std::max(scale * (double(i) + 0.5) - 0.5, 0.0);
      int64_t x0 = int64_t(x);
      int64_t off = x0 < in_size - 1 ? 1 : 0;
      double l1 = x - double(x0);
      W.first[size_t(i)] = x0;
      W.count[size_t(i)] = off + 1;
      W.weights[size_t(2 * i)] = off ? 1.0 - l1 : 1.0;
      if (off) W.weights[size_t(2 * i + 1)] = l1;
    }
    return W;
  }
  // Non-antialiased bicubic: 4 taps around floor(x), clamped indices folded into the weights of a span
  // that starts at the (possibly negative) first tap; the span is re-expressed over clamped indices below.
  W.max_taps = 4;
  W.weights.assign(size_t(out_size * 4), 0.0);
  for (int64_t i = 0; i < out_size; ++i) {
    double x = scale * (double(i) + 0.5) - 0.5;
    double fx = std::floor(x);
    double c[4];
    cubic_coeffs(x - fx, c);
    int64_t lo = in_size, hi = -1;
    double acc[4] = {0, 0, 0, 0};
    int64_t idx[4];
    for (int k = 0; k < 4; ++k) {
      idx[k] = std::clamp<int64_t>(int64_t(fx) - 1 + k, 0, in_size - 1);
      lo = std::min(lo, idx[k]);
      hi = std::max(hi, idx[k]);
    }
    for (int k = 0; k < 4; ++k) acc[idx[k] - lo] += c[k];
    W.first[size_t(i)] = lo;
    W.count[size_t(i)] = hi - lo + 1;
    for (int64_t k = 0; k <= hi - lo; ++k) W.weights[size_t(i * 4 + k)] = acc[k];
  }
  return W;
}

namespace {

// ATen's non-antialiased float path (upsample_non_separable with HelperInterpLinear/Cubic::
// compute_indices_weights): per dimension, `taps` clamped indices and float weights; each output is
// sum_h w_h * (sum_w w_w * x), evaluated in float in ATen's order (InterpolateNonSeparable).
struct TapTable {
  int taps = 0;
  std::vector<int64_t> idx;  // out * taps
  std::vector<float> w;      // out * taps
};

TapTable non_aa_taps(int64_t in_size, int64_t out_size, Interp mode) {
  TapTable T;
  T.taps = mode == Interp::bilinear ? 2 : 4;
  T.idx.resize(size_t(out_size * T.taps));
  T.w.resize(size_t(out_size * T.taps));
  const float scale = float(in_size) / float(out_size);  // area_pixel_compute_scale<float>
  for (int64_t i = 0; i < out_size; ++i) {
    float real = scale * (float(i) + 0.5f) - 0.5f;  // area_pixel_compute_source_index<float>
    if (mode == Interp::bilinear && real < 0) real = 0;
    // guard_index_and_lambda
    int64_t index = std::min<int64_t>(int64_t(std::floor(real)), in_size - 1);
    float lambda = std::min(std::max(real - float(index), 0.0f), 1.0f);
    if (mode == Interp::bilinear) {
      T.idx[size_t(2 * i)] = index;
      T.idx[size_t(2 * i + 1)] = index + (index < in_size - 1 ? 1 : 0);
      T.w[size_t(2 * i)] = 1.0f - lambda;
      T.w[size_t(2 * i + 1)] = lambda;
    } else {
      // get_cubic_upsample_coefficients<float>, A = -0.75.
      constexpr float A = -0.75f;
      auto cc1 = [](float x) { return ((A + 2) * x - (A + 3)) * x * x + 1; };
      auto cc2 = [](float x) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; };
      const float c[4] = {cc2(lambda + 1.0f), cc1(lambda), cc1(1.0f - lambda), cc2(2.0f - lambda)};
      for (int k = 0; k < 4; ++k) {
        T.idx[size_t(4 * i + k)] = std::clamp<int64_t>(index + k - 1, 0, in_size - 1);
        T.w[size_t(4 * i + k)] = c[k];
      }
    }
  }
  return T;
}

void interpolate_non_separable(const float* in, int64_t planes, int64_t in_h, int64_t in_w, float* out,
                               int64_t out_h, int64_t out_w, Interp mode) {
  const TapTable H = non_aa_taps(in_h, out_h, mode), Wt = non_aa_taps(in_w, out_w, mode);
  const int n = H.taps;
  for (int64_t p = 0; p < planes; ++p) {
    const float* plane = in + p * in_h * in_w;
    for (int64_t oy = 0; oy < out_h; ++oy)
      for (int64_t ox = 0; ox < out_w; ++ox) {
        float acc = 0.0f;
        for (int a = 0; a < n; ++a) {
          const float* row = plane + H.idx[size_t(oy * n + a)] * in_w;
          float inner = 0.0f;
          for (int b = 0; b < n; ++b) {
            const float t = row[Wt.idx[size_t(ox * n + b)]] * Wt.w[size_t(ox * n + b)];
            inner = b == 0 ? t : inner + t;
          }
          const float t = inner * H.w[size_t(oy * n + a)];
          acc = a == 0 ? t : acc + t;
        }
        out[(p * out_h + oy) * out_w + ox] = acc;
      }
  }
}

}  // namespace

void torch_interpolate(const float* in, int64_t planes, int64_t in_h, int64_t in_w, float* out, int64_t out_h,
                       int64_t out_w, Interp mode, bool antialias) {
  if (!antialias) {
    if (in_h == out_h && in_w == out_w) {
      std::copy(in, in + planes * in_h * in_w, out);  // ATen returns a copy for identical sizes
      return;
    }
    interpolate_non_separable(in, planes, in_h, in_w, out, out_h, out_w, mode);
    return;
  }
  // Width pass into a float temporary (ATen keeps the intermediate in the tensor's dtype), then height.
  std::vector<float> tmp;
  const float* src = in;
  if (out_w != in_w) {
    InterpWeights W = torch_interp_weights(in_w, out_w, mode, antialias);
    tmp.resize(size_t(planes * in_h * out_w));
    for (int64_t r = 0; r < planes * in_h; ++r) {
      const float* row = in + r * in_w;
      float* dst = tmp.data() + r * out_w;
      for (int64_t o = 0; o < out_w; ++o) {
        const double* w = &W.weights[size_t(o * W.max_taps)];
        const float* s = row + W.first[size_t(o)];
        if (W.float_accumulate) {
          // ATen's interpolate_separable_1d: out = s[0] * w[0]; out += s[j] * w[j], in float.
          float acc = W.count[size_t(o)] > 0 ? s[0] * float(w[0]) : 0.0f;
          for (int64_t k = 1; k < W.count[size_t(o)]; ++k) acc += s[k] * float(w[k]);
          dst[o] = acc;
        } else {
          double acc = 0.0;
          for (int64_t k = 0; k < W.count[size_t(o)]; ++k) acc += w[k] * double(s[k]);
          dst[o] = float(acc);
        }
      }
    }
    src = tmp.data();
  }
  if (out_h != in_h) {
    InterpWeights W = torch_interp_weights(in_h, out_h, mode, antialias);
    std::vector<double> acc(static_cast<size_t>(out_w));
    std::vector<float> accf(static_cast<size_t>(out_w));
    for (int64_t p = 0; p < planes; ++p) {
      const float* plane = src + p * in_h * out_w;
      for (int64_t o = 0; o < out_h; ++o) {
        if (W.float_accumulate) {
          const double* w = &W.weights[size_t(o * W.max_taps)];
          float* dst = out + (p * out_h + o) * out_w;
          const int64_t n = W.count[size_t(o)];
          const float* row0 = plane + W.first[size_t(o)] * out_w;
          for (int64_t x = 0; x < out_w; ++x) accf[size_t(x)] = n > 0 ? row0[x] * float(w[0]) : 0.0f;
          for (int64_t k = 1; k < n; ++k) {
            const float* row = row0 + k * out_w;
            const float wk = float(w[k]);
            for (int64_t x = 0; x < out_w; ++x) accf[size_t(x)] += row[x] * wk;
          }
          std::copy(accf.begin(), accf.end(), dst);
          continue;
        }
        std::fill(acc.begin(), acc.end(), 0.0);
        const double* w = &W.weights[size_t(o * W.max_taps)];
        for (int64_t k = 0; k < W.count[size_t(o)]; ++k) {
          const float* row = plane + (W.first[size_t(o)] + k) * out_w;
          const double wk = w[k];
          for (int64_t x = 0; x < out_w; ++x) acc[size_t(x)] += wk * double(row[x]);
        }
        float* dst = out + (p * out_h + o) * out_w;
        for (int64_t x = 0; x < out_w; ++x) dst[x] = float(acc[size_t(x)]);
      }
    }
  } else if (src != out) {
    std::copy(src, src + planes * in_h * out_w, out);
  }
}

}  // namespace tabula::data
