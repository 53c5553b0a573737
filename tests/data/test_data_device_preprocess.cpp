// Device preprocessing without a device: the plans data/device_preprocess.h builds, run by the host emulation of
// the kernels (engine/preprocess_host.cpp, the per-element functions the CUDA kernels run), must give exactly the
// bits of the CPU path (preprocess_image) -- every sample type, intensity, resize implementation, crop and channel
// strategy; the radix select must find the very order statistics numpy's percentile rule uses. The GPU suite at the
// end runs the CUDA executor against the CPU path and skips without a device.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>

#include "data/device_preprocess.h"
#include "data/manifest.h"
#include "data/preprocess.h"
#include "data/synth.h"
#include "engine/backend.h"
#include "engine/fileio.h"
#include "engine/preprocess_kernels.h"
#include "engine/preprocess_plan.h"
#include "engine/system.h"
#include "tests/test_util.h"
#include "util/npy.h"

using namespace tabula;
using namespace tabula::data;

namespace {

// A C x H x W image of the given file sample type with random samples (u8 / u16: integers of the type; f32:
// floats of both signs with ties).
Image random_image(RawSample s, int C, int H, int W, uint32_t seed) {
  std::mt19937 rng(seed);
  Image img(C, H, W);
  img.source = "random.tif";
  if (s == RawSample::u8) img.bits = 8, img.max_value = 255.0f;
  if (s == RawSample::u16) img.bits = 16, img.max_value = 65535.0f;
  if (s == RawSample::f32) img.bits = 32, img.is_float = true, img.max_value = 1.0f;
  for (float& v : img.pixels) {
    if (s == RawSample::u8) v = float(rng() % 256);
    else if (s == RawSample::u16) v = float(rng() % 65536);
    else v = (rng() % 7 == 0) ? 0.25f : float(int(rng() % 20001) - 5000) / 1237.0f;
  }
  return img;
}

// The CPU path's inputs as one [inputs, C, h, w] tensor.
Tensor cpu_path(const Image& img, const Transform& t, const ChannelStrategy& s) {
  const std::vector<Image> ins = preprocess_image(img, t, s);
  Tensor out = Tensor::empty({int64_t(ins.size()), ins[0].channels, ins[0].height, ins[0].width});
  float* p = out.data<float>();
  for (const Image& x : ins) p = std::copy(x.pixels.begin(), x.pixels.end(), p);
  return out;
}

Tensor emulated(const Image& img, const Transform& t, const ChannelStrategy& s,
                const std::vector<std::vector<float>>& illum = {}) {
  const PreprocessPlan plan = device_plan(img, !illum.empty(), t, s);
  std::vector<uint8_t> raw(plan.raw_bytes());
  write_raw_planes(img, plan.sample, raw.data());
  std::vector<const float*> il;
  for (const auto& v : illum) il.push_back(v.data());
  return run_plan_on_host(plan, raw.data(), il);
}

// Same shape and the same value in every element (-0 and +0 count as equal).
::testing::AssertionResult same_bits(const Tensor& want, const Tensor& got) {
  if (want.shape() != got.shape()) return ::testing::AssertionFailure() << want.str() << " vs " << got.str();
  const float *a = want.data<float>(), *b = got.data<float>();
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < want.numel(); ++i)
    if (!(a[i] == b[i])) bad += 1, first = first < 0 ? i : first;
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << want.numel() << " differ, first at " << first << ": "
                                       << a[first] << " vs " << b[first];
}

Transform tensor_transform(int resize, int crop, Interp interp, const std::string& intensity) {
  Transform t;
  t.resize = resize;
  t.crop = crop;
  t.interp = interp;
  t.intensity = intensity;
  t.resize_impl = "tensor";
  return t;
}

}  // namespace

TEST(DeviceRadixSelect, FindsNumpysOrderStatisticsBitForBit) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 40; ++trial) {
    const size_t n = 1 + rng() % 3000;
    std::vector<float> v(n);
    for (float& x : v) {
      switch (trial % 4) {
        case 0: x = float(rng() % 65536); break;                              // 16-bit samples
        case 1: x = float(int(rng() % 2001) - 1000) / 7.0f; break;            // both signs, many ties
        case 2: x = std::ldexp(float(rng() % 1000) / 1000.0f, int(rng() % 60) - 30); break;  // wide exponents
        default: x = (rng() % 5 == 0) ? -0.0f : float(rng() % 3);              // signed zeros, few values
      }
    }
    if (trial == 5) v[0] = INFINITY, v[n - 1] = -INFINITY;
    std::vector<uint64_t> ranks = {0, n - 1, n / 2, rng() % n, rng() % n};
    const std::vector<float> got = radix_select_host(v.data(), n, ranks);
    std::vector<float> sorted = v;
    std::sort(sorted.begin(), sorted.end());
    for (size_t k = 0; k < ranks.size(); ++k)
      EXPECT_EQ(got[k], sorted[ranks[k]]) << "trial " << trial << " rank " << ranks[k] << " of " << n;
  }
  EXPECT_THROW(radix_select_host(nullptr, 0, {0}), std::invalid_argument);
}

TEST(DeviceRadixSelect, PercentilePlanEqualsPercentileLinear) {
  // The plan's ranks and interpolation weights with the kernels' lerp give numpy's percentile exactly.
  std::mt19937 rng(11);
  for (int trial = 0; trial < 20; ++trial) {
    Image img = random_image(trial % 2 ? RawSample::u16 : RawSample::f32, 1, 1 + int(rng() % 40), 1 + int(rng() % 40),
                             uint32_t(trial));
    for (auto [lo, hi] : {std::pair{1.0, 99.0}, {0.0, 100.0}, {2.5, 97.5}, {33.3, 66.6}}) {
      Transform t = tensor_transform(0, 0, Interp::bilinear, "percentile");
      t.pct_lo = lo, t.pct_hi = hi;
      t.do_normalize = false;
      const PreprocessPlan plan = device_plan(img, false, t, parse_channel_strategy("all"));
      const std::vector<float> os = radix_select_host(img.pixels.data(), img.pixels.size(),
                                                      {plan.ranks[0], plan.ranks[1], plan.ranks[2], plan.ranks[3]});
      std::vector<float> v = img.pixels;
      EXPECT_EQ(double(prep::percentile_lerp(os[0], os[1], plan.t_lo)), percentile_linear(v, lo)) << lo;
      EXPECT_EQ(double(prep::percentile_lerp(os[2], os[3], plan.t_hi)), percentile_linear(v, hi)) << hi;
    }
  }
}

TEST(DevicePreprocessEmulation, TensorPathEqualsCpuPathBitForBit) {
  int checked = 0;
  for (RawSample s : {RawSample::u8, RawSample::u16, RawSample::f32})
    for (const char* intensity : {"unit", "percentile", "minmax", "none"})
      for (Interp interp : {Interp::bilinear, Interp::bicubic}) {
        const Image img = random_image(s, 3, 41, 57, uint32_t(checked + 1));
        // down, up, shorter side equal (width only), exact size changing one axis, no resize with a crop
        for (auto [resize, crop] : {std::pair{24, 20}, {96, 90}, {41, 33}, {0, 17}, {20, 0}}) {
          Transform t = tensor_transform(resize, crop, interp, intensity);
          EXPECT_TRUE(same_bits(cpu_path(img, t, parse_channel_strategy("rgb")),
                                emulated(img, t, parse_channel_strategy("rgb"))))
              << raw_sample_name(s) << " " << t.describe();
          ++checked;
        }
        Transform exact = tensor_transform(0, 16, interp, intensity);
        exact.resize_h = 41, exact.resize_w = 23;  // height unchanged: the width pass alone
        EXPECT_TRUE(same_bits(cpu_path(img, exact, parse_channel_strategy("all")),
                              emulated(img, exact, parse_channel_strategy("all"))))
            << exact.describe();
        exact.resize_h = 19, exact.resize_w = 57;  // the height pass alone
        EXPECT_TRUE(same_bits(cpu_path(img, exact, parse_channel_strategy("all")),
                              emulated(img, exact, parse_channel_strategy("all"))))
            << exact.describe();
        checked += 2;
      }
  EXPECT_EQ(checked, 3 * 4 * 2 * 7);
}

TEST(DevicePreprocessEmulation, EightBitPathsEqualCpuPathBitForBit) {
  const Image img = random_image(RawSample::u8, 3, 60, 45, 3);
  const Image tall = random_image(RawSample::u8, 1, 90, 40, 4);  // Pillow runs the vertical pass first here
  for (const char* impl : {"pil", "uint8"})
    for (Interp interp : {Interp::bilinear, Interp::bicubic, Interp::lanczos, Interp::box, Interp::hamming}) {
      if (std::string(impl) == "uint8" && interp != Interp::bilinear && interp != Interp::bicubic) continue;
      for (const char* intensity : {"unit", "none"})
        for (auto [resize, crop] : {std::pair{32, 28}, {70, 64}, {0, 30}}) {
          Transform t = tensor_transform(resize, crop, interp, intensity);
          t.resize_impl = impl;
          for (const Image* im : {&img, &tall}) {
            EXPECT_TRUE(same_bits(cpu_path(*im, t, parse_channel_strategy("per-channel")),
                                  emulated(*im, t, parse_channel_strategy("per-channel"))))
                << impl << " " << t.describe() << " on " << im->height << "x" << im->width;
          }
        }
      Transform sq = tensor_transform(0, 0, interp, "unit");
      sq.resize_impl = impl;
      sq.resize_h = 20, sq.resize_w = 44;  // strong vertical shrink, width nearly kept
      EXPECT_TRUE(same_bits(cpu_path(tall, sq, parse_channel_strategy("per-channel")),
                            emulated(tall, sq, parse_channel_strategy("per-channel"))))
          << impl << " " << sq.describe();
    }
}

TEST(DevicePreprocessEmulation, ChannelStrategiesAndNormalize) {
  const Image img = random_image(RawSample::u16, 5, 30, 34, 9);
  for (const char* strategy : {"per-channel", "rgb:4,0,2", "mean", "all"}) {
    Transform t = tensor_transform(28, 24, Interp::bicubic, "percentile");
    if (std::string(strategy) == "all") t.mean = {0.5f}, t.std = {0.25f};
    EXPECT_TRUE(same_bits(cpu_path(img, t, parse_channel_strategy(strategy)),
                          emulated(img, t, parse_channel_strategy(strategy))))
        << strategy;
    t.do_normalize = false;
    EXPECT_TRUE(same_bits(cpu_path(img, t, parse_channel_strategy(strategy)),
                          emulated(img, t, parse_channel_strategy(strategy))))
        << strategy << " without Normalize";
  }
}

TEST(DevicePreprocessEmulation, IlluminationDivisionBeforeScaling) {
  const Image raw = random_image(RawSample::u16, 2, 26, 31, 5);
  std::vector<std::vector<float>> illum(2, std::vector<float>(raw.plane_size()));
  std::mt19937 rng(5);
  for (auto& plane : illum)
    for (float& v : plane) v = 0.5f + float(rng() % 1000) / 997.0f;
  Image divided = raw;
  divide_illumination(divided, illum, {"DNA", "RNA"});
  for (const char* intensity : {"unit", "percentile", "minmax"}) {
    const Transform t = tensor_transform(24, 20, Interp::bilinear, intensity);
    EXPECT_TRUE(same_bits(cpu_path(divided, t, parse_channel_strategy("per-channel")),
                          emulated(raw, t, parse_channel_strategy("per-channel"), illum)))
        << intensity;
  }
}

TEST(DevicePreprocessEmulation, JumpSizedFieldBitForBit) {
  // The JUMP shape: 1080 x 1080 16-bit channels, illumination, 1st/99th percentiles, Resize(256) -> CenterCrop(224).
  const Image raw = random_image(RawSample::u16, 2, 1080, 1080, 31);
  std::vector<std::vector<float>> illum(2, std::vector<float>(raw.plane_size()));
  for (int c = 0; c < 2; ++c)
    for (size_t i = 0; i < raw.plane_size(); ++i) illum[size_t(c)][i] = 0.6f + 0.8f * float((i * 31 + c) % 1000) / 1e3f;
  Image divided = raw;
  divide_illumination(divided, illum, {});
  const Transform t = tensor_transform(256, 224, Interp::bilinear, "percentile");
  EXPECT_TRUE(same_bits(cpu_path(divided, t, parse_channel_strategy("per-channel")),
                        emulated(raw, t, parse_channel_strategy("per-channel"), illum)));
}

TEST(DevicePreprocessPlan, RefusesWhatTheDevicePathDoesNotDo) {
  const Image u16 = random_image(RawSample::u16, 3, 40, 40, 1);
  const ChannelStrategy rgb = parse_channel_strategy("rgb");
  auto message = [&](const Image& img, const Transform& t, bool illum = false) {
    try {
      device_plan(img, illum, t, rgb);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  Transform t = tensor_transform(32, 24, Interp::bilinear, "self-standardize");
  EXPECT_NE(message(u16, t).find("--preprocess cpu"), std::string::npos) << message(u16, t);
  t.intensity = "unit";
  t.antialias = false;
  EXPECT_NE(message(u16, t).find("without antialias"), std::string::npos) << message(u16, t);
  t.antialias = true;
  t.resize_impl = "pil";
  EXPECT_NE(message(u16, t).find("resamples 8-bit images"), std::string::npos) << message(u16, t);
  const Image u8 = random_image(RawSample::u8, 3, 40, 40, 2);
  EXPECT_NE(message(u8, t, true).find("illumination"), std::string::npos) << message(u8, t, true);
  t.resize_impl = "tensor";
  t.resize = 0, t.crop = 64;
  EXPECT_NE(message(u16, t).find("smaller than the 64x64 crop"), std::string::npos) << message(u16, t);
  t.crop = 0;
  EXPECT_NE(message(random_image(RawSample::u16, 2, 8, 8, 3), t).find("names channel 2"), std::string::npos);
  // What the device path does accept plans without error.
  t.crop = 24, t.resize = 32;
  EXPECT_EQ(message(u16, t), "(no error)");
}

namespace {

// A DevicePreprocessor on the host: jobs run the emulation, so the driver (submit_sample: staging, illumination
// loading and caching, gather order) is tested without a device.
class HostPreprocessor : public DevicePreprocessor {
 public:
  struct Job : PreprocessJob {
    PreprocessPlan p;
    std::vector<uint8_t> raw;
    std::vector<const float*> illum;
    Tensor out;
    void* staging() override { return raw.data(); }
    void submit() override { out = run_plan_on_host(p, raw.data(), illum); }
    const PreprocessPlan& plan() const override { return p; }
  };
  std::unique_ptr<PreprocessJob> job(const PreprocessPlan& plan, const std::string& key,
                                     const std::function<std::vector<std::vector<float>>()>& load) override {
    auto j = std::make_unique<Job>();
    j->p = plan;
    j->raw.resize(plan.raw_bytes());
    if (plan.illumination) {
      if (!illum_.count(key)) illum_[key] = load(), ++loads;
      for (const auto& v : illum_[key]) j->illum.push_back(v.data());
    }
    return j;
  }
  Tensor gather(const std::vector<JobSlice>& slices) override {
    const PreprocessPlan& p0 = slices.at(0).job->plan();
    int64_t n = 0;
    for (const JobSlice& s : slices) n += s.count;
    Tensor out = Tensor::empty({n, p0.out_channels, p0.out_h, p0.out_w});
    const int64_t per = p0.out_channels * int64_t(p0.out_h) * p0.out_w;
    float* o = out.data<float>();
    for (const JobSlice& s : slices)
      o = std::copy_n(static_cast<Job*>(s.job)->out.data<float>() + s.first * per, s.count * per, o);
    return out;
  }
  int loads = 0;

 private:
  std::map<std::string, std::vector<std::vector<float>>> illum_;
};

}  // namespace

TEST(DevicePreprocessDriver, SubmitsStagesIlluminationOnceAndGathersSlices) {
  const std::string dir = (test::scratch_dir() / "device_preprocess_driver").string();
  std::filesystem::create_directories(dir);
  const Image raw = random_image(RawSample::u16, 2, 20, 22, 8);
  std::vector<std::vector<float>> illum(2, std::vector<float>(raw.plane_size(), 0.0f));
  std::vector<std::string> paths;
  for (int c = 0; c < 2; ++c) {
    for (size_t i = 0; i < raw.plane_size(); ++i) illum[size_t(c)][i] = 0.75f + 0.01f * float((i * (c + 3)) % 50);
    paths.push_back(dir + "/Illum" + std::to_string(c) + ".npy");
    write_npy(paths.back(), {20, 22}, illum[size_t(c)].data());
  }
  const Transform t = tensor_transform(16, 14, Interp::bicubic, "percentile");
  const ChannelStrategy pc = parse_channel_strategy("per-channel");
  HostPreprocessor dev;
  auto a = submit_sample(dev, raw, paths, t, pc);
  auto b = submit_sample(dev, raw, {}, t, pc);
  EXPECT_EQ(dev.loads, 1);
  auto a2 = submit_sample(dev, raw, paths, t, pc);
  EXPECT_EQ(dev.loads, 1) << "illumination functions are read once per set";
  Image divided = raw;
  divide_illumination(divided, illum, {});
  const Tensor want_a = cpu_path(divided, t, pc), want_b = cpu_path(raw, t, pc);
  // Inputs 1 of a, both of b, 0 of a2: a batch that starts and ends inside samples.
  const Tensor got = dev.gather({{a.get(), 1, 1}, {b.get(), 0, 2}, {a2.get(), 0, 1}});
  ASSERT_EQ(got.shape(), (Shape{4, 3, 14, 14}));
  EXPECT_TRUE(same_bits(want_a.slice(0, 1, 2).contiguous(), got.slice(0, 0, 1).contiguous()));
  EXPECT_TRUE(same_bits(want_b, got.slice(0, 1, 3).contiguous()));
  EXPECT_TRUE(same_bits(want_a.slice(0, 0, 1).contiguous(), got.slice(0, 3, 4).contiguous()));
  // A non-positive illumination value is an error naming the file.
  illum[1][7] = 0.0f;
  write_npy(paths[1], {20, 22}, illum[1].data());
  try {
    read_illumination(paths, raw);
    ADD_FAILURE() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("Illum1.npy for channel 1 is not positive at pixel 7"), std::string::npos)
        << e.what();
  }
}

// load_and_submit decodes JUMP-style fields straight into the staging buffer (decode_tiff_native): the staged bytes
// and the model inputs must equal the general path's (load_sample + submit_sample) for 16-bit deflate + predictor
// (synth's), uncompressed and 8-bit fields, and fields it does not take (PNG channels) must go the general way.
TEST(DevicePreprocessDriver, FieldsDecodedIntoStagingEqualTheGeneralPath) {
  namespace fs = std::filesystem;
  const fs::path dir = test::scratch_dir() / "device_preprocess_native";
  fs::remove_all(dir);
  CellPaintingConfig c;
  c.batches = 1, c.plates_per_batch = 1, c.sites = 1, c.size = 70, c.threads = 1;
  synth_cellpainting(dir.string(), c);
  Manifest m = read_manifest(dir.string());
  ASSERT_GE(m.samples.size(), 4u);
  m.samples.resize(4);
  std::vector<std::vector<std::string>> illum;
  for (Sample& smp : m.samples) illum.push_back(std::move(smp.illum_paths)), smp.illum_paths.clear();
  ASSERT_EQ(illum[0].size(), 5u);
  // Field 1 uncompressed, field 2 8-bit (deflate + predictor), field 3 PNG channels (the general path).
  for (const std::string& p : m.samples[1].channel_paths) write_tiff(p, read_image(p), 16, false);
  for (const std::string& p : m.samples[2].channel_paths) {
    Image img = read_image(p);
    for (float& v : img.pixels) v = std::floor(v / 257.0f);
    write_tiff(p, img, 8, true);
  }
  for (const std::string& p : m.samples[3].channel_paths) {
    Image img = read_image(p);
    for (float& v : img.pixels) v = std::floor(v / 257.0f);
    write_png(p, img);  // PNG bytes under the .tif name: images are decoded by content
  }
  const Transform t = tensor_transform(40, 32, Interp::bilinear, "percentile");
  const ChannelStrategy pc = parse_channel_strategy("per-channel");
  HostPreprocessor dev;
  for (size_t i = 0; i < m.samples.size(); ++i) {
    SCOPED_TRACE("field " + std::to_string(i));
    for (bool with_illum : {false, true}) {
      const std::vector<std::string> paths = with_illum ? illum[i] : std::vector<std::string>{};
      auto native = load_and_submit(dev, m, i, {}, paths, t, pc);
      auto general = submit_sample(dev, load_sample(m, i), paths, t, pc);
      const auto& a = static_cast<HostPreprocessor::Job&>(*native);
      const auto& b = static_cast<HostPreprocessor::Job&>(*general);
      EXPECT_EQ(a.p.sample, i == 2 || i == 3 ? RawSample::u8 : RawSample::u16);
      EXPECT_EQ(a.raw, b.raw);
      EXPECT_TRUE(same_bits(a.out, b.out));
    }
  }
  // A broken file is still an error naming it.
  const std::string broken = m.samples[0].channel_paths[2];
  std::vector<uint8_t> bytes = read_file_bytes(broken);
  bytes.resize(bytes.size() / 2);
  write_file_atomic(broken, bytes.data(), bytes.size());
  try {
    load_and_submit(dev, m, 0, {}, {}, t, pc);
    ADD_FAILURE() << "a truncated channel file was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(broken), std::string::npos) << e.what();
  }
}

// A native sample keeps its files open from their headers to their samples; a sample of many files goes the general
// way, one file open at a time, so it still loads where the process may open few files (here: 16 more than it has).
TEST(DevicePreprocessDriver, SampleOfManyFilesLoadsUnderALowOpenFileLimit) {
  namespace fs = std::filesystem;
  const fs::path dir = test::scratch_dir() / "device_preprocess_many";
  fs::create_directories(dir);
  Manifest m;
  m.source = "many.csv";
  m.samples.emplace_back();
  for (int c = 0; c < 40; ++c) {
    Image img(1, 12, 10);
    for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = float((i * 37 + size_t(c) * 101) % 65536);
    const std::string p = (dir / ("ch" + std::to_string(c) + ".tif")).string();
    write_tiff(p, img, 16, c % 2 == 1);
    m.samples[0].channel_paths.push_back(p);
  }
  Transform t = tensor_transform(0, 8, Interp::bilinear, "percentile");
  t.do_normalize = false;
  const ChannelStrategy all = parse_channel_strategy("all");
  HostPreprocessor dev;
  const auto general = submit_sample(dev, load_sample(m, 0), {}, t, all);
  size_t open_now = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/fd")) ++open_now;
  rlimit was{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &was), 0);
  rlimit low = was;
  low.rlim_cur = open_now + 16;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  std::unique_ptr<PreprocessJob> native;
  std::string error;
  try {
    native = load_and_submit(dev, m, 0, {}, {}, t, all);
  } catch (const std::exception& e) {
    error = e.what();
  }
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &was), 0);
  ASSERT_TRUE(native) << error;
  const auto& a = static_cast<HostPreprocessor::Job&>(*native);
  const auto& b = static_cast<HostPreprocessor::Job&>(*general);
  EXPECT_EQ(a.raw, b.raw);
  EXPECT_TRUE(same_bits(a.out, b.out));
}

// ---- on a device: the CUDA executor against the CPU path (skips without one) ----

namespace {

bool have_gpu() { return !cuda_devices().empty() && find_backend(Device::cuda) != nullptr; }

// The device's result for one sample through Backend::preprocessor, brought back.
Tensor on_device(DevicePreprocessor& dev, const Image& img, const Transform& t, const ChannelStrategy& s) {
  auto job = submit_sample(dev, img, {}, t, s);
  return to_host(dev.gather({{job.get(), 0, job->plan().inputs}}));
}

}  // namespace

TEST(GpuDevicePreprocess, KernelsEqualCpuPathBitForBit) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device on this machine";
  auto dev = find_backend(Device::cuda)->preprocessor(0);
  int checked = 0;
  for (RawSample s : {RawSample::u8, RawSample::u16, RawSample::f32})
    for (const char* intensity : {"unit", "percentile", "minmax", "none"})
      for (Interp interp : {Interp::bilinear, Interp::bicubic})
        for (const char* strategy : {"per-channel", "rgb", "mean"}) {
          const Image img = random_image(s, 3, 301, 257, uint32_t(++checked));
          const Transform t = tensor_transform(256, 224, interp, intensity);
          EXPECT_TRUE(same_bits(cpu_path(img, t, parse_channel_strategy(strategy)),
                                on_device(*dev, img, t, parse_channel_strategy(strategy))))
              << raw_sample_name(s) << " " << strategy << " " << t.describe();
        }
  const Image u8 = random_image(RawSample::u8, 3, 480, 300, 99);
  for (const char* impl : {"pil", "uint8"})
    for (Interp interp : {Interp::bilinear, Interp::bicubic}) {
      Transform t = tensor_transform(256, 224, interp, "unit");
      t.resize_impl = impl;
      EXPECT_TRUE(same_bits(cpu_path(u8, t, parse_channel_strategy("rgb")),
                            on_device(*dev, u8, t, parse_channel_strategy("rgb"))))
          << impl << " " << t.describe();
    }
  // Pillow's vertical-first order, and a crop without resize.
  const Image tall = random_image(RawSample::u8, 1, 480, 200, 98);
  Transform v = tensor_transform(0, 0, Interp::bicubic, "unit");
  v.resize_impl = "pil";
  v.resize_h = 120, v.resize_w = 190;
  EXPECT_TRUE(same_bits(cpu_path(tall, v, parse_channel_strategy("per-channel")),
                        on_device(*dev, tall, v, parse_channel_strategy("per-channel"))));
  const Transform crop = tensor_transform(0, 150, Interp::bilinear, "minmax");
  EXPECT_TRUE(same_bits(cpu_path(u8, crop, parse_channel_strategy("all")),
                        on_device(*dev, u8, crop, parse_channel_strategy("all"))));
}

TEST(GpuDevicePreprocess, JumpSizedFieldWithIllumination) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device on this machine";
  auto dev = find_backend(Device::cuda)->preprocessor(0);
  const std::string dir = (test::scratch_dir() / "gpu_device_preprocess_illum").string();
  std::filesystem::create_directories(dir);
  const Image raw = random_image(RawSample::u16, 5, 1080, 1080, 21);
  std::vector<std::string> paths;
  std::vector<std::vector<float>> illum;
  for (int c = 0; c < 5; ++c) {
    illum.emplace_back(raw.plane_size());
    for (size_t i = 0; i < raw.plane_size(); ++i) illum.back()[i] = 0.6f + 0.8f * float((i * 31 + c) % 1000) / 1000.0f;
    paths.push_back(dir + "/Illum" + std::to_string(c) + ".npy");
    write_npy(paths.back(), {1080, 1080}, illum.back().data());
  }
  Image divided = raw;
  divide_illumination(divided, illum, {});
  const Transform t = tensor_transform(256, 224, Interp::bilinear, "percentile");
  const ChannelStrategy pc = parse_channel_strategy("per-channel");
  auto job = submit_sample(*dev, raw, paths, t, pc);
  EXPECT_TRUE(same_bits(cpu_path(divided, t, pc), to_host(dev->gather({{job.get(), 0, 5}}))));
}
