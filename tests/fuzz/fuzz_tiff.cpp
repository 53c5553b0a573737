// TIFF decoder (libtiff through our in-memory I/O: page checks, OME-XML channel layout, strips, tiles, planes),
// called directly so that every input reaches the TIFF path; fuzz_image covers it through the content dispatch.
#include <cstdint>
#include <stdexcept>

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
  return 0;
}
