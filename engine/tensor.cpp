#include "engine/tensor.h"

#include "engine/arena.h"
#include "engine/backend.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sstream>

namespace tabula {

std::string_view device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }

std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t v : s) n *= v;
  return n;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    acc *= std::max<int64_t>(s[i], 1);
  }
  return st;
}

void op_error(std::string_view op, const std::string& message) {
  throw std::invalid_argument(std::string(op) + ": " + message);
}

void check_f32_cpu(std::string_view op, const Tensor& t, std::string_view name) {
  if (!t.defined()) op_error(op, std::string(name) + " is undefined");
  if (t.dtype() != DType::f32)
    op_error(op, std::string(name) + " must be f32, got " + t.str() + " (convert with .to(DType::f32))");
  if (t.device() != Device::cpu) op_error(op, std::string(name) + " must be on the cpu");
}

static void check_shape(const Shape& shape, std::string_view what) {
  for (int64_t v : shape)
    if (v < 0) op_error(what, "negative size in shape " + shape_str(shape));
}

static std::atomic<bool> g_poison{false};
void set_poison_allocations(bool on) { g_poison.store(on); }
bool poison_allocations() { return g_poison.load(std::memory_order_relaxed); }

Arena*& detail::thread_arena() {
  thread_local Arena* a = nullptr;
  return a;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  check_shape(shape, "Tensor::empty");
  if (device != Device::cpu) op_error("Tensor::empty", "cuda tensors are allocated by the CUDA backend");
  if (Arena* a = detail::thread_arena()) return a->alloc(shape, dtype);
  return heap(shape, dtype);
}

Tensor Tensor::heap(const Shape& shape, DType dtype) {
  check_shape(shape, "Tensor::heap");
  size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  size_t alloc = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, alloc);
  if (!p) throw std::bad_alloc();
  auto st = std::make_shared<Storage>();
  st->data = p;
  st->bytes = bytes;
  st->owner = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  st->kind = Storage::Kind::heap;
  if (poison_allocations()) std::memset(p, 0xff, alloc);  // all-ones bytes: a NaN in f32/f16/bf16
  return from_storage(std::move(st), 0, shape, dtype);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  std::memset(t.raw(), 0, t.nbytes());
  return t;
}

Tensor Tensor::full(const Shape& shape, float value) {
  Tensor t = empty(shape);
  std::fill_n(t.data<float>(), t.numel(), value);
  return t;
}

Tensor Tensor::from_vector(const Shape& shape, const std::vector<float>& values) {
  if (shape_numel(shape) != static_cast<int64_t>(values.size()))
    op_error("Tensor::from_vector", std::to_string(values.size()) + " values do not fill shape " + shape_str(shape));
  Tensor t = empty(shape);
  std::copy(values.begin(), values.end(), t.data<float>());
  return t;
}

Tensor Tensor::from_external(void* data, const Shape& shape, DType dtype, std::shared_ptr<void> owner,
                             Device device) {
  check_shape(shape, "Tensor::from_external");
  auto st = std::make_shared<Storage>();
  st->data = data;
  st->bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  st->device = device;
  st->owner = std::move(owner);
  st->kind = Storage::Kind::external;
  return from_storage(std::move(st), 0, shape, dtype);
}

Tensor Tensor::from_storage(std::shared_ptr<Storage> storage, size_t byte_offset, const Shape& shape, DType dtype) {
  check_shape(shape, "Tensor::from_storage");
  size_t es = dtype_size(dtype);
  if (byte_offset % es) op_error("Tensor::from_storage", "byte offset not a multiple of the element size");
  if (byte_offset + static_cast<size_t>(shape_numel(shape)) * es > storage->bytes)
    op_error("Tensor::from_storage", "shape " + shape_str(shape) + " of " + std::string(dtype_name(dtype)) +
                                         " at byte " + std::to_string(byte_offset) + " overruns storage of " +
                                         std::to_string(storage->bytes) + " bytes");
  Tensor t;
  t.storage_ = std::move(storage);
  t.offset_ = static_cast<int64_t>(byte_offset / es);
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  return t;
}

bool Tensor::is_contiguous() const {
  int64_t acc = 1;
  for (size_t i = shape_.size(); i-- > 0;) {
    if (shape_[i] == 1) continue;
    if (strides_[i] != acc) return false;
    acc *= shape_[i];
  }
  return true;
}

std::string Tensor::str() const {
  if (!defined()) return "undefined";
  return std::string(dtype_name(dtype_)) + shape_str(shape_);
}

void* Tensor::raw() const {
  if (!storage_) op_error("Tensor", "access to an undefined tensor");
  return static_cast<char*>(storage_->data) + offset_ * static_cast<int64_t>(dtype_size(dtype_));
}

void Tensor::check_type(size_t size, int tag) const {
  int want = 0;
  switch (dtype_) {
    case DType::f32: want = 1; break;
    case DType::f64: want = 2; break;
    case DType::i32: want = 3; break;
    case DType::i64: want = 4; break;
    case DType::u8: case DType::boolean: want = 5; break;
    case DType::u16: case DType::f16: case DType::bf16: want = 6; break;
    case DType::i16: want = 7; break;
    case DType::i8: want = 8; break;
  }
  if (tag != want || size != dtype_size(dtype_))
    op_error("Tensor::data", "element type does not match dtype " + std::string(dtype_name(dtype_)));
}

int64_t Tensor::wrap_dim(int64_t d, int64_t ndim_extra) const {
  int64_t n = dim() + ndim_extra;
  int64_t w = d < 0 ? d + n : d;
  if (w < 0 || w >= std::max<int64_t>(n, 1))
    op_error("Tensor", "dimension " + std::to_string(d) + " out of range for " + str());
  return w;
}

// Offset (elements) of a multi-index.
static int64_t offset_of(const Tensor& t, std::initializer_list<int64_t> idx) {
  if (static_cast<int64_t>(idx.size()) != t.dim())
    op_error("Tensor::at", std::to_string(idx.size()) + " indices for " + t.str());
  int64_t off = 0, d = 0;
  for (int64_t i : idx) {
    if (i < 0 || i >= t.size(d)) op_error("Tensor::at", "index " + std::to_string(i) + " out of range for " + t.str());
    off += i * t.stride(d++);
  }
  return off;
}

// Reads element `off` (relative to raw()) of any dtype as f64.
static double load_any(const void* base, DType dt, int64_t off) {
  switch (dt) {
    case DType::f32: return static_cast<const float*>(base)[off];
    case DType::f64: return static_cast<const double*>(base)[off];
    case DType::f16: return f16_to_f32(static_cast<const uint16_t*>(base)[off]);
    case DType::bf16: return bf16_to_f32(static_cast<const uint16_t*>(base)[off]);
    case DType::i64: return static_cast<double>(static_cast<const int64_t*>(base)[off]);
    case DType::i32: return static_cast<const int32_t*>(base)[off];
    case DType::i16: return static_cast<const int16_t*>(base)[off];
    case DType::i8: return static_cast<const int8_t*>(base)[off];
    case DType::u8: case DType::boolean: return static_cast<const uint8_t*>(base)[off];
    case DType::u16: return static_cast<const uint16_t*>(base)[off];
  }
  return 0;
}

// Float -> integer as torch does it on x86 (SSE cvtt*): truncation toward zero; NaN and values outside the
// range give the "integer indefinite" value (the type's minimum). Written out because a C++ cast of such a value
// is undefined behaviour (UBSan: float-cast-overflow).
static int64_t to_i64_like_torch(double v) {
  if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0)) return INT64_MIN;
  return static_cast<int64_t>(v);
}
static int32_t to_i32_like_torch(double v) {
  if (!(v > -2147483649.0 && v < 2147483648.0)) return INT32_MIN;
  return static_cast<int32_t>(v);
}

// Writes like torch's `copy_` / `.to()`: floats round to nearest, integers truncate toward zero; 8- and 16-bit
// integers take the low bits of the 32-bit conversion (torch: uint8(-2.7) = 254, int8(-300.2) = -44).
static void store_any(void* base, DType dt, int64_t off, double v) {
  switch (dt) {
    case DType::f32: static_cast<float*>(base)[off] = static_cast<float>(v); break;
    case DType::f64: static_cast<double*>(base)[off] = v; break;
    case DType::f16: static_cast<uint16_t*>(base)[off] = f32_to_f16(static_cast<float>(v)); break;
    case DType::bf16: static_cast<uint16_t*>(base)[off] = f32_to_bf16(static_cast<float>(v)); break;
    case DType::i64: static_cast<int64_t*>(base)[off] = to_i64_like_torch(v); break;
    case DType::i32: static_cast<int32_t*>(base)[off] = to_i32_like_torch(v); break;
    case DType::i16: static_cast<int16_t*>(base)[off] = static_cast<int16_t>(to_i32_like_torch(v)); break;
    case DType::i8: static_cast<int8_t*>(base)[off] = static_cast<int8_t>(to_i32_like_torch(v)); break;
    case DType::u8: static_cast<uint8_t*>(base)[off] = static_cast<uint8_t>(to_i32_like_torch(v)); break;
    case DType::boolean: static_cast<uint8_t*>(base)[off] = v != 0; break;
    case DType::u16: static_cast<uint16_t*>(base)[off] = static_cast<uint16_t>(to_i32_like_torch(v)); break;
  }
}

float Tensor::at(std::initializer_list<int64_t> idx) const {
  return static_cast<float>(load_any(raw(), dtype_, offset_of(*this, idx)));
}

float& Tensor::at_f32(std::initializer_list<int64_t> idx) {
  return data<float>()[offset_of(*this, idx)];
}

// Visits every element in C order, calling fn(offset_in_a, offset_in_b) for two tensors of the same shape.
template <class F>
static void for_each_pair(const Shape& shape, const Shape& sa, const Shape& sb, F&& fn) {
  int64_t n = shape_numel(shape);
  if (n == 0) return;
  size_t nd = shape.size();
  if (nd == 0) { fn(0, 0); return; }
  std::vector<int64_t> idx(nd, 0);
  int64_t oa = 0, ob = 0;
  int64_t inner = shape[nd - 1], ia = sa[nd - 1], ib = sb[nd - 1];
  for (int64_t done = 0; done < n; done += inner) {
    for (int64_t j = 0; j < inner; ++j) fn(oa + j * ia, ob + j * ib);
    for (size_t d = nd - 1; d-- > 0;) {
      oa += sa[d], ob += sb[d];
      if (++idx[d] < shape[d]) break;
      oa -= sa[d] * shape[d], ob -= sb[d] * shape[d];
      idx[d] = 0;
    }
  }
}

Tensor Tensor::view(const Shape& shape_in) const {
  Shape shape = shape_in;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (infer >= 0) op_error("Tensor::view", "only one -1 allowed in " + shape_str(shape_in));
      infer = static_cast<int64_t>(i);
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || numel() % known) op_error("Tensor::view", "cannot view " + str() + " as " + shape_str(shape_in));
    shape[infer] = numel() / known;
  }
  if (shape_numel(shape) != numel()) op_error("Tensor::view", "cannot view " + str() + " as " + shape_str(shape_in));
  if (!is_contiguous())
    op_error("Tensor::view", "view of a non-contiguous " + str() + "; use reshape() or contiguous()");
  Tensor t = *this;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  return t;
}

Tensor Tensor::reshape(const Shape& shape) const { return is_contiguous() ? view(shape) : contiguous().view(shape); }

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  d = wrap_dim(d);
  if (step <= 0) op_error("Tensor::slice", "step must be positive");
  int64_t n = shape_[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Tensor t = *this;
  t.offset_ += start * strides_[d];
  t.shape_[d] = (end - start + step - 1) / step;
  t.strides_[d] *= step;
  return t;
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = wrap_dim(d);
  if (index < 0) index += shape_[d];
  if (index < 0 || index >= shape_[d])
    op_error("Tensor::select",
             "index " + std::to_string(index) + " out of range for dim " + std::to_string(d) + " of " + str());
  Tensor t = *this;
  t.offset_ += index * strides_[d];
  t.shape_.erase(t.shape_.begin() + d);
  t.strides_.erase(t.strides_.begin() + d);
  return t;
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  d0 = wrap_dim(d0), d1 = wrap_dim(d1);
  Tensor t = *this;
  std::swap(t.shape_[d0], t.shape_[d1]);
  std::swap(t.strides_[d0], t.strides_[d1]);
  return t;
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  if (static_cast<int64_t>(dims.size()) != dim())
    op_error("Tensor::permute", std::to_string(dims.size()) + " dims for " + str());
  Tensor t = *this;
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim(dims[i]);
    if (seen[d]) op_error("Tensor::permute", "repeated dim " + std::to_string(d));
    seen[d] = true;
    t.shape_[i] = shape_[d];
    t.strides_[i] = strides_[d];
  }
  return t;
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim(d, 1);
  Tensor t = *this;
  int64_t st = d < dim() ? strides_[d] * shape_[d] : 1;
  t.shape_.insert(t.shape_.begin() + d, 1);
  t.strides_.insert(t.strides_.begin() + d, st);
  return t;
}

Tensor Tensor::squeeze(int64_t d) const {
  d = wrap_dim(d);
  if (shape_[d] != 1) return *this;
  Tensor t = *this;
  t.shape_.erase(t.shape_.begin() + d);
  t.strides_.erase(t.strides_.begin() + d);
  return t;
}

Tensor Tensor::flatten(int64_t s, int64_t e) const {
  if (dim() == 0) return reshape({1});
  s = wrap_dim(s), e = wrap_dim(e);
  Shape sh(shape_.begin(), shape_.begin() + s);
  int64_t m = 1;
  for (int64_t i = s; i <= e; ++i) m *= shape_[i];
  sh.push_back(m);
  sh.insert(sh.end(), shape_.begin() + e + 1, shape_.end());
  return reshape(sh);
}

Tensor Tensor::expand(const Shape& shape) const {
  if (shape.size() < shape_.size()) op_error("Tensor::expand", "cannot expand " + str() + " to " + shape_str(shape));
  size_t lead = shape.size() - shape_.size();
  Tensor t = *this;
  t.shape_ = shape;
  t.strides_.assign(shape.size(), 0);
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i < lead) {
      if (shape[i] < 0) op_error("Tensor::expand", "-1 for a new leading dim in " + shape_str(shape));
      continue;
    }
    int64_t have = shape_[i - lead];
    int64_t want = shape[i] == -1 ? have : shape[i];
    t.shape_[i] = want;
    if (have == want) t.strides_[i] = strides_[i - lead];
    else if (have == 1) t.strides_[i] = 0;
    else op_error("Tensor::expand", "cannot expand " + str() + " to " + shape_str(shape));
  }
  return t;
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::clone() const {
  if (on_gpu(*this)) return backend("Tensor::clone", device()).clone(*this);  // a dense copy on that device
  Tensor out = empty(shape_, dtype_);
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(DType dt) const {
  if (dt == dtype_) return *this;
  if (on_gpu(*this)) return backend("Tensor::to", device()).to_dtype(*this, dt);
  Tensor out = empty(shape_, dt);
  out.copy_(*this);
  return out;
}

void Tensor::copy_(const Tensor& src) {
  if (src.shape_ != shape_) op_error("Tensor::copy_", "shape " + src.str() + " into " + str());
  if (device() != Device::cpu || src.device() != Device::cpu) op_error("Tensor::copy_", "cpu tensors only");
  char* dst_base = static_cast<char*>(raw());
  const char* src_base = static_cast<const char*>(src.raw());
  if (src.dtype_ == dtype_) {
    size_t es = dtype_size(dtype_);
    if (is_contiguous() && src.is_contiguous()) {
      std::memmove(dst_base, src_base, nbytes());
      return;
    }
    for_each_pair(shape_, strides_, src.strides_, [&](int64_t od, int64_t os) {
      std::memcpy(dst_base + od * static_cast<int64_t>(es), src_base + os * static_cast<int64_t>(es), es);
    });
    return;
  }
  for_each_pair(shape_, strides_, src.strides_,
                [&](int64_t od, int64_t os) { store_any(dst_base, dtype_, od, load_any(src_base, src.dtype_, os)); });
}

void Tensor::fill_(float value) {
  char* base = static_cast<char*>(raw());
  Shape zero(shape_.size(), 0);
  for_each_pair(shape_, strides_, zero, [&](int64_t od, int64_t) { store_any(base, dtype_, od, value); });
}

std::vector<float> Tensor::to_vector() const {
  std::vector<float> v(static_cast<size_t>(numel()));
  Tensor dst = from_external(v.data(), shape_, DType::f32, nullptr);
  dst.copy_(*this);
  return v;
}

}  // namespace tabula
