#include "eval/data/interpolate.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace tabula::data {

namespace {

double aa_filter(Interp mode, double x) {
  x = std::fabs(x);
  if (mode == Interp::bilinear) return x < 1.0 ? 1.0 - x : 0.0;
  constexpr double a = -0.5;  // ATen's aa bicubic (PIL's) coefficient
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
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
    const double interp_size = mode == Interp::bilinear ? 2.0 : 4.0;
    const double support = scale >= 1.0 ? interp_size * 0.5 * scale : interp_size * 0.5;
    const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
    W.max_taps = int64_t(std::ceil(support)) * 2 + 1;
    W.weights.assign(size_t(out_size * W.max_taps), 0.0);
    for (int64_t i = 0; i < out_size; ++i) {
      const double center = scale * (double(i) + 0.5);
      const int64_t xmin = std::max<int64_t>(int64_t(center - support + 0.5), 0);
      const int64_t xsize = std::min<int64_t>(int64_t(center + support + 0.5), in_size) - xmin;
      double* w = &W.weights[size_t(i * W.max_taps)];
      double total = 0.0;
      for (int64_t j = 0; j < xsize; ++j) {
        w[j] = aa_filter(mode, (double(j + xmin) - center + 0.5) * invscale);
        total += w[j];
      }
      if (total != 0.0)
        for (int64_t j = 0; j < xsize; ++j) w[j] /= total;
      W.first[size_t(i)] = xmin;
      W.count[size_t(i)] = xsize;
    }
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

void torch_interpolate(const float* in, int64_t planes, int64_t in_h, int64_t in_w, float* out, int64_t out_h,
                       int64_t out_w, Interp mode, bool antialias) {
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
        double acc = 0.0;
        for (int64_t k = 0; k < W.count[size_t(o)]; ++k) acc += w[k] * double(s[k]);
        dst[o] = float(acc);
      }
    }
    src = tmp.data();
  }
  if (out_h != in_h) {
    InterpWeights W = torch_interp_weights(in_h, out_h, mode, antialias);
    std::vector<double> acc(static_cast<size_t>(out_w));
    for (int64_t p = 0; p < planes; ++p) {
      const float* plane = src + p * in_h * out_w;
      for (int64_t o = 0; o < out_h; ++o) {
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
