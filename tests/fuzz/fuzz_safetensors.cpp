// safetensors header + layout checks: any bytes give a StateDict or a std::runtime_error.
#include <cstdint>
#include <stdexcept>

#include "weights_tools/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto sd = tabula::weights::parse_safetensors(data, size, nullptr, "fuzz.safetensors", false);
    for (const auto& t : sd.tensors)
      if (t.numel() < 4096) (void)t.to_f32();
  } catch (const std::runtime_error&) {
  }
  return 0;
}
