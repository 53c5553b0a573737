#include "embed/ranks.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>

namespace tabula {

std::vector<RowRange> chunks_of_rank(const std::vector<RowRange>& pending, int rank, int size) {
  if (size < 1 || rank < 0 || rank >= size) throw std::invalid_argument("chunks_of_rank: need 0 <= rank < size");
  std::vector<RowRange> out;
  for (size_t i = static_cast<size_t>(rank); i < pending.size(); i += static_cast<size_t>(size)) out.push_back(pending[i]);
  return out;
}

std::string encode_chunks(const std::vector<RowRange>& chunks) {
  std::string s;
  for (const RowRange& c : chunks) s += std::to_string(c.begin) + " " + std::to_string(c.end) + "\n";
  return s;
}

std::vector<RowRange> decode_chunks(const std::string& text) {
  std::istringstream in(text);
  std::vector<RowRange> out;
  RowRange r;
  while (in >> r.begin >> r.end) out.push_back(r);
  if (!in.eof()) throw std::runtime_error("decode_chunks: malformed chunk list");
  return out;
}

void exit_if_test_hook(int rank, int64_t chunks_stored) {
  const char* hook = std::getenv("TABULA_TEST_EXIT_AFTER_CHUNKS");
  if (!hook) return;
  int r = -1;
  long long n = -1;
  if (std::sscanf(hook, "%d:%lld", &r, &n) != 2) return;
  if (r == rank && chunks_stored == n) {
    std::fprintf(stderr, "tabula embed: rank %d stops after %lld chunk(s) (TABULA_TEST_EXIT_AFTER_CHUNKS)\n", rank, n);
    std::fflush(stderr);
    ::_exit(3);
  }
}

}  // namespace tabula
