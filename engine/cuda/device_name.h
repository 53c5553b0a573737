// `--device` values, parsed the same way in every build (header-only: CPU-only builds include it to reject
// "cuda" with a clear message instead of failing to link).
#pragma once
#include <stdexcept>
#include <string>
#include <string_view>

namespace tabula::cuda {

// "cpu" -> -1, "cuda" -> 0, "cuda:N" -> N (0 <= N <= 999). Throws std::invalid_argument naming the text otherwise.
inline int parse_device(std::string_view text) {
  const auto bad = [&] {
    return std::invalid_argument("--device: expected cpu, cuda or cuda:N, got '" + std::string(text) + "'");
  };
  if (text == "cpu") return -1;
  if (text == "cuda") return 0;
  if (text.substr(0, 5) != "cuda:" || text.size() == 5 || text.size() > 8) throw bad();
  int n = 0;
  for (char c : text.substr(5)) {
    if (c < '0' || c > '9') throw bad();
    n = n * 10 + (c - '0');
  }
  return n;
}

}  // namespace tabula::cuda
