// Preprocessing where the model runs (`tabula embed --preprocess device`): a sample's decoded planes go to the device
// as the file stored them (u8 / u16 / f32) and the steps of preprocess_image run there (engine/preprocess_plan.h).
// Here the Transform and ChannelStrategy become a PreprocessPlan, with every size, crop offset and resampling table
// computed by the CPU path's own functions (data/interpolate.h, data/pillow_resample.h), so the device only executes;
// and a decoded sample becomes a submitted job.
//
// Supported: intensity unit | percentile | minmax | none, resize on the tensor path with antialias (bilinear,
// bicubic) or on the 8-bit paths (pil, uint8), centre crop, every channel strategy, Normalize, illumination
// division (float path). Refused with a message naming the setting: self-standardize intensity and the tensor path
// without antialias (use --preprocess cpu for them).
#pragma once
#include <string>
#include <vector>

#include "data/image.h"
#include "data/manifest.h"
#include "data/preprocess.h"
#include "engine/preprocess_plan.h"

namespace tabula::data {

// How an image's samples travel: u8 for 8-bit integer images, u16 for 16-bit ones, f32 otherwise.
RawSample raw_sample_of(const Image& img);
// img's pixels in `s` (u8 / u16 exact: they hold integer samples of that type) into dst.
void write_raw_planes(const Image& img, RawSample s, void* dst);

// The plan of preprocess_image(img, t, s) for an image of img's size and sample type (its pixels are not read);
// `illumination`: the planes will be divided by illumination functions first (load_sample's step).
// Throws std::invalid_argument naming the setting for what the device path does not do, and with the CPU path's
// messages for what neither does (a crop larger than the image, a channel out of range, ...).
PreprocessPlan device_plan(const Image& img, bool illumination, const Transform& t, const ChannelStrategy& s);

// Plans `img` (decoded without illumination division) and submits it to `dev`: its planes are written into the job's
// pinned staging buffer, and the upload and kernels queued. illum_paths: the sample's illumination .npy files
// (one per channel, empty for none), read once per set and kept on the device.
std::unique_ptr<PreprocessJob> submit_sample(DevicePreprocessor& dev, const Image& img,
                                             const std::vector<std::string>& illum_paths, const Transform& t,
                                             const ChannelStrategy& s);

// Sample i of m (its illumination paths cleared; they come as illum_paths) decoded into a submitted job. When its
// channels are TIFF files of 8- or 16-bit unsigned samples, one size (JUMP-style fields: a one-page file per
// channel, or one multi-page file), the headers plan the job and every file is decoded straight into its planes of
// the job's pinned staging buffer as the file stores the samples (TiffFile: each file opened once, its header read
// once; no float image, no conversion back; uncompressed strips are read from the file straight into the staging
// buffer, compressed files read whole once and decoded there).
// Anything else is load_sample + check_finite + submit_sample.
std::unique_ptr<PreprocessJob> load_and_submit(DevicePreprocessor& dev, const Manifest& m, size_t i,
                                               const DecodeLimits& limits, const std::vector<std::string>& illum_paths,
                                               const Transform& t, const ChannelStrategy& s);

// The illumination functions of `paths` as divide_illumination checks them: one per channel of img's plane size,
// every value positive. Errors name the file and channel.
std::vector<std::vector<float>> read_illumination(const std::vector<std::string>& paths, const Image& img);

}  // namespace tabula::data
