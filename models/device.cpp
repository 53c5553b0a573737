#include "models/device.h"

#include <stdexcept>

#include "engine/backend.h"
#include "engine/cuda/device_name.h"
#include "engine/file_pages.h"
#include "engine/ops.h"
#include "engine/system.h"

namespace tabula {

namespace {
// The CUDA backend (loaded on first use: engine/cuda_module.h); a clear error naming `what` when there is none.
Backend& gpu(const std::string& what) {
  Backend* b = find_backend(Device::cuda);
  if (!b) throw std::invalid_argument(what + ": " + unavailable_reason(Device::cuda));
  return *b;
}
}  // namespace

Tensor upload(const Tensor& host, int device) {
  if (!host.defined()) return {};
  Tensor on_device = gpu("--device cuda").to_device(host.to(DType::f32), device);
  release_file_pages(host);  // a weight read from a file mapping now lives on the GPU
  return on_device;
}

Tensor upload_linear_weight(const Tensor& host, int device) {
  if (!host.defined()) return {};
  return gpu("--device cuda").convert_weight(upload(host, device));
}

DType activation_dtype(int device) {
  if (device >= 0) {
    const Precision p = gpu("--device cuda").precision();
    if (p == Precision::bf16) return DType::bf16;
    if (p == Precision::fp16) return DType::f16;
  }
  return DType::f32;
}

Tensor upload_activation_param(const Tensor& host, int device) {
  if (!host.defined()) return {};
  return upload(host, device).to(activation_dtype(device));
}

Tensor upload_conv_weight(const Tensor& host, int device) {
  if (!host.defined()) return {};
  const DType dt = activation_dtype(device);
  if (dt == DType::f32 || host.dim() != 4) return upload(host, device);
  // [Cout, Cin/g, kh, kw] -> KRSC storage in the 16-bit type, viewed back in the torch shape.
  Tensor krsc = host.to(DType::f32).permute({0, 2, 3, 1}).contiguous().to(dt);
  Tensor on_device = gpu("--device cuda").to_device(krsc, device).permute({0, 3, 1, 2});
  release_file_pages(host);
  return on_device;
}

int select_device(const std::string& device, const std::string& precision) {
  const int index = cuda::parse_device(device);
  if (index < 0) {
    // fp32, or bf16 GEMMs and convs where the CPU has AVX512-BF16 (weights packed afterwards take it)
    if (precision == "bf16") {
      cpu_backend().set_precision(Precision::bf16);
    } else if (precision == "fp32") {
      cpu_backend().set_precision(Precision::fp32);
    } else {
      throw std::invalid_argument("--precision " + precision +
                                  ": cpu forwards are fp32 or bf16 (tf32/fp16 are for --device cuda)");
    }
    return -1;
  }
  const auto p = precision_from_name(precision);
  if (!p) throw std::invalid_argument("--precision: expected fp32, tf32, bf16 or fp16, got '" + precision + "'");
  Backend& b = gpu("--device " + device);
  const auto devices = b.devices();
  if (devices.empty()) throw std::invalid_argument("--device " + device + ": no CUDA device on this machine");
  if (index >= static_cast<int>(devices.size()))
    throw std::invalid_argument("--device " + device + ": this machine has " + std::to_string(devices.size()) +
                                " CUDA device(s), cuda:0 to cuda:" + std::to_string(devices.size() - 1));
  b.set_precision(*p);
  b.set_current_device(index);
  return index;
}

void synchronize_device(int device) {
  if (device >= 0) gpu("--device cuda").synchronize(device);
}

double peak_device_mem_mb(int device) {
  if (device < 0) return 0;
  return static_cast<double>(gpu("--device cuda").peak_bytes_in_use(device)) / (1024.0 * 1024.0);
}

}  // namespace tabula
