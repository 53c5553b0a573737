#define TABULA_ROWOPS_NS avx2
#include "engine/cpu/rowops_impl.h"

namespace tabula::detail {
RowKernels row_kernels_avx2() { return avx2::kernels("avx2"); }
}  // namespace tabula::detail
