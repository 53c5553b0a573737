// Exact percentiles by counting (16-bit histogram, float radix selection) against the definition: sort, take
// numpy's linear-interpolated value. Any difference from sorting is a bug, so equality is exact.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "data/preprocess.h"

using namespace tabula::data;

namespace {

// numpy.percentile(v, q, method="linear") on float32 data, from a sorted copy.
double by_sorting(std::vector<float> v, double q) {
  for (float x : v)
    if (std::isnan(x)) return std::nan("");
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  const double idx = double(n - 1) * q / 100.0;
  const size_t lo = size_t(std::floor(idx));
  const float a = v[lo], b = v[std::min(lo + 1, n - 1)], t = float(idx - double(lo));
  const float diff = b - a;
  return double(t >= 0.5f ? b - diff * (1.0f - t) : a + diff * t);
}

bool same(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

const double kQs[] = {0, 0.1, 1, 2.5, 25, 50, 75, 99, 99.9, 100};

std::vector<std::vector<float>> datasets() {
  std::mt19937 rng(22);
  std::vector<std::vector<float>> out;
  auto make = [&](size_t n, auto gen) {
    std::vector<float> v(n);
    for (float& x : v) x = gen();
    out.push_back(std::move(v));
  };
  std::uniform_int_distribution<int> u16(0, 65535), dark(90, 140);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  make(10007, [&] { return float(u16(rng)); });                                   // u16, full range
  make(20011, [&] { return float(dark(rng)); });                                  // u16, a narrow dark background
  make(5003, [&] { return float(dark(rng)) / 1.37f; });                           // illumination-divided
  make(5003, [&] { return normal(rng); });                                        // both signs
  make(4099, [&] { return std::ldexp(normal(rng), int(rng() % 60) - 30); });     // many exponents
  make(3001, [&] { return float(int(rng() % 5)) - 2.0f; });                       // heavy ties, negatives
  make(1, [&] { return 7.5f; });
  make(2, [&] { return float(u16(rng)); });
  make(3, [&] { return normal(rng); });
  make(1000, [&] { return 3.0f; });                                               // constant
  std::vector<float> almost_u16(7001);
  for (float& x : almost_u16) x = float(u16(rng));
  almost_u16[7000] = 0.5f;  // one non-integer at the end: the 16-bit path must give way to the general one
  out.push_back(almost_u16);
  almost_u16[7000] = 65536.0f;  // an integer above 16 bits
  out.push_back(almost_u16);
  out.push_back({0.0f, -0.0f, 1.0f, -1.0f, INFINITY, -INFINITY, 2.0f, -0.0f, 0.0f});
  out.push_back({1.0f, 2.0f, NAN, 3.0f});
  out.push_back({std::numeric_limits<float>::denorm_min(), 0.0f, std::numeric_limits<float>::max(),
                 -std::numeric_limits<float>::max(), 1e-40f, -1e-40f});
  return out;
}

}  // namespace

TEST(DataPercentile, CountingEqualsSorting) {
  int checked = 0;
  for (const std::vector<float>& v : datasets())
    for (double q : kQs) {
      const double want = by_sorting(v, q), got = percentile_linear(v, q);
      EXPECT_TRUE(same(got, want)) << "n=" << v.size() << " q=" << q << ": " << got << " vs " << want;
      ++checked;
    }
  EXPECT_EQ(checked, 150);
}

TEST(DataPercentile, ScaleIsTheSameInPlaceAndOnACopyAndMatchesTheFormula) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> u16(0, 65535);
  Image img(3, 31, 43);
  for (size_t i = 0; i < img.plane_size(); ++i) {
    img.plane(0)[i] = float(u16(rng));             // 16-bit integers
    img.plane(1)[i] = float(u16(rng)) / 1.61f;     // divided floats
    img.plane(2)[i] = float(u16(rng) % 3) - 1.0f;  // ties, negatives
  }
  img.max_value = 65535;
  for (bool clip : {true, false}) {
    const Image copy = percentile_scale(img, 2.5, 97.5, clip);
    const Image moved = percentile_scale(Image(img), 2.5, 97.5, clip);
    ASSERT_EQ(copy.pixels.size(), moved.pixels.size());
    EXPECT_EQ(std::memcmp(copy.pixels.data(), moved.pixels.data(), copy.pixels.size() * 4), 0);
    EXPECT_EQ(copy.max_value, 1.0f);
    for (int c = 0; c < img.channels; ++c) {
      const std::vector<float> plane(img.plane(c), img.plane(c) + img.plane_size());
      const double lo = by_sorting(plane, 2.5), range = by_sorting(plane, 97.5) - lo;
      for (size_t i = 0; i < img.plane_size(); ++i) {
        double x = (double(plane[i]) - lo) / range;
        if (clip) x = std::clamp(x, 0.0, 1.0);
        ASSERT_EQ(copy.plane(c)[i], float(x)) << "channel " << c << " pixel " << i;
      }
    }
  }
  // An infinity above the upper percentile scales to inf before the clip, to 1 after it.
  Image inf(1, 1, 4);
  inf.pixels = {1.0f, 2.0f, 3.0f, INFINITY};
  EXPECT_EQ(percentile_scale(inf, 0, 50).pixels, (std::vector<float>{0.0f, 2.0f / 3.0f, 1.0f, 1.0f}));
}

TEST(DataPercentile, InPlaceGeometryEqualsTheCopyingOne) {
  std::mt19937 rng(9);
  std::uniform_int_distribution<int> u16(0, 65535);
  Image img(2, 57, 71);
  for (float& v : img.pixels) v = float(u16(rng));
  img.max_value = 65535, img.bits = 16;
  for (const char* intensity : {"unit", "percentile", "minmax", "none"}) {
    Transform t = transform_torchvision(40, 32);
    t.intensity = intensity;
    const std::vector<Image> a = preprocess_image(img, t, parse_channel_strategy("per-channel"));
    const std::vector<Image> b = preprocess_image(Image(img), t, parse_channel_strategy("per-channel"));
    ASSERT_EQ(a.size(), b.size());
    for (size_t k = 0; k < a.size(); ++k) EXPECT_EQ(a[k].pixels, b[k].pixels) << intensity;
  }
}
