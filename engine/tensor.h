// Tensor: a strided view (shape, strides, offset, dtype) onto shared storage, as torch.Tensor is.
// Views (reshape of a contiguous tensor, slice, select, transpose, permute, unsqueeze) share the storage and copy
// nothing; contiguous() copies only when the layout requires it. Storage is either owned heap memory (64-byte
// aligned, for SIMD), an arena block, or external memory (an mmap'ed weights file) kept alive by an owner pointer.
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "engine/dtype.h"

namespace tabula {

class Arena;
namespace detail {
Arena*& thread_arena();  // the arena Tensor::empty draws from on this thread (ArenaScope sets it)
}  // namespace detail

enum class Device : uint8_t { cpu, cuda };
std::string_view device_name(Device d);

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "[2, 3, 4]"
int64_t shape_numel(const Shape& s);
Shape contiguous_strides(const Shape& s);

// A block of memory. `owner` keeps whatever backs `data` alive (a heap buffer, an arena, an mmap'ed file).
struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device = Device::cpu;
  std::shared_ptr<void> owner;
  enum class Kind : uint8_t { heap, arena, external } kind = Kind::heap;
  // External memory inside a read-only file mapping (weights): its pages may be given back once copied
  // elsewhere (engine/file_pages.h), since a page touched again is read back from the file.
  bool file_mapped = false;
};

class Tensor {
 public:
  Tensor() = default;  // undefined (like an empty torch::optional<Tensor>): defined() is false

  // Fresh 64-byte-aligned storage (contents unspecified for empty()): from the thread's current arena when an
  // ArenaScope is active (see arena.h), else from the heap.
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  // Always heap storage, whatever arena is active (results that must outlive the batch).
  static Tensor heap(const Shape& shape, DType dtype = DType::f32);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32);
  static Tensor full(const Shape& shape, float value);
  // Copies `values` (f32) into a new tensor of `shape`; throws when the element count differs.
  static Tensor from_vector(const Shape& shape, const std::vector<float>& values);
  // Wraps memory that someone else owns (mmap'ed weights, a numpy buffer). `owner` is held as long as any view
  // of the result lives; pass nullptr only when the caller guarantees the memory outlives every view.
  static Tensor from_external(void* data, const Shape& shape, DType dtype, std::shared_ptr<void> owner,
                              Device device = Device::cpu);
  // A view of `storage` starting at byte `byte_offset`.
  static Tensor from_storage(std::shared_ptr<Storage> storage, size_t byte_offset, const Shape& shape, DType dtype);

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device : Device::cpu; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size(int64_t d) const { return shape_[wrap_dim(d)]; }
  int64_t stride(int64_t d) const { return strides_[wrap_dim(d)]; }
  int64_t numel() const { return shape_numel(shape_); }
  int64_t offset() const { return offset_; }  // in elements
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  bool shares_storage_with(const Tensor& o) const { return storage_ && storage_ == o.storage_; }
  std::string str() const;  // "f32[2, 3]" for messages

  // Typed access to the first element; throws when T does not match dtype() (f16/bf16 read as uint16_t).
  template <class T> T* data() { check_type(sizeof(T), type_tag<T>()); return static_cast<T*>(raw()); }
  template <class T>
  const T* data() const {
    check_type(sizeof(T), type_tag<T>());
    return static_cast<const T*>(raw());
  }
  void* raw() const;

  // Element access by multi-index (slow; for tests and references).
  float at(std::initializer_list<int64_t> idx) const;
  float& at_f32(std::initializer_list<int64_t> idx);

  // ---- views (no copy) ----
  Tensor view(const Shape& shape) const;     // requires a compatible layout (contiguous); one -1 allowed
  Tensor reshape(const Shape& shape) const;  // a view when possible, else a contiguous copy (torch semantics)
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;  // python-style clamping
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const { return slice(dim, start, start + length); }
  Tensor select(int64_t dim, int64_t index) const;  // removes `dim`
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor expand(const Shape& shape) const;  // broadcast view (stride 0), -1 keeps a size

  // ---- copies ----
  Tensor contiguous() const;  // itself when already contiguous
  Tensor clone() const;       // always a fresh contiguous copy
  Tensor to(DType dtype) const;  // converts (f16/bf16 with torch rounding); itself when already dtype
  void copy_(const Tensor& src);  // same shape; any layouts/dtypes (converted through f64 for ints, f32 floats)
  void fill_(float value);
  std::vector<float> to_vector() const;  // f32 values in logical (C) order

  int64_t wrap_dim(int64_t d, int64_t ndim_extra = 0) const;

 private:
  template <class T> static constexpr int type_tag() {
    if constexpr (std::is_same_v<T, float>) return 1;
    else if constexpr (std::is_same_v<T, double>) return 2;
    else if constexpr (std::is_same_v<T, int32_t>) return 3;
    else if constexpr (std::is_same_v<T, int64_t>) return 4;
    else if constexpr (std::is_same_v<T, uint8_t>) return 5;
    else if constexpr (std::is_same_v<T, uint16_t>) return 6;
    else if constexpr (std::is_same_v<T, int16_t>) return 7;
    else if constexpr (std::is_same_v<T, int8_t>) return 8;
    else return 0;
  }
  void check_type(size_t size, int tag) const;

  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;  // elements
  Shape shape_, strides_;
  DType dtype_ = DType::f32;
};

// Debugging aid for the op validator: while on, every Tensor::empty / Arena::alloc is filled with NaN so an
// output element an op forgets to write shows up. Process-wide; off by default.
void set_poison_allocations(bool on);
bool poison_allocations();

// Throws std::invalid_argument("<op>: <message>") — every shape/dtype check in the engine goes through this.
[[noreturn]] void op_error(std::string_view op, const std::string& message);
void check_f32_cpu(std::string_view op, const Tensor& t, std::string_view name);

}  // namespace tabula
