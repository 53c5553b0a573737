#include "data/preprocess.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <stdexcept>

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
  auto pick = [&](const std::vector<float>& v, int c, const char* what) {
    if (v.size() == 1) return v[0];
    if (int(v.size()) != img.channels)
      throw std::invalid_argument(where(img) + ": Normalize " + what + " has " + std::to_string(v.size()) +
                                  " values for " + std::to_string(img.channels) + " channels");
    return v[size_t(c)];
  };
  Image out = img;
  for (int c = 0; c < img.channels; ++c) {
    const float m = pick(mean, c, "mean"), s = pick(std, c, "std");
    if (s == 0.0f) throw std::invalid_argument(where(img) + ": Normalize std is 0 for channel " + std::to_string(c));
    float* p = out.plane(c);
    // torchvision: tensor.sub_(mean).div_(std), in float.
    for (size_t i = 0; i < img.plane_size(); ++i) p[i] = (p[i] - m) / s;
  }
  return out;
}

Image scale_to_unit(const Image& img) {
  Image out = img;
  if (img.max_value == 1.0f) return out;
  // Division (not multiplication by 1/max) as torchvision's ToTensor: img.float().div(255).
  for (float& v : out.pixels) v /= img.max_value;
  out.max_value = 1.0f;
  return out;
}

namespace {

// Exact order statistics (0-based ranks) of v without sorting or copying it: a 4096-bin histogram between
// min and max locates each rank's bin (the bin index is a monotone function of the value, so bins are
// ordered), then only that bin's elements are selected. O(n), about 3x faster than nth_element on a
// megapixel plane.
std::vector<double> order_statistics(const float* v, size_t n, const std::vector<size_t>& ranks) {
  // One branch-free pass (vectorises): min, max, and whether any NaN is present (x != x).
  float lo = v[0], hi = v[0];
  bool nan = false;
  for (size_t i = 0; i < n; ++i) {
    const float x = v[i];
    nan |= x != x;
    lo = x < lo ? x : lo;
    hi = x > hi ? x : hi;
  }
  if (nan) return std::vector<double>(ranks.size(), std::nan(""));  // numpy: NaN in, NaN out
  std::vector<double> out(ranks.size(), double(lo));
  if (!(hi > lo)) return out;
  if (std::isinf(lo) || std::isinf(hi)) {  // no finite bin width: plain selection on a copy
    std::vector<float> c(v, v + n);
    for (size_t k = 0; k < ranks.size(); ++k) {
      std::nth_element(c.begin(), c.begin() + long(ranks[k]), c.end());
      out[k] = c[ranks[k]];
    }
    return out;
  }
  constexpr int kBins = 4096;
  const float scale = float(kBins) / (hi - lo);
  auto bin_of = [&](float x) { return std::min(kBins - 1, int((x - lo) * scale)); };
  std::vector<size_t> count(kBins + 1, 0);
  for (size_t i = 0; i < n; ++i) ++count[size_t(bin_of(v[i])) + 1];
  for (int b = 0; b < kBins; ++b) count[size_t(b) + 1] += count[size_t(b)];  // count[b] = elements below bin b
  std::vector<int> slot(kBins, -1), bin_of_rank(ranks.size());
  std::vector<std::vector<float>> members;
  for (size_t k = 0; k < ranks.size(); ++k) {
    const int b = int(std::upper_bound(count.begin(), count.end(), ranks[k]) - count.begin()) - 1;
    bin_of_rank[k] = b;
    if (slot[size_t(b)] < 0) slot[size_t(b)] = int(members.size()), members.emplace_back();
  }
  for (size_t i = 0; i < n; ++i) {
    const int s = slot[size_t(bin_of(v[i]))];
    if (s >= 0) members[size_t(s)].push_back(v[i]);
  }
  for (size_t k = 0; k < ranks.size(); ++k) {
    std::vector<float>& m = members[size_t(slot[size_t(bin_of_rank[k])])];
    const size_t within = ranks[k] - count[size_t(bin_of_rank[k])];
    std::nth_element(m.begin(), m.begin() + long(within), m.end());
    out[k] = m[within];
  }
  return out;
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

}  // namespace

double percentile_linear(std::vector<float> v, double q) { return percentiles(v.data(), v.size(), {q})[0]; }

Image percentile_scale(const Image& img, double lo_pct, double hi_pct, bool clip) {
  if (!(lo_pct >= 0 && hi_pct <= 100 && lo_pct < hi_pct))
    throw std::invalid_argument(where(img) + ": percentiles must satisfy 0 <= lo < hi <= 100");
  Image out = img;
  for (int c = 0; c < img.channels; ++c) {
    const std::vector<double> pct = percentiles(img.plane(c), img.plane_size(), {lo_pct, hi_pct});
    const double lo = pct[0], hi = pct[1];
    const double range = hi - lo;
    float* p = out.plane(c);
    for (size_t i = 0; i < img.plane_size(); ++i) {
      double x = range > 0 ? (double(p[i]) - lo) / range : 0.0;
      if (clip) x = std::clamp(x, 0.0, 1.0);
      p[i] = float(x);
    }
  }
  out.max_value = 1.0f;
  return out;
}

Image minmax_scale(const Image& img) {
  Image out = img;
  for (int c = 0; c < img.channels; ++c) {
    float* p = out.plane(c);
    auto [mn, mx] = std::minmax_element(p, p + img.plane_size());
    const double lo = *mn, range = double(*mx) - lo;
    for (size_t i = 0; i < img.plane_size(); ++i) p[i] = range > 0 ? float((double(p[i]) - lo) / range) : 0.0f;
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
                                      std::to_string(img.channels));
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
    s << " interp=" << (interp == Interp::bilinear ? "bilinear" : "bicubic") << " antialias=" << (antialias ? 1 : 0);
  if (crop > 0) s << " crop=" << crop;
  if (do_normalize) {
    s << " mean=";
    for (size_t i = 0; i < mean.size(); ++i) s << (i ? "," : "") << mean[i];
    s << " std=";
    for (size_t i = 0; i < std.size(); ++i) s << (i ? "," : "") << std[i];
  }
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

Image apply_geometry(const Image& img, const Transform& t) {
  Image x;
  if (t.intensity == "unit") x = scale_to_unit(img);
  else if (t.intensity == "percentile") x = percentile_scale(img, t.pct_lo, t.pct_hi);
  else if (t.intensity == "minmax") x = minmax_scale(img);
  else if (t.intensity == "none") x = img;
  else throw std::invalid_argument("unknown intensity scaling '" + t.intensity + "' (unit, percentile, minmax, none)");
  if (t.resize_h > 0 && t.resize_w > 0) x = resize_exact(x, t.resize_h, t.resize_w, t.interp, t.antialias);
  else if (t.resize > 0) x = resize_shorter(x, t.resize, t.interp, t.antialias);
  // torchvision's CenterCrop zero-pads an image smaller than the crop; here that is an error, since a padded
  // field is mostly zeros and almost surely a missing --resize (center_crop itself pads, as torchvision).
  if (t.crop > 0 && (x.height < t.crop || x.width < t.crop))
    throw std::invalid_argument(where(img) + ": " + std::to_string(x.width) + "x" + std::to_string(x.height) +
                                (t.resize > 0 || t.resize_h > 0 ? " after resizing" : "") + " is smaller than the " +
                                std::to_string(t.crop) + "x" + std::to_string(t.crop) +
                                " crop; resize it first (--resize) or choose a smaller --crop");
  if (t.crop > 0) x = center_crop(x, t.crop, t.crop);
  return x;
}

std::vector<Image> preprocess_image(const Image& img, const Transform& t, const ChannelStrategy& s) {
  std::vector<Image> inputs = apply_channel_strategy(apply_geometry(img, t), s);
  if (t.do_normalize)
    for (Image& in : inputs) in = normalize(in, t.mean, t.std);
  return inputs;
}

}  // namespace tabula::data
