// Relationship files (`tabula eval recall --relationships`): two columns of perturbation names.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "eval/metrics/recall.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/tabula-fuzz-rel." + std::to_string(::getpid()) + ".csv";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    (void)tabula::eval::read_relationships(path);
  } catch (const std::runtime_error&) {
  }
  return 0;
}
