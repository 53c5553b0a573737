#include "weights_tools/weight_tensor.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace tabula::weights {

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw std::runtime_error(path + ": cannot stat: " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw std::runtime_error(path + ": not a regular file");
  }
  std::shared_ptr<MappedFile> m(new MappedFile());
  m->path_ = path;
  m->size_ = static_cast<size_t>(st.st_size);
  if (m->size_ > 0) {
    void* p = ::mmap(nullptr, m->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      throw std::runtime_error(path + ": cannot memory-map: " + std::strerror(e));
    }
    m->data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping stays valid without the descriptor
  return m;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

int64_t WeightTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<float> WeightTensor::to_f32() const {
  size_t n = static_cast<size_t>(numel());
  std::vector<float> out(n);
  if (n == 0) return out;  // an empty tensor may have no storage at all
  const uint8_t* p = data;
  switch (dtype) {
    case DType::f32: std::memcpy(out.data(), p, n * 4); break;
    case DType::f16:
      for (size_t i = 0; i < n; ++i) { uint16_t h; std::memcpy(&h, p + 2 * i, 2); out[i] = f16_to_f32(h); }
      break;
    case DType::bf16:
      for (size_t i = 0; i < n; ++i) { uint16_t h; std::memcpy(&h, p + 2 * i, 2); out[i] = bf16_to_f32(h); }
      break;
    case DType::f64:
      for (size_t i = 0; i < n; ++i) { double x; std::memcpy(&x, p + 8 * i, 8); out[i] = static_cast<float>(x); }
      break;
    case DType::i64:
      for (size_t i = 0; i < n; ++i) { int64_t x; std::memcpy(&x, p + 8 * i, 8); out[i] = static_cast<float>(x); }
      break;
    case DType::i32:
      for (size_t i = 0; i < n; ++i) { int32_t x; std::memcpy(&x, p + 4 * i, 4); out[i] = static_cast<float>(x); }
      break;
    case DType::i16:
      for (size_t i = 0; i < n; ++i) { int16_t x; std::memcpy(&x, p + 2 * i, 2); out[i] = x; }
      break;
    case DType::u16:
      for (size_t i = 0; i < n; ++i) { uint16_t x; std::memcpy(&x, p + 2 * i, 2); out[i] = x; }
      break;
    case DType::i8: for (size_t i = 0; i < n; ++i) out[i] = static_cast<int8_t>(p[i]); break;
    case DType::u8: case DType::boolean: for (size_t i = 0; i < n; ++i) out[i] = p[i]; break;
  }
  return out;
}

WeightTensor WeightTensor::to_dtype(DType target) const {
  if (target == dtype) return *this;
  if (target != DType::f32 && target != DType::f16 && target != DType::bf16)
    throw std::runtime_error(name + ": conversion to " + std::string(dtype_name(target)) +
                             " is not supported (f32, f16, bf16 only)");
  if (dtype != DType::f32 && dtype != DType::f16 && dtype != DType::bf16 && dtype != DType::f64)
    throw std::runtime_error(name + ": a " + std::string(dtype_name(dtype)) + " tensor cannot be converted to " +
                             std::string(dtype_name(target)) + " (floating-point tensors only)");
  size_t n = static_cast<size_t>(numel());
  std::vector<uint8_t> bytes(n * dtype_size(target));
  if (dtype == DType::f64) {
    // torch rounds f64 -> f16/bf16 directly; going through f32 could double-round, so only f32 is offered here.
    if (target != DType::f32)
      throw std::runtime_error(name + ": f64 -> " + std::string(dtype_name(target)) +
                               " is not supported (convert to f32 first)");
  }
  std::vector<float> f = to_f32();
  if (target == DType::f32) {
    if (n) std::memcpy(bytes.data(), f.data(), n * 4);
  } else {
    for (size_t i = 0; i < n; ++i) {
      uint16_t h = target == DType::f16 ? f32_to_f16(f[i]) : f32_to_bf16(f[i]);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
  }
  return make_owned_tensor(name, target, shape, std::move(bytes));
}

std::string WeightTensor::shape_string() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

WeightTensor make_owned_tensor(std::string name, DType dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
  WeightTensor t;
  t.name = std::move(name);
  t.dtype = dtype;
  t.shape = std::move(shape);
  if (bytes.size() != t.nbytes())
    throw std::logic_error(t.name + ": owned buffer of " + std::to_string(bytes.size()) + " bytes for shape " +
                           t.shape_string());
  auto buf = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
  if (buf->empty()) buf->reserve(1);  // `data` is never null, even for an empty tensor
  t.data = buf->data();
  t.storage = buf;
  return t;
}

WeightTensor make_f32_tensor(std::string name, std::vector<int64_t> shape, const std::vector<float>& values) {
  std::vector<uint8_t> bytes(values.size() * 4);
  if (!values.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  return make_owned_tensor(std::move(name), DType::f32, std::move(shape), std::move(bytes));
}

const WeightTensor* StateDict::find(const std::string& name) const {
  for (const WeightTensor& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}
WeightTensor* StateDict::find(const std::string& name) {
  for (WeightTensor& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}
const WeightTensor& StateDict::at(const std::string& name) const {
  const WeightTensor* t = find(name);
  if (!t) throw std::runtime_error("no tensor named '" + name + "'");
  return *t;
}
std::vector<std::string> StateDict::names() const {
  std::vector<std::string> out;
  for (const WeightTensor& t : tensors) out.push_back(t.name);
  return out;
}
int64_t StateDict::total_params() const {
  int64_t n = 0;
  for (const WeightTensor& t : tensors) n += t.numel();
  return n;
}
size_t StateDict::total_bytes() const {
  size_t n = 0;
  for (const WeightTensor& t : tensors) n += t.nbytes();
  return n;
}

}  // namespace tabula::weights
