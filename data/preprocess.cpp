#include "data/preprocess.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "data/pillow_resample.h"
#include "models/baselines.h"

namespace tabula::data {

namespace {
Image like(const Image& img, int c, int h, int w) {
  Image out(c, h, w);
  out.max_value = img.max_value;
  out.bits = img.bits;
  out.is_float = img.is_float;
  out.source = img.source;
  if (c == img.channels) out.channel_names = img.channel_names;
  return out;
}
std::string where(const Image& img) { return img.source.empty() ? std::string("image") : img.source; }
}  // namespace

Image resize_exact(const Image& img, int out_h, int out_w, Interp mode, bool antialias) {
  if (out_h <= 0 || out_w <= 0) throw std::invalid_argument(where(img) + ": resize to a non-positive size");
  Image out = like(img, img.channels, out_h, out_w);
  torch_interpolate(img.pixels.data(), img.channels, img.height, img.width, out.pixels.data(), out_h, out_w, mode,
                    antialias);
  return out;
}

Image resize_shorter(const Image& img, int size, Interp mode, bool antialias) {
  const int h = img.height, w = img.width;
  const int shorter = std::min(h, w), longer = std::max(h, w);
  // torchvision: int(requested_new_short * long / short), in Python float arithmetic.
  const int new_long = int(double(size) * double(longer) / double(shorter));
  const int oh = h <= w ? size : new_long, ow = h <= w ? new_long : size;
  if (oh == h && ow == w) return img;  // torchvision returns the input unchanged
  return resize_exact(img, oh, ow, mode, antialias);
}

Image center_crop(const Image& img, int ch, int cw) {
  const Image* src = &img;
  Image padded;
  if (ch > img.height || cw > img.width) {
    // torchvision pads [left, top, right, bottom] = [(cw-w)//2, (ch-h)//2, (cw-w+1)//2, (ch-h+1)//2], fill 0.
    int pl = cw > img.width ? (cw - img.width) / 2 : 0, pt = ch > img.height ? (ch - img.height) / 2 : 0;
    int pr = cw > img.width ? (cw - img.width + 1) / 2 : 0, pb = ch > img.height ? (ch - img.height + 1) / 2 : 0;
    padded = like(img, img.channels, img.height + pt + pb, img.width + pl + pr);
    for (int c = 0; c < img.channels; ++c)
      for (int y = 0; y < img.height; ++y)
        std::copy(img.plane(c) + size_t(y) * img.width, img.plane(c) + size_t(y + 1) * img.width,
                  &padded.at(c, y + pt, pl));
    if (padded.height == ch && padded.width == cw) return padded;
    src = &padded;
  }
  const int top = int(std::nearbyint((src->height - ch) / 2.0));  // round half to even, like Python's round
  const int left = int(std::nearbyint((src->width - cw) / 2.0));
  Image out = like(img, img.channels, ch, cw);
  for (int c = 0; c < img.channels; ++c)
    for (int y = 0; y < ch; ++y)
      std::copy(&src->at(c, top + y, left), &src->at(c, top + y, left) + cw, &out.at(c, y, 0));
  return out;
}

Image crop_reflect(const Image& img, int top, int left, int h, int w) {
  if (h <= 0 || w <= 0) throw std::invalid_argument(where(img) + ": crop size must be positive");
  auto reflect = [&](int i, int n) {
    // numpy "reflect": ... 2 1 | 0 1 2 ... n-1 | n-2 ...
    if (n == 1) return 0;
    const int period = 2 * (n - 1);
    i %= period;
    if (i < 0) i += period;
    return i < n ? i : period - i;
  };
  if (top < -(img.height - 1) || left < -(img.width - 1) || top + h > 2 * img.height - 1 || left + w > 2 * img.width - 1)
    throw std::invalid_argument(where(img) + ": crop at (" + std::to_string(top) + ", " + std::to_string(left) +
                                ") of " + std::to_string(h) + "x" + std::to_string(w) +
                                " needs more reflect padding than the image size");
  Image out = like(img, img.channels, h, w);
  for (int c = 0; c < img.channels; ++c)
    for (int y = 0; y < h; ++y) {
      const int sy = reflect(top + y, img.height);
      for (int x = 0; x < w; ++x) out.at(c, y, x) = img.at(c, sy, reflect(left + x, img.width));
    }
  return out;
}

Image normalize(const Image& img, const std::vector<float>& mean, const std::vector<float>& std) {
  return normalize(Image(img), mean, std);
}

Image normalize(Image&& img, const std::vector<float>& mean, const std::vector<float>& std) {
  auto pick = [&](const std::vector<float>& v, int c, const char* what) {
    if (v.size() == 1) return v[0];
    if (int(v.size()) != img.channels)
      throw std::invalid_argument(where(img) + ": Normalize " + what + " has " + std::to_string(v.size()) +
                                  " values for " + std::to_string(img.channels) + " channels");
    return v[size_t(c)];
  };
  Image out = std::move(img);
  for (int c = 0; c < out.channels; ++c) {
    const float m = pick(mean, c, "mean"), s = pick(std, c, "std");
    if (s == 0.0f) throw std::invalid_argument(where(out) + ": Normalize std is 0 for channel " + std::to_string(c));
    float* p = out.plane(c);
    // torchvision: tensor.sub_(mean).div_(std), in float.
    for (size_t i = 0; i < out.plane_size(); ++i) p[i] = (p[i] - m) / s;
  }
  return out;
}

Image self_standardize(const Image& img) {
  Image out = img;
  const size_t n = img.plane_size();
  for (int c = 0; c < img.channels; ++c) {
    float* p = out.plane(c);
    double mean = 0, var = 0;
    for (size_t i = 0; i < n; ++i) mean += p[i];
    mean /= static_cast<double>(n);
    for (size_t i = 0; i < n; ++i) var += (p[i] - mean) * (p[i] - mean);
    const double inv = 1.0 / std::sqrt(var / static_cast<double>(n) + 1e-5);
    for (size_t i = 0; i < n; ++i) p[i] = static_cast<float>((p[i] - mean) * inv);
  }
  return out;
}

Image scale_to_unit(const Image& img) { return scale_to_unit(Image(img)); }

Image scale_to_unit(Image&& img) {
  Image out = std::move(img);
  if (out.max_value == 1.0f) return out;
  // Division (not multiplication by 1/max) as torchvision's ToTensor: img.float().div(255).
  const float max_value = out.max_value;
  for (float& v : out.pixels) v /= max_value;
  out.max_value = 1.0f;
  return out;
}

namespace {

// Order statistics are exact whichever way they are selected; these two ways are O(n) without sorting or copying.
//
// Integer samples in [0, 65535] (a 16-bit field before any division): one pass counts each value, and the
// cumulative counts give every rank. Stops at the first sample that is not such an integer (returns false).
// Neighbouring pixels often fall in the same bin; counting alternate pixels into separate tables keeps the
// increments of one bin from waiting on each other.
constexpr int kTables = 4;
std::vector<uint32_t> sum_tables(const std::vector<uint32_t>& t) {
  std::vector<uint32_t> out(65536, 0);
  for (int k = 0; k < kTables; ++k)
    for (size_t b = 0; b < 65536; ++b) out[b] += t[size_t(k) * 65536 + b];
  return out;
}

bool order_statistics_u16(const float* v, size_t n, const std::vector<size_t>& ranks, std::vector<double>& out) {
  std::vector<uint32_t> tables(kTables * 65536, 0);
  for (size_t i = 0; i < n; ++i) {
    const float x = v[i];
    if (!(x >= 0.0f && x <= 65535.0f)) return false;  // NaN too
    const uint32_t u = uint32_t(x);
    if (float(u) != x) return false;
    ++tables[(i % kTables) * 65536 + u];
  }
  const std::vector<uint32_t> count = sum_tables(tables);
  out.assign(ranks.size(), 0.0);
  for (size_t k = 0; k < ranks.size(); ++k) {
    size_t below = 0;
    uint32_t u = 0;
    while (below + count[u] <= ranks[k]) below += count[u++];
    out[k] = double(u);
  }
  return true;
}

// Any float samples: radix selection on a key that orders floats as their values (the bit pattern, sign-flipped).
// Pass 1 counts the keys' top 16 bits, which locates each rank's bucket; pass 2 counts the low 16 bits of the keys
// in those buckets only, which locates the rank's exact key, i.e. its value.
uint32_t order_key(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  return b ^ (uint32_t(int32_t(b) >> 31) | 0x80000000u);  // negatives: all bits flipped; positives: sign bit set
}
float key_value(uint32_t k) {
  const uint32_t b = k & 0x80000000u ? k ^ 0x80000000u : ~k;
  float x;
  std::memcpy(&x, &b, 4);
  return x;
}
std::vector<double> order_statistics_radix(const float* v, size_t n, const std::vector<size_t>& ranks) {
  std::vector<uint32_t> tables(kTables * 65536, 0);
  bool nan = false;
  for (size_t i = 0; i < n; ++i) {
    nan |= v[i] != v[i];
    ++tables[(i % kTables) * 65536 + (order_key(v[i]) >> 16)];
  }
  const std::vector<uint32_t> high = sum_tables(tables);
  if (nan) return std::vector<double>(ranks.size(), std::nan(""));  // numpy: NaN in, NaN out
  // The bucket of each rank and the rank's position inside it.
  std::vector<int16_t> slot(65536, -1);
  std::vector<uint32_t> bucket_of_rank(ranks.size()), buckets;
  std::vector<size_t> within(ranks.size());
  for (size_t k = 0; k < ranks.size(); ++k) {
    size_t below = 0;
    uint32_t b = 0;
    while (below + high[b] <= ranks[k]) below += high[b++];
    bucket_of_rank[k] = b, within[k] = ranks[k] - below;
    if (slot[b] < 0) slot[b] = int16_t(buckets.size()), buckets.push_back(b);
  }
  std::vector<std::vector<uint32_t>> low(buckets.size(), std::vector<uint32_t>(65536, 0));
  for (size_t i = 0; i < n; ++i) {
    const uint32_t key = order_key(v[i]);
    const int s = slot[key >> 16];
    if (s >= 0) ++low[size_t(s)][key & 0xFFFFu];
  }
  std::vector<double> out(ranks.size());
  for (size_t k = 0; k < ranks.size(); ++k) {
    const std::vector<uint32_t>& c = low[size_t(slot[bucket_of_rank[k]])];
    size_t below = 0;
    uint32_t u = 0;
    while (below + c[u] <= within[k]) below += c[u++];
    out[k] = double(key_value((bucket_of_rank[k] << 16) | u));
  }
  return out;
}

std::vector<double> order_statistics(const float* v, size_t n, const std::vector<size_t>& ranks) {
  std::vector<double> out;
  if (order_statistics_u16(v, n, ranks, out)) return out;
  return order_statistics_radix(v, n, ranks);
}

// numpy.percentile(method="linear") at each q of qs.
std::vector<double> percentiles(const float* v, size_t n, const std::vector<double>& qs) {
  if (n == 0) throw std::invalid_argument("percentile of an empty channel");
  std::vector<size_t> ranks;
  std::vector<double> g;
  for (double q : qs) {
    // numpy: virtual index (n - 1) * q / 100, linear between the neighbouring order statistics.
    const double idx = double(n - 1) * q / 100.0;
    const size_t lo = size_t(std::floor(idx));
    ranks.push_back(lo);
    ranks.push_back(std::min(lo + 1, n - 1));
    g.push_back(idx - double(lo));
  }
  std::vector<double> os = order_statistics(v, n, ranks), out;
  for (size_t k = 0; k < qs.size(); ++k) {
    // numpy's _lerp: a + (b - a) * t, switching to b - (b - a) * (1 - t) for t >= 0.5; on float32 data
    // numpy computes it in float32 (gamma takes the array's dtype), so do we.
    const float a = float(os[2 * k]), b = float(os[2 * k + 1]), t = float(g[k]);
    const float diff = b - a;
    out.push_back(double(t >= 0.5f ? b - diff * (1.0f - t) : a + diff * t));
  }
  return out;
}

// (x - lo) / range in double, clipped to [0, 1] as std::clamp does (NaN stays NaN), rounded to float. Written so that
// it vectorises; the clones give the division 4 or 8 lanes (subtraction and division are exact IEEE operations in
// every instruction set, so each clone gives the same bits). no-trapping-math lets the compares vectorise (as
// masked blends: NaN keeps std::clamp's result); no floating-point exception is ever observed here.
#if defined(__clang__)  // clang assumes no trapping math by default, and has no optimize attribute
__attribute__((target_clones("avx512f", "avx2", "default")))
#else
__attribute__((target_clones("avx512f", "avx2", "default"), optimize("no-trapping-math")))
#endif
void scale_plane(float* p, size_t n, double lo, double range, bool clip) {
  if (clip)
    for (size_t i = 0; i < n; ++i) {
      double x = (double(p[i]) - lo) / range;
      x = x < 0.0 ? 0.0 : x;
      x = 1.0 < x ? 1.0 : x;
      p[i] = float(x);
    }
  else
    for (size_t i = 0; i < n; ++i) p[i] = float((double(p[i]) - lo) / range);
}

}  // namespace

double percentile_linear(std::vector<float> v, double q) { return percentiles(v.data(), v.size(), {q})[0]; }

Image percentile_scale(const Image& img, double lo_pct, double hi_pct, bool clip) {
  return percentile_scale(Image(img), lo_pct, hi_pct, clip);
}

Image percentile_scale(Image&& img, double lo_pct, double hi_pct, bool clip) {
  if (!(lo_pct >= 0 && hi_pct <= 100 && lo_pct < hi_pct))
    throw std::invalid_argument(where(img) + ": percentiles must satisfy 0 <= lo < hi <= 100");
  Image out = std::move(img);
  const size_t n = out.plane_size();
  for (int c = 0; c < out.channels; ++c) {
    float* p = out.plane(c);
    const std::vector<double> pct = percentiles(p, n, {lo_pct, hi_pct});
    const double lo = pct[0], hi = pct[1];
    const double range = hi - lo;
    // The same arithmetic in every case, with the loop-invariant choices taken outside the loops.
    if (!(range > 0)) std::fill(p, p + n, 0.0f);
    else scale_plane(p, n, lo, range, clip);
  }
  out.max_value = 1.0f;
  return out;
}

Image minmax_scale(const Image& img) { return minmax_scale(Image(img)); }

Image minmax_scale(Image&& img) {
  Image out = std::move(img);
  for (int c = 0; c < out.channels; ++c) {
    float* p = out.plane(c);
    auto [mn, mx] = std::minmax_element(p, p + out.plane_size());
    const double lo = *mn, range = double(*mx) - lo;
    for (size_t i = 0; i < out.plane_size(); ++i) p[i] = range > 0 ? float((double(p[i]) - lo) / range) : 0.0f;
  }
  out.max_value = 1.0f;
  return out;
}

void divide_illumination(Image& img, const std::vector<std::vector<float>>& illum, const std::vector<std::string>& names) {
  if (int(illum.size()) != img.channels)
    throw std::invalid_argument(where(img) + ": " + std::to_string(illum.size()) + " illumination functions for " +
                                std::to_string(img.channels) + " channels");
  for (int c = 0; c < img.channels; ++c) {
    const std::string nm = c < int(names.size()) ? names[size_t(c)] : std::to_string(c);
    if (illum[size_t(c)].size() != img.plane_size())
      throw std::invalid_argument(where(img) + ": illumination function for channel " + nm + " has " +
                                  std::to_string(illum[size_t(c)].size()) + " values, image plane has " +
                                  std::to_string(img.plane_size()));
    float* p = img.plane(c);
    for (size_t i = 0; i < img.plane_size(); ++i) {
      const float f = illum[size_t(c)][i];
      if (!(f > 0.0f))
        throw std::invalid_argument(where(img) + ": illumination function for channel " + nm +
                                    " is not positive at pixel " + std::to_string(i));
      p[i] /= f;
    }
  }
}

std::vector<Image> tile_field(const Image& img, int size, int stride) {
  if (size <= 0 || stride <= 0) throw std::invalid_argument(where(img) + ": tile size and stride must be positive");
  std::vector<Image> tiles;
  for (int y = 0; y + size <= img.height; y += stride)
    for (int x = 0; x + size <= img.width; x += stride) {
      Image t = like(img, img.channels, size, size);
      for (int c = 0; c < img.channels; ++c)
        for (int r = 0; r < size; ++r) std::copy(&img.at(c, y + r, x), &img.at(c, y + r, x) + size, &t.at(c, r, 0));
      tiles.push_back(std::move(t));
    }
  return tiles;
}

std::vector<CellCentre> detect_nuclei(const Image& img, int c, int min_area) {
  if (c < 0 || c >= img.channels) throw std::invalid_argument(where(img) + ": nuclei channel " + std::to_string(c) + " out of range");
  const float* p = img.plane(c);
  const size_t n = img.plane_size();
  // Non-finite pixels (NaN in a float TIFF) are background and stay out of the histogram.
  std::vector<float> finite;
  finite.reserve(n);
  for (size_t i = 0; i < n; ++i)
    if (std::isfinite(p[i])) finite.push_back(p[i]);
  if (finite.empty()) return {};
  // skimage.filters.threshold_otsu (the one Otsu in tabula, shared with the `nuclei` baseline); foreground is
  // `image > threshold`, as skimage's examples and the baseline use it. A constant image has no foreground.
  const float thr = baselines::otsu_threshold(finite.data(), finite.size());
  std::vector<int> label(n, 0);
  std::vector<CellCentre> out;
  std::vector<size_t> stack;
  int next = 0;
  for (size_t s = 0; s < n; ++s) {
    if (label[s] || !(p[s] > thr) || !std::isfinite(p[s])) continue;
    ++next;
    double sy = 0, sx = 0;
    int area = 0;
    stack.assign(1, s);
    label[s] = next;
    while (!stack.empty()) {
      size_t i = stack.back();
      stack.pop_back();
      const int y = int(i / size_t(img.width)), x = int(i % size_t(img.width));
      sy += y, sx += x, ++area;
      for (int dy = -1; dy <= 1; ++dy)
        for (int dx = -1; dx <= 1; ++dx) {
          const int yy = y + dy, xx = x + dx;
          if (yy < 0 || xx < 0 || yy >= img.height || xx >= img.width) continue;
          const size_t j = size_t(yy) * img.width + xx;
          if (!label[j] && p[j] > thr && std::isfinite(p[j])) label[j] = next, stack.push_back(j);
        }
    }
    if (area >= min_area) out.push_back({sy / area, sx / area, area});
  }
  return out;
}

std::vector<Image> cell_crops(const Image& img, const std::vector<CellCentre>& centres, int size) {
  std::vector<Image> crops;
  crops.reserve(centres.size());
  for (const CellCentre& cc : centres)
    crops.push_back(crop_reflect(img, int(std::lround(cc.y)) - size / 2, int(std::lround(cc.x)) - size / 2, size, size));
  return crops;
}

std::string ChannelStrategy::to_string() const {
  switch (mode) {
    case ChannelMode::per_channel: return "per-channel";
    case ChannelMode::mean: return "mean";
    case ChannelMode::all: return "all";
    case ChannelMode::rgb: break;
  }
  return "rgb:" + std::to_string(rgb[0]) + "," + std::to_string(rgb[1]) + "," + std::to_string(rgb[2]);
}

ChannelStrategy parse_channel_strategy(const std::string& s) {
  ChannelStrategy st;
  if (s == "per-channel" || s == "per_channel") st.mode = ChannelMode::per_channel;
  else if (s == "mean") st.mode = ChannelMode::mean;
  else if (s == "all") st.mode = ChannelMode::all;
  else if (s == "rgb") st.mode = ChannelMode::rgb;
  else if (s.rfind("rgb:", 0) == 0) {
    st.mode = ChannelMode::rgb;
    int a, b, c;
    char tail;
    if (std::sscanf(s.c_str() + 4, "%d,%d,%d%c", &a, &b, &c, &tail) != 3 || a < 0 || b < 0 || c < 0)
      throw std::invalid_argument("channel strategy '" + s + "': expected rgb:i,j,k with three channel indices");
    st.rgb = {a, b, c};
  } else {
    throw std::invalid_argument("unknown channel strategy '" + s + "' (per-channel, rgb:i,j,k, mean, all)");
  }
  return st;
}

std::vector<Image> apply_channel_strategy(const Image& img, const ChannelStrategy& s) {
  std::vector<Image> out;
  const size_t hw = img.plane_size();
  switch (s.mode) {
    case ChannelMode::all:
      out.push_back(img);
      break;
    case ChannelMode::per_channel:
      for (int c = 0; c < img.channels; ++c) {
        Image r = like(img, 3, img.height, img.width);
        for (int k = 0; k < 3; ++k) std::copy(img.plane(c), img.plane(c) + hw, r.plane(k));
        out.push_back(std::move(r));
      }
      break;
    case ChannelMode::rgb: {
      Image r = like(img, 3, img.height, img.width);
      for (int k = 0; k < 3; ++k) {
        if (s.rgb[size_t(k)] >= img.channels)
          throw std::invalid_argument(where(img) + ": channel strategy " + s.to_string() + " names channel " +
                                      std::to_string(s.rgb[size_t(k)]) + " but the image has " +
                                      std::to_string(img.channels) + " (without --channels the strategy comes "
                                      "from the first image: all images need the same channels)");
        std::copy(img.plane(s.rgb[size_t(k)]), img.plane(s.rgb[size_t(k)]) + hw, r.plane(k));
      }
      out.push_back(std::move(r));
      break;
    }
    case ChannelMode::mean: {
      Image r = like(img, 3, img.height, img.width);
      for (size_t i = 0; i < hw; ++i) {
        double acc = 0;
        for (int c = 0; c < img.channels; ++c) acc += img.plane(c)[i];
        r.plane(0)[i] = float(acc / img.channels);
      }
      std::copy(r.plane(0), r.plane(0) + hw, r.plane(1));
      std::copy(r.plane(0), r.plane(0) + hw, r.plane(2));
      out.push_back(std::move(r));
      break;
    }
  }
  return out;
}

std::string Transform::describe() const {
  std::ostringstream s;
  s << "intensity=" << intensity;
  if (intensity == "percentile") s << "(" << pct_lo << "," << pct_hi << ")";
  if (resize_h > 0 && resize_w > 0) s << " resize=" << resize_h << "x" << resize_w;
  else if (resize > 0) s << " resize=" << resize;
  if (resize > 0 || (resize_h > 0 && resize_w > 0))
    s << " interp=" << interp_name(interp) << " antialias=" << (antialias ? 1 : 0);
  if (crop > 0) s << " crop=" << crop;
  if (do_normalize) {
    s << " mean=";
    for (size_t i = 0; i < mean.size(); ++i) s << (i ? "," : "") << mean[i];
    s << " std=";
    for (size_t i = 0; i < std.size(); ++i) s << (i ? "," : "") << std[i];
  }
  if (resize > 0 || (resize_h > 0 && resize_w > 0)) s << " resize_impl=" << resize_impl;
  return s.str();
}

Transform transform_torchvision(int resize, int crop) {
  Transform t;
  t.resize = resize;
  t.crop = crop;
  t.interp = Interp::bilinear;
  return t;
}

Transform transform_dinov2(int crop) {
  Transform t;
  t.resize = 256;
  t.crop = crop;
  t.interp = Interp::bicubic;
  return t;
}

Transform transform_timm(int img_size, double crop_pct, Interp interp, std::vector<float> mean, std::vector<float> std) {
  Transform t;
  t.resize = int(std::floor(img_size / crop_pct));  // timm: math.floor(img_size / crop_pct)
  t.crop = img_size;
  t.interp = interp;
  t.mean = std::move(mean);
  t.std = std::move(std);
  return t;
}

void check_8bit_resize(const Image& img, const Transform& t) {
  if (img.is_float || img.bits != 8 || img.max_value != 255.0f)
    throw std::invalid_argument(where(img) + ": --resize-impl " + t.resize_impl + " resamples 8-bit images; this image "
                                "has " + std::to_string(img.bits) + "-bit" + (img.is_float ? " float" : "") +
                                " samples (use --resize-impl tensor; without it the first image's type chooses, and "
                                "all images need the same)");
  if (t.intensity != "unit" && t.intensity != "none")
    throw std::invalid_argument("--resize-impl " + t.resize_impl + ": intensity '" + t.intensity + "' rescales values "
                                "before resizing, which an 8-bit image cannot hold; use --intensity unit or "
                                "--resize-impl tensor");
  if (!t.antialias)
    throw std::invalid_argument("--resize-impl " + t.resize_impl + ": the 8-bit paths antialias (torchvision ignores "
                                "antialias=False on PIL images); drop --no-antialias or use --resize-impl tensor");
  if (t.resize_impl == "uint8" && t.interp != Interp::bilinear && t.interp != Interp::bicubic)
    throw std::invalid_argument(std::string("--resize-impl uint8: torch resizes uint8 tensors bilinear or bicubic, ") +
                                "not " + interp_name(t.interp));
}

namespace {

// Resize -> CenterCrop on the 8-bit image, as torchvision runs them on a PIL image ("pil") or on a uint8 tensor
// ("uint8", torchvision.transforms.v2 after ToImage); ToTensor / ToDtype(scale=True) (x / 255) is the intensity step
// after them.
Image pil_geometry(const Image& img, const Transform& t) {
  check_8bit_resize(img, t);
  Image x = img;
  int oh = 0, ow = 0;
  if (t.resize_h > 0 && t.resize_w > 0) {
    oh = t.resize_h, ow = t.resize_w;
  } else if (t.resize > 0) {
    const int shorter = std::min(img.height, img.width), longer = std::max(img.height, img.width);
    const int new_long = int(double(t.resize) * double(longer) / double(shorter));
    oh = img.height <= img.width ? t.resize : new_long, ow = img.height <= img.width ? new_long : t.resize;
  }
  if (oh > 0 && (oh != img.height || ow != img.width)) {
    std::vector<uint8_t> in(img.pixels.size()), out(size_t(img.channels) * size_t(oh) * size_t(ow));
    for (size_t i = 0; i < in.size(); ++i) {
      const float v = img.pixels[i];
      if (!(v >= 0.0f && v <= 255.0f) || v != std::floor(v))
        throw std::invalid_argument(where(img) + ": sample " + std::to_string(i) + " (" + std::to_string(v) +
                                    ") is not an 8-bit value; --resize-impl pil needs the decoded 8-bit pixels");
      in[i] = uint8_t(v);
    }
    const auto resize = t.resize_impl == "uint8" ? torch_resize_u8 : pil_resize_u8;
    resize(in.data(), img.channels, img.height, img.width, out.data(), oh, ow, pil_filter(t.interp));
    x = like(img, img.channels, oh, ow);
    for (size_t i = 0; i < out.size(); ++i) x.pixels[i] = float(out[i]);
  }
  if (t.crop > 0 && (x.height < t.crop || x.width < t.crop))
    throw std::invalid_argument(where(img) + ": " + std::to_string(x.width) + "x" + std::to_string(x.height) +
                                (oh > 0 ? " after resizing" : "") + " is smaller than the " + std::to_string(t.crop) +
                                "x" + std::to_string(t.crop) +
                                " crop; resize it first (--resize) or choose a smaller --crop");
  if (t.crop > 0) x = center_crop(x, t.crop, t.crop);
  if (t.intensity != "unit") return x;
  if (t.resize_impl == "pil") return scale_to_unit(x);  // ToTensor: x.float().div(255)
  // transforms.v2.ToDtype(float32, scale=True): x.to(float32).mul_(1.0 / 255), the factor rounded to float first.
  const float inv = float(1.0 / 255.0);
  for (float& v : x.pixels) v *= inv;
  x.max_value = 1.0f;
  return x;
}

}  // namespace

PilFilter pil_filter(Interp mode) {
  switch (mode) {
    case Interp::bilinear: return PilFilter::bilinear;
    case Interp::bicubic: return PilFilter::bicubic;
    case Interp::lanczos: return PilFilter::lanczos;
    case Interp::box: return PilFilter::box;
    case Interp::hamming: return PilFilter::hamming;
  }
  throw std::invalid_argument("unknown interpolation");
}

Image apply_geometry(const Image& img, const Transform& t) {
  if (t.resize_impl == "pil" || t.resize_impl == "uint8") return pil_geometry(img, t);
  return apply_geometry(Image(img), t);
}

Image apply_geometry(Image&& img, const Transform& t) {
  if (t.resize_impl == "pil" || t.resize_impl == "uint8") return pil_geometry(img, t);
  if (t.resize_impl != "tensor")
    throw std::invalid_argument("resize implementation '" + t.resize_impl + "': expected pil, uint8 or tensor");
  const std::string source = where(img);
  Image x;
  if (t.intensity == "unit" || t.intensity == "self-standardize") x = scale_to_unit(std::move(img));
  else if (t.intensity == "percentile") x = percentile_scale(std::move(img), t.pct_lo, t.pct_hi);
  else if (t.intensity == "minmax") x = minmax_scale(std::move(img));
  else if (t.intensity == "none") x = std::move(img);
  else
    throw std::invalid_argument("unknown intensity scaling '" + t.intensity +
                                "' (unit, percentile, minmax, none, self-standardize)");
  if (t.resize_h > 0 && t.resize_w > 0) x = resize_exact(x, t.resize_h, t.resize_w, t.interp, t.antialias);
  else if (t.resize > 0) x = resize_shorter(x, t.resize, t.interp, t.antialias);
  // torchvision's CenterCrop zero-pads an image smaller than the crop; here that is an error, since a padded
  // field is mostly zeros and almost surely a missing --resize (center_crop itself pads, as torchvision).
  if (t.crop > 0 && (x.height < t.crop || x.width < t.crop))
    throw std::invalid_argument(source + ": " + std::to_string(x.width) + "x" + std::to_string(x.height) +
                                (t.resize > 0 || t.resize_h > 0 ? " after resizing" : "") + " is smaller than the " +
                                std::to_string(t.crop) + "x" + std::to_string(t.crop) +
                                " crop; resize it first (--resize) or choose a smaller --crop");
  if (t.crop > 0) x = center_crop(x, t.crop, t.crop);
  return x;
}

namespace {
std::vector<Image> normalize_inputs(std::vector<Image> inputs, const Transform& t) {
  if (t.intensity == "self-standardize")
    for (Image& in : inputs) in = self_standardize(in);
  else if (t.do_normalize)
    for (Image& in : inputs) in = normalize(std::move(in), t.mean, t.std);
  return inputs;
}
}  // namespace

std::vector<Image> preprocess_image(const Image& img, const Transform& t, const ChannelStrategy& s) {
  return normalize_inputs(apply_channel_strategy(apply_geometry(img, t), s), t);
}

std::vector<Image> preprocess_image(Image&& img, const Transform& t, const ChannelStrategy& s) {
  return normalize_inputs(apply_channel_strategy(apply_geometry(std::move(img), t), s), t);
}

}  // namespace tabula::data
