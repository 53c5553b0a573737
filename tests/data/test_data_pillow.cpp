// Pillow's Image.resize, bit-exact, on real photographs (scikit-image's IHC, retina and cell images), every filter,
// up/downscales, one-dimension changes and odd ratios; and torchvision eval chains applied to PIL images. Fixtures:
// weights_tools/reference/pillow_fixtures.py (Pillow itself).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>

#include "data/image.h"
#include "data/pillow_resample.h"
#include "data/preprocess.h"
#include "tests/test_util.h"
#include "util/csv.h"
#include "util/npy.h"

using namespace tabula;
using namespace tabula::data;
using tabula::test::fixture;

namespace {

std::string pil(const std::string& f) { return fixture("data/pillow/" + f).string(); }

std::vector<uint8_t> bytes_of(const Image& img) {
  std::vector<uint8_t> b(img.pixels.size());
  for (size_t i = 0; i < b.size(); ++i) b[i] = uint8_t(img.pixels[i]);
  return b;
}

PilFilter filter_named(const std::string& n) { return pil_filter(parse_interp(n)); }

}  // namespace

TEST(PillowResample, EveryFilterAndScaleBitExactOnRealImages) {
  const CsvTable cases = read_csv_table(pil("cases.csv"));
  ASSERT_GE(cases.rows.size(), 90u);
  std::map<std::string, Image> inputs;
  int exact = 0;
  for (size_t r = 0; r < cases.rows.size(); ++r) {
    const std::string name = cases.at(r, "input");
    if (!inputs.count(name)) inputs[name] = read_image(pil(name + ".png"));
    const Image& in = inputs[name];
    ASSERT_EQ(in.bits, 8);
    const int w = std::stoi(cases.at(r, "width")), h = std::stoi(cases.at(r, "height"));
    const Image want = read_image(pil(cases.at(r, "output")));
    ASSERT_EQ(want.channels, in.channels);
    ASSERT_EQ(want.height, h);
    ASSERT_EQ(want.width, w);
    const std::vector<uint8_t> src = bytes_of(in);
    std::vector<uint8_t> got(size_t(in.channels) * h * w);
    pil_resize_u8(src.data(), in.channels, in.height, in.width, got.data(), h, w, filter_named(cases.at(r, "filter")));
    const std::vector<uint8_t> ref = bytes_of(want);
    size_t differ = 0;
    for (size_t i = 0; i < got.size(); ++i) differ += got[i] != ref[i];
    EXPECT_EQ(differ, 0u) << cases.at(r, "output");
    exact += differ == 0;
  }
  std::printf("  %d of %zu Pillow resizes bit-exact\n", exact, cases.rows.size());
}

TEST(PillowResample, WidensSupportWithTheDownscaleFactor) {
  // 300 -> 56: scale 5.357, bicubic support 2 * 5.357 -> ksize = ceil(10.71) * 2 + 1 = 23 taps.
  const PilCoeffs c = pil_precompute_coeffs(300, 56, PilFilter::bicubic);
  EXPECT_EQ(c.ksize, 23);
  const PilCoeffs up = pil_precompute_coeffs(56, 300, PilFilter::bicubic);
  EXPECT_EQ(up.ksize, 5);  // upscaling keeps the filter's own support
  for (size_t i = 0; i < c.first.size(); ++i) {
    double s = 0;
    for (int k = 0; k < c.count[i]; ++k) s += c.k[i * size_t(c.ksize) + size_t(k)];
    EXPECT_NEAR(s, 1.0, 1e-12);
  }
}

TEST(PillowResample, UnchangedSizeIsACopyAndBadSizesThrow) {
  std::vector<uint8_t> in{1, 2, 3, 4, 5, 6}, out(6);
  pil_resize_u8(in.data(), 1, 2, 3, out.data(), 2, 3, PilFilter::lanczos);
  EXPECT_EQ(in, out);
  EXPECT_THROW(pil_resize_u8(in.data(), 1, 2, 3, out.data(), 0, 3, PilFilter::box), std::invalid_argument);
}

TEST(PillowResample, TorchvisionChainsOnPilImagesMatch) {
  const CsvTable chains = read_csv_table(pil("chains.csv"));
  ASSERT_EQ(chains.rows.size(), 4u);
  for (size_t r = 0; r < chains.rows.size(); ++r) {
    Image in = read_image(pil(chains.at(r, "input") + ".png"));
    Transform t;
    t.resize = std::stoi(chains.at(r, "resize"));
    t.crop = std::stoi(chains.at(r, "crop"));
    t.interp = parse_interp(chains.at(r, "interp"));
    t.resize_impl = "pil";
    auto floats = [](const std::string& s) {
      std::vector<float> v;
      size_t p = 0;
      while (p < s.size()) {
        size_t q = s.find(' ', p);
        v.push_back(std::stof(s.substr(p, q == std::string::npos ? std::string::npos : q - p)));
        p = q == std::string::npos ? s.size() : q + 1;
      }
      return v;
    };
    t.mean = floats(chains.at(r, "mean"));
    t.std = floats(chains.at(r, "std"));
    const std::vector<Image> out = preprocess_image(in, t, parse_channel_strategy("all"));
    const NpyArray want = read_npy(pil(chains.at(r, "output")));
    ASSERT_EQ(int64_t(out[0].pixels.size()), want.numel());
    const float* w = want.as<float>();
    float worst = 0;
    for (size_t i = 0; i < out[0].pixels.size(); ++i) worst = std::max(worst, std::fabs(out[0].pixels[i] - w[i]));
    EXPECT_EQ(worst, 0.0f) << chains.at(r, "output");  // uint8 resize, then the same float ops: bit-identical
    // The tensor path on the same image differs (the point): at least one value moves by > 1e-3.
    Transform tt = t;
    tt.resize_impl = "tensor";
    if (t.interp == Interp::bilinear || t.interp == Interp::bicubic) {
      const std::vector<Image> ten = preprocess_image(in, tt, parse_channel_strategy("all"));
      float d = 0;
      for (size_t i = 0; i < ten[0].pixels.size(); ++i) d = std::max(d, std::fabs(ten[0].pixels[i] - w[i]));
      EXPECT_GT(d, 1e-3f) << chains.at(r, "output");
      std::printf("  %s: pil path max diff 0, tensor path %.4f\n", chains.at(r, "output").c_str(), double(d));
    }
  }
}

TEST(TorchUint8Resample, BilinearAndBicubicBitExactOnRealImages) {
  // torchvision.transforms.v2 Resize on uint8 tensors (ATen's uint8 antialiased kernel): Pillow's weights in int16
  // with a per-dimension precision. Pillow's own fixed point differs from it in a few pixels per thousand.
  const CsvTable cases = read_csv_table(pil("torch_cases.csv"));
  ASSERT_GE(cases.rows.size(), 30u);
  std::map<std::string, Image> inputs;
  size_t pil_differs = 0;
  for (size_t r = 0; r < cases.rows.size(); ++r) {
    const std::string name = cases.at(r, "input");
    if (!inputs.count(name)) inputs[name] = read_image(pil(name + ".png"));
    const Image& in = inputs[name];
    const int w = std::stoi(cases.at(r, "width")), h = std::stoi(cases.at(r, "height"));
    const std::vector<uint8_t> src = bytes_of(in), ref = bytes_of(read_image(pil(cases.at(r, "output"))));
    std::vector<uint8_t> got(size_t(in.channels) * h * w), p(got.size());
    const PilFilter f = filter_named(cases.at(r, "filter"));
    torch_resize_u8(src.data(), in.channels, in.height, in.width, got.data(), h, w, f);
    pil_resize_u8(src.data(), in.channels, in.height, in.width, p.data(), h, w, f);
    ASSERT_EQ(got.size(), ref.size());
    size_t differ = 0;
    for (size_t i = 0; i < got.size(); ++i) differ += got[i] != ref[i], pil_differs += p[i] != ref[i];
    EXPECT_EQ(differ, 0u) << cases.at(r, "output");
  }
  EXPECT_GT(pil_differs, 0u);  // the two 8-bit paths are not the same
  std::printf("  %zu torch uint8 resizes bit-exact; Pillow's path differs from them in %zu values\n", cases.rows.size(),
              pil_differs);
}
