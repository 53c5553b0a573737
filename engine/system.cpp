#include "engine/system.h"

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string_view>

#include "tabula/build_info.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "engine/backend.h"

namespace tabula {

// cpuid + xgetbv (the OS must save the YMM/ZMM state too), so gcc and clang builds agree.
static CpuFeatures detect() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  unsigned a, b, c, d;
  if (__get_cpuid(1, &a, &b, &c, &d)) {
    bool osxsave = c & bit_OSXSAVE;
    uint64_t xcr0 = 0;
    if (osxsave) {
      uint32_t lo, hi;
      __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
      xcr0 = (uint64_t(hi) << 32) | lo;
    }
    bool ymm = (xcr0 & 0x6) == 0x6, zmm = (xcr0 & 0xe6) == 0xe6;
    f.fma = ymm && (c & bit_FMA);
    f.f16c = ymm && (c & bit_F16C);
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
      f.avx2 = ymm && (b & bit_AVX2);
      f.avx512f = zmm && (b & bit_AVX512F);
      f.avx512bw = zmm && (b & bit_AVX512BW);
      f.avx512dq = zmm && (b & bit_AVX512DQ);
      f.avx512vl = zmm && (b & bit_AVX512VL);
      // AMX-BF16 (edx bit 22) with AMX-TILE (bit 24), and XCR0's XTILECFG/XTILEDATA (bits 17, 18)
      f.amx_bf16 = (d & (1u << 22)) && (d & (1u << 24)) && (xcr0 & 0x60000) == 0x60000;
    }
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) f.avx512bf16 = zmm && (a & (1u << 5));  // AVX512_BF16
  }
#endif
  if (const char* cap = std::getenv("TABULA_CPU")) {
    std::string_view cap_name(cap);
    if (cap_name == "generic") f = CpuFeatures{};
    if (cap_name == "generic" || cap_name == "avx2") f.avx512f = f.avx512bw = f.avx512dq = f.avx512vl = false;
    if (cap_name == "generic" || cap_name == "avx2" || cap_name == "avx512") f.avx512bf16 = f.amx_bf16 = false;
  }
  return f;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

std::string cpu_features_string() {
  const CpuFeatures& f = cpu_features();
  std::string s;
  auto add = [&](bool on, const char* name) {
    if (!on) return;
    if (!s.empty()) s += ' ';
    s += name;
  };
  add(f.avx2, "avx2");
  add(f.fma, "fma");
  add(f.f16c, "f16c");
  add(f.avx512f, "avx512f");
  add(f.avx512bw, "avx512bw");
  add(f.avx512dq, "avx512dq");
  add(f.avx512vl, "avx512vl");
  add(f.avx512bf16, "avx512bf16");
  add(f.amx_bf16, "amx-bf16");
  return s.empty() ? "generic" : s;
}

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "unknown";
}

bool cuda_built() { return TABULA_HAVE_CUDA != 0; }
bool mpi_built() { return TABULA_HAVE_MPI != 0; }

std::vector<CudaDeviceInfo> cuda_devices() {
  const Backend* b = find_backend(Device::cuda);
  return b ? b->devices() : std::vector<CudaDeviceInfo>{};
}

std::string build_summary() {
  std::ostringstream o;
  o << "tabula " << TABULA_VERSION << " (git " << TABULA_GIT_HASH << ", " << TABULA_BUILD_TYPE << " build";
  if (std::string_view(TABULA_SANITIZE_FLAGS).size()) o << ", sanitize=" << TABULA_SANITIZE_FLAGS;
  o << ")\n";
  o << "cpu: " << cpu_model_name() << "; features: " << cpu_features_string() << "\n";
  o << "cuda: ";
  const Backend* b = cuda_built() ? find_backend(Device::cuda) : nullptr;  // loads the CUDA module
  if (!cuda_built()) {
    o << "not built\n";
  } else if (!b) {
    o << "built, unavailable: " << unavailable_reason(Device::cuda) << "\n";
  } else {
    o << "built (" << b->runtime_version() << ")";
    auto devs = b->devices();
    if (devs.empty()) o << "; no device visible\n";
    for (const auto& d : devs)
      o << "; device " << d.index << ": " << d.name << " (sm_" << d.sm_major << d.sm_minor << ", "
        << d.total_memory / (1024 * 1024) << " MiB)";
    if (!devs.empty()) o << "\n";
  }
  o << "mpi: " << (mpi_built() ? "built" : "not built") << "\n";
  return o.str();
}

}  // namespace tabula
