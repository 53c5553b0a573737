// torch.save checkpoints: zip reader + restricted unpickler + tensor rebuild, through the same entry point
// `tabula embed --weights` uses (a file, since checkpoints are memory-mapped).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "weights_tools/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/tabula-fuzz-checkpoint." + std::to_string(::getpid()) + ".pth";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    auto ck = tabula::weights::load_checkpoint(path);
    for (const auto& t : ck.sd.tensors)
      if (t.numel() < 4096) (void)t.to_f32();
  } catch (const std::runtime_error&) {
  }
  return 0;
}
