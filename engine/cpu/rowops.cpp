#define TABULA_ROWOPS_NS generic
#include "engine/cpu/rowops_impl.h"
#include "engine/system.h"

namespace tabula::detail {

RowKernels row_kernels_generic() { return generic::kernels("generic"); }

const RowKernels& row_kernels() {
  static const RowKernels k = [] {
    const CpuFeatures& f = cpu_features();
    if (f.has_avx512()) return row_kernels_avx512();
    if (f.has_avx2_fma()) return row_kernels_avx2();
    return row_kernels_generic();
  }();
  return k;
}

}  // namespace tabula::detail
