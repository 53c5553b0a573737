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

// What the epilogue adds per GEMM row (indirect_gemm.h Epilogue::shift_index / shift_table): row r takes
// table[index[r] * N ..].
struct CentredShifts {
  std::vector<int32_t> index;
  std::vector<float> table;
};
// A linear: row r the shift of its centre choice[r] (-1: the plain shift).
CentredShifts linear_centred_shifts(const Bf16Centres& cs, const std::vector<int8_t>& choice, int64_t N,
                                    const float* scale, const float* shift);
// A direct conv (output pixel rows (n, oh, ow)): the shift of image n's centre with, for a padded conv whose low
// halves were kept, the W_lo c of the pixel's in-map taps only (its border pattern's rectangle of taps).
struct ConvGeometry {
  int64_t N, H, W, Ho, Wo;
  Conv2dOptions o;
};
CentredShifts conv_centred_shifts(const Bf16Centres& cs, const std::vector<int8_t>& image_centre,
                                  const ConvGeometry& g, int64_t Cout, const float* scale, const float* shift);

// Attention's K and V in bf16 (ops_fast.cpp sdpa_bf16): `rows` rows of `cols` values (row stride lds) minus their
// mean over the rows, into dst (dense); mean (if not null) gets the mean. An untrained ViT's keys and values share a
// common part far larger than what tells its tokens (and images) apart: rounded as they are, their rounding error
// swamps the class token's output; as deviations it scales with those. K's mean adds the same q.k_mean to every
// score of a query row, which the softmax cancels; V's comes back exactly as + mean after the normalisation (the
// probabilities sum to one). Per (image, head), so the result does not depend on the batch.
void centre_rows(int64_t rows, int64_t cols, const float* src, int64_t lds, float* dst, float* mean);

// Whether a Bf16CentreRecording is alive on this thread.
bool recording_bf16_centres();
// Adds centres from a reference forward's input (`rows` rows of K values) to b's Bf16Centres, with their W c over
// kh x kw kernel taps (a linear: 1 x 1); padded: a conv whose border pixels see only some taps.
void record_centres(const PackedMatrix& b, int64_t kh, int64_t kw, const float* x, int64_t rows, int64_t K,
                    bool padded);
// Whether a weight's low halves (Bf16Centres::w_lo, `bytes`) may be kept: within a process-wide budget,
// TABULA_BF16_LOW_WEIGHTS_MIB (default 4096: a 7B model's would otherwise double its packed bytes until the first
// forward); past it, once, a note on stderr.
bool reserve_low_weights(int64_t bytes);
// Outside a recording, frees b's low weight halves (Bf16Centres::w_lo): no longer needed.
void drop_low_weights(const PackedMatrix& b);

}  // namespace tabula::detail
