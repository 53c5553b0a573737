#include "engine/cpu/backend.h"

#include "engine/cpu/packed.h"

#include <string>

namespace tabula {

Tensor CpuBackend::to_device(const Tensor& host, int index) {
  if (index >= 0) op_error("to_device", "the cpu backend has no device " + std::to_string(index));
  return host;
}

Tensor CpuBackend::to_device_like(const Tensor& host, const Tensor&) { return host; }

void CpuBackend::set_precision(Precision p) { ops::set_cpu_precision(p); }

Precision CpuBackend::precision() const { return ops::cpu_precision(); }

}  // namespace tabula
