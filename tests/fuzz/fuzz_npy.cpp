// .npy parser (embeddings, --data inputs, fixtures): any bytes give an array or a std::runtime_error.
#include <cstdint>
#include <stdexcept>

#include "util/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    tabula::NpyArray a = tabula::parse_npy(data, size, "fuzz.npy");
    (void)a.to_f64();
  } catch (const std::runtime_error&) {
  }
  return 0;
}
