#include "engine/cpu/backend.h"

#include <string>

namespace tabula {

Tensor CpuBackend::to_device(const Tensor& host, int index) {
  if (index >= 0) op_error("to_device", "the cpu backend has no device " + std::to_string(index));
  return host;
}

Tensor CpuBackend::to_device_like(const Tensor& host, const Tensor&) { return host; }

void CpuBackend::set_precision(Precision p) {
  if (p != Precision::fp32)
    op_error("set_precision", "cpu forwards are fp32, not " + std::string(precision_name(p)));
}

}  // namespace tabula
