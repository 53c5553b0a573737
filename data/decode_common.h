// What the image decoders and writers share (data/image_io.cpp, data/tiff.cpp): the error with the file's name, the
// header check against DecodeLimits, and the clamp of integer writers.
#pragma once
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "data/image.h"

namespace tabula::data::detail {

[[noreturn]] inline void fail(const std::string& name, const std::string& what) {
  throw std::runtime_error(name + ": " + what);
}

// A sample clamped to [0, hi] for an integer writer; NaN becomes 0 (std::clamp would pass it through, and
// converting NaN to an integer is undefined behaviour).
inline float clamp_sample(float v, float hi) { return v > 0.0f ? std::min(v, hi) : 0.0f; }

// Every header is checked before anything is allocated: a header claiming more is an error, not an allocation.
inline void check_shape(const std::string& name, int64_t c, int64_t h, int64_t w, const DecodeLimits& lim) {
  if (w <= 0 || h <= 0 || c <= 0)
    fail(name, "invalid image size " + std::to_string(w) + "x" + std::to_string(h) + "x" + std::to_string(c));
  if (w > lim.max_side || h > lim.max_side)
    fail(name, "image size " + std::to_string(w) + "x" + std::to_string(h) + " exceeds the limit of " +
                   std::to_string(lim.max_side) + " pixels per side");
  if (c > lim.max_channels)
    fail(name, std::to_string(c) + " channels exceed the limit of " + std::to_string(lim.max_channels));
  if (c * h * w > lim.max_samples)
    fail(name, "image of " + std::to_string(c * h * w) + " samples exceeds the limit of " +
                   std::to_string(lim.max_samples));
}

}  // namespace tabula::data::detail
