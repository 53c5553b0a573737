#include "models/key_values.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

namespace tabula {

KeyValues parse_key_values(const std::string& text, bool lists) {
  KeyValues kv;
  if (text.empty()) return kv;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string::npos) comma = text.size();
    const std::string piece = text.substr(pos, comma - pos);
    const size_t eq = piece.find('=');
    if (eq == std::string::npos) {
      if (!lists || kv.empty() || piece.empty()) throw KeyValueError("expected key=value, got '" + piece + "'");
      kv.back().second += "," + piece;
    } else {
      const std::string key = piece.substr(0, eq);
      if (key.empty()) throw KeyValueError("empty key in '" + piece + "'");
      for (const auto& [k, v] : kv)
        if (k == key) throw KeyValueError("key '" + key + "' given twice");
      kv.emplace_back(key, piece.substr(eq + 1));
    }
    pos = comma + 1;
  }
  return kv;
}

int parse_int_value(const std::string& key, const std::string& v, int min_value, int max_value) {
  char* end = nullptr;
  errno = 0;
  const long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || end != v.c_str() + v.size() || errno != 0 || x < min_value || x > max_value)
    throw KeyValueError("key '" + key + "' needs an integer from " + std::to_string(min_value) + " to " +
                                std::to_string(max_value) + ", got '" + v + "'");
  return static_cast<int>(x);
}

double parse_number_value(const std::string& key, const std::string& v) {
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || end != v.c_str() + v.size() || !std::isfinite(x))
    throw KeyValueError("key '" + key + "' needs a number, got '" + v + "'");
  return x;
}

bool parse_bool_value(const std::string& key, const std::string& v) {
  if (v == "1" || v == "true" || v == "True") return true;
  if (v == "0" || v == "false" || v == "False") return false;
  throw KeyValueError("key '" + key + "' needs 0/1 or true/false, got '" + v + "'");
}

}  // namespace tabula
