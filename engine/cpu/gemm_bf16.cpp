// The CPU's GEMM precision (--precision fp32|bf16 with --device cpu) and the choice of the bf16 micro-kernel.
#include <atomic>
#include <string>

#include "engine/backend.h"
#include "engine/cpu/gemm_kernels.h"
#include "engine/cpu/packed.h"
#include "engine/ops_common.h"
#include "engine/system.h"

namespace tabula {

namespace detail {
const GemmBf16KernelInfo* gemm_bf16_kernel() {
  static const GemmBf16KernelInfo k = cpu_features().has_avx512_bf16() ? gemm_bf16_kernel_avx512bf16()
                                                                      : GemmBf16KernelInfo{};
  return k.fn ? &k : nullptr;
}
}  // namespace detail

namespace {
std::atomic<Precision> g_cpu_precision{Precision::fp32};
}

namespace ops {
void set_cpu_precision(Precision p) {
  if (p == Precision::bf16 && !detail::gemm_bf16_kernel())
    op_error("--precision bf16", "the CPU bf16 path needs AVX512-BF16 (vdpbf16ps: Intel Cooper Lake / Sapphire "
                                 "Rapids or later, AMD Zen 4 or later); this CPU (" + cpu_model_name() +
                                 ") offers " + cpu_features_string() + ". Run with --precision fp32");
  if (p != Precision::fp32 && p != Precision::bf16)
    op_error("--precision " + std::string(precision_name(p)), "cpu forwards are fp32 or bf16 (tf32 and fp16 are "
                                                               "for --device cuda)");
  g_cpu_precision.store(p);
}
Precision cpu_precision() { return g_cpu_precision.load(std::memory_order_relaxed); }
}  // namespace ops

}  // namespace tabula
