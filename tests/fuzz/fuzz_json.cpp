// The strict JSON reader (safetensors headers go through fuzz_safetensors; this reaches it with any text: run.json,
// summary.json and fixture manifests are read with it too). Beyond "no crash": whatever parses must survive a
// dump/parse round trip unchanged, and the exact-integer accessors must either answer or throw.
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

#include "util/json.h"

namespace {
void walk(const tabula::json::Value& v, int depth) {
  using K = tabula::json::Value::Kind;
  switch (v.kind()) {
    case K::number:
      try {
        (void)v.as_int64();
      } catch (const std::runtime_error&) {
      }
      try {
        (void)v.as_uint64();
      } catch (const std::runtime_error&) {
      }
      (void)v.as_double();
      break;
    case K::array:
      for (const auto& e : v.as_array()) walk(e, depth + 1);
      break;
    case K::object:
      for (const auto& [k, e] : v.as_object()) {
        if (v.find(k) == nullptr) std::abort();  // every member is found by its key
        walk(e, depth + 1);
      }
      break;
    default:
      break;
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  tabula::json::Limits limits;
  limits.max_bytes = 1 << 20;
  tabula::json::Value v;
  try {
    v = tabula::json::parse(text, "fuzz.json", limits);
  } catch (const tabula::json::ParseError&) {
    return 0;
  }
  walk(v, 0);
  const std::string once = tabula::json::dump(v);
  const std::string twice = tabula::json::dump(tabula::json::parse(once, "dumped.json", limits));
  if (once != twice) std::abort();  // the writer's output is JSON the reader reads back to the same value
  return 0;
}
