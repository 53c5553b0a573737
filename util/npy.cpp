#include "util/npy.h"

#include <cstring>
#include <limits>
#include <stdexcept>

#include "engine/fileio.h"

namespace tabula {

int64_t NpyArray::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

template <class Out>
static std::vector<Out> convert(const NpyArray& a) {
  int64_t n = a.numel();
  std::vector<Out> out(static_cast<size_t>(n));
  const uint8_t* p = a.data.data();
  for (int64_t i = 0; i < n; ++i) {
    double v = 0;
    switch (a.dtype) {
      case DType::f32: { float x; std::memcpy(&x, p + 4 * i, 4); v = x; break; }
      case DType::f64: { double x; std::memcpy(&x, p + 8 * i, 8); v = x; break; }
      case DType::f16: { uint16_t x; std::memcpy(&x, p + 2 * i, 2); v = f16_to_f32(x); break; }
      case DType::bf16: { uint16_t x; std::memcpy(&x, p + 2 * i, 2); v = bf16_to_f32(x); break; }
      case DType::i64: { int64_t x; std::memcpy(&x, p + 8 * i, 8); v = static_cast<double>(x); break; }
      case DType::i32: { int32_t x; std::memcpy(&x, p + 4 * i, 4); v = x; break; }
      case DType::i16: { int16_t x; std::memcpy(&x, p + 2 * i, 2); v = x; break; }
      case DType::u16: { uint16_t x; std::memcpy(&x, p + 2 * i, 2); v = x; break; }
      case DType::i8: v = static_cast<int8_t>(p[i]); break;
      case DType::u8: case DType::boolean: v = p[i]; break;
    }
    out[static_cast<size_t>(i)] = static_cast<Out>(v);
  }
  return out;
}

std::vector<float> NpyArray::to_f32() const {
  if (dtype == DType::f32) {
    std::vector<float> out(static_cast<size_t>(numel()));
    std::memcpy(out.data(), data.data(), data.size());
    return out;
  }
  return convert<float>(*this);
}
std::vector<double> NpyArray::to_f64() const { return convert<double>(*this); }

static const char* descr_of(DType t) {
  switch (t) {
    case DType::f32: return "<f4";  case DType::f64: return "<f8";  case DType::f16: return "<f2";
    case DType::i64: return "<i8";  case DType::i32: return "<i4";  case DType::i16: return "<i2";
    case DType::u16: return "<u2";  case DType::i8: return "|i1";   case DType::u8: return "|u1";
    case DType::boolean: return "|b1";
    case DType::bf16: return nullptr;  // numpy has no bfloat16
  }
  return nullptr;
}

static DType dtype_of_descr(const std::string& d, const std::string& name) {
  static const std::pair<const char*, DType> table[] = {
      {"<f4", DType::f32}, {"<f8", DType::f64}, {"<f2", DType::f16}, {"<i8", DType::i64}, {"<i4", DType::i32},
      {"<i2", DType::i16}, {"<u2", DType::u16}, {"|i1", DType::i8},  {"|u1", DType::u8},  {"|b1", DType::boolean},
      {"<u1", DType::u8},  {"<i1", DType::i8}};
  for (auto& [s, t] : table)
    if (d == s) return t;
  if (!d.empty() && d[0] == '>') throw std::runtime_error(name + ": big-endian .npy ('" + d + "') is not supported");
  throw std::runtime_error(name + ": unsupported .npy dtype '" + d + "'");
}

// Finds `'key': ` in the header dict and returns the text of its value up to the next top-level ',' or '}'.
static std::string dict_value(const std::string& h, const std::string& key, const std::string& name) {
  auto k = h.find("'" + key + "'");
  if (k == std::string::npos) throw std::runtime_error(name + ": .npy header has no '" + key + "'");
  auto colon = h.find(':', k);
  if (colon == std::string::npos) throw std::runtime_error(name + ": malformed .npy header");
  size_t i = colon + 1, depth = 0;
  while (i < h.size() && h[i] == ' ') ++i;
  size_t start = i;
  for (; i < h.size(); ++i) {
    char c = h[i];
    if (c == '(') ++depth;
    if (c == ')') {
      if (depth == 0) break;
      --depth;
    }
    if (depth == 0 && (c == ',' || c == '}')) break;
  }
  if (depth != 0 || i >= h.size()) throw std::runtime_error(name + ": malformed .npy header");
  if (h[i] == ')') ++i;
  return h.substr(start, i - start);
}

NpyArray parse_npy(const uint8_t* bytes, size_t n, const std::string& name) {
  if (n < 10 || std::memcmp(bytes, "\x93NUMPY", 6) != 0) throw std::runtime_error(name + ": not a .npy file");
  int major = bytes[6];
  size_t header_len, offset;
  if (major == 1) {
    header_len = bytes[8] | (size_t(bytes[9]) << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (n < 12) throw std::runtime_error(name + ": truncated .npy header");
    header_len = bytes[8] | (size_t(bytes[9]) << 8) | (size_t(bytes[10]) << 16) | (size_t(bytes[11]) << 24);
    offset = 12;
  } else {
    throw std::runtime_error(name + ": unsupported .npy version " + std::to_string(major));
  }
  if (header_len > n - offset) throw std::runtime_error(name + ": truncated .npy header");
  std::string h(reinterpret_cast<const char*>(bytes + offset), header_len);
  std::string descr = dict_value(h, "descr", name);
  if (descr.size() < 2 || (descr.front() != '\'' && descr.front() != '"'))
    throw std::runtime_error(name + ": .npy descr is not a simple dtype: " + descr);
  NpyArray a;
  a.dtype = dtype_of_descr(descr.substr(1, descr.size() - 2), name);
  const std::string order = dict_value(h, "fortran_order", name);
  if (order != "False" && order != "True") throw std::runtime_error(name + ": malformed .npy fortran_order " + order);
  std::string shape = dict_value(h, "shape", name);
  if (shape.size() < 2 || shape.front() != '(' || shape.back() != ')')
    throw std::runtime_error(name + ": malformed .npy shape " + shape);
  const int64_t limit = std::numeric_limits<int64_t>::max() / 16;
  int64_t count = 1;
  size_t i = 1;
  while (i < shape.size() - 1) {
    while (i < shape.size() - 1 && (shape[i] == ' ' || shape[i] == ',')) ++i;
    if (i >= shape.size() - 1) break;
    int64_t d = 0;
    bool digit = false;
    while (i < shape.size() - 1 && shape[i] >= '0' && shape[i] <= '9') {
      d = d * 10 + (shape[i++] - '0');
      digit = true;
      if (d > limit) throw std::runtime_error(name + ": .npy dimension too large");
    }
    if (!digit) throw std::runtime_error(name + ": malformed .npy shape " + shape);
    a.shape.push_back(d);
    if (d != 0 && count > limit / d) throw std::runtime_error(name + ": .npy shape too large: " + shape);
    count *= d;
  }
  size_t need = static_cast<size_t>(count) * dtype_size(a.dtype);
  size_t have = n - offset - header_len;
  if (have < need)
    throw std::runtime_error(name + ": truncated .npy data: header promises " + std::to_string(need) +
                             " bytes, file has " + std::to_string(have));
  const uint8_t* src = bytes + offset + header_len;
  if (order == "False" || a.shape.size() < 2) {
    a.data.assign(src, src + need);
    return a;
  }
  // Fortran order (first index fastest), as np.save writes a pandas DataFrame's .to_numpy(): stored C order here.
  const size_t es = dtype_size(a.dtype);
  const size_t nd = a.shape.size();
  std::vector<int64_t> idx(nd, 0), cstride(nd);
  int64_t st = 1;
  for (size_t k = nd; k-- > 0;) cstride[k] = st, st *= a.shape[k];
  a.data.resize(need);
  int64_t dst = 0;
  for (int64_t e = 0; e < count; ++e) {
    std::memcpy(a.data.data() + dst * es, src + e * es, es);
    for (size_t k = 0; k < nd; ++k) {
      dst += cstride[k];
      if (++idx[k] < a.shape[k]) break;
      dst -= cstride[k] * a.shape[k];
      idx[k] = 0;
    }
  }
  return a;
}

NpyArray read_npy(const std::string& path) {
  auto bytes = read_file_bytes(path);
  return parse_npy(bytes.data(), bytes.size(), path);
}

std::string npy_header(DType dtype, const std::vector<int64_t>& shape) {
  const char* d = descr_of(dtype);
  if (!d) throw std::runtime_error(std::string("cannot store dtype ") + std::string(dtype_name(dtype)) + " in .npy");
  std::string dict = std::string("{'descr': '") + d + "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < shape.size(); ++i) dict += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1) dict += ",";  // Python's one-element tuple
  dict += "), }";
  // numpy pads the header with spaces + '\n' so that data starts on a 64-byte boundary.
  size_t total = 10 + dict.size() + 1;
  size_t pad = (64 - total % 64) % 64;
  dict += std::string(pad, ' ') + "\n";
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  if (dict.size() > 65535) throw std::runtime_error("npy header too long");
  out += static_cast<char>(dict.size() & 0xff);
  out += static_cast<char>(dict.size() >> 8);
  return out + dict;
}

void write_npy(const std::string& path, DType dtype, const std::vector<int64_t>& shape, const void* data) {
  std::string header = npy_header(dtype, shape);
  int64_t count = 1;
  for (int64_t s : shape) count *= s;
  AtomicFile f(path);
  f.write(header);
  f.write(data, static_cast<size_t>(count) * dtype_size(dtype));
  f.commit();
}

}  // namespace tabula
