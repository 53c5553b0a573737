// The CUDA backend as a module: engine/cuda/ is built into libtabula_cuda.so (CUDA runtime static inside it,
// cuBLAS(Lt) and cuDNN shared), which find_backend(Device::cuda) loads on first use. So the `tabula` binary has no
// link dependency on CUDA: it starts, and runs on the CPU, on a node without any CUDA library, and a CUDA device
// asked for there fails with load_cuda_module's message (the library missing, the versions needed).
//
// Where the module is looked for: $TABULA_CUDA_MODULE when set, else beside the binary (the build tree) and in
// ../lib beside its bin/ (the dist tarball). cuBLAS(Lt)/cuDNN are found by the module's RUNPATH ($ORIGIN, and the
// toolkit in a build tree) or the node's LD_LIBRARY_PATH (its CUDA module).
//
// The contract between binary and module is one exported C function, kCudaModuleEntry, returning a
// CudaModuleEntry. The module calls back into the binary for the engine (Tensor, the CPU backend, ...: the binary
// exports the tabula:: symbols, cmake/tabula_exports.list), so both must come from the same build: `build` is
// compared with the binary's own.
#pragma once
#include <string>

namespace tabula {

class Backend;

struct CudaModuleEntry {
  const char* build;  // "VERSION GITHASH" of the build that made the module
  Backend* backend;
};
inline constexpr const char* kCudaModuleEntry = "tabula_cuda_module";
inline constexpr const char* kCudaModuleName = "libtabula_cuda.so";
using CudaModuleEntryFn = const CudaModuleEntry* (*)();

// The build string both sides compare.
std::string cuda_module_build();

// Loads the module once (thread-safe); the backend, or nullptr with `why` set to a message naming the file that
// could not be loaded, the loader's own text (dlerror: the missing library) and the CUDA/cuDNN versions needed.
Backend* load_cuda_module(std::string* why);

}  // namespace tabula
