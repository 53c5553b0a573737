// The tensors weights_tools hands out: a name, a dtype, a shape and a read-only byte view into storage that a
// shared_ptr keeps alive (the file's memory map, or an owned buffer when bytes had to be rearranged).
// Nothing is converted until asked: to_f32() converts on demand, so opening a file costs page-table entries,
// not copies. (engine/tensor.h will adapt these; weights_tools deliberately does not depend on it.)
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/dtype.h"

namespace tabula::weights {

// A read-only file mapping. Throws std::runtime_error naming the file when it cannot be opened or mapped.
class MappedFile {
 public:
  static std::shared_ptr<const MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

struct WeightTensor {
  std::string name;
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;         // C-contiguous, little-endian, numel() * dtype_size(dtype) bytes;
                                         // never null once loaded (also for empty tensors)
  std::shared_ptr<const void> storage;   // keeps `data` alive (a MappedFile or an owned buffer)
  bool mapped = false;                   // `data` points into a file mapping (zero-copy), not an owned buffer

  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  std::span<const uint8_t> bytes() const { return {data, nbytes()}; }
  // The values as f32 (f16/bf16 exactly widened; f64 rounded; integers converted; bool 0/1).
  std::vector<float> to_f32() const;
  // Converts to f32/f16/bf16 (round to nearest even, as torch's .to(dtype)); same dtype returns *this.
  WeightTensor to_dtype(DType target) const;
  std::string shape_string() const;  // "[768, 3, 16, 16]"
};

// A tensor that owns its bytes.
WeightTensor make_owned_tensor(std::string name, DType dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes);
WeightTensor make_f32_tensor(std::string name, std::vector<int64_t> shape, const std::vector<float>& values);

// An ordered list of named tensors plus string metadata (safetensors' __metadata__).
struct StateDict {
  std::vector<WeightTensor> tensors;
  std::map<std::string, std::string> metadata;

  const WeightTensor* find(const std::string& name) const;
  WeightTensor* find(const std::string& name);
  bool contains(const std::string& name) const { return find(name) != nullptr; }
  const WeightTensor& at(const std::string& name) const;  // throws naming the key
  std::vector<std::string> names() const;
  int64_t total_params() const;
  size_t total_bytes() const;
};

}  // namespace tabula::weights
