// TIFF decoder (libtiff through our in-memory I/O: page checks, OME-XML channel layout, strips, tiles, planes),
// called directly so that every input reaches the TIFF path; fuzz_image covers it through the content dispatch.
// Also the native path (decode_tiff_native: samples as stored, strips decoded into the destination, the predictor
// undone by tabula) into a buffer of the size the header asks for, and one byte short of it.
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "data/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tabula::data::DecodeLimits limits;  // small enough that a header's claim cannot exhaust the fuzzer's memory
  limits.max_side = 4096;
  limits.max_samples = int64_t(1) << 24;
  limits.max_channels = 64;
  try {
    (void)tabula::data::decode_tiff(data, size, "fuzz.tiff", limits);
  } catch (const std::runtime_error&) {
  }
  try {
    const tabula::data::Image h = tabula::data::read_tiff_header(data, size, "fuzz.tiff", limits);
    // 8 bytes per sample covers every stored type (64-bit floats); the header's bits say 32 for those.
    std::vector<uint8_t> dst(size_t(h.channels) * h.plane_size() * (h.bits == 32 && h.is_float ? 8 : h.bits / 8));
    (void)tabula::data::decode_tiff_native(data, size, "fuzz.tiff", dst.data(), dst.size(), limits);
    if (!dst.empty())
      (void)tabula::data::decode_tiff_native(data, size, "fuzz.tiff", dst.data(), dst.size() - 1, limits);
  } catch (const std::runtime_error&) {
  }
  return 0;
}
