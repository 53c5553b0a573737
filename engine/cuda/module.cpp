// The entry of libtabula_cuda.so, its one exported C symbol (engine/cuda_module.h): the binary that loads the
// module checks the build string and takes the backend. Compiled into the module only.
#include "engine/cuda/backend.h"
#include "engine/cuda_module.h"
#include "tabula/build_info.h"

extern "C" __attribute__((visibility("default"))) const tabula::CudaModuleEntry* tabula_cuda_module() {
  static const tabula::CudaModuleEntry entry{TABULA_VERSION " " TABULA_GIT_HASH, &tabula::cuda::backend_instance()};
  return &entry;
}
