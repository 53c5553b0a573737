// NumPy .npy arrays (format versions 1-3, little-endian; Fortran order is read into C order): embeddings
// (LAYER.npy), `--data X.npy` inputs and test fixtures. Headers are checked against the file size before anything
// is allocated.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/dtype.h"

namespace tabula {

struct NpyArray {
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;  // C order, little-endian, shape-product * dtype_size bytes

  int64_t numel() const;
  template <class T> const T* as() const { return reinterpret_cast<const T*>(data.data()); }
  template <class T> T* as() { return reinterpret_cast<T*>(data.data()); }
  // Any numeric dtype converted to f32 / f64 (bool -> 0/1).
  std::vector<float> to_f32() const;
  std::vector<double> to_f64() const;
};

// Throws std::runtime_error("<path>: ...") for a missing/truncated file, a bad header, big-endian or an unsupported
// dtype.
NpyArray read_npy(const std::string& path);
NpyArray parse_npy(const uint8_t* bytes, size_t n, const std::string& name);

// Atomic write (temp + rename).
void write_npy(const std::string& path, DType dtype, const std::vector<int64_t>& shape, const void* data);
inline void write_npy(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
  write_npy(path, DType::f32, shape, data);
}
std::string npy_header(DType dtype, const std::vector<int64_t>& shape);  // magic + version + padded dict

}  // namespace tabula
