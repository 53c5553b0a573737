// The CPU backend: the fast paths of every op (engine/cpu/ops_fast.cpp and the kernels beside it) and the host's
// trivial device primitives. ops::<op> on CPU tensors lands here.
#pragma once
#include "engine/backend.h"

namespace tabula {

class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::cpu; }
  TABULA_OPS(TABULA_BACKEND_OVERRIDE)

  Tensor clone(const Tensor& x) override { return x.clone(); }
  Tensor to_dtype(const Tensor& x, DType dt) override { return x.to(dt); }
  Tensor to_host(const Tensor& x) override { return x; }
  Tensor to_device(const Tensor& host, int index) override;
  Tensor to_device_like(const Tensor& host, const Tensor& like) override;
  void set_precision(Precision p) override;
  Precision precision() const override;  // fp32 or bf16 (ops::set_cpu_precision)
  Tensor convert_weight(const Tensor& weight) override { return weight; }
  std::vector<CudaDeviceInfo> devices() const override { return {}; }
  std::string runtime_version() const override { return {}; }
};

}  // namespace tabula
