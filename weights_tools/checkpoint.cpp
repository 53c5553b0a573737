#include "weights_tools/checkpoint.h"

#include <chrono>
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <vector>
#include <stdexcept>

#include "weights_tools/safetensors.h"
#include "weights_tools/zip.h"

namespace tabula::weights {

using pickle::Object;
using pickle::Ref;

std::string_view format_name(FileFormat f) {
  switch (f) {
    case FileFormat::safetensors: return "safetensors";
    case FileFormat::torch_zip: return "torch zip checkpoint";
    case FileFormat::torch_legacy: return "legacy torch checkpoint (pre-1.6 pickle format)";
    case FileFormat::unknown: return "unknown";
  }
  return "?";
}

static FileFormat detect(const uint8_t* d, size_t n) {
  if (looks_like_zip(d, n)) return FileFormat::torch_zip;
  if (looks_like_safetensors(d, n)) return FileFormat::safetensors;
  // torch's legacy format starts with a protocol-2 pickle of its magic number 0x1950a86a20f9469cfc6c;
  // even older files are tar archives ("ustar" at byte 257).
  if (n >= 2 && d[0] == 0x80 && d[1] == 0x02) return FileFormat::torch_legacy;
  if (n >= 262 && std::memcmp(d + 257, "ustar", 5) == 0) return FileFormat::torch_legacy;
  return FileFormat::unknown;
}

FileFormat detect_format(const std::string& path) {
  auto f = MappedFile::open(path);
  return detect(f->data(), f->size());
}

// ---- torch zip -------------------------------------------------------------------------------------------

TorchArchive read_torch_zip(const std::string& path) {
  TorchArchive out;
  out.file = MappedFile::open(path);
  ZipArchive zip(out.file);
  // torch.save names every record "<archive>/<record>", <archive> being the file's stem at save time.
  const ZipEntry* pkl = nullptr;
  std::string prefix;
  for (const ZipEntry& e : zip.entries()) {
    auto slash = e.name.find('/');
    if (slash != std::string::npos && e.name.substr(slash) == "/data.pkl") {
      if (pkl) throw std::runtime_error(path + ": zip archive holds more than one data.pkl");
      pkl = &e;
      prefix = e.name.substr(0, slash + 1);
    }
  }
  if (!pkl)
    throw std::runtime_error(path + ": zip archive without <name>/data.pkl: not a torch.save checkpoint");
  if (const ZipEntry* bo = zip.find(prefix + "byteorder")) {
    auto b = zip.data(*bo);
    std::string order(reinterpret_cast<const char*>(b.data()), b.size());
    if (order != "little")
      throw std::runtime_error(path + ": checkpoint byte order is '" + order + "'; only little-endian is supported");
  }
  auto pkl_bytes = zip.data(*pkl);
  pickle::PersistentLoad load = [&](DType dtype, const std::string& key, const std::string& location, int64_t numel) {
    const ZipEntry* rec = zip.find(prefix + "data/" + key);
    if (!rec) throw std::runtime_error(path + ": storage record '" + prefix + "data/" + key + "' is missing from the archive");
    uint64_t need = 0;
    if (__builtin_mul_overflow(static_cast<uint64_t>(numel), static_cast<uint64_t>(dtype_size(dtype)), &need) ||
        rec->size != need)
      throw std::runtime_error(path + ": storage '" + key + "' declares " + std::to_string(numel) + " " +
                               std::string(dtype_name(dtype)) + " elements but its record holds " +
                               std::to_string(rec->size) + " bytes");
    auto s = std::make_shared<pickle::StorageRef>();
    s->dtype = dtype;
    s->key = key;
    s->location = location;
    s->numel = numel;
    s->data = zip.data(*rec).data();
    return s;
  };
  out.objects = pickle::unpickle(pkl_bytes.data(), pkl_bytes.size(), path + ": " + pkl->name, load);
  out.root = out.objects->root;
  return out;
}

WeightTensor tensor_from_ref(const std::string& name, const pickle::TensorRef& t, const std::shared_ptr<const void>& owner,
                             bool* copied) {
  WeightTensor w;
  w.name = name;
  w.dtype = t.storage->dtype;
  w.shape = t.size;
  const size_t es = dtype_size(w.dtype);
  const int64_t n = w.numel();
  if (copied) *copied = false;
  if (n == 0) return make_owned_tensor(name, w.dtype, w.shape, {});
  // Contiguous means the strides are the C-order ones; a dimension of size 1 may carry any stride.
  bool contiguous = true;
  int64_t expect = 1;
  for (size_t k = t.size.size(); k-- > 0;) {
    if (t.size[k] != 1 && t.stride[k] != expect) contiguous = false;
    expect *= t.size[k];
  }
  const uint8_t* base = t.storage->data + static_cast<size_t>(t.offset) * es;
  if (contiguous && reinterpret_cast<uintptr_t>(base) % es == 0) {
    w.data = base;
    w.storage = owner;
    w.mapped = true;
    return w;
  }
  // Non-contiguous view (e.g. a saved transpose) or misaligned record: gather into C order once.
  std::vector<uint8_t> bytes(static_cast<size_t>(n) * es);
  const size_t nd = t.size.size();
  std::vector<int64_t> idx(nd, 0);
  for (int64_t i = 0; i < n; ++i) {
    int64_t src = t.offset;
    for (size_t k = 0; k < nd; ++k) src += idx[k] * t.stride[k];
    std::memcpy(bytes.data() + static_cast<size_t>(i) * es, t.storage->data + static_cast<size_t>(src) * es, es);
    for (size_t k = nd; k-- > 0;) {
      if (++idx[k] < t.size[k]) break;
      idx[k] = 0;
    }
  }
  if (copied) *copied = true;
  return make_owned_tensor(name, w.dtype, w.shape, std::move(bytes));
}

// ---- choosing the state dict ----------------------------------------------------------------------------

namespace {

bool is_tensor_dict(Ref o) {
  if (!o->is(Object::Kind::dict)) return false;
  bool any = false;
  for (const auto& [k, v] : o->entries) {
    if (v->is(Object::Kind::dict)) return false;
    if (v->is(Object::Kind::tensor)) any = true;
  }
  return any;
}

std::string key_text(Ref k) { return k->is(Object::Kind::string) ? k->s : std::to_string(k->i); }

std::vector<std::string> dict_keys(Ref o) {
  std::vector<std::string> out;
  for (const auto& [k, v] : o->entries) out.push_back(key_text(k));
  return out;
}

std::string join(const std::vector<std::string>& v, size_t max = 12) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < max; ++i) s += (i ? ", " : "") + v[i];
  if (v.size() > max) s += ", ... (" + std::to_string(v.size()) + " in all)";
  return s;
}

bool starts_with(const std::string& s, const std::string& p) { return s.size() >= p.size() && s.compare(0, p.size(), p) == 0; }

// Keeps only the tensors whose names start with `prefix` (stripped); the others are listed in `dropped` under
// their names in the file (`removed` = what earlier steps already stripped).
void keep_prefix(StateDict& sd, const std::string& prefix, std::vector<std::string>& dropped,
                 const std::string& removed = "") {
  std::vector<WeightTensor> kept;
  for (WeightTensor& t : sd.tensors) {
    if (starts_with(t.name, prefix)) {
      t.name = t.name.substr(prefix.size());
      kept.push_back(std::move(t));
    } else {
      dropped.push_back(removed + t.name);
    }
  }
  sd.tensors = std::move(kept);
}

// "model/teacher" -> {"model", "teacher"} (empty segments ignored).
std::vector<std::string> split_key_path(const std::string& key) {
  std::vector<std::string> segs;
  size_t s = 0;
  while (s <= key.size()) {
    size_t e = key.find('/', s);
    if (e == std::string::npos) e = key.size();
    if (e > s) segs.push_back(key.substr(s, e - s));
    s = e + 1;
  }
  return segs;
}

size_t count_prefix(const StateDict& sd, const std::string& p) {
  size_t n = 0;
  for (const WeightTensor& t : sd.tensors) n += starts_with(t.name, p);
  return n;
}

void strip_wrappers(Checkpoint& ck) {
  StateDict& sd = ck.sd;
  std::string removed;  // prefixes stripped so far by this function, to name dropped tensors as in the file
  for (int guard = 0; guard < 8 && !sd.tensors.empty(); ++guard) {
    const size_t n = sd.tensors.size();
    std::string p;
    if (count_prefix(sd, "module.") == n) {
      p = "module.";
    } else if (count_prefix(sd, "teacher.") > 0 && count_prefix(sd, "teacher.") + count_prefix(sd, "student.") == n) {
      p = "teacher.";  // DINO/DINOv2 training checkpoints hold both networks; the teacher is the one evaluated
    } else if (count_prefix(sd, "backbone.") > 0) {
      p = "backbone.";  // DINO heads (head.*, dino_head.*) are not part of the backbone
    } else {
      break;
    }
    keep_prefix(sd, p, ck.dropped, removed);
    ck.stripped.push_back(p);
    removed += p;
  }
}

}  // namespace

namespace {
double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}
Checkpoint load_checkpoint_parsed(const std::string& path, const LoadOptions& opts, Checkpoint ck,
                                  std::shared_ptr<const MappedFile> file);
}  // namespace

namespace {
// A Hugging Face model folder given where a file goes: name the weight files in it (one of them is the answer),
// and say that a sharded checkpoint's index is not followed.
void refuse_folder(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_directory(path, ec)) return;
  std::vector<std::string> files;
  bool sharded = false;
  for (const auto& e : std::filesystem::directory_iterator(path, ec)) {
    const std::string name = e.path().filename().string();
    const std::string ext = e.path().extension().string();
    if (name.size() > 11 && name.compare(name.size() - 11, 11, ".index.json") == 0) sharded = true;
    else if (ext == ".safetensors" || ext == ".bin" || ext == ".pth" || ext == ".pt" || ext == ".ckpt")
      files.push_back(name);
  }
  std::sort(files.begin(), files.end());
  std::string list;
  for (size_t i = 0; i < files.size() && i < 6; ++i) list += (i ? ", " : "") + files[i];
  if (files.size() > 6) list += ", ... (" + std::to_string(files.size()) + " in all)";
  throw std::runtime_error(
      path + ": a folder, not a weight file" +
      (sharded ? "; it holds a sharded checkpoint (*.index.json), which tabula does not join: save the shards as one "
                 "file (in Python: safetensors.torch.save_file of the merged state dict)"
               : files.empty() ? "; it holds no .safetensors/.bin/.pth/.pt/.ckpt file"
                               : "; give the weight file in it: " + list));
}
}  // namespace

Checkpoint load_checkpoint(const std::string& path, const LoadOptions& opts) {
  refuse_folder(path);
  const auto t0 = std::chrono::steady_clock::now();
  Checkpoint ck;
  ck.path = path;
  auto file = MappedFile::open(path);
  ck.format = detect(file->data(), file->size());
  ck.map_ms = ms_since(t0);
  const auto t1 = std::chrono::steady_clock::now();
  ck = load_checkpoint_parsed(path, opts, std::move(ck), std::move(file));
  ck.parse_ms = ms_since(t1);
  return ck;
}

namespace {
Checkpoint load_checkpoint_parsed(const std::string& path, const LoadOptions& opts, Checkpoint ck,
                                  std::shared_ptr<const MappedFile> file) {
  switch (ck.format) {
    case FileFormat::safetensors:
      ck.sd = parse_safetensors(file->data(), file->size(), file, path, true);
      if (!opts.key.empty()) {
        // safetensors is flat: each key segment can only select a name prefix.
        for (const std::string& seg : split_key_path(opts.key)) {
          if (count_prefix(ck.sd, seg + ".") == 0)
            throw std::runtime_error(path + ": --key '" + opts.key + "': no tensor name starts with '" + seg + ".'");
          keep_prefix(ck.sd, seg + ".", ck.dropped);
          ck.stripped.push_back(seg + ".");
        }
        ck.selected = opts.key;
      }
      if (opts.strip_prefixes) strip_wrappers(ck);
      return ck;
    case FileFormat::torch_legacy:
      throw std::runtime_error(path + ": legacy (pre-1.6, non-zip) torch.save format is not supported; re-save it "
                               "in PyTorch with torch.save(torch.load(f, weights_only=True), out) to get the zip format");
    case FileFormat::unknown:
      throw std::runtime_error(path + ": not a safetensors file or a torch.save zip checkpoint (unrecognised content)");
    case FileFormat::torch_zip: break;
  }
  file.reset();
  TorchArchive ar = read_torch_zip(path);
  Ref obj = ar.root;
  if (obj->is(Object::Kind::dict) && !is_tensor_dict(obj)) ck.top_level_keys = dict_keys(obj);

  std::string pending_prefix;  // key segments that name a tensor-name prefix rather than a dict entry
  if (!opts.key.empty()) {
    for (const std::string& seg : split_key_path(opts.key)) {
      if (!obj->is(Object::Kind::dict))
        throw std::runtime_error(path + ": --key '" + opts.key + "': '" + seg + "' is looked up in a " + obj->describe());
      Ref next = nullptr;
      for (const auto& [k, v] : obj->entries)
        if (key_text(k) == seg) next = v;
      if (next) {
        if (!pending_prefix.empty())
          throw std::runtime_error(path + ": --key '" + opts.key + "': '" + seg + "' follows a name prefix");
        obj = next;
        continue;
      }
      bool prefix_match = false;
      for (const auto& [k, v] : obj->entries) prefix_match |= starts_with(key_text(k), pending_prefix + seg + ".");
      if (!prefix_match)
        throw std::runtime_error(path + ": --key '" + opts.key + "': no entry '" + seg + "' (entries: " + join(dict_keys(obj)) + ")");
      pending_prefix += seg + ".";
    }
    ck.selected = opts.key;
  } else if (!is_tensor_dict(obj)) {
    if (!obj->is(Object::Kind::dict))
      throw std::runtime_error(path + ": the checkpoint holds a " + obj->describe() + ", not a state dict");
    static const char* preferred[] = {"state_dict", "model", "teacher", "model_state_dict", "module",
                                      "network",    "net",   "ema",     "student"};
    Ref chosen = nullptr;
    for (const char* name : preferred) {
      for (const auto& [k, v] : obj->entries)
        if (key_text(k) == name && is_tensor_dict(v)) chosen = v, ck.selected = name;
      if (chosen) break;
    }
    if (!chosen)
      throw std::runtime_error(path + ": the checkpoint is a dict without a recognisable state dict (entries: " +
                               join(dict_keys(obj)) + "); choose one with --key");
    obj = chosen;
  }
  if (!is_tensor_dict(obj))
    throw std::runtime_error(path + ": " + (ck.selected.empty() ? std::string("the checkpoint") : "--key '" + ck.selected + "'") +
                             " holds a " + obj->describe() + ", not a state dict of tensors");

  for (const auto& [k, v] : obj->entries) {
    std::string name = key_text(k);
    if (!pending_prefix.empty()) {
      if (!starts_with(name, pending_prefix)) {
        ck.dropped.push_back(name);
        continue;
      }
      name = name.substr(pending_prefix.size());
    }
    if (!v->is(Object::Kind::tensor)) {
      ck.skipped.push_back(name + " (" + v->describe() + ")");
      continue;
    }
    bool copied = false;
    ck.sd.tensors.push_back(tensor_from_ref(name, *v->tensor, ar.file, &copied));
    ck.copied_tensors += copied;
  }
  if (!pending_prefix.empty()) ck.stripped.push_back(pending_prefix);
  if (opts.strip_prefixes) strip_wrappers(ck);
  return ck;
}
}  // namespace

}  // namespace tabula::weights
