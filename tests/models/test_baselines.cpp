#include <gtest/gtest.h>

#include <cmath>

#include "util/npy.h"
#include "models/baselines.h"
#include "tests/test_util.h"

using namespace tabula;
using namespace tabula::baselines;

namespace {
NpyArray load(const std::string& name) { return read_npy(test::fixture("baselines/" + name).string()); }

// A plane with discs of radius r at the given centres (value 1 inside, 0 outside).
std::vector<float> discs(int h, int w, const std::vector<std::pair<double, double>>& centres, double r) {
  std::vector<float> p(static_cast<size_t>(h) * w, 0.f);
  for (auto [cy, cx] : centres)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        if ((y - cy) * (y - cy) + (x - cx) * (x - cx) <= r * r) p[static_cast<size_t>(y) * w + x] = 1.f;
  return p;
}
}  // namespace

// scipy.ndimage.gaussian_filter(sigma=2, mode='reflect', truncate=4) on the same plane.
TEST(NucleiBaseline, GaussianBlurMatchesScipy) {
  auto plane = load("plane.npy"), want = load("blur_sigma2.npy");
  int h = static_cast<int>(plane.shape[0]), w = static_cast<int>(plane.shape[1]);
  auto got = gaussian_blur(plane.as<float>(), h, w, 2.0);
  auto ref = want.to_f32();
  for (size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(got[i], ref[i], 1e-6) << i;
}

// skimage.filters.threshold_otsu(nbins=256) and the resulting mask; scipy's exact EDT on that mask.
TEST(NucleiBaseline, OtsuAndDistanceTransformMatchSkimageScipy) {
  auto blur = load("blur_sigma2.npy"), otsu = load("otsu.npy"), edt = load("edt.npy");
  int h = static_cast<int>(blur.shape[0]), w = static_cast<int>(blur.shape[1]);
  auto b = blur.to_f32();
  float thr = otsu_threshold(b.data(), b.size());
  EXPECT_NEAR(thr, otsu.to_f64()[0], 1e-6);
  std::vector<uint8_t> mask(b.size());
  size_t fg = 0;
  for (size_t i = 0; i < b.size(); ++i) fg += mask[i] = b[i] > thr;
  EXPECT_EQ(static_cast<double>(fg), otsu.to_f64()[1]);
  auto d = distance_transform(mask, h, w);
  auto ref = edt.to_f32();
  for (size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(d[i], ref[i], 1e-5) << i;
}

// Area, centroid, axis lengths and eccentricity of unambiguous objects equal skimage.measure.regionprops.
TEST(NucleiBaseline, RegionPropertiesMatchSkimage) {
  auto labels = load("clean_labels.npy"), props = load("clean_props.npy");
  int h = static_cast<int>(labels.shape[0]), w = static_cast<int>(labels.shape[1]);
  std::vector<float> plane(static_cast<size_t>(h) * w);
  for (size_t i = 0; i < plane.size(); ++i) plane[i] = labels.as<int32_t>()[i] ? 1.f : 0.f;
  NucleiConfig cfg;
  cfg.sigma = 0;  // already clean: segment the objects exactly as drawn
  cfg.min_distance = 30;
  auto seg = segment_nuclei(plane.data(), h, w, cfg);
  auto p = props.to_f64();
  ASSERT_EQ(seg.nuclei.size(), static_cast<size_t>(props.shape[0]));
  for (size_t k = 0; k < seg.nuclei.size(); ++k) {
    // Match by centroid (label numbering orders may differ).
    size_t best = 0;
    double bd = 1e9;
    for (size_t r = 0; r < seg.nuclei.size(); ++r) {
      double d = std::hypot(seg.nuclei[k].cy - p[r * 7 + 2], seg.nuclei[k].cx - p[r * 7 + 3]);
      if (d < bd) bd = d, best = r;
    }
    EXPECT_LT(bd, 1e-9);
    EXPECT_EQ(seg.nuclei[k].area, p[best * 7 + 1]);
    EXPECT_NEAR(seg.nuclei[k].major_axis, p[best * 7 + 4], 1e-9);
    EXPECT_NEAR(seg.nuclei[k].minor_axis, p[best * 7 + 5], 1e-9);
    EXPECT_NEAR(seg.nuclei[k].eccentricity, p[best * 7 + 6], 1e-9);
  }
}

TEST(NucleiBaseline, WatershedSplitsTouchingNucleiAndCounts) {
  const int h = 64, w = 96;
  // Two discs overlapping slightly (a touching pair) and one apart.
  auto plane = discs(h, w, {{32, 30}, {32, 45}, {32, 75}}, 8);
  NucleiConfig cfg;
  cfg.sigma = 1.0;
  auto seg = segment_nuclei(plane.data(), h, w, cfg);
  EXPECT_EQ(seg.nuclei.size(), 3u);
  for (const auto& n : seg.nuclei) EXPECT_NEAR(n.area, M_PI * 64, 0.25 * M_PI * 64);
  auto f = nuclei_features(seg);
  ASSERT_EQ(f.size(), nuclei_feature_names().size());
  EXPECT_EQ(f[0], 3.f);
  EXPECT_NEAR(f[1], 3.0 / (h * w) * 1e4, 1e-4);
}

TEST(NucleiBaseline, DensityAndSpacingFollowTheLayout) {
  const int h = 128, w = 128;
  std::vector<std::pair<double, double>> sparse, dense;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) sparse.push_back({16.0 + 32 * i, 16.0 + 32 * j});
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 8; ++j) dense.push_back({8.0 + 16 * i, 8.0 + 16 * j});
  auto a = discs(h, w, sparse, 5), b = discs(h, w, dense, 5);
  NucleiConfig cfg;
  cfg.sigma = 1.0;
  cfg.min_distance = 3;
  auto fa = nuclei_features(a.data(), 1, h, w, cfg), fb = nuclei_features(b.data(), 1, h, w, cfg);
  auto names = nuclei_feature_names();
  auto idx = [&](const std::string& n) { return static_cast<size_t>(std::find(names.begin(), names.end(), n) - names.begin()); };
  EXPECT_EQ(fa[idx("count")], 16.f);
  EXPECT_EQ(fb[idx("count")], 64.f);
  EXPECT_NEAR(fa[idx("nn_dist_mean")], 32.0, 0.5);
  EXPECT_NEAR(fb[idx("nn_dist_mean")], 16.0, 0.5);
  EXPECT_NEAR(fa[idx("area_mean")], fb[idx("area_mean")], 1.0);  // same nuclei, different density
  EXPECT_GT(fa[idx("form_factor_mean")], 0.5f);
}

TEST(NucleiBaseline, EmptyAndConstantImagesGiveZeros) {
  std::vector<float> z(32 * 32, 0.25f);
  auto f = nuclei_features(z.data(), 1, 32, 32, NucleiConfig{});
  for (float v : f) EXPECT_EQ(v, 0.f);
  EXPECT_THROW(nuclei_features(z.data(), 1, 32, 32, NucleiConfig{.dna_channel = 2}), std::invalid_argument);
}

TEST(PixelsBaseline, StatisticsHistogramAndGrid) {
  const int h = 4, w = 4;
  // Channel 0: left half 0, right half 1. Channel 1: constant 0.5.
  std::vector<float> img(2 * h * w);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) img[static_cast<size_t>(y * w + x)] = x >= 2 ? 1.f : 0.f, img[static_cast<size_t>(h * w + y * w + x)] = 0.5f;
  PixelsConfig cfg{.hist_bins = 4, .grid = 2};
  auto f = pixel_features(img.data(), 2, h, w, cfg);
  auto names = pixel_feature_names(2, cfg);
  ASSERT_EQ(f.size(), names.size());
  auto get = [&](const std::string& n) { return f[static_cast<size_t>(std::find(names.begin(), names.end(), n) - names.begin())]; };
  EXPECT_FLOAT_EQ(get("ch0_mean"), 0.5f);
  EXPECT_FLOAT_EQ(get("ch0_std"), 0.5f);
  EXPECT_FLOAT_EQ(get("ch0_p50"), 0.5f);   // numpy linear interpolation between the two middle values
  EXPECT_FLOAT_EQ(get("ch0_p25"), 0.0f);
  EXPECT_FLOAT_EQ(get("ch0_hist0"), 0.5f);
  EXPECT_FLOAT_EQ(get("ch0_hist3"), 0.5f);
  EXPECT_FLOAT_EQ(get("ch0_grid0_0"), 0.f);
  EXPECT_FLOAT_EQ(get("ch0_grid1_1"), 1.f);
  EXPECT_FLOAT_EQ(get("ch1_std"), 0.f);
  EXPECT_FLOAT_EQ(get("ch1_hist2"), 1.f);
  EXPECT_THROW(pixel_features(img.data(), 2, h, w, PixelsConfig{.hist_bins = 4, .grid = 5}), std::invalid_argument);
}
