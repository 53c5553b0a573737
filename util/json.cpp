#include "util/json.h"

#include <charconv>
#include <cstdio>
#include <unordered_set>

#include "engine/fileio.h"

namespace tabula::json {

std::string_view kind_name(Value::Kind k) {
  switch (k) {
    case Value::Kind::null: return "null";
    case Value::Kind::boolean: return "boolean";
    case Value::Kind::number: return "number";
    case Value::Kind::string: return "string";
    case Value::Kind::array: return "array";
    case Value::Kind::object: return "object";
  }
  return "?";
}

Value Value::boolean(bool b) {
  Value v;
  v.kind_ = Kind::boolean;
  v.bool_ = b;
  return v;
}
Value Value::number(double d, std::string text) {
  Value v;
  v.kind_ = Kind::number;
  v.num_ = d;
  v.text_ = std::move(text);
  return v;
}
Value Value::integer(int64_t i) { return number(static_cast<double>(i), std::to_string(i)); }
Value Value::string(std::string s) {
  Value v;
  v.kind_ = Kind::string;
  v.text_ = std::move(s);
  return v;
}
Value Value::array(Array a) {
  Value v;
  v.kind_ = Kind::array;
  v.arr_ = std::make_shared<Array>(std::move(a));
  return v;
}
Value Value::object(Object o) {
  Value v;
  v.kind_ = Kind::object;
  v.obj_ = std::make_shared<Object>(std::move(o));
  return v;
}

static void expect(const Value& v, Value::Kind k) {
  if (v.kind() != k)
    throw std::runtime_error("JSON: expected " + std::string(kind_name(k)) + ", got " + std::string(kind_name(v.kind())));
}

bool Value::as_bool() const { expect(*this, Kind::boolean); return bool_; }
double Value::as_double() const { expect(*this, Kind::number); return num_; }
const std::string& Value::as_string() const { expect(*this, Kind::string); return text_; }
const Value::Array& Value::as_array() const { expect(*this, Kind::array); return *arr_; }
const Value::Object& Value::as_object() const { expect(*this, Kind::object); return *obj_; }
Value::Array& Value::as_array() { expect(*this, Kind::array); return *arr_; }
Value::Object& Value::as_object() { expect(*this, Kind::object); return *obj_; }

int64_t Value::as_int64() const {
  expect(*this, Kind::number);
  int64_t out = 0;
  auto [p, ec] = std::from_chars(text_.data(), text_.data() + text_.size(), out);
  if (ec != std::errc() || p != text_.data() + text_.size())
    throw std::runtime_error("JSON: expected an integer (within int64), got " + text_);
  return out;
}

uint64_t Value::as_uint64() const {
  expect(*this, Kind::number);
  uint64_t out = 0;
  auto [p, ec] = std::from_chars(text_.data(), text_.data() + text_.size(), out);
  if (ec != std::errc() || p != text_.data() + text_.size())
    throw std::runtime_error("JSON: expected a non-negative integer (within uint64), got " + text_);
  return out;
}

const Value* Value::find(std::string_view key) const {
  if (kind_ != Kind::object) return nullptr;
  for (const Member& m : *obj_)
    if (m.first == key) return &m.second;
  return nullptr;
}

void Value::set(std::string key, Value v) { as_object().emplace_back(std::move(key), std::move(v)); }

// ---- parser ------------------------------------------------------------------------------------------

namespace {

class Parser {
 public:
  Parser(std::string_view s, const std::string& source, Limits limits) : s_(s), source_(source), limits_(limits) {}

  Value parse_document() {
    if (s_.size() > limits_.max_bytes)
      throw ParseError(source_ + ": JSON text of " + std::to_string(s_.size()) + " bytes exceeds the limit of " +
                       std::to_string(limits_.max_bytes));
    skip_ws();
    Value v = parse_value(0);
    skip_ws();
    if (i_ != s_.size()) fail("unexpected characters after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& msg) const { fail_at(i_, msg); }
  [[noreturn]] void fail_at(size_t pos, const std::string& msg) const {
    size_t line = 1, col = 1;
    for (size_t k = 0; k < pos && k < s_.size(); ++k) {
      if (s_[k] == '\n') ++line, col = 1;
      else ++col;
    }
    throw ParseError(source_ + ": line " + std::to_string(line) + ", column " + std::to_string(col) + ": " + msg);
  }

  bool at_end() const { return i_ >= s_.size(); }
  char peek() const { return at_end() ? '\0' : s_[i_]; }

  void skip_ws() {
    while (!at_end() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }

  void literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) fail("invalid literal (expected '" + std::string(word) + "')");
    i_ += word.size();
  }

  Value parse_value(int depth) {
    if (at_end()) fail("unexpected end of input");
    char c = s_[i_];
    switch (c) {
      case '{': return parse_object(depth + 1);
      case '[': return parse_array(depth + 1);
      case '"': return Value::string(parse_string());
      case 't': literal("true"); return Value::boolean(true);
      case 'f': literal("false"); return Value::boolean(false);
      case 'n': literal("null"); return Value::null();
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number();
        fail(std::string("unexpected character '") + (c >= 0x20 && c < 0x7f ? std::string(1, c) : "?") + "'");
    }
  }

  void check_depth(int depth) {
    if (depth > limits_.max_depth) fail("nesting deeper than " + std::to_string(limits_.max_depth) + " levels");
  }

  Value parse_object(int depth) {
    check_depth(depth);
    ++i_;  // {
    Value::Object members;
    std::unordered_set<std::string> seen;
    skip_ws();
    if (peek() == '}') {
      ++i_;
      return Value::object(std::move(members));
    }
    while (true) {
      skip_ws();
      if (peek() != '"') fail("expected a string key");
      size_t key_pos = i_;
      std::string key = parse_string();
      if (!seen.insert(key).second) fail_at(key_pos, "duplicate key \"" + key + "\"");
      skip_ws();
      if (peek() != ':') fail("expected ':' after key \"" + key + "\"");
      ++i_;
      skip_ws();
      Value v = parse_value(depth);
      members.emplace_back(std::move(key), std::move(v));
      skip_ws();
      if (peek() == ',') { ++i_; continue; }
      if (peek() == '}') { ++i_; break; }
      fail(at_end() ? "unexpected end of input inside an object" : "expected ',' or '}' in an object");
    }
    return Value::object(std::move(members));
  }

  Value parse_array(int depth) {
    check_depth(depth);
    ++i_;  // [
    Value::Array items;
    skip_ws();
    if (peek() == ']') {
      ++i_;
      return Value::array(std::move(items));
    }
    while (true) {
      skip_ws();
      items.push_back(parse_value(depth));
      skip_ws();
      if (peek() == ',') { ++i_; continue; }
      if (peek() == ']') { ++i_; break; }
      fail(at_end() ? "unexpected end of input inside an array" : "expected ',' or ']' in an array");
    }
    return Value::array(std::move(items));
  }

  Value parse_number() {
    size_t start = i_;
    if (peek() == '-') ++i_;
    if (peek() == '0') {
      ++i_;
      if (peek() >= '0' && peek() <= '9') fail("leading zeros are not allowed in numbers");
    } else if (peek() >= '1' && peek() <= '9') {
      while (peek() >= '0' && peek() <= '9') ++i_;
    } else {
      fail("invalid number");
    }
    if (peek() == '.') {
      ++i_;
      if (!(peek() >= '0' && peek() <= '9')) fail("expected a digit after '.'");
      while (peek() >= '0' && peek() <= '9') ++i_;
    }
    if (peek() == 'e' || peek() == 'E') {
      ++i_;
      if (peek() == '+' || peek() == '-') ++i_;
      if (!(peek() >= '0' && peek() <= '9')) fail("expected a digit in the exponent");
      while (peek() >= '0' && peek() <= '9') ++i_;
    }
    std::string text(s_.substr(start, i_ - start));
    double d = 0;
    auto res = std::from_chars(text.data(), text.data() + text.size(), d);
    if (res.ec == std::errc::result_out_of_range) fail_at(start, "number out of range: " + text);
    return Value::number(d, std::move(text));
  }

  unsigned hex4() {
    if (i_ + 4 > s_.size()) fail("truncated \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s_[i_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<unsigned>(c - 'A' + 10);
      else fail("invalid hex digit in \\u escape");
    }
    return v;
  }

  static void put_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  // Validates one UTF-8 sequence starting at i_ (RFC 3629: no overlongs, no surrogates, <= U+10FFFF).
  void copy_utf8(std::string& out) {
    auto b = [&](size_t k) { return static_cast<unsigned char>(s_[k]); };
    unsigned char c0 = b(i_);
    int n = 0;
    uint32_t cp = 0;
    if (c0 >= 0xC2 && c0 <= 0xDF) n = 1, cp = c0 & 0x1F;
    else if (c0 >= 0xE0 && c0 <= 0xEF) n = 2, cp = c0 & 0x0F;
    else if (c0 >= 0xF0 && c0 <= 0xF4) n = 3, cp = c0 & 0x07;
    else fail("invalid UTF-8 in string");
    if (i_ + static_cast<size_t>(n) >= s_.size()) fail("truncated UTF-8 sequence in string");
    for (int k = 1; k <= n; ++k) {
      unsigned char ck = b(i_ + static_cast<size_t>(k));
      if ((ck & 0xC0) != 0x80) fail("invalid UTF-8 in string");
      cp = (cp << 6) | (ck & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
      fail("invalid UTF-8 in string");
    out.append(s_.substr(i_, static_cast<size_t>(n) + 1));
    i_ += static_cast<size_t>(n) + 1;
  }

  std::string parse_string() {
    ++i_;  // opening quote
    std::string out;
    while (true) {
      if (at_end()) fail("unterminated string");
      unsigned char c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return out;
      }
      if (c < 0x20) fail("control character in string (must be escaped)");
      if (c == '\\') {
        ++i_;
        if (at_end()) fail("unterminated escape");
        char e = s_[i_++];
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            uint32_t cp = hex4();
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              if (s_.substr(i_, 2) != "\\u") fail("unpaired surrogate in \\u escape");
              i_ += 2;
              uint32_t lo = hex4();
              if (lo < 0xDC00 || lo > 0xDFFF) fail("unpaired surrogate in \\u escape");
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
              fail("unpaired surrogate in \\u escape");
            }
            put_utf8(out, cp);
            break;
          }
          default: fail(std::string("invalid escape '\\") + (e >= 0x20 && e < 0x7f ? std::string(1, e) : "?") + "'");
        }
        continue;
      }
      if (c < 0x80) {
        out += static_cast<char>(c);
        ++i_;
      } else {
        copy_utf8(out);
      }
    }
  }

  std::string_view s_;
  const std::string& source_;
  Limits limits_;
  size_t i_ = 0;
};

}  // namespace

Value parse(std::string_view text, const std::string& source, Limits limits) {
  return Parser(text, source, limits).parse_document();
}

Value parse_file(const std::string& path, Limits limits) { return parse(read_file_text(path), path, limits); }

// ---- writer ------------------------------------------------------------------------------------------

std::string escape_string(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

static void dump_into(const Value& v, std::string& out) {
  switch (v.kind()) {
    case Value::Kind::null: out += "null"; break;
    case Value::Kind::boolean: out += v.as_bool() ? "true" : "false"; break;
    case Value::Kind::number: out += v.number_text(); break;
    case Value::Kind::string: out += escape_string(v.as_string()); break;
    case Value::Kind::array: {
      out += '[';
      bool first = true;
      for (const Value& x : v.as_array()) {
        if (!first) out += ',';
        first = false;
        dump_into(x, out);
      }
      out += ']';
      break;
    }
    case Value::Kind::object: {
      out += '{';
      bool first = true;
      for (const auto& [k, x] : v.as_object()) {
        if (!first) out += ',';
        first = false;
        out += escape_string(k);
        out += ':';
        dump_into(x, out);
      }
      out += '}';
      break;
    }
  }
}

std::string dump(const Value& v) {
  std::string out;
  dump_into(v, out);
  return out;
}

}  // namespace tabula::json
