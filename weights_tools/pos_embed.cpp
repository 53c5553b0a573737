#include "weights_tools/pos_embed.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

namespace tabula::weights {

namespace {

// torch's cubic_convolution1/2 (aten/src/ATen/native/UpSample.h) in float with Keys' a = -0.5 (antialias path):
//   ((A + 2) * x - (A + 3)) * x * x + 1   and   ((A * x - 5 * A) * x + 8 * A) * x - 4 * A.
// torch's CPU kernels are compiled per capability (AVX2/AVX512 with -mfma) and GCC contracts these
// multiply-adds into FMAs; the weights only match torch bit for bit with the same fusions, written out here.
// (Checked against torch 2.x with CPU capability AVX512; a DEFAULT-capability torch build would not fuse.)
float cubic_convolution1(float x, float A) { return std::fma(std::fma(A + 2, x, -(A + 3)) * x, x, 1.0f); }
float cubic_convolution2(float x, float A) { return std::fma(std::fma(std::fma(A, x, -(5 * A)), x, 8 * A), x, -(4 * A)); }

float aa_cubic_filter(float x) {
  constexpr float a = -0.5f;
  x = std::abs(x);
  if (x < 1.0f) return cubic_convolution1(x, a);
  if (x < 2.0f) return cubic_convolution2(x, a);
  return 0.0f;
}

}  // namespace

AaCubicWeights aa_cubic_weights(int64_t in, int64_t out) {
  // The statements keep torch's mix of float and double arithmetic: scale, support, center and the weights are
  // float (scalar_t), while `i + 0.5`, `+ 0.5` and `1.0 / scale` are double expressions rounded on assignment.
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  const float support = (scale >= 1.0) ? static_cast<float>((4 * 0.5) * scale) : static_cast<float>(4 * 0.5);
  AaCubicWeights r;
  r.max_size = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  r.xmin.resize(static_cast<size_t>(out));
  r.xsize.resize(static_cast<size_t>(out));
  r.w.assign(static_cast<size_t>(out * r.max_size), 0.0f);
  for (int64_t i = 0; i < out; ++i) {
    const float center = static_cast<float>(scale * (static_cast<double>(i) + 0.5));
    const float invscale = (scale >= 1.0) ? static_cast<float>(1.0 / scale) : 1.0f;
    int64_t xmin = std::max(static_cast<int64_t>(static_cast<double>(center - support) + 0.5), int64_t{0});
    int64_t xsize = std::min(static_cast<int64_t>(static_cast<double>(center + support) + 0.5), in) - xmin;
    xsize = std::clamp(xsize, int64_t{0}, r.max_size);
    float* w = r.w.data() + i * r.max_size;
    float total = 0.0f;
    for (int64_t j = 0; j < xsize; ++j) {
      const float d = static_cast<float>(j + xmin) - center;  // int64 - float: float
      w[j] = aa_cubic_filter(static_cast<float>((static_cast<double>(d) + 0.5) * static_cast<double>(invscale)));
      total += w[j];
    }
    if (total != 0.0f)
      for (int64_t j = 0; j < xsize; ++j) w[j] /= total;
    r.xmin[static_cast<size_t>(i)] = xmin;
    r.xsize[static_cast<size_t>(i)] = xsize;
  }
  return r;
}

std::vector<float> resize_bicubic_aa(const std::vector<float>& x, int64_t h, int64_t w, int64_t c, int64_t new_h,
                                     int64_t new_w) {
  // Width first ("horizontal"), then height, each skipped when that size does not change (torch's order).
  // Each output is t0 * w0 followed by += tj * wj, in float, as the source reads. torch's compiled kernel
  // fuses some of these multiply-adds (which ones depends on its vectorisation), so sums can differ from
  // torch in the last bits (measured: <= 4 ULP; upsampling matches exactly when every step is fused,
  // downsampling is closer unfused). The weights themselves are torch's bit for bit.
  std::vector<float> cur = x;
  if (new_w != w) {
    AaCubicWeights k = aa_cubic_weights(w, new_w);
    std::vector<float> next(static_cast<size_t>(h * new_w * c));
    for (int64_t y = 0; y < h; ++y)
      for (int64_t ox = 0; ox < new_w; ++ox) {
        const float* wt = k.w.data() + ox * k.max_size;
        const int64_t x0 = k.xmin[static_cast<size_t>(ox)], n = k.xsize[static_cast<size_t>(ox)];
        for (int64_t ch = 0; ch < c; ++ch) {
          float acc = cur[static_cast<size_t>((y * w + x0) * c + ch)] * wt[0];
          for (int64_t j = 1; j < n; ++j) acc += cur[static_cast<size_t>((y * w + x0 + j) * c + ch)] * wt[j];
          next[static_cast<size_t>((y * new_w + ox) * c + ch)] = acc;
        }
      }
    cur = std::move(next);
    w = new_w;
  }
  if (new_h != h) {
    AaCubicWeights k = aa_cubic_weights(h, new_h);
    std::vector<float> next(static_cast<size_t>(new_h * w * c));
    for (int64_t oy = 0; oy < new_h; ++oy) {
      const float* wt = k.w.data() + oy * k.max_size;
      const int64_t y0 = k.xmin[static_cast<size_t>(oy)], n = k.xsize[static_cast<size_t>(oy)];
      for (int64_t xx = 0; xx < w; ++xx)
        for (int64_t ch = 0; ch < c; ++ch) {
          float acc = cur[static_cast<size_t>((y0 * w + xx) * c + ch)] * wt[0];
          for (int64_t j = 1; j < n; ++j) acc += cur[static_cast<size_t>(((y0 + j) * w + xx) * c + ch)] * wt[j];
          next[static_cast<size_t>((oy * w + xx) * c + ch)] = acc;
        }
    }
    cur = std::move(next);
  }
  return cur;
}

WeightTensor resample_abs_pos_embed(const WeightTensor& posemb, int64_t new_h, int64_t new_w, int64_t num_prefix_tokens,
                                    int64_t old_h, int64_t old_w) {
  if (posemb.shape.size() != 3 || posemb.shape[0] != 1)
    throw std::runtime_error(posemb.name + ": pos_embed must be [1, tokens, dim], got " + posemb.shape_string());
  if (posemb.dtype != DType::f32 && posemb.dtype != DType::f16 && posemb.dtype != DType::bf16)
    throw std::runtime_error(posemb.name + ": pos_embed of dtype " + std::string(dtype_name(posemb.dtype)));
  const int64_t tokens = posemb.shape[1], dim = posemb.shape[2];
  if (new_h <= 0 || new_w <= 0 || num_prefix_tokens < 0 || num_prefix_tokens > tokens)
    throw std::runtime_error(posemb.name + ": invalid resample request");
  if (new_h * new_w + num_prefix_tokens == tokens) {
    if (old_h && old_h == new_h && old_w == new_w) return posemb;
    if (!old_h && new_h == new_w) return posemb;
  }
  if (!old_h) {
    old_h = old_w = static_cast<int64_t>(std::sqrt(static_cast<double>(tokens - num_prefix_tokens)));  // timm: int(math.sqrt(...))
  }
  if (old_h * old_w + num_prefix_tokens != tokens)
    throw std::runtime_error(posemb.name + ": " + std::to_string(tokens - num_prefix_tokens) + " grid tokens are not a " +
                             std::to_string(old_h) + "x" + std::to_string(old_w) + " grid");
  std::vector<float> all = posemb.to_f32();
  std::vector<float> grid(all.begin() + num_prefix_tokens * dim, all.end());
  std::vector<float> resized = resize_bicubic_aa(grid, old_h, old_w, dim, new_h, new_w);
  // prefix tokens stay in the original dtype (torch.cat of the untouched prefix and the cast grid)
  std::vector<float> out(all.begin(), all.begin() + num_prefix_tokens * dim);
  WeightTensor grid_t = make_f32_tensor(posemb.name, {1, new_h * new_w, dim}, resized).to_dtype(posemb.dtype);
  std::vector<uint8_t> bytes(posemb.data, posemb.data + num_prefix_tokens * dim * static_cast<int64_t>(dtype_size(posemb.dtype)));
  bytes.insert(bytes.end(), grid_t.data, grid_t.data + grid_t.nbytes());
  return make_owned_tensor(posemb.name, posemb.dtype, {1, num_prefix_tokens + new_h * new_w, dim}, std::move(bytes));
}

}  // namespace tabula::weights
