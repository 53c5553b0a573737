// A small strict JSON (RFC 8259) reader and writer: safetensors headers, run.json, fixture manifests.
// Strict means: no comments, no trailing commas, no NaN/Infinity, no leading zeros, valid UTF-8 and escapes,
// duplicate object keys refused (a safetensors header naming a tensor twice must not silently pick one),
// nesting depth and input size limited so a hostile file cannot exhaust the stack or memory.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tabula::json {

// Parse errors carry "<source>: line L, column C: message".
struct ParseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Value {
 public:
  enum class Kind { null, boolean, number, string, array, object };
  using Array = std::vector<Value>;
  using Member = std::pair<std::string, Value>;
  using Object = std::vector<Member>;  // insertion order kept (safetensors writers care about header order)

  Value() = default;
  static Value null() { return Value(); }
  static Value boolean(bool b);
  static Value number(double d, std::string text);  // text: the literal as written (exact integers survive)
  static Value integer(int64_t i);
  static Value string(std::string s);
  static Value array(Array a = {});
  static Value object(Object o = {});

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::null; }
  bool is_bool() const { return kind_ == Kind::boolean; }
  bool is_number() const { return kind_ == Kind::number; }
  bool is_string() const { return kind_ == Kind::string; }
  bool is_array() const { return kind_ == Kind::array; }
  bool is_object() const { return kind_ == Kind::object; }

  // Accessors throw std::runtime_error naming the expected kind when the value is something else.
  bool as_bool() const;
  double as_double() const;
  // The number as an exact integer: refuses fractions, exponents and values outside int64 (or uint64).
  int64_t as_int64() const;
  uint64_t as_uint64() const;
  const std::string& as_string() const;
  const Array& as_array() const;
  const Object& as_object() const;
  Array& as_array();
  Object& as_object();
  const std::string& number_text() const { return text_; }

  // Object lookup (nullptr when absent or not an object).
  const Value* find(std::string_view key) const;
  // Appends a member (no duplicate check; the writer's caller owns the keys).
  void set(std::string key, Value v);

 private:
  Kind kind_ = Kind::null;
  bool bool_ = false;
  double num_ = 0;
  std::string text_;  // number literal or string value
  std::shared_ptr<Array> arr_;
  std::shared_ptr<Object> obj_;
};

std::string_view kind_name(Value::Kind k);

struct Limits {
  size_t max_bytes = 100'000'000;  // safetensors' own header limit
  int max_depth = 64;
};

// Parses exactly one JSON value (whitespace around it allowed, nothing else). `source` names the input in errors.
Value parse(std::string_view text, const std::string& source = "json", Limits limits = {});
Value parse_file(const std::string& path, Limits limits = {});

// Compact serialisation (no spaces), members in stored order; strings escaped as serde_json does
// (", \\, \b \f \n \r \t, other control characters as \u00XX, everything else raw UTF-8).
std::string dump(const Value& v);
std::string escape_string(std::string_view s);  // with the quotes

}  // namespace tabula::json
