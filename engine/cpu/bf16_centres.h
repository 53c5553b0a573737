// The row-wise pieces of reference-centred bf16 rounding (packed.h Bf16Centres): which centre each row (or image)
// rounds around, the rounding of x - c, the epilogue shifts that add W c, and the recording of the centres.
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

// Whether a Bf16CentreRecording is alive on this thread.
bool recording_bf16_centres();
// Adds centres from a reference forward's input (`rows` rows of K values) to b's Bf16Centres, with their W c over
// `taps` kernel taps (a linear: 1); exact_weights: W c with the fp32 weights where the low halves are kept.
void record_centres(const PackedMatrix& b, int64_t taps, const float* x, int64_t rows, int64_t K, bool exact_weights);
// Outside a recording, frees b's low weight halves (Bf16Centres::w_lo): no longer needed.
void drop_low_weights(const PackedMatrix& b);

}  // namespace tabula::detail
