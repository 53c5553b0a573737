// Device dispatch for the op API: ops::<op> given a tensor that lives on a GPU hands the call to the backend
// that owns that device (engine/cuda/ops.h, same names, arguments and semantics), so a model forward written
// against ops:: runs unchanged on either device -- as a torch module does after .cuda().
//
// The CUDA backend fills the table the first time it creates a device tensor (cuda::empty / cuda::to_device),
// so a tensor that reports Device::cuda always has its backend registered. A build without the backend never
// creates such tensors; device_ops() then throws naming the op.
#pragma once
#include <optional>
#include <string_view>
#include <vector>

#include "engine/ops.h"

namespace tabula {

struct DeviceOps {
  Tensor (*conv2d)(const Tensor&, const Tensor&, const Tensor&, const Conv2dOptions&, Activation, const Tensor&);
  Tensor (*batch_norm)(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, double);
  Tensor (*gelu)(const Tensor&, bool);
  Tensor (*activation)(const Tensor&, Activation);
  Tensor (*swiglu)(const Tensor&);
  Tensor (*max_pool2d)(const Tensor&, std::array<int64_t, 2>, std::array<int64_t, 2>, std::array<int64_t, 2>,
                       std::array<int64_t, 2>, bool);
  Tensor (*adaptive_avg_pool2d)(const Tensor&, std::array<int64_t, 2>);
  Tensor (*linear)(const Tensor&, const Tensor&, const Tensor&, Activation);
  Tensor (*matmul)(const Tensor&, const Tensor&);
  Tensor (*layer_norm)(const Tensor&, const Tensor&, const Tensor&, double);
  Tensor (*softmax)(const Tensor&, int64_t);
  Tensor (*scaled_dot_product_attention)(const Tensor&, const Tensor&, const Tensor&, std::optional<double>, Tensor*);
  Tensor (*add)(const Tensor&, const Tensor&);
  Tensor (*mul)(const Tensor&, const Tensor&);
  Tensor (*mul_scalar)(const Tensor&, float);
  Tensor (*cat)(const std::vector<Tensor>&, int64_t);
  Tensor (*layer_scale)(const Tensor&, const Tensor&);
  Tensor (*interpolate)(const Tensor&, const InterpolateOptions&);
  Tensor (*pool)(const Tensor&, Pool, int64_t);
  // Tensor methods: a dense copy on the same device (clone), dtype conversion, host <-> device copies.
  Tensor (*clone)(const Tensor&);
  Tensor (*to_host)(const Tensor&);
  Tensor (*to_device_like)(const Tensor& host, const Tensor& like);  // host -> the device `like` lives on
  Tensor (*to_dtype)(const Tensor&, DType);                          // Tensor::to on the device
  // x W^T + bias + residual with the add inside the GEMM (models/device.h linear_residual)
  Tensor (*linear_residual)(const Tensor&, const Tensor&, const Tensor&, const Tensor&);
};

void register_device_ops(Device d, const DeviceOps* table);
// The backend of a device tensor; throws std::invalid_argument naming `op` when none is registered.
const DeviceOps& device_ops(std::string_view op, Device d);
inline bool on_gpu(const Tensor& t) { return t.defined() && t.device() != Device::cpu; }
// The first defined argument's device decides (mixing devices is the backend's error to report).
inline bool any_on_gpu(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (on_gpu(*t)) return true;
  return false;
}

// A host copy of any tensor (itself when already on the CPU).
Tensor to_host(const Tensor& t);

}  // namespace tabula
