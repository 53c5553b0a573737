#include "models/device.h"

#include <stdexcept>

#include "engine/backend.h"
#include "engine/cuda/device_name.h"
#include "engine/file_pages.h"
#include "engine/ops.h"
#include "engine/system.h"
#if TABULA_HAVE_CUDA
#include "engine/cuda/ops.h"
#endif

namespace tabula {

Tensor upload(const Tensor& host, int device) {
  if (!host.defined()) return {};
#if TABULA_HAVE_CUDA
  Tensor on_device = cuda::to_device(host.to(DType::f32), device);
  release_file_pages(host);  // a weight read from a file mapping now lives on the GPU
  return on_device;
#else
  (void)device;
  throw std::invalid_argument("--device cuda: this tabula was built without the CUDA backend");
#endif
}

Tensor upload_linear_weight(const Tensor& host, int device) {
  if (!host.defined()) return {};
#if TABULA_HAVE_CUDA
  return cuda::convert_weight(upload(host, device));
#else
  return upload(host, device);
#endif
}

DType activation_dtype(int device) {
#if TABULA_HAVE_CUDA
  if (device >= 0) {
    const cuda::Precision p = cuda::precision();
    if (p == cuda::Precision::bf16) return DType::bf16;
    if (p == cuda::Precision::fp16) return DType::f16;
  }
#else
  (void)device;
#endif
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
#if TABULA_HAVE_CUDA
  release_file_pages(host);
  return cuda::to_device(krsc, device).permute({0, 3, 1, 2});
#else
  return upload(krsc, device);
#endif
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
#if TABULA_HAVE_CUDA
  const auto p = cuda::precision_from_name(precision);
  if (!p) throw std::invalid_argument("--precision: expected fp32, tf32, bf16 or fp16, got '" + precision + "'");
  const auto devices = cuda_devices();
  if (devices.empty()) throw std::invalid_argument("--device " + device + ": no CUDA device on this machine");
  if (index >= static_cast<int>(devices.size()))
    throw std::invalid_argument("--device " + device + ": this machine has " + std::to_string(devices.size()) +
                                " CUDA device(s), cuda:0 to cuda:" + std::to_string(devices.size() - 1));
  cuda::set_precision(*p);
  cuda::set_current_device(index);
  return index;
#else
  throw std::invalid_argument("--device " + device + ": this tabula was built without the CUDA backend");
#endif
}

void synchronize_device(int device) {
#if TABULA_HAVE_CUDA
  if (device >= 0) cuda::synchronize(device);
#else
  (void)device;
#endif
}

double peak_device_mem_mb(int device) {
#if TABULA_HAVE_CUDA
  if (device >= 0) return static_cast<double>(cuda::allocator_stats(device).peak_bytes_in_use) / (1024.0 * 1024.0);
#else
  (void)device;
#endif
  return 0;
}

}  // namespace tabula
