// key=value arch strings (`--arch vit:dim=64,...`): a config, or std::invalid_argument naming the key.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "models/registry.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 256) return 0;
  std::string arch(reinterpret_cast<const char*>(data), size);
  try {
    tabula::ArchConfig a = tabula::parse_arch(arch);
    // Shapes only: no weights are drawn (a fuzzed config may be huge). param_count multiplies the sizes out in
    // int64, which parse_arch's bound on the whole model keeps in range.
    (void)tabula::param_specs(a);
    (void)tabula::param_count(a);
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
