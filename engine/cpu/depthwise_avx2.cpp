#define TABULA_DEPTHWISE_NS avx2
#include "engine/cpu/depthwise_impl.h"

namespace tabula::detail {
DepthwiseRowsFn depthwise_rows_avx2() { return avx2::rows; }
}  // namespace tabula::detail
