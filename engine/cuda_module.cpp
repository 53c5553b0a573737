#include "engine/cuda_module.h"

#if TABULA_HAVE_CUDA
#include <dlfcn.h>
#include <unistd.h>
#endif

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "tabula/build_info.h"
#if TABULA_HAVE_CUDA
#include "tabula/cuda_needs.h"  // what the module was linked against (engine/CMakeLists.txt)
#endif

namespace tabula {

std::string cuda_module_build() { return std::string(TABULA_VERSION) + " " + TABULA_GIT_HASH; }

namespace {

struct Loaded {
  Backend* backend = nullptr;
  std::string why;
};

#if TABULA_HAVE_CUDA
std::vector<std::string> module_candidates() {
  if (const char* env = std::getenv("TABULA_CUDA_MODULE"); env && *env) return {env};
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return {kCudaModuleName};  // the loader's own search path
  const std::filesystem::path dir = exe.parent_path();
  return {(dir / kCudaModuleName).string(), (dir / ".." / "lib" / kCudaModuleName).lexically_normal().string()};
}

std::string needs() {
  return std::string(". The CUDA backend needs ") + TABULA_CUDA_NEEDS +
         " from the node's CUDA module (module load ...; or LD_LIBRARY_PATH naming their folder) or copied into the "
         "folder of " + kCudaModuleName + ", and an NVIDIA driver; --device cpu works without them";
}
#endif

Loaded load() {
#if !TABULA_HAVE_CUDA
  return {nullptr, "this tabula was built without the CUDA backend (a CPU build)"};
#else
  std::string looked;
  for (const std::string& path : module_candidates()) {
    if (path.find('/') != std::string::npos && access(path.c_str(), F_OK) != 0) {
      looked += (looked.empty() ? "" : ", ") + path;
      continue;
    }
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      const char* err = dlerror();
      return {nullptr, "cannot load the CUDA backend: " + std::string(err ? err : path + ": unknown error") + needs()};
    }
    auto entry = reinterpret_cast<CudaModuleEntryFn>(dlsym(handle, kCudaModuleEntry));
    if (!entry) return {nullptr, path + " is not a tabula CUDA backend (no " + kCudaModuleEntry + " symbol)"};
    const CudaModuleEntry* e = entry();
    if (!e || !e->build || cuda_module_build() != e->build)
      return {nullptr, path + " comes from another tabula build (" + std::string(e && e->build ? e->build : "?") +
                           ", this binary is " + cuda_module_build() + "): use the one unpacked with this binary"};
    return {e->backend, {}};
  }
  return {nullptr, "the CUDA backend " + std::string(kCudaModuleName) + " is not installed (looked for " + looked +
                       "; TABULA_CUDA_MODULE names another path)" + needs()};
#endif
}

}  // namespace

Backend* load_cuda_module(std::string* why) {
  static const Loaded loaded = load();  // once: a failed dlopen is not retried
  if (why) *why = loaded.why;
  return loaded.backend;
}

}  // namespace tabula
