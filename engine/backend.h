// Backend: what a device must provide for a model forward to run on it -- every op of engine/op_list.h (one pure
// virtual each) and the device primitives (copies between host and device, dtype conversion, precision, weight
// conversion) and runtime (synchronisation, graphs, memory statistics). The CPU backend (engine/cpu/) is always
// present; the CUDA backend (engine/cuda/) is loaded when a CUDA device is first asked for, and ops::<op> given a
// tensor on a GPU hands the call to it -- so a model forward written against ops:: runs unchanged on either
// device, as a torch module does after .cuda(). Code outside engine/cuda/ reaches the GPU only through this
// interface: the `tabula` binary has no link dependency on CUDA.
#pragma once
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/op_list.h"
#include "engine/preprocess_plan.h"
#include "engine/system.h"

namespace tabula {

// How matrix products run (process-wide, set once by --precision):
//   fp32  full fp32 (no TF32); tf32  TF32 tensor-core math on f32 data (GPU);
//   bf16 / fp16  GEMM operands rounded to bf16/fp16, fp32 accumulation (engine/cuda/ops.h). The CPU takes fp32 or
//   bf16 (engine/cpu/packed.h: ops::set_cpu_precision).
enum class Precision { fp32, tf32, bf16, fp16 };
std::string_view precision_name(Precision p);  // "fp32", "tf32", "bf16", "fp16"
std::optional<Precision> precision_from_name(std::string_view s);

// A whole forward recorded once and replayed per batch (a CUDA graph: engine/cuda/device.h says what the forward
// may do). Backend::capture makes one.
class CapturedForward {
 public:
  virtual ~CapturedForward() = default;
  virtual void replay() = 0;                   // queued on the device; Backend::synchronize waits for it
  virtual const Tensor& output() const = 0;    // written by every replay
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;

#define TABULA_BACKEND_OP(name, params, args) virtual Tensor name params = 0;
  TABULA_OPS(TABULA_BACKEND_OP)
#undef TABULA_BACKEND_OP

  // ---- device primitives ----
  virtual Tensor clone(const Tensor& x) = 0;              // a dense copy on x's device (Tensor::clone)
  virtual Tensor to_dtype(const Tensor& x, DType dt) = 0;  // Tensor::to on x's device
  virtual Tensor to_host(const Tensor& x) = 0;             // a host copy, f32 whatever the device storage type
  virtual Tensor to_device(const Tensor& host, int index) = 0;  // host -> device `index` of this backend
  // host -> where `like` lives, in like's storage type (an intervention's replacement in a bf16 forward)
  virtual Tensor to_device_like(const Tensor& host, const Tensor& like) = 0;
  virtual void set_precision(Precision p) = 0;
  virtual Precision precision() const = 0;
  // A linear weight (already on this device) converted once, at load, to the storage type the GEMMs read in the
  // current precision; ops::linear accepts either form.
  virtual Tensor convert_weight(const Tensor& weight) = 0;
  // What the backend's runtime sees (tabula --version, --device checks): its devices, and its library versions
  // ("runtime 13.0, cuDNN 9.x.y"; empty for the CPU).
  virtual std::vector<CudaDeviceInfo> devices() const = 0;
  virtual std::string runtime_version() const = 0;

  // ---- device runtime: what a caller needs beyond the ops (no-ops on the CPU) ----
  virtual void set_current_device(int index) { (void)index; }  // where ops run when no tensor says
  virtual void synchronize(int index) { (void)index; }         // waits for the work queued on device `index`
  virtual size_t peak_bytes_in_use(int index) const { (void)index; return 0; }  // the caching allocator's peak
  // The forward captured on device `index` (throws std::invalid_argument where the backend cannot capture).
  virtual std::unique_ptr<CapturedForward> capture(int index, const std::function<Tensor()>& forward);
  // TABULA_CUDA_PROFILE's per-op device times: forget those so far / print them per forward to stderr.
  virtual void clear_op_profile() {}
  virtual void print_op_profile(int forwards) { (void)forwards; }

  // ---- preprocessing on the device (engine/preprocess_plan.h) ----
  // Raw planes in, model inputs out, on device `index`; throws std::invalid_argument where the backend has none
  // (the CPU preprocesses with data/preprocess.h).
  virtual std::unique_ptr<DevicePreprocessor> preprocessor(int index);
};

// Declares the overrides of every op in a backend class (engine/cpu/backend.h, engine/cuda/backend.h).
#define TABULA_BACKEND_OVERRIDE(name, params, args) Tensor name params override;

// The CPU backend (always present) and the registry of device backends. The CUDA backend is the module
// libtabula_cuda.so, loaded on the first find_backend(Device::cuda) (engine/cuda_module.h); a program that links
// the backend in (the GPU test binaries) registers it at start-up instead (engine/cuda/register.cpp).
// find_backend returns nullptr when `d` has none (unavailable_reason says why); backend() throws
// std::invalid_argument naming `op` and the reason.
Backend& cpu_backend();
void register_backend(Device d, Backend* b);
Backend* find_backend(Device d);
std::string unavailable_reason(Device d);  // empty when find_backend(d) has a backend
Backend& backend(std::string_view op, Device d);

inline bool on_gpu(const Tensor& t) { return t.defined() && t.device() != Device::cpu; }

namespace detail {
inline void note_device(Device& d, const Tensor& t) {
  if (d == Device::cpu && t.defined()) d = t.device();
}
inline void note_device(Device& d, const std::vector<Tensor>& ts) {
  for (const Tensor& t : ts) note_device(d, t);
}
template <class T>
void note_device(Device&, const T&) {}  // options, scalars, output pointers
}  // namespace detail

// The backend an op with these arguments runs on: the first tensor on a GPU decides (mixing devices is that
// backend's error to report); all-CPU arguments run on the CPU.
template <class... Args>
Backend& backend_for(std::string_view op, const Args&... args) {
  Device d = Device::cpu;
  (detail::note_device(d, args), ...);
  return d == Device::cpu ? cpu_backend() : backend(op, d);
}

// A host copy of any tensor (itself when already on the CPU).
inline Tensor to_host(const Tensor& t) { return on_gpu(t) ? backend("to_host", t.device()).to_host(t) : t; }
// A host tensor placed where `like` lives, in like's storage type (itself when `like` is on the CPU): a table a
// forward builds on the host (DINOv3's RoPE sin/cos) goes beside the tensors it meets, without the model asking
// where it runs.
inline Tensor to_device_like(const Tensor& host, const Tensor& like) {
  return on_gpu(like) ? backend("to_device", like.device()).to_device_like(host, like) : host;
}

}  // namespace tabula
