// Image decoders (TIFF via libtiff, PNG via libpng, JPEG via libjpeg-turbo, JPEG 2000 via OpenJPEG), dispatched by
// content.
#include <cstdint>
#include <stdexcept>

#include "data/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tabula::data::DecodeLimits limits;
  limits.max_side = 4096;
  limits.max_samples = int64_t(1) << 24;
  limits.max_channels = 64;
  try {
    (void)tabula::data::decode_image(data, size, "fuzz.img", limits);
  } catch (const std::runtime_error&) {
  }
  return 0;
}
