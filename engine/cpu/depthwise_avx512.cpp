#define TABULA_DEPTHWISE_NS avx512
#include "engine/cpu/depthwise_impl.h"

namespace tabula::detail {
DepthwiseRowsFn depthwise_rows_avx512() { return avx512::rows; }
}  // namespace tabula::detail
