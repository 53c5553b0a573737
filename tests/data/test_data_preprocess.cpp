// Preprocessing parity with torchvision on the same float input (fixtures written by
// weights_tools/reference/data_fixtures.py with torch/torchvision): every chain within 1e-5.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include "util/npy.h"
#include "data/preprocess.h"
#include "tests/test_util.h"

using namespace tabula;
using namespace tabula::data;
using tabula::test::fixture;

namespace {

std::string pre(const std::string& f) { return fixture("data/preprocess/" + f).string(); }

Image from_npy(const NpyArray& a) {
  Image img(int(a.shape[0]), int(a.shape[1]), int(a.shape[2]));
  std::vector<float> v = a.to_f32();
  img.pixels = v;
  return img;
}

// The fixture input: u8 RGB as ToTensor gives it (x / 255).
Image u8_input() {
  Image img = from_npy(read_npy(pre("input_u8.npy")));
  img.max_value = 255;
  img.bits = 8;
  return img;
}

struct Summary {
  int c, h, w;
  double sum, abs_sum;
};
std::map<std::string, Summary> summaries() {
  std::ifstream in(pre("summary.csv"));
  std::string line;
  std::getline(in, line);
  std::map<std::string, Summary> m;
  while (std::getline(in, line)) {
    std::stringstream s(line);
    std::string name, f;
    std::getline(s, name, ',');
    Summary x{};
    std::getline(s, f, ','); x.c = std::stoi(f);
    std::getline(s, f, ','); x.h = std::stoi(f);
    std::getline(s, f, ','); x.w = std::stoi(f);
    std::getline(s, f, ','); x.sum = std::stod(f);
    std::getline(s, f, ','); x.abs_sum = std::stod(f);
    m[name] = x;
  }
  return m;
}

float max_abs_diff(const Image& got, const NpyArray& want) {
  EXPECT_EQ(int64_t(got.pixels.size()), want.numel());
  const float* w = want.as<float>();
  float worst = 0;
  for (size_t i = 0; i < got.pixels.size() && int64_t(i) < want.numel(); ++i)
    worst = std::max(worst, std::fabs(got.pixels[i] - w[i]));
  return worst;
}

// Large outputs are stored as every 4th row/column plus float64 sums of the whole tensor.
void expect_chain(const std::string& name, const Image& got) {
  static const auto sums = summaries();
  ASSERT_TRUE(sums.count(name)) << name;
  const Summary& s = sums.at(name);
  ASSERT_EQ(got.channels, s.c) << name;
  ASSERT_EQ(got.height, s.h) << name;
  ASSERT_EQ(got.width, s.w) << name;
  NpyArray grid = read_npy(pre(name + ".npy"));
  const float* g = grid.as<float>();
  float worst = 0;
  size_t k = 0;
  for (int c = 0; c < got.channels; ++c)
    for (int y = 0; y < got.height; y += 4)
      for (int x = 0; x < got.width; x += 4) worst = std::max(worst, std::fabs(got.at(c, y, x) - g[k++]));
  ASSERT_EQ(int64_t(k), grid.numel());
  EXPECT_LE(worst, 1e-5f) << name;
  std::printf("  %s: max |tabula - torchvision| = %.3g\n", name.c_str(), double(worst));  // shown in the report
  double sum = 0, abs_sum = 0;
  for (float v : got.pixels) sum += v, abs_sum += std::fabs(v);
  // 1e-5 per element bounds the sum difference by 1e-5 * numel.
  EXPECT_NEAR(sum, s.sum, 1e-6 * double(got.pixels.size())) << name;
  EXPECT_NEAR(abs_sum, s.abs_sum, 1e-6 * double(got.pixels.size())) << name;
}

}  // namespace

TEST(DataPreprocess, TorchvisionResNetEvalChain) {
  std::vector<Image> out = preprocess_image(u8_input(), transform_torchvision(), ChannelStrategy{ChannelMode::all, {}});
  ASSERT_EQ(out.size(), 1u);
  expect_chain("resnet_bilinear256_crop224", out[0]);
}

TEST(DataPreprocess, Dinov2EvalChain) {
  std::vector<Image> out = preprocess_image(u8_input(), transform_dinov2(), ChannelStrategy{ChannelMode::all, {}});
  expect_chain("dinov2_bicubic256_crop224", out[0]);
}

TEST(DataPreprocess, TimmCropPctChain) {
  Transform t = transform_timm(224, 0.9, Interp::bicubic, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f});
  EXPECT_EQ(t.resize, 248);
  expect_chain("timm_crop_pct0.9_bicubic", preprocess_image(u8_input(), t, ChannelStrategy{ChannelMode::all, {}})[0]);
}

TEST(DataPreprocess, ResizeShorterSideWithAndWithoutAntialias) {
  Image x = scale_to_unit(u8_input());
  expect_chain("bilinear224_aa", resize_shorter(x, 224, Interp::bilinear, true));
  expect_chain("bilinear224_noaa", resize_shorter(x, 224, Interp::bilinear, false));
  expect_chain("bicubic224_noaa", resize_shorter(x, 224, Interp::bicubic, false));
  expect_chain("bicubic_exact_200x150_aa", resize_exact(x, 200, 150, Interp::bicubic, true));
}

TEST(DataPreprocess, SmallUpAndDownSamplingEveryMode) {
  Image small = from_npy(read_npy(pre("small_input.npy")));
  for (const char* mode : {"bilinear", "bicubic"})
    for (bool aa : {true, false})
      for (auto [h, w] : {std::pair{29, 23}, std::pair{5, 7}, std::pair{13, 40}}) {
        std::string name = std::string("small_") + mode + "_" + std::to_string(h) + "x" + std::to_string(w) +
                           (aa ? "_aa" : "_noaa");
        Image got = resize_exact(small, h, w, std::string(mode) == "bilinear" ? Interp::bilinear : Interp::bicubic, aa);
        EXPECT_LE(max_abs_diff(got, read_npy(pre(name + ".npy"))), 1e-5f) << name;
      }
}

TEST(DataPreprocess, CenterCropRoundingAndPadding) {
  Image small = from_npy(read_npy(pre("small_input.npy")));  // 13 x 17
  EXPECT_EQ(max_abs_diff(center_crop(small, 8, 9), read_npy(pre("small_crop_8x9.npy"))), 0.0f);
  EXPECT_EQ(max_abs_diff(center_crop(small, 20, 11), read_npy(pre("small_crop_20x11.npy"))), 0.0f);
}

TEST(DataPreprocess, SixteenBitScalingAndPercentiles) {
  NpyArray raw = read_npy(pre("u16_input.npy"));
  ASSERT_EQ(raw.dtype, DType::u16);
  Image img = from_npy(raw);
  img.max_value = 65535;
  EXPECT_EQ(max_abs_diff(scale_to_unit(img), read_npy(pre("u16_unit.npy"))), 0.0f);
  EXPECT_LE(max_abs_diff(percentile_scale(img, 1, 99), read_npy(pre("u16_percentile_1_99.npy"))), 1e-6f);
  // numpy.percentile values (from fixtures.json, copied here as the oracle's numbers would be).
  for (int c = 0; c < 2; ++c) {
    std::vector<float> v(img.plane(c), img.plane(c) + img.plane_size());
    EXPECT_EQ(percentile_linear(v, 0), *std::min_element(v.begin(), v.end()));
    EXPECT_EQ(percentile_linear(v, 100), *std::max_element(v.begin(), v.end()));
  }
}

TEST(DataPreprocess, PercentilesMatchNumpy) {
  std::ifstream in(pre("percentiles.csv"));
  std::string line;
  std::getline(in, line);
  Image u16 = from_npy(read_npy(pre("u16_input.npy")));
  Image flt = from_npy([] {
    NpyArray a = read_npy(pre("float_channel.npy"));
    a.shape.insert(a.shape.begin(), 1);
    return a;
  }());
  int checked = 0;
  while (std::getline(in, line)) {
    std::stringstream s(line);
    std::string array, c, q, v;
    std::getline(s, array, ',');
    std::getline(s, c, ',');
    std::getline(s, q, ',');
    std::getline(s, v, ',');
    const Image& img = array == "u16_input" ? u16 : flt;
    const int ch = std::stoi(c);
    std::vector<float> plane(img.plane(ch), img.plane(ch) + img.plane_size());
    const double want = std::stod(v), got = percentile_linear(plane, std::stod(q));
    EXPECT_NEAR(got, want, 1e-9 * std::max(1.0, std::fabs(want))) << line;
    ++checked;
  }
  EXPECT_EQ(checked, 27);
  // Non-finite values: NaN gives NaN (as numpy), infinities are ordered like any value.
  EXPECT_TRUE(std::isnan(percentile_linear({1.0f, NAN, 3.0f}, 50)));
  EXPECT_EQ(percentile_linear({1.0f, INFINITY, 3.0f, -INFINITY, 2.0f}, 50), 2.0);
  EXPECT_EQ(percentile_linear({5.0f}, 99), 5.0);
}

TEST(DataPreprocess, ReflectPaddingMatchesNumpy) {
  Image small = from_npy(read_npy(pre("small_input.npy")));  // 13 x 17, padded by 6 -> 25 x 29
  EXPECT_EQ(max_abs_diff(crop_reflect(small, -6, -6, 25, 29), read_npy(pre("small_reflect_pad6.npy"))), 0.0f);
  EXPECT_THROW(crop_reflect(small, -13, 0, 5, 5), std::invalid_argument);
}

TEST(DataPreprocess, ChannelStrategies) {
  Image img(5, 2, 3);
  for (int c = 0; c < 5; ++c)
    for (size_t i = 0; i < img.plane_size(); ++i) img.plane(c)[i] = float(10 * c + int(i));
  auto per = apply_channel_strategy(img, parse_channel_strategy("per-channel"));
  ASSERT_EQ(per.size(), 5u);
  for (int c = 0; c < 5; ++c)
    for (int k = 0; k < 3; ++k) EXPECT_EQ(per[size_t(c)].at(k, 1, 2), float(10 * c + 5));
  auto rgb = apply_channel_strategy(img, parse_channel_strategy("rgb:4,0,2"));
  ASSERT_EQ(rgb.size(), 1u);
  EXPECT_EQ(rgb[0].at(0, 0, 0), 40.0f);
  EXPECT_EQ(rgb[0].at(1, 0, 0), 0.0f);
  EXPECT_EQ(rgb[0].at(2, 0, 0), 20.0f);
  auto mean = apply_channel_strategy(img, parse_channel_strategy("mean"));
  EXPECT_EQ(mean[0].at(2, 0, 1), 21.0f);  // (1 + 11 + 21 + 31 + 41) / 5
  EXPECT_EQ(apply_channel_strategy(img, parse_channel_strategy("all"))[0].channels, 5);
  EXPECT_THROW(apply_channel_strategy(img, parse_channel_strategy("rgb:0,1,5")), std::invalid_argument);
  EXPECT_THROW(parse_channel_strategy("rgb:1,2"), std::invalid_argument);
  EXPECT_THROW(parse_channel_strategy("median"), std::invalid_argument);
  EXPECT_EQ(parse_channel_strategy("rgb:4,0,2").to_string(), "rgb:4,0,2");
}

TEST(DataPreprocess, TilesAndNucleusCrops) {
  Image img(1, 100, 70);
  // Two bright discs on a dark background.
  for (int y = 0; y < 100; ++y)
    for (int x = 0; x < 70; ++x) {
      bool a = (y - 20) * (y - 20) + (x - 30) * (x - 30) <= 36;
      bool b = (y - 97) * (y - 97) + (x - 3) * (x - 3) <= 16;  // touches the corner: needs reflect padding
      img.at(0, y, x) = a || b ? 1000.0f : 10.0f + float((x * 7 + y * 3) % 5);
    }
  auto tiles = tile_field(img, 32, 32);
  EXPECT_EQ(tiles.size(), 3u * 2u);
  EXPECT_EQ(tiles[1].at(0, 0, 0), img.at(0, 0, 32));
  auto nuclei = detect_nuclei(img, 0, 5);
  ASSERT_EQ(nuclei.size(), 2u);
  EXPECT_NEAR(nuclei[0].y, 20.0, 1e-9);
  EXPECT_NEAR(nuclei[0].x, 30.0, 1e-9);
  EXPECT_EQ(nuclei[0].area, 113);  // lattice points in a disc of radius 6
  img.at(0, 50, 50) = NAN;  // a float TIFF may hold NaN: ignored, not undefined behaviour
  EXPECT_EQ(detect_nuclei(img, 0, 5).size(), 2u);
  auto crops = cell_crops(img, nuclei, 24);
  ASSERT_EQ(crops.size(), 2u);
  EXPECT_EQ(crops[0].at(0, 12, 12), 1000.0f);  // centred on the nucleus
  EXPECT_EQ(crops[1].height, 24);
}

TEST(DataPreprocess, IlluminationCorrectionDividesAndChecks) {
  Image img(2, 2, 2);
  std::fill(img.pixels.begin(), img.pixels.end(), 8.0f);
  std::vector<std::vector<float>> illum = {{1, 2, 4, 8}, {2, 2, 2, 2}};
  divide_illumination(img, illum, {"DNA", "ER"});
  EXPECT_EQ(img.at(0, 1, 1), 1.0f);
  EXPECT_EQ(img.at(1, 0, 0), 4.0f);
  illum[1][3] = 0;
  try {
    divide_illumination(img, illum, {"DNA", "ER"});
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("channel ER"), std::string::npos) << e.what();
  }
}
