// Preprocessing on a device: one sample's decoded raw planes (u8 / u16 / f32, as the file stored them) turned into
// its model inputs where the model runs, by the steps of data/preprocess.h (illumination division, intensity
// scaling with exact percentiles, antialiased resize on the tensor or the Pillow-exact path, centre crop, channel
// replication, Normalize). The plan is what data/device_preprocess.h resolves from a Transform: every size, offset
// and resampling table is computed there by the CPU path's own code, so a backend only executes it.
//
// Executors: the CUDA backend's (engine/cuda/preprocess.cu, through Backend::preprocessor) and the host emulation
// run_plan_on_host (engine/preprocess_host.cpp), which runs the same per-element functions
// (engine/preprocess_kernels.h) in loops: the CPU tests check it against data/preprocess bit for bit, the GPU tests
// check the device against both.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace tabula {

// Sample types of raw planes as decoders deliver them.
enum class RawSample : int32_t { u8 = 0, u16 = 1, f32 = 2 };
// Inline: libtabula_cuda.so calls it, and the binary exports only the engine functions it links itself.
inline size_t raw_sample_bytes(RawSample s) { return s == RawSample::u8 ? 1 : s == RawSample::u16 ? 2 : 4; }
const char* raw_sample_name(RawSample s);

// One resampling (or cropping) pass over every plane: dst[p][y][x] for a dst_h x dst_w window.
// axis 0 resamples along the width: output column x + out_offset of the resized row y + other_offset;
// axis 1 along the height: output row y + out_offset of column x + other_offset;
// axis -1 copies: dst[y][x] = src[y + out_offset][x + other_offset] (a crop without resize).
struct PreprocessPass {
  int axis = -1;
  int src_h = 0, src_w = 0, dst_h = 0, dst_w = 0;
  int out_offset = 0, other_offset = 0;
  // Per output index along the axis (resized size entries): first source index, tap count; `taps` weights each.
  int taps = 0;
  std::vector<int32_t> first, count;
  std::vector<float> wf;    // float path: ATen's antialiased float weights (data/interpolate.h)
  std::vector<int32_t> wi;  // 8-bit paths: fixed-point weights (data/pillow_resample.h)
  int precision = 0;        // 8-bit paths: fraction bits of wi
};

enum class PlanIntensity : int32_t { none = 0, unit = 1, percentile = 2, minmax = 3 };
// How the 8-bit paths' uint8 results become floats: as they are, ToTensor's x / 255, or v2.ToDtype's x * (1/255).
enum class PlanU8Scale : int32_t { none = 0, divide = 1, multiply = 2 };

struct PreprocessPlan {
  RawSample sample = RawSample::f32;
  int channels = 0, height = 0, width = 0;
  bool illumination = false;  // divide each plane by its illumination function (float path only)
  // The float path (raw -> float -> intensity -> float passes) or the 8-bit path (passes on the uint8 planes).
  bool u8_path = false;
  PlanIntensity intensity = PlanIntensity::none;
  float max_value = 1.0f;  // unit: x / max_value (skipped when 1, as scale_to_unit does)
  // percentile / minmax: order statistics (0-based ranks) per channel: lo, lo + 1, hi, hi + 1 for percentiles
  // (numpy's linear rule: value = lerp(a, b, t)); 0 and n - 1 for minmax.
  uint64_t ranks[4] = {0, 0, 0, 0};
  float t_lo = 0.0f, t_hi = 0.0f;
  bool clip = true;
  std::vector<PreprocessPass> passes;  // in order; the last writes out_h x out_w
  int out_h = 0, out_w = 0;
  // Model inputs: `inputs` images of `out_channels` channels; channel k of input i is source channel
  // source[i * out_channels + k], or the mean of all channels when mean_of_channels.
  int inputs = 0, out_channels = 0;
  std::vector<int32_t> source;
  bool mean_of_channels = false;
  PlanU8Scale u8_scale = PlanU8Scale::none;
  bool normalize = false;
  std::vector<float> mean, std;  // per output channel

  size_t raw_bytes() const { return size_t(channels) * size_t(height) * size_t(width) * raw_sample_bytes(sample); }
  size_t plane_size() const { return size_t(height) * size_t(width); }
  Shape output_shape() const { return {inputs, out_channels, out_h, out_w}; }
};

// The host emulation: the plan run with the device kernels' per-element functions, serially. `illum` holds one
// plane per channel when plan.illumination. Returns [inputs, out_channels, out_h, out_w] f32 on the CPU.
Tensor run_plan_on_host(const PreprocessPlan& plan, const void* raw, const std::vector<const float*>& illum);
// The order statistics of one plane by the radix select the device runs (4 passes of 8 bits over order keys).
std::vector<float> radix_select_host(const float* v, size_t n, const std::vector<uint64_t>& ranks);

// One sample's work on a device: its pinned staging buffer (the caller writes the raw planes there), then
// submit() queues the upload and the plan's kernels on the preprocessing stream and returns at once.
class PreprocessJob {
 public:
  virtual ~PreprocessJob() = default;
  virtual void* staging() = 0;  // plan.raw_bytes() bytes, page-locked
  virtual void submit() = 0;
  virtual const PreprocessPlan& plan() const = 0;
};

// A part of a job's model inputs: inputs [first, first + count) of it.
struct JobSlice {
  PreprocessJob* job = nullptr;
  int first = 0, count = 0;
};

// Preprocessing on one device (Backend::preprocessor). job() and submit() may be called from any thread (the
// decode workers); gather() from the thread that runs the model.
class DevicePreprocessor {
 public:
  virtual ~DevicePreprocessor() = default;
  // A job for `plan`. With plan.illumination, `illum_key` names the illumination functions (their paths) and
  // load_illum returns them (one plane per channel) the first time a key is seen; they stay on the device.
  virtual std::unique_ptr<PreprocessJob> job(const PreprocessPlan& plan, const std::string& illum_key,
                                             const std::function<std::vector<std::vector<float>>()>& load_illum) = 0;
  // The slices' model inputs, in order, as one f32 [sum of counts, C, h, w] tensor on the device, ordered on the
  // model's stream after the jobs' work (no host synchronisation). The jobs must stay alive until this returns.
  virtual Tensor gather(const std::vector<JobSlice>& slices) = 0;
};

}  // namespace tabula
