// The row-wise pieces of reference-centred bf16 rounding (packed.h Bf16Centres): which centre each row (or image)
// rounds around, the rounding of x - c, and the epilogue shifts that add W c.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/cpu/packed.h"
#include "engine/tensor.h"

namespace tabula::detail {

// The centre of each group of `per` consecutive rows (per = 1: of each row), -1 for none (plain rounding).
std::vector<int8_t> choose_centres(int64_t rows, int64_t per, int64_t cols, const float* src, int64_t lds,
                                   const Bf16Centres& cs);
// bf16 rows (stride ldd, zeros past cols) of x - c, c the centre of the row's group (none: x itself).
Tensor round_centred(int64_t rows, int64_t per, int64_t cols, const float* src, int64_t lds, int64_t ldd,
                     const Bf16Centres& cs, const std::vector<int8_t>& choice);
// [count + 1, N]: row 0 the shift (or zeros), row j + 1 the shift that also adds W c_j.
std::vector<float> centred_shifts(const Bf16Centres& cs, int64_t N, const float* scale, const float* shift);

}  // namespace tabula::detail
