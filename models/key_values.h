// The one key=value list parser: `resnet:layers=2,2,2,2,block=basic`, `pixels:hist=8,grid=2`.
#pragma once
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace tabula {

// A bad key or value. `message` keeps every byte of the user's text (what() stops at a NUL), so the caller can
// quote it whole (bad_arch shows control bytes as \xNN).
struct KeyValueError : std::invalid_argument {
  explicit KeyValueError(const std::string& m) : std::invalid_argument(m), message(m) {}
  std::string message;
};

using KeyValues = std::vector<std::pair<std::string, std::string>>;

// "a=1,b=2" -> {a: "1", b: "2"} in the order given ("" -> none). With `lists`, a piece without '=' continues the previous
// value ("layers=2,2,2,2" -> {layers: "2,2,2,2"}); without, it is an error. Throws KeyValueError with a
// message the caller prefixes with what it parses ("expected key=value, got 'x'", "empty key in '=1'",
// "key 'a' given twice").
KeyValues parse_key_values(const std::string& text, bool lists = true);

// The values of one key, checked; the messages name the key and quote the value ("key 'depth' needs an integer
// from 0 to 1024, got '222422'"). Every size tabula builds is at most 2^24.
constexpr int kMaxSize = 1 << 24;
int parse_int_value(const std::string& key, const std::string& value, int min_value, int max_value = kMaxSize);
double parse_number_value(const std::string& key, const std::string& value);
bool parse_bool_value(const std::string& key, const std::string& value);  // 0/1, true/false, True/False

}  // namespace tabula
