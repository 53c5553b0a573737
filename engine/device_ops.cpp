#include "engine/device_ops.h"

#include <atomic>
#include <stdexcept>
#include <string>

namespace tabula {
namespace {
std::atomic<const DeviceOps*> g_cuda_ops{nullptr};
}  // namespace

void register_device_ops(Device d, const DeviceOps* table) {
  if (d != Device::cuda) throw std::invalid_argument("register_device_ops: only cuda has a backend table");
  g_cuda_ops.store(table);
}

const DeviceOps& device_ops(std::string_view op, Device d) {
  const DeviceOps* t = d == Device::cuda ? g_cuda_ops.load() : nullptr;
  if (!t)
    throw std::invalid_argument(std::string(op) + ": tensor on " + std::string(device_name(d)) +
                                " but this build has no backend for it");
  return *t;
}

Tensor to_host(const Tensor& t) {
  if (!on_gpu(t)) return t;
  return device_ops("to_host", t.device()).to_host(t);
}

}  // namespace tabula
