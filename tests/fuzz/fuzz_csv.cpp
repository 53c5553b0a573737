// The CSV parser (util/table.h: metadata, index.csv, manifests) and the manifest view over it (util/csv.h).
#include <cstdint>
#include <stdexcept>
#include <string>

#include "util/csv.h"
#include "util/table.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  try {
    auto t = tabula::parse_csv(text, "fuzz.csv");
    for (size_t r = 0; r < t.rows() && r < 4; ++r)
      for (size_t c = 0; c < t.cols(); ++c) {
        try {
          (void)t.number(r, c);
        } catch (const std::runtime_error&) {
        }
      }
  } catch (const std::runtime_error&) {
  }
  try {
    (void)tabula::parse_csv_table(text, "fuzz.csv");
  } catch (const std::runtime_error&) {
  }
  return 0;
}
