#include "models/baselines.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <queue>
#include <stdexcept>

namespace tabula::baselines {

// ---- pixels ---------------------------------------------------------------------------------------------------

static constexpr double kPercentiles[] = {1, 5, 25, 50, 75, 95, 99};

std::vector<std::string> pixel_feature_names(int channels, const PixelsConfig& cfg) {
  std::vector<std::string> names;
  for (int c = 0; c < channels; ++c) {
    std::string p = "ch" + std::to_string(c) + "_";
    for (const char* s : {"mean", "std", "min", "max"}) names.push_back(p + s);
    for (double q : kPercentiles) names.push_back(p + (q < 10 ? "p0" : "p") + std::to_string(static_cast<int>(q)));
    for (int k = 0; k < cfg.hist_bins; ++k) names.push_back(p + "hist" + std::to_string(k));
    for (int y = 0; y < cfg.grid; ++y)
      for (int x = 0; x < cfg.grid; ++x) names.push_back(p + "grid" + std::to_string(y) + "_" + std::to_string(x));
  }
  return names;
}

// numpy.percentile's default ('linear'): position q/100 * (n - 1) between the sorted neighbours.
static double percentile_sorted(const std::vector<float>& sorted, double q) {
  double pos = q / 100.0 * static_cast<double>(sorted.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(pos));
  size_t hi = std::min(lo + 1, sorted.size() - 1);
  double frac = pos - static_cast<double>(lo);
  return sorted[lo] + (static_cast<double>(sorted[hi]) - sorted[lo]) * frac;
}

std::vector<float> pixel_features(const float* chw, int channels, int height, int width, const PixelsConfig& cfg) {
  if (channels <= 0 || height <= 0 || width <= 0)
    throw std::invalid_argument("pixels: empty image (" + std::to_string(channels) + "x" + std::to_string(height) +
                                "x" + std::to_string(width) + ")");
  if (cfg.hist_bins < 1 || cfg.grid < 1 || cfg.grid > std::min(height, width))
    throw std::invalid_argument("pixels: hist and grid must be >= 1 and grid <= the image side");
  const size_t n = static_cast<size_t>(height) * width;
  std::vector<float> out;
  std::vector<float> sorted(n);
  for (int c = 0; c < channels; ++c) {
    const float* p = chw + c * n;
    double sum = 0, sq = 0;
    for (size_t i = 0; i < n; ++i) sum += p[i];
    double mean = sum / static_cast<double>(n);
    for (size_t i = 0; i < n; ++i) sq += (p[i] - mean) * (p[i] - mean);
    std::copy(p, p + n, sorted.begin());
    std::sort(sorted.begin(), sorted.end());
    out.push_back(static_cast<float>(mean));
    out.push_back(static_cast<float>(std::sqrt(sq / static_cast<double>(n))));
    out.push_back(sorted.front());
    out.push_back(sorted.back());
    for (double q : kPercentiles) out.push_back(static_cast<float>(percentile_sorted(sorted, q)));
    std::vector<double> hist(static_cast<size_t>(cfg.hist_bins), 0.0);
    for (size_t i = 0; i < n; ++i) {
      double v = std::clamp(static_cast<double>(p[i]), 0.0, 1.0);
      int b = std::min(cfg.hist_bins - 1, static_cast<int>(v * cfg.hist_bins));
      hist[static_cast<size_t>(b)] += 1.0;
    }
    for (double h : hist) out.push_back(static_cast<float>(h / static_cast<double>(n)));
    // Area means over a grid x grid partition (cell boundaries at floor(i * side / grid)).
    for (int gy = 0; gy < cfg.grid; ++gy) {
      int y0 = gy * height / cfg.grid, y1 = (gy + 1) * height / cfg.grid;
      for (int gx = 0; gx < cfg.grid; ++gx) {
        int x0 = gx * width / cfg.grid, x1 = (gx + 1) * width / cfg.grid;
        double s = 0;
        for (int y = y0; y < y1; ++y)
          for (int x = x0; x < x1; ++x) s += p[static_cast<size_t>(y) * width + x];
        out.push_back(static_cast<float>(s / static_cast<double>((y1 - y0) * (x1 - x0))));
      }
    }
  }
  return out;
}

// ---- nuclei: building blocks ----------------------------------------------------------------------------------------

static int reflect(int i, int n) {  // scipy.ndimage 'reflect': d c b a | a b c d | d c b a
  if (n == 1) return 0;
  while (i < 0 || i >= n) i = i < 0 ? -i - 1 : 2 * n - i - 1;
  return i;
}

std::vector<float> gaussian_blur(const float* plane, int height, int width, double sigma) {
  const size_t n = static_cast<size_t>(height) * width;
  if (sigma <= 0) return std::vector<float>(plane, plane + n);
  int radius = static_cast<int>(std::ceil(4.0 * sigma));  // scipy's truncate=4.0
  std::vector<double> k(static_cast<size_t>(2 * radius + 1));
  double ksum = 0;
  for (int i = -radius; i <= radius; ++i) ksum += k[static_cast<size_t>(i + radius)] = std::exp(-0.5 * i * i / (sigma * sigma));
  for (double& v : k) v /= ksum;
  std::vector<float> tmp(n), out(n);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      double s = 0;
      for (int i = -radius; i <= radius; ++i) s += k[static_cast<size_t>(i + radius)] * plane[static_cast<size_t>(y) * width + reflect(x + i, width)];
      tmp[static_cast<size_t>(y) * width + x] = static_cast<float>(s);
    }
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      double s = 0;
      for (int i = -radius; i <= radius; ++i) s += k[static_cast<size_t>(i + radius)] * tmp[static_cast<size_t>(reflect(y + i, height)) * width + x];
      out[static_cast<size_t>(y) * width + x] = static_cast<float>(s);
    }
  return out;
}

float otsu_threshold(const float* values, size_t n, int bins) {
  if (n == 0) throw std::invalid_argument("otsu_threshold: no values");
  float lo = *std::min_element(values, values + n), hi = *std::max_element(values, values + n);
  if (!(hi > lo)) return lo;  // a constant image has no threshold; nothing lies above it
  std::vector<double> hist(static_cast<size_t>(bins), 0.0), centers(static_cast<size_t>(bins));
  const double width = (static_cast<double>(hi) - lo) / bins;
  for (int b = 0; b < bins; ++b) centers[static_cast<size_t>(b)] = lo + width * (b + 0.5);
  for (size_t i = 0; i < n; ++i) {
    int b = static_cast<int>((static_cast<double>(values[i]) - lo) / (static_cast<double>(hi) - lo) * bins);
    hist[static_cast<size_t>(std::clamp(b, 0, bins - 1))] += 1.0;
  }
  // Between-class variance for a split after bin t: w1(t) w2(t+1) (m1(t) - m2(t+1))^2, as skimage computes it.
  std::vector<double> w1(static_cast<size_t>(bins)), m1(static_cast<size_t>(bins)), w2(static_cast<size_t>(bins)), m2(static_cast<size_t>(bins));
  double cw = 0, cm = 0;
  for (int b = 0; b < bins; ++b) {
    cw += hist[static_cast<size_t>(b)];
    cm += hist[static_cast<size_t>(b)] * centers[static_cast<size_t>(b)];
    w1[static_cast<size_t>(b)] = cw;
    m1[static_cast<size_t>(b)] = cw > 0 ? cm / cw : 0;
  }
  cw = cm = 0;
  for (int b = bins - 1; b >= 0; --b) {
    cw += hist[static_cast<size_t>(b)];
    cm += hist[static_cast<size_t>(b)] * centers[static_cast<size_t>(b)];
    w2[static_cast<size_t>(b)] = cw;
    m2[static_cast<size_t>(b)] = cw > 0 ? cm / cw : 0;
  }
  int best = 0;
  double best_var = -1;
  for (int t = 0; t + 1 < bins; ++t) {
    double d = m1[static_cast<size_t>(t)] - m2[static_cast<size_t>(t + 1)];
    double v = w1[static_cast<size_t>(t)] * w2[static_cast<size_t>(t + 1)] * d * d;
    if (v > best_var) best_var = v, best = t;
  }
  return static_cast<float>(centers[static_cast<size_t>(best)]);
}

// 1-D squared distance transform of a sampled function (Felzenszwalb & Huttenlocher 2012).
static void edt_1d(const std::vector<double>& f, std::vector<double>& d, int n, std::vector<int>& v, std::vector<double>& z) {
  const double inf = std::numeric_limits<double>::infinity();
  int k = 0;
  v[0] = 0;
  z[0] = -inf;
  z[1] = inf;
  for (int q = 1; q < n; ++q) {
    if (f[static_cast<size_t>(q)] == inf) continue;
    if (f[static_cast<size_t>(v[static_cast<size_t>(k)])] == inf) {  // no parabola yet
      v[static_cast<size_t>(k)] = q;
      continue;
    }
    double s;
    for (;;) {
      int p = v[static_cast<size_t>(k)];
      s = ((f[static_cast<size_t>(q)] + double(q) * q) - (f[static_cast<size_t>(p)] + double(p) * p)) / (2.0 * q - 2.0 * p);
      if (s <= z[static_cast<size_t>(k)] && k > 0) --k;
      else break;
    }
    ++k;
    v[static_cast<size_t>(k)] = q;
    z[static_cast<size_t>(k)] = s;
    z[static_cast<size_t>(k + 1)] = inf;
  }
  if (f[static_cast<size_t>(v[0])] == inf) {
    std::fill(d.begin(), d.begin() + n, inf);
    return;
  }
  k = 0;
  for (int q = 0; q < n; ++q) {
    while (z[static_cast<size_t>(k + 1)] < q) ++k;
    int p = v[static_cast<size_t>(k)];
    d[static_cast<size_t>(q)] = double(q - p) * (q - p) + f[static_cast<size_t>(p)];
  }
}

std::vector<float> distance_transform(const std::vector<uint8_t>& mask, int height, int width) {
  const double inf = std::numeric_limits<double>::infinity();
  const size_t n = static_cast<size_t>(height) * width;
  std::vector<double> g(n);
  for (size_t i = 0; i < n; ++i) g[i] = mask[i] ? inf : 0.0;
  int m = std::max(height, width);
  std::vector<double> f(static_cast<size_t>(m)), d(static_cast<size_t>(m)), z(static_cast<size_t>(m) + 1);
  std::vector<int> v(static_cast<size_t>(m));
  for (int x = 0; x < width; ++x) {
    for (int y = 0; y < height; ++y) f[static_cast<size_t>(y)] = g[static_cast<size_t>(y) * width + x];
    edt_1d(f, d, height, v, z);
    for (int y = 0; y < height; ++y) g[static_cast<size_t>(y) * width + x] = d[static_cast<size_t>(y)];
  }
  std::vector<float> out(n);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) f[static_cast<size_t>(x)] = g[static_cast<size_t>(y) * width + x];
    edt_1d(f, d, width, v, z);
    for (int x = 0; x < width; ++x) {
      double dd = d[static_cast<size_t>(x)];
      // A mask with no background at all: distances are unbounded; cap at the image diagonal.
      out[static_cast<size_t>(y) * width + x] = static_cast<float>(dd == inf ? std::hypot(height, width) : std::sqrt(dd));
    }
  }
  return out;
}

// ---- nuclei: segmentation --------------------------------------------------------------------------------------------

NucleiSegmentation segment_nuclei(const float* plane, int height, int width, const NucleiConfig& cfg) {
  if (height <= 0 || width <= 0) throw std::invalid_argument("nuclei: empty plane");
  const size_t n = static_cast<size_t>(height) * width;
  std::vector<float> smooth = gaussian_blur(plane, height, width, cfg.sigma);
  if (cfg.invert)
    for (float& v : smooth) v = -v;
  float thr = otsu_threshold(smooth.data(), n);
  std::vector<uint8_t> mask(n);
  for (size_t i = 0; i < n; ++i) mask[i] = smooth[i] > thr;
  std::vector<float> dist = distance_transform(mask, height, width);

  // Seeds: pixels whose distance is the maximum of their (2r+1)^2 window (and at least 1), plateaus merged by
  // 8-connected labelling. Scanned in raster order, so labels are deterministic.
  const int r = std::max(1, cfg.min_distance);
  std::vector<uint8_t> peak(n, 0);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      size_t i = static_cast<size_t>(y) * width + x;
      if (!mask[i] || dist[i] < 1.0f) continue;
      bool is_max = true;
      for (int dy = -r; dy <= r && is_max; ++dy)
        for (int dx = -r; dx <= r; ++dx) {
          int yy = y + dy, xx = x + dx;
          if (yy < 0 || yy >= height || xx < 0 || xx >= width) continue;
          if (dist[static_cast<size_t>(yy) * width + xx] > dist[i]) {
            is_max = false;
            break;
          }
        }
      peak[i] = is_max;
    }
  std::vector<int32_t> labels(n, 0);
  int32_t next = 0;
  std::vector<size_t> stack;
  auto flood_label = [&](const std::vector<uint8_t>& src, size_t start, int32_t lab) {
    stack.assign(1, start);
    labels[start] = lab;
    while (!stack.empty()) {
      size_t i = stack.back();
      stack.pop_back();
      int y = static_cast<int>(i / width), x = static_cast<int>(i % width);
      for (int dy = -1; dy <= 1; ++dy)
        for (int dx = -1; dx <= 1; ++dx) {
          int yy = y + dy, xx = x + dx;
          if (yy < 0 || yy >= height || xx < 0 || xx >= width) continue;
          size_t j = static_cast<size_t>(yy) * width + xx;
          if (src[j] && labels[j] == 0) labels[j] = lab, stack.push_back(j);
        }
    }
  };
  for (size_t i = 0; i < n; ++i)
    if (peak[i] && labels[i] == 0) flood_label(peak, i, ++next);

  // Watershed on -distance inside the mask (4-connected), from the seeds; ties broken by insertion order.
  struct Item {
    float d;
    uint64_t order;
    size_t i;
    bool operator<(const Item& o) const { return d != o.d ? d < o.d : order > o.order; }  // max-heap on distance
  };
  std::priority_queue<Item> pq;
  uint64_t order = 0;
  for (size_t i = 0; i < n; ++i)
    if (labels[i]) pq.push({dist[i], order++, i});
  while (!pq.empty()) {
    Item it = pq.top();
    pq.pop();
    int y = static_cast<int>(it.i / width), x = static_cast<int>(it.i % width);
    const int ny[4] = {y - 1, y + 1, y, y}, nx[4] = {x, x, x - 1, x + 1};
    for (int k = 0; k < 4; ++k) {
      if (ny[k] < 0 || ny[k] >= height || nx[k] < 0 || nx[k] >= width) continue;
      size_t j = static_cast<size_t>(ny[k]) * width + nx[k];
      if (mask[j] && labels[j] == 0) {
        labels[j] = labels[it.i];
        pq.push({dist[j], order++, j});
      }
    }
  }
  // Mask pixels no seed reached (a component whose maximum was shadowed by a neighbour's) become their own objects.
  for (size_t i = 0; i < n; ++i)
    if (mask[i] && labels[i] == 0) flood_label(mask, i, ++next);

  // Region properties; objects below min_area are dropped and labels renumbered 1..count in raster order.
  struct Acc {
    double area = 0, sy = 0, sx = 0, syy = 0, sxx = 0, sxy = 0, perim = 0;
  };
  std::vector<Acc> acc(static_cast<size_t>(next) + 1);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      int32_t l = labels[static_cast<size_t>(y) * width + x];
      if (!l) continue;
      Acc& a = acc[static_cast<size_t>(l)];
      a.area += 1, a.sy += y, a.sx += x, a.syy += double(y) * y, a.sxx += double(x) * x, a.sxy += double(x) * y;
      const int ny[4] = {y - 1, y + 1, y, y}, nx[4] = {x, x, x - 1, x + 1};
      for (int k = 0; k < 4; ++k) {
        bool outside = ny[k] < 0 || ny[k] >= height || nx[k] < 0 || nx[k] >= width ||
                       labels[static_cast<size_t>(ny[k]) * width + nx[k]] != l;
        if (outside) {  // a boundary pixel counts once
          a.perim += 1;
          break;
        }
      }
    }
  std::vector<int32_t> remap(static_cast<size_t>(next) + 1, 0);
  NucleiSegmentation seg;
  seg.height = height;
  seg.width = width;
  seg.labels.assign(n, 0);
  for (size_t i = 0; i < n; ++i) {
    int32_t l = labels[i];
    if (!l || acc[static_cast<size_t>(l)].area < cfg.min_area) continue;
    if (!remap[static_cast<size_t>(l)]) {
      const Acc& a = acc[static_cast<size_t>(l)];
      Nucleus nu;
      nu.area = a.area;
      nu.perimeter = a.perim;
      nu.cy = a.sy / a.area;
      nu.cx = a.sx / a.area;
      // Second central moments of the pixel centres, normalised by area: skimage's inertia tensor.
      double myy = a.syy / a.area - nu.cy * nu.cy, mxx = a.sxx / a.area - nu.cx * nu.cx;
      double mxy = a.sxy / a.area - nu.cx * nu.cy;
      double tr = myy + mxx, det = myy * mxx - mxy * mxy;
      double disc = std::sqrt(std::max(0.0, tr * tr / 4 - det));
      double l1 = tr / 2 + disc, l2 = std::max(0.0, tr / 2 - disc);
      nu.major_axis = 4 * std::sqrt(l1);
      nu.minor_axis = 4 * std::sqrt(l2);
      nu.eccentricity = l1 > 0 ? std::sqrt(std::max(0.0, 1 - l2 / l1)) : 0;
      nu.form_factor = a.perim > 0 ? std::min(1.0, 4 * M_PI * a.area / (a.perim * a.perim)) : 0;
      seg.nuclei.push_back(nu);
      remap[static_cast<size_t>(l)] = static_cast<int32_t>(seg.nuclei.size());
    }
    seg.labels[i] = remap[static_cast<size_t>(l)];
  }
  return seg;
}

// ---- nuclei: features ----------------------------------------------------------------------------------------------

std::vector<std::string> nuclei_feature_names() {
  return {"count",          "density_per_1e4px", "covered_fraction", "area_mean",        "area_std",
          "area_p10",       "area_p50",          "area_p90",         "perimeter_mean",   "major_axis_mean",
          "minor_axis_mean", "eccentricity_mean", "eccentricity_std", "form_factor_mean", "form_factor_std",
          "nn_dist_mean",   "nn_dist_std",       "nn_dist_p50",      "degree_mean",      "degree_std",
          "isolated_fraction"};
}

static void mean_std(const std::vector<double>& v, double& mean, double& sd) {
  mean = sd = 0;
  if (v.empty()) return;
  for (double x : v) mean += x;
  mean /= static_cast<double>(v.size());
  for (double x : v) sd += (x - mean) * (x - mean);
  sd = std::sqrt(sd / static_cast<double>(v.size()));
}

static double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  double pos = q * static_cast<double>(v.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(pos)), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

std::vector<float> nuclei_features(const NucleiSegmentation& seg, double graph_radius) {
  const auto& nu = seg.nuclei;
  const double image_area = static_cast<double>(seg.height) * seg.width;
  std::vector<double> area, perim, major, minor, ecc, ff;
  for (const Nucleus& x : nu) {
    area.push_back(x.area), perim.push_back(x.perimeter), major.push_back(x.major_axis);
    minor.push_back(x.minor_axis), ecc.push_back(x.eccentricity), ff.push_back(x.form_factor);
  }
  // Nearest-neighbour distances between centroids, and the degree of each nucleus in a radius graph.
  std::vector<double> nn(nu.size(), 0.0);
  for (size_t i = 0; i < nu.size(); ++i) {
    double best = std::numeric_limits<double>::infinity();
    for (size_t j = 0; j < nu.size(); ++j)
      if (j != i) best = std::min(best, std::hypot(nu[i].cy - nu[j].cy, nu[i].cx - nu[j].cx));
    nn[i] = std::isfinite(best) ? best : 0.0;
  }
  double radius = graph_radius > 0 ? graph_radius : 2.0 * quantile(nn, 0.5);
  std::vector<double> degree(nu.size(), 0.0);
  for (size_t i = 0; i < nu.size(); ++i)
    for (size_t j = 0; j < nu.size(); ++j)
      if (j != i && std::hypot(nu[i].cy - nu[j].cy, nu[i].cx - nu[j].cx) <= radius) degree[i] += 1;
  double isolated = 0;
  for (double d : degree) isolated += d == 0;

  double m, s, covered = 0;
  for (double a : area) covered += a;
  std::vector<float> out;
  auto put = [&](double v) { out.push_back(static_cast<float>(v)); };
  put(static_cast<double>(nu.size()));
  put(static_cast<double>(nu.size()) / image_area * 1e4);
  put(covered / image_area);
  mean_std(area, m, s), put(m), put(s);
  put(quantile(area, 0.1)), put(quantile(area, 0.5)), put(quantile(area, 0.9));
  mean_std(perim, m, s), put(m);
  mean_std(major, m, s), put(m);
  mean_std(minor, m, s), put(m);
  mean_std(ecc, m, s), put(m), put(s);
  mean_std(ff, m, s), put(m), put(s);
  mean_std(nn, m, s), put(m), put(s), put(quantile(nn, 0.5));
  mean_std(degree, m, s), put(m), put(s);
  put(nu.empty() ? 0.0 : isolated / static_cast<double>(nu.size()));
  return out;
}

std::vector<float> nuclei_features(const float* chw, int channels, int height, int width, const NucleiConfig& cfg) {
  if (cfg.dna_channel < 0 || cfg.dna_channel >= channels)
    throw std::invalid_argument("nuclei: dna channel " + std::to_string(cfg.dna_channel) + " but the image has " +
                                std::to_string(channels) + " channel(s)");
  const float* plane = chw + static_cast<size_t>(cfg.dna_channel) * height * width;
  return nuclei_features(segment_nuclei(plane, height, width, cfg), cfg.graph_radius);
}

}  // namespace tabula::baselines
