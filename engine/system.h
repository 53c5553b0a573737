// What this process runs on: CPU features (for kernel dispatch), CUDA devices, build facts.
#pragma once
#include <string>
#include <vector>

namespace tabula {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false;
  bool avx512bf16 = false;           // vdpbf16ps (AVX512_BF16: Cooper Lake, Sapphire Rapids, Zen 4 and later)
  bool amx_bf16 = false;             // AMX tiles with bf16 (TMUL), and the OS saves the tile state
  bool has_avx2_fma() const { return avx2 && fma; }
  bool has_avx512() const { return avx512f && avx512bw && avx512dq && avx512vl; }
  bool has_avx512_bf16() const { return has_avx512() && avx512bf16; }
};
// Detected once. TABULA_CPU=generic|avx2|avx512 caps what dispatch may use (for tests and comparisons):
// avx512 also hides AVX512_BF16 and AMX, so the error of `--precision bf16` on an older CPU can be seen anywhere.
const CpuFeatures& cpu_features();
std::string cpu_features_string();  // e.g. "avx2 fma f16c avx512f avx512bw avx512dq avx512vl"
std::string cpu_model_name();       // from /proc/cpuinfo, or "unknown"

struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  int sm_major = 0, sm_minor = 0;
  size_t total_memory = 0;
};
bool cuda_built();                         // compiled with the CUDA backend
std::vector<CudaDeviceInfo> cuda_devices();  // empty without a driver/device (never throws)
bool mpi_built();

// One paragraph for `tabula --version` and run.json.
std::string build_summary();

}  // namespace tabula
