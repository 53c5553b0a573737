#define TABULA_WINO_NS avx2
#include "engine/cpu/winograd_impl.h"

namespace tabula::detail {
WinogradKernels winograd_kernels_avx2() { return avx2::kernels(); }
}  // namespace tabula::detail
