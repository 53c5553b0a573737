#include "engine/pos_encoding.h"

#include <cmath>
#include <string>


namespace tabula {

namespace {
constexpr float kTwoPi = static_cast<float>(2.0 * M_PI);  // torch: the Python scalar 2 * math.pi applied in f32
}

std::vector<float> rope_periods(int64_t head_dim, std::optional<double> base, std::optional<double> min_period,
                                std::optional<double> max_period) {
  const bool both = min_period && max_period;
  if (head_dim <= 0 || head_dim % 4 != 0)
    throw std::invalid_argument("rope_periods: head_dim must be a positive multiple of 4, got " +
                                std::to_string(head_dim));
  if (base.has_value() == both)
    throw std::invalid_argument("rope_periods: give either base or both min_period and max_period");
  const int64_t n = head_dim / 4;
  std::vector<float> p(static_cast<size_t>(n));
  if (base) {
    // base ** (2 * arange(n) / (head_dim // 2)): f32 arange, f32 multiply and divide, then pow(scalar, tensor).
    const float b = static_cast<float>(*base), half = static_cast<float>(head_dim / 2);
    for (int64_t k = 0; k < n; ++k) p[k] = std::pow(b, (2.0f * static_cast<float>(k)) / half);
    return p;
  }
  // base = max / min (Python floats); exponents = linspace(0, 1, n) in f32; periods = base ** e / base * max.
  const float b = static_cast<float>(*max_period / *min_period), mx = static_cast<float>(*max_period);
  for (int64_t k = 0; k < n; ++k) {
    // torch.linspace(0, 1, n) in f32: step = 1 / (n - 1), the first half from the start, the rest from the end.
    const float step = n > 1 ? 1.0f / static_cast<float>(n - 1) : 0.0f;
    const float e = k < n / 2 ? static_cast<float>(k) * step : 1.0f - step * static_cast<float>(n - 1 - k);
    p[k] = (std::pow(b, e) / b) * mx;
  }
  return p;
}

std::pair<Tensor, Tensor> rope_sin_cos(const std::vector<float>& periods, int64_t h, int64_t w, RopeNormalize norm) {
  if (h <= 0 || w <= 0 || periods.empty())
    throw std::invalid_argument("rope_sin_cos: empty grid " + std::to_string(h) + "x" + std::to_string(w));
  float nh = static_cast<float>(h), nw = static_cast<float>(w);
  if (norm == RopeNormalize::max) nh = nw = static_cast<float>(std::max(h, w));
  if (norm == RopeNormalize::min) nh = nw = static_cast<float>(std::min(h, w));
  const int64_t q = static_cast<int64_t>(periods.size()), hd = 4 * q;
  Tensor sin = Tensor::empty({h * w, hd}), cos = Tensor::empty({h * w, hd});
  float* sp = sin.data<float>();
  float* cp = cos.data<float>();
  for (int64_t i = 0; i < h; ++i)
    for (int64_t j = 0; j < w; ++j) {
      // coords = 2 * (arange(0.5, n) / n) - 1, each step rounded to f32
      const float c[2] = {2.0f * ((static_cast<float>(i) + 0.5f) / nh) - 1.0f,
                          2.0f * ((static_cast<float>(j) + 0.5f) / nw) - 1.0f};
      float* s = sp + (i * w + j) * hd;
      float* co = cp + (i * w + j) * hd;
      // angles[:, a, k] = 2 pi * coords[a] / periods[k], flattened (a, k), tiled twice along the head dim
      for (int a = 0; a < 2; ++a)
        for (int64_t k = 0; k < q; ++k) {
          const float ang = (kTwoPi * c[a]) / periods[k];
          const int64_t at = a * q + k;
          s[at] = s[at + 2 * q] = std::sin(ang);
          co[at] = co[at + 2 * q] = std::cos(ang);
        }
    }
  return {sin, cos};
}

Tensor sincos_2d_pos_embed(int64_t dim, int64_t length, double scale, bool class_token, int64_t num_modality) {
  if (dim <= 0 || dim % 4 != 0 || length <= 0 || num_modality <= 0)
    throw std::invalid_argument("sincos_2d_pos_embed: dim must be a positive multiple of 4 and length, "
                                "num_modality positive; got dim " + std::to_string(dim) + ", length " +
                                std::to_string(length) + ", num_modality " + std::to_string(num_modality));
  const int64_t q = dim / 4, grid = length * length, rows = (class_token ? 1 : 0) + num_modality * grid;
  // positional_weights = 1 / scale ** (arange(q) / q), in f32
  std::vector<float> wk(static_cast<size_t>(q));
  const float s = static_cast<float>(scale);
  for (int64_t k = 0; k < q; ++k) wk[k] = 1.0f / std::pow(s, static_cast<float>(k) / static_cast<float>(q));
  Tensor out = Tensor::zeros({1, rows, dim});
  float* o = out.data<float>() + (class_token ? dim : 0);
  for (int64_t i = 0; i < length; ++i)
    for (int64_t j = 0; j < length; ++j) {
      float* r = o + (i * length + j) * dim;
      for (int64_t k = 0; k < q; ++k) {
        const float hw = static_cast<float>(i) * wk[k], ww = static_cast<float>(j) * wk[k];
        r[k] = std::sin(hw);
        r[q + k] = std::cos(hw);
        r[2 * q + k] = std::sin(ww);
        r[3 * q + k] = std::cos(ww);
      }
    }
  for (int64_t m = 1; m < num_modality; ++m)  // .repeat(1, num_modality, 1)
    std::copy(o, o + grid * dim, o + m * grid * dim);
  return out;
}

}  // namespace tabula
