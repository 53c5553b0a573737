#define TABULA_ROWOPS_NS avx512
#include "engine/cpu/rowops_impl.h"

namespace tabula::detail {
RowKernels row_kernels_avx512() { return avx512::kernels("avx512"); }
}  // namespace tabula::detail
