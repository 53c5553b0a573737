#include "data/device_preprocess.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <stdexcept>

#include "data/interpolate.h"
#include "data/pillow_resample.h"
#include "data/pipeline.h"
#include "util/npy.h"

namespace tabula::data {

namespace {

std::string where(const Image& img) { return img.source.empty() ? std::string("image") : img.source; }

[[noreturn]] void unsupported(const std::string& what) {
  throw std::invalid_argument("--preprocess device: " + what + " is not done on the device; use --preprocess cpu");
}

// The resized size preprocess.cpp computes (resize_exact's, or resize_shorter's torchvision rule); {0, 0}: none.
std::pair<int, int> resized_size(const Image& img, const Transform& t) {
  if (t.resize_h > 0 && t.resize_w > 0) return {t.resize_h, t.resize_w};
  if (t.resize <= 0) return {0, 0};
  const int h = img.height, w = img.width;
  const int shorter = std::min(h, w), longer = std::max(h, w);
  const int new_long = int(double(t.resize) * double(longer) / double(shorter));
  return {h <= w ? t.resize : new_long, h <= w ? new_long : t.resize};
}

// One resampling pass's tables, from the function the CPU path itself calls.
void fill_float_axis(PreprocessPass& p, int in, int out, Interp mode) {
  const InterpWeights W = torch_interp_weights(in, out, mode, /*antialias=*/true);
  p.taps = int(W.max_taps);
  for (size_t i = 0; i < W.first.size(); ++i) {
    p.first.push_back(int32_t(W.first[i]));
    p.count.push_back(int32_t(W.count[i]));
  }
  for (double w : W.weights) p.wf.push_back(float(w));  // ATen's float weights, held as doubles there
}
void fill_u8_axis(PreprocessPass& p, int in, int out, PilFilter f, bool torch_u8) {
  const PilCoeffs c = pil_precompute_coeffs(in, out, f);
  p.taps = c.ksize;
  p.first.assign(c.first.begin(), c.first.end());
  p.count.assign(c.count.begin(), c.count.end());
  if (torch_u8) {
    p.wi = torch_u8_fixed_coeffs(c, &p.precision);
  } else {
    p.wi = pil_fixed_coeffs(c);
    p.precision = 32 - 8 - 2;
  }
}

PreprocessPass make_pass(int axis, int src_h, int src_w, int dst_h, int dst_w, int out_offset, int other_offset) {
  PreprocessPass p;
  p.axis = axis;
  p.src_h = src_h, p.src_w = src_w, p.dst_h = dst_h, p.dst_w = dst_w;
  p.out_offset = out_offset, p.other_offset = other_offset;
  return p;
}

// Resize (rh x rw; 0: none) then centre crop (ch x cw at top, left) as passes that compute only the kept window.
void plan_geometry(PreprocessPlan& plan, const Image& img, const Transform& t, bool u8, int rh, int rw) {
  const int h = img.height, w = img.width;
  const bool resize = rh > 0 && (rh != h || rw != w);
  const int sh = resize ? rh : h, sw = resize ? rw : w;
  int ch = sh, cw = sw, top = 0, left = 0;
  if (t.crop > 0) {
    if (sh < t.crop || sw < t.crop)
      throw std::invalid_argument(where(img) + ": " + std::to_string(sw) + "x" + std::to_string(sh) +
                                  (rh > 0 ? " after resizing" : "") + " is smaller than the " + std::to_string(t.crop) +
                                  "x" + std::to_string(t.crop) +
                                  " crop; resize it first (--resize) or choose a smaller --crop");
    ch = cw = t.crop;
    top = int(std::nearbyint((sh - ch) / 2.0));  // round half to even, as center_crop
    left = int(std::nearbyint((sw - cw) / 2.0));
  }
  plan.out_h = ch, plan.out_w = cw;
  const bool horizontal = resize && rw != w, vertical = resize && rh != h;
  const bool torch_u8 = t.resize_impl == "uint8";
  auto axis_table = [&](PreprocessPass& p, int axis) {
    const int in = axis == 0 ? w : h, out = axis == 0 ? rw : rh;
    if (u8) fill_u8_axis(p, in, out, pil_filter(t.interp), torch_u8);
    else fill_float_axis(p, in, out, t.interp);
  };
  if (horizontal && vertical) {
    const bool vertical_first = u8 && !torch_u8 && pil_vertical_first(h, w, rh, rw);
    if (vertical_first) {
      plan.passes.push_back(make_pass(1, h, w, ch, w, top, 0));
      plan.passes.push_back(make_pass(0, ch, w, ch, cw, left, 0));
      axis_table(plan.passes[0], 1);
      axis_table(plan.passes[1], 0);
    } else {
      plan.passes.push_back(make_pass(0, h, w, h, cw, left, 0));
      plan.passes.push_back(make_pass(1, h, cw, ch, cw, top, 0));
      axis_table(plan.passes[0], 0);
      axis_table(plan.passes[1], 1);
    }
  } else if (horizontal) {
    plan.passes.push_back(make_pass(0, h, w, ch, cw, left, top));
    axis_table(plan.passes[0], 0);
  } else if (vertical) {
    plan.passes.push_back(make_pass(1, h, w, ch, cw, top, left));
    axis_table(plan.passes[0], 1);
  } else if (ch != h || cw != w) {
    plan.passes.push_back(make_pass(-1, h, w, ch, cw, top, left));
  }
}

// The 8-bit paths' conditions, as pil_geometry states them for the CPU.
void check_u8_path(const Image& img, bool illumination, const Transform& t) {
  check_8bit_resize(img, t);
  if (illumination)
    throw std::invalid_argument(where(img) + ": --resize-impl " + t.resize_impl + " resamples 8-bit images, and "
                                "illumination division makes them floating-point (use --resize-impl tensor or "
                                "--no-illum)");
}

void plan_intensity(PreprocessPlan& plan, const Image& img, const Transform& t) {
  const uint64_t n = plan.plane_size();
  if (t.intensity == "unit") {
    plan.intensity = PlanIntensity::unit;
  } else if (t.intensity == "none") {
    plan.intensity = PlanIntensity::none;
  } else if (t.intensity == "minmax") {
    plan.intensity = PlanIntensity::minmax;
    plan.ranks[0] = 0, plan.ranks[1] = n - 1;
    plan.clip = false;
  } else if (t.intensity == "percentile") {
    if (!(t.pct_lo >= 0 && t.pct_hi <= 100 && t.pct_lo < t.pct_hi))
      throw std::invalid_argument(where(img) + ": percentiles must satisfy 0 <= lo < hi <= 100");
    plan.intensity = PlanIntensity::percentile;
    const double qs[2] = {t.pct_lo, t.pct_hi};
    for (int k = 0; k < 2; ++k) {
      // numpy: virtual index (n - 1) * q / 100, linear between the neighbouring order statistics.
      const double idx = double(n - 1) * qs[k] / 100.0;
      const uint64_t lo = uint64_t(std::floor(idx));
      plan.ranks[2 * k] = lo;
      plan.ranks[2 * k + 1] = std::min<uint64_t>(lo + 1, n - 1);
      (k == 0 ? plan.t_lo : plan.t_hi) = float(idx - double(lo));
    }
    plan.clip = true;
  } else if (t.intensity == "self-standardize") {
    unsupported("intensity self-standardize (statistics per model input)");
  } else {
    throw std::invalid_argument("unknown intensity scaling '" + t.intensity +
                                "' (unit, percentile, minmax, none, self-standardize)");
  }
}

void plan_inputs(PreprocessPlan& plan, const Image& img, const Transform& t, const ChannelStrategy& s) {
  const int C = img.channels;
  plan.mean_of_channels = false;
  plan.source.clear();
  switch (s.mode) {
    case ChannelMode::all:
      plan.inputs = 1, plan.out_channels = C;
      for (int c = 0; c < C; ++c) plan.source.push_back(c);
      break;
    case ChannelMode::per_channel:
      plan.inputs = C, plan.out_channels = 3;
      for (int c = 0; c < C; ++c) plan.source.insert(plan.source.end(), {c, c, c});
      break;
    case ChannelMode::rgb:
      plan.inputs = 1, plan.out_channels = 3;
      for (int k = 0; k < 3; ++k) {
        if (s.rgb[size_t(k)] >= C)
          throw std::invalid_argument(where(img) + ": channel strategy " + s.to_string() + " names channel " +
                                      std::to_string(s.rgb[size_t(k)]) + " but the image has " + std::to_string(C));
        plan.source.push_back(s.rgb[size_t(k)]);
      }
      break;
    case ChannelMode::mean:
      plan.inputs = 1, plan.out_channels = 3;
      plan.mean_of_channels = true;
      plan.source.assign(3, 0);
      break;
  }
  plan.normalize = t.do_normalize;
  if (!plan.normalize) return;
  auto pick = [&](const std::vector<float>& v, int k, const char* what) {
    if (v.size() == 1) return v[0];
    if (int(v.size()) != plan.out_channels)
      throw std::invalid_argument(where(img) + ": Normalize " + what + " has " + std::to_string(v.size()) +
                                  " values for " + std::to_string(plan.out_channels) + " channels");
    return v[size_t(k)];
  };
  for (int k = 0; k < plan.out_channels; ++k) {
    plan.mean.push_back(pick(t.mean, k, "mean"));
    plan.std.push_back(pick(t.std, k, "std"));
    if (plan.std.back() == 0.0f)
      throw std::invalid_argument(where(img) + ": Normalize std is 0 for channel " + std::to_string(k));
  }
}

// The files of a sample whose samples can go to the staging buffer as stored, opened with their headers and
// directories read (no pixels yet), with their stacked header; nothing when the sample is not such (the general path
// then decodes it, and says what is wrong with it). Each file is opened and read once: its samples are read later
// through the same TiffFile.
struct NativeSample {
  std::vector<TiffFile> files;
  Image header;
};
// Files a native sample holds open at once, from their headers to their samples: a sample of more goes the general
// way (one file open at a time), so that every prefetch worker holding a sample stays far below the 1,024 open files
// per process that many systems allow.
constexpr size_t kMaxOpenFiles = 32;
std::optional<NativeSample> native_sample(const Sample& smp, const DecodeLimits& limits) {
  if (!smp.h5_path.empty() || smp.channel_paths.empty() || smp.channel_paths.size() > kMaxOpenFiles)
    return std::nullopt;
  NativeSample out;
  for (const std::string& path : smp.channel_paths) {
    std::optional<TiffFile> tiff = TiffFile::open(path, limits);
    if (!tiff) return std::nullopt;
    const Image& h = tiff->header();
    if (smp.channel_paths.size() > 1 && h.channels != 1) return std::nullopt;
    if (raw_sample_of(h) == RawSample::f32) return std::nullopt;  // float or 32-bit: converted on the CPU
    Image& first = out.header;
    if (out.files.empty()) {
      first = h;
    } else {
      if (h.height != first.height || h.width != first.width || h.bits != first.bits ||
          h.max_value != first.max_value)
        return std::nullopt;
      first.channels += h.channels;
      first.channel_names.clear();  // one file's names do not name the stack
    }
    out.files.push_back(std::move(*tiff));
  }
  if (int64_t(out.header.channels) * int64_t(out.header.plane_size()) > limits.max_samples) return std::nullopt;
  return out;
}

}  // namespace

RawSample raw_sample_of(const Image& img) {
  if (!img.is_float && img.bits == 8 && img.max_value == 255.0f) return RawSample::u8;
  if (!img.is_float && img.bits == 16 && img.max_value == 65535.0f) return RawSample::u16;
  return RawSample::f32;
}

void write_raw_planes(const Image& img, RawSample s, void* dst) {
  const float* p = img.pixels.data();
  const size_t n = img.pixels.size();
  if (s == RawSample::f32) {
    std::memcpy(dst, p, n * sizeof(float));
  } else if (s == RawSample::u16) {
    uint16_t* d = static_cast<uint16_t*>(dst);
    for (size_t i = 0; i < n; ++i) d[i] = uint16_t(p[i]);
  } else {
    uint8_t* d = static_cast<uint8_t*>(dst);
    for (size_t i = 0; i < n; ++i) d[i] = uint8_t(p[i]);
  }
}

PreprocessPlan device_plan(const Image& img, bool illumination, const Transform& t, const ChannelStrategy& s) {
  if (img.channels <= 0 || img.height <= 0 || img.width <= 0)
    throw std::invalid_argument(where(img) + ": an empty image has nothing to preprocess");
  PreprocessPlan plan;
  plan.sample = raw_sample_of(img);
  plan.channels = img.channels, plan.height = img.height, plan.width = img.width;
  plan.illumination = illumination;
  plan.max_value = img.max_value;
  const bool u8 = t.resize_impl == "pil" || t.resize_impl == "uint8";
  if (!u8 && t.resize_impl != "tensor")
    throw std::invalid_argument("resize implementation '" + t.resize_impl + "': expected pil, uint8 or tensor");
  const auto [rh, rw] = resized_size(img, t);
  if ((rh != 0 || rw != 0) && (rh <= 0 || rw <= 0))
    throw std::invalid_argument(where(img) + ": resize to a non-positive size");
  if (u8) {
    check_u8_path(img, illumination, t);
    plan.u8_path = true;
    plan.intensity = PlanIntensity::none;
    if (t.intensity == "unit") plan.u8_scale = t.resize_impl == "pil" ? PlanU8Scale::divide : PlanU8Scale::multiply;
  } else {
    plan_intensity(plan, img, t);
    if (!t.antialias && rh > 0 && (rh != img.height || rw != img.width))
      unsupported("resizing without antialias (torch's non-separable kernel)");
  }
  plan_geometry(plan, img, t, u8, rh, rw);
  plan_inputs(plan, img, t, s);
  return plan;
}

std::vector<std::vector<float>> read_illumination(const std::vector<std::string>& paths, const Image& img) {
  if (int(paths.size()) != img.channels)
    throw std::invalid_argument(where(img) + ": " + std::to_string(paths.size()) + " illumination functions for " +
                                std::to_string(img.channels) + " channels");
  std::vector<std::vector<float>> out;
  for (size_t c = 0; c < paths.size(); ++c) {
    NpyArray a = read_npy(paths[c]);
    if (a.shape.size() != 2)
      throw std::runtime_error(paths[c] + ": an illumination function must be a 2-D array (H x W)");
    std::vector<float> v = a.to_f32();
    if (v.size() != img.plane_size())
      throw std::invalid_argument(where(img) + ": illumination function " + paths[c] + " for channel " +
                                  std::to_string(c) + " has " + std::to_string(v.size()) + " values, image plane has " +
                                  std::to_string(img.plane_size()));
    for (size_t i = 0; i < v.size(); ++i)
      if (!(v[i] > 0.0f))
        throw std::invalid_argument(where(img) + ": illumination function " + paths[c] + " for channel " +
                                    std::to_string(c) + " is not positive at pixel " + std::to_string(i));
    out.push_back(std::move(v));
  }
  return out;
}

std::unique_ptr<PreprocessJob> submit_sample(DevicePreprocessor& dev, const Image& img,
                                             const std::vector<std::string>& illum_paths, const Transform& t,
                                             const ChannelStrategy& s) {
  const PreprocessPlan plan = device_plan(img, !illum_paths.empty(), t, s);
  std::string key;
  for (const std::string& p : illum_paths) key += p + "\n";
  std::unique_ptr<PreprocessJob> job = dev.job(plan, key, [&] { return read_illumination(illum_paths, img); });
  write_raw_planes(img, plan.sample, job->staging());
  job->submit();
  return job;
}


std::unique_ptr<PreprocessJob> load_and_submit(DevicePreprocessor& dev, const Manifest& m, size_t i,
                                               const DecodeLimits& limits, const std::vector<std::string>& illum_paths,
                                               const Transform& t, const ChannelStrategy& s) {
  if (i >= m.samples.size()) throw std::out_of_range(m.source + ": sample " + std::to_string(i) + " out of range");
  const Sample& smp = m.samples[i];
  // A missing or broken file is named with its manifest row, as load_sample names it.
  auto with_row = [&](const std::exception& e) { return std::runtime_error(sample_name(m, i) + ": " + e.what()); };
  std::optional<NativeSample> native;
  try {
    native = native_sample(smp, limits);
  } catch (const std::exception& e) {
    throw with_row(e);
  }
  if (!native) {
    const Image img = load_sample(m, i, limits);
    if (img.is_float) check_finite(img);
    return submit_sample(dev, img, illum_paths, t, s);
  }
  Image& header = native->header;
  header.source = sample_name(m, i);
  const PreprocessPlan plan = device_plan(header, !illum_paths.empty(), t, s);
  std::string key;
  for (const std::string& p : illum_paths) key += p + "\n";
  std::unique_ptr<PreprocessJob> job = dev.job(plan, key, [&] { return read_illumination(illum_paths, header); });
  uint8_t* staging = static_cast<uint8_t*>(job->staging());
  const size_t plane_bytes = header.plane_size() * raw_sample_bytes(plan.sample);
  size_t at = 0;
  for (TiffFile& file : native->files) {
    const size_t n = size_t(file.header().channels) * plane_bytes;
    try {
      file.read_native(staging + at, n);
    } catch (const std::exception& e) {
      throw with_row(e);
    }
    at += n;
  }
  job->submit();
  return job;
}

}  // namespace tabula::data
