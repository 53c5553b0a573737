#include "weights_tools/safetensors.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <optional>
#include <set>
#include <stdexcept>

#include <unistd.h>

#include "engine/fileio.h"
#include "util/json.h"

namespace tabula::weights {

namespace {

[[noreturn]] void fail(const std::string& source, const std::string& msg) {
  throw std::runtime_error(source + ": " + msg);
}

// The dtypes tabula reads, spelled as safetensors spells them. (F8_*, U32, U64, C64 are refused by name.)
std::optional<DType> safetensors_dtype(const std::string& s) {
  for (DType t : {DType::f32, DType::f16, DType::bf16, DType::f64, DType::i64, DType::i32, DType::i16, DType::i8,
                  DType::u8, DType::u16, DType::boolean})
    if (s == dtype_safetensors_name(t)) return t;
  return std::nullopt;
}

// The reference writer's order (safetensors' Dtype enum order, compared descending): for the dtypes tabula
// knows this is I64 > F64 > F32 > I32 > BF16 > F16 > U16 > I16 > I8 > U8 > BOOL.
int writer_rank(DType t) {
  switch (t) {
    case DType::boolean: return 0;
    case DType::u8: return 1;
    case DType::i8: return 2;
    case DType::i16: return 5;
    case DType::u16: return 6;
    case DType::f16: return 7;
    case DType::bf16: return 8;
    case DType::i32: return 9;
    case DType::f32: return 11;
    case DType::f64: return 12;
    case DType::i64: return 13;
  }
  return 0;
}

}  // namespace

bool looks_like_safetensors(const uint8_t* data, size_t size) {
  if (size < 9) return false;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  // The length is not checked against the file here: a truncated file should reach the parser, whose error
  // says it is truncated, rather than be called "not a safetensors file".
  return n > 0 && n <= kSafetensorsMaxHeader && data[8] == '{';
}

StateDict parse_safetensors(const uint8_t* data, size_t size, std::shared_ptr<const void> owner,
                            const std::string& source, bool mapped) {
  if (size < 8)
    fail(source, "file of " + std::to_string(size) + " bytes is too short for a safetensors file (8-byte header length)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  if (header_len > kSafetensorsMaxHeader)
    fail(source, "safetensors header length " + std::to_string(header_len) + " exceeds the 100 MB limit");
  if (header_len > size - 8)
    fail(source, "safetensors header length " + std::to_string(header_len) + " runs past the end of the file (" +
                     std::to_string(size) + " bytes): truncated file or corrupt header");
  if (header_len < 2 || data[8] != '{')
    fail(source, "safetensors header does not start with '{' (not a safetensors file?)");
  std::string_view text(reinterpret_cast<const char*>(data + 8), header_len);
  // The reference writer pads with spaces; JSON allows trailing whitespace, so parse as is.
  json::Value header = json::parse(text, source + " (safetensors header)", json::Limits{kSafetensorsMaxHeader, 64});
  if (!header.is_object()) fail(source, "safetensors header is not a JSON object");

  const uint8_t* body = data + 8 + header_len;
  uint64_t body_len = size - 8 - header_len;

  StateDict sd;
  struct Span { uint64_t begin, end; size_t index; };
  std::vector<Span> spans;
  for (const auto& [name, info] : header.as_object()) {
    if (name == "__metadata__") {
      if (!info.is_object()) fail(source, "__metadata__ is not a JSON object of strings");
      for (const auto& [k, v] : info.as_object()) {
        if (!v.is_string()) fail(source, "__metadata__[\"" + k + "\"] is not a string");
        sd.metadata[k] = v.as_string();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!info.is_object()) fail(source, where + ": entry is not a JSON object");
    const json::Value* jd = info.find("dtype");
    const json::Value* js = info.find("shape");
    const json::Value* jo = info.find("data_offsets");
    if (!jd || !jd->is_string()) fail(source, where + ": missing or non-string \"dtype\"");
    if (!js || !js->is_array()) fail(source, where + ": missing or non-array \"shape\"");
    if (!jo || !jo->is_array() || jo->as_array().size() != 2)
      fail(source, where + ": \"data_offsets\" must be an array [begin, end]");
    auto dt = safetensors_dtype(jd->as_string());
    if (!dt) fail(source, where + ": unsupported dtype '" + jd->as_string() + "'");
    WeightTensor t;
    t.name = name;
    t.dtype = *dt;
    uint64_t numel = 1;
    for (const json::Value& d : js->as_array()) {
      uint64_t dim = 0;
      try {
        dim = d.as_uint64();
      } catch (const std::exception&) {
        fail(source, where + ": shape entries must be non-negative integers");
      }
      if (dim > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, dim, &numel))
        fail(source, where + ": declared shape overflows 64 bits");
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(t.dtype)), &nbytes))
      fail(source, where + ": declared shape overflows 64 bits");
    uint64_t begin = 0, end = 0;
    try {
      begin = jo->as_array()[0].as_uint64();
      end = jo->as_array()[1].as_uint64();
    } catch (const std::exception&) {
      fail(source, where + ": data_offsets must be non-negative integers");
    }
    if (begin > end) fail(source, where + ": data_offsets begin " + std::to_string(begin) + " > end " + std::to_string(end));
    if (end > body_len)
      fail(source, where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                       "] run past the data section (" + std::to_string(body_len) + " bytes): truncated file or lying header");
    if (end - begin != nbytes)
      fail(source, where + ": shape " + t.shape_string() + " x " + std::string(dtype_safetensors_name(t.dtype)) +
                       " needs " + std::to_string(nbytes) + " bytes but data_offsets span " + std::to_string(end - begin));
    const uint8_t* p = body + begin;
    if (reinterpret_cast<uintptr_t>(p) % dtype_size(t.dtype) == 0) {
      t.data = p;
      t.storage = owner;
      t.mapped = mapped;
    } else {
      // Unaligned start (a writer that did not sort by alignment): one copy, so consumers can use typed loads.
      auto buf = std::make_shared<std::vector<uint8_t>>(p, p + nbytes);
      t.data = buf->data();
      t.storage = buf;
    }
    spans.push_back({begin, end, sd.tensors.size()});
    sd.tensors.push_back(std::move(t));
  }
  // Tensors must tile the data section exactly: no overlap (two names aliasing bytes), no gap, no tail.
  std::sort(spans.begin(), spans.end(),
            [](const Span& a, const Span& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  uint64_t pos = 0;
  for (size_t i = 0; i < spans.size(); ++i) {
    const Span& s = spans[i];
    if (s.begin < pos)
      fail(source, "tensor '" + sd.tensors[s.index].name + "' overlaps tensor '" + sd.tensors[spans[i - 1].index].name +
                       "' (data_offsets " + std::to_string(s.begin) + " < " + std::to_string(pos) + ")");
    if (s.begin > pos)
      fail(source, "gap in the data section before tensor '" + sd.tensors[s.index].name + "' (bytes " +
                       std::to_string(pos) + ".." + std::to_string(s.begin) + " belong to no tensor)");
    pos = s.end;
  }
  if (pos != body_len)
    fail(source, "data section has " + std::to_string(body_len - pos) + " trailing bytes that belong to no tensor");
  return sd;
}

StateDict read_safetensors(const std::string& path) {
  auto file = MappedFile::open(path);
  return parse_safetensors(file->data(), file->size(), file, path, true);
}

namespace {

std::vector<const WeightTensor*> writer_order(const StateDict& sd) {
  std::vector<const WeightTensor*> order;
  std::set<std::string> names;
  for (const WeightTensor& t : sd.tensors) {
    if (t.name == "__metadata__") throw std::runtime_error("a tensor cannot be named __metadata__");
    if (!names.insert(t.name).second) throw std::runtime_error("duplicate tensor name '" + t.name + "'");
    order.push_back(&t);
  }
  std::stable_sort(order.begin(), order.end(), [](const WeightTensor* a, const WeightTensor* b) {
    int ra = writer_rank(a->dtype), rb = writer_rank(b->dtype);
    if (ra != rb) return ra > rb;
    return a->name < b->name;
  });
  return order;
}

}  // namespace

std::string safetensors_header(const StateDict& sd) {
  json::Value header = json::Value::object();
  if (!sd.metadata.empty()) {
    json::Value meta = json::Value::object();
    for (const auto& [k, v] : sd.metadata) meta.set(k, json::Value::string(v));
    header.set("__metadata__", meta);
  }
  uint64_t offset = 0;
  for (const WeightTensor* t : writer_order(sd)) {
    json::Value info = json::Value::object();
    info.set("dtype", json::Value::string(std::string(dtype_safetensors_name(t->dtype))));
    json::Value shape = json::Value::array();
    for (int64_t d : t->shape) shape.as_array().push_back(json::Value::integer(d));
    info.set("shape", shape);
    json::Value offs = json::Value::array();
    offs.as_array().push_back(json::Value::integer(static_cast<int64_t>(offset)));
    offset += t->nbytes();
    offs.as_array().push_back(json::Value::integer(static_cast<int64_t>(offset)));
    info.set("data_offsets", offs);
    header.set(t->name, info);
  }
  std::string text = json::dump(header);
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

namespace {
// Weights files of more than a few tens of MB are written past the page cache: copying them into it and then
// waiting for its writeback is most of the time `tabula init` of a big model takes (engine/direct_write.h).
constexpr uint64_t kBypassBytes = uint64_t{32} << 20;

uint64_t payload_bytes(const StateDict& sd) {
  uint64_t payload = 0;
  for (const WeightTensor& t : sd.tensors) payload += t.nbytes();
  return payload;
}

uint64_t quarter_of_memory() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) / 4 : uint64_t{1} << 30;
}
}  // namespace

void write_safetensors(const std::string& path, const StateDict& sd) {
  std::string header = safetensors_header(sd);
  uint8_t len[8];
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  AtomicFile f(path, payload_bytes(sd) >= kBypassBytes ? AtomicFile::PageCache::bypass : AtomicFile::PageCache::use);
  f.write(len, 8);
  f.write(header);
  for (const WeightTensor* t : writer_order(sd))
    if (t->nbytes()) f.write(t->data, t->nbytes());
  f.commit();
}


SafetensorsWriter::SafetensorsWriter(const std::string& path, const StateDict& layout, uint64_t hold_limit)
    : file_(path, payload_bytes(layout) >= kBypassBytes ? AtomicFile::PageCache::bypass : AtomicFile::PageCache::use),
      early_limit_(hold_limit ? hold_limit : quarter_of_memory()) {
  const std::string header = safetensors_header(layout);
  uint8_t len[8];
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  file_.write(len, 8);
  file_.write(header);
  uint64_t offset = 8 + n;
  for (const WeightTensor* t : writer_order(layout)) {
    slots_[t->name] = {offset, t->nbytes(), false};
    order_.push_back(t->name);
    offset += t->nbytes();
  }
}

SafetensorsWriter::Slot& SafetensorsWriter::slot(const std::string& name, size_t nbytes) {
  auto it = slots_.find(name);
  if (it == slots_.end()) throw std::runtime_error(file_.path() + ": no tensor '" + name + "' in the layout");
  Slot& s = it->second;
  if (s.written) throw std::runtime_error(file_.path() + ": tensor '" + name + "' written twice");
  if (nbytes != s.nbytes)
    throw std::runtime_error(file_.path() + ": tensor '" + name + "' has " + std::to_string(nbytes) +
                             " bytes, the layout says " + std::to_string(s.nbytes));
  return s;
}

void SafetensorsWriter::write(const std::string& name, const void* data, size_t nbytes) {
  if (file_.bypassing()) {
    const auto* p = static_cast<const uint8_t*>(data);
    return write(name, std::vector<uint8_t>(p, p + nbytes));
  }
  Slot& s = slot(name, nbytes);
  if (nbytes) file_.write_at(data, nbytes, s.offset);
  s.written = true;
}

void SafetensorsWriter::write(const std::string& name, std::vector<uint8_t>&& bytes) {
  if (!file_.bypassing()) return write(name, bytes.data(), bytes.size());
  Slot& s = slot(name, bytes.size());
  if (order_[next_] == name) {
    write_next(name, bytes.data(), bytes.size());
    while (next_ < order_.size()) {  // the tensors that waited for this one
      const auto it = early_.find(order_[next_]);
      if (it == early_.end()) break;
      early_bytes_ -= it->second.size();
      write_next(it->first, it->second.data(), it->second.size());
      early_.erase(it);
    }
    return;
  }
  s.written = true;
  if (early_bytes_ + bytes.size() <= early_limit_) {
    early_bytes_ += bytes.size();
    early_[name] = std::move(bytes);
    return;
  }
  for (const auto& [n, b] : early_)  // the first write_at ends the bypass
    if (!b.empty()) file_.write_at(b.data(), b.size(), slots_.at(n).offset);
  early_.clear();
  early_bytes_ = 0;
  if (!bytes.empty()) file_.write_at(bytes.data(), bytes.size(), s.offset);
}

void SafetensorsWriter::write_next(const std::string& name, const void* data, size_t nbytes) {
  if (nbytes) file_.write(data, nbytes);
  slots_.at(name).written = true;
  ++next_;
}

void SafetensorsWriter::commit() {
  for (const auto& [name, s] : slots_)
    if (!s.written) throw std::runtime_error(file_.path() + ": tensor '" + name + "' was never written");
  file_.commit();
}

std::string safetensors_out_name_problem(const std::string& path) {
  const size_t dot = path.rfind('.');
  const size_t slash = path.find_last_of('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string ext = path.substr(dot);
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* other : {".pth", ".pt", ".bin", ".ckpt", ".pkl", ".pickle", ".tar", ".npy", ".npz", ".h5"})
    if (ext == other)
      return path + ": tabula writes safetensors, which torch.load and np.load do not read; name it " +
             path.substr(0, dot) + ".safetensors (PyTorch: safetensors.torch.load_file)";
  return "";
}

}  // namespace tabula::weights
