#include "engine/backend.h"

#include <atomic>
#include <stdexcept>
#include <string>

#include "engine/cpu/backend.h"
#include "engine/cuda_module.h"

namespace tabula {

std::string_view precision_name(Precision p) {
  switch (p) {
    case Precision::fp32: return "fp32";
    case Precision::tf32: return "tf32";
    case Precision::bf16: return "bf16";
    case Precision::fp16: return "fp16";
  }
  return "?";
}

std::optional<Precision> precision_from_name(std::string_view s) {
  for (Precision p : {Precision::fp32, Precision::tf32, Precision::bf16, Precision::fp16})
    if (precision_name(p) == s) return p;
  return std::nullopt;
}

namespace {
// Constant-initialised, so a backend registering from a static initializer of another file finds it ready.
std::atomic<Backend*> g_cuda{nullptr};
}  // namespace

Backend& cpu_backend() {
  static CpuBackend cpu;
  return cpu;
}

void register_backend(Device d, Backend* b) {
  if (d != Device::cuda) throw std::invalid_argument("register_backend: only cuda takes a registered backend");
  g_cuda.store(b);
}

Backend* find_backend(Device d) {
  if (d == Device::cpu) return &cpu_backend();
  if (Backend* b = g_cuda.load()) return b;  // linked in (GPU tests) or loaded before
  Backend* loaded = load_cuda_module(nullptr);
  if (loaded) g_cuda.store(loaded);
  return loaded;
}

std::string unavailable_reason(Device d) {
  if (find_backend(d)) return {};
  std::string why;
  load_cuda_module(&why);
  return why;
}

Backend& backend(std::string_view op, Device d) {
  Backend* b = find_backend(d);
  if (!b)
    throw std::invalid_argument(std::string(op) + ": tensor on " + std::string(device_name(d)) + " but " +
                                unavailable_reason(d));
  return *b;
}

std::unique_ptr<CapturedForward> Backend::capture(int, const std::function<Tensor()>&) {
  throw std::invalid_argument(std::string(device_name(device())) + " cannot capture a forward as a graph");
}

std::unique_ptr<DevicePreprocessor> Backend::preprocessor(int) {
  throw std::invalid_argument(std::string(device_name(device())) +
                              " has no device preprocessing (--preprocess device needs --device cuda)");
}

}  // namespace tabula
