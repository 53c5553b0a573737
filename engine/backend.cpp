#include "engine/backend.h"

#include <atomic>
#include <stdexcept>
#include <string>

#include "engine/cpu/backend.h"

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

Backend* find_backend(Device d) { return d == Device::cpu ? &cpu_backend() : g_cuda.load(); }

Backend& backend(std::string_view op, Device d) {
  Backend* b = find_backend(d);
  if (!b)
    throw std::invalid_argument(std::string(op) + ": tensor on " + std::string(device_name(d)) +
                                " but this build has no backend for it");
  return *b;
}

}  // namespace tabula
