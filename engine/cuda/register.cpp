// Registration of the linked-in CUDA backend, before main(): the GPU test and benchmark binaries link
// tabula_engine_cuda (whole) and call tabula::cuda:: directly, so they take the backend from here rather than
// loading libtabula_cuda.so (engine/cuda_module.h). Not part of the module.
#include "engine/cuda/backend.h"

namespace tabula::cuda {
namespace {
[[maybe_unused]] const bool g_registered = [] {
  register_backend(Device::cuda, &backend_instance());
  return true;
}();
}  // namespace
}  // namespace tabula::cuda
