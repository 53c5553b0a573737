// The CUDA backend (tabula_engine_cuda): every op of engine/op_list.h on device tensors, same semantics as
// tabula::ref, issued on the device's stream (device.h) so a sequence of ops runs in order with no host
// synchronisation. Each op's definition lives in the file of its family (elementwise, norm, pool, attention, rope,
// blas, conv, interpolate, copy .cu); dispatch.cu holds the device primitives and the runtime calls. The one instance
// reaches the engine through module.cpp (libtabula_cuda.so, loaded on first use: engine/cuda_module.h) or, where
// the backend is linked in (GPU test binaries), through register.cpp.
// Precision and storage types: engine/cuda/ops.h.
#pragma once
#include "engine/backend.h"

namespace tabula::cuda {

class CudaBackend final : public Backend {
 public:
  Device device() const override { return Device::cuda; }
  TABULA_OPS(TABULA_BACKEND_OVERRIDE)

  Tensor clone(const Tensor& x) override;
  Tensor to_dtype(const Tensor& x, DType dt) override;
  Tensor to_host(const Tensor& x) override;
  Tensor to_device(const Tensor& host, int index) override;
  Tensor to_device_like(const Tensor& host, const Tensor& like) override;
  void set_precision(Precision p) override;
  Precision precision() const override;
  Tensor convert_weight(const Tensor& weight) override;
  std::vector<CudaDeviceInfo> devices() const override;
  std::string runtime_version() const override;

  void set_current_device(int index) override;
  void synchronize(int index) override;
  size_t peak_bytes_in_use(int index) const override;
  std::unique_ptr<CapturedForward> capture(int index, const std::function<Tensor()>& forward) override;
  void clear_op_profile() override;
  void print_op_profile(int forwards) override;
  std::unique_ptr<DevicePreprocessor> preprocessor(int index) override;  // preprocess.cu
};

CudaBackend& backend_instance();  // the process's one CUDA backend (dispatch.cu)

}  // namespace tabula::cuda
