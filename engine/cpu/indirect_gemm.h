// The indirect GEMM driver behind the packed-weight convs and linears (packed.cpp): C[M, N] = A[M, K] @ B[K, N]
// with B packed once (the weights) and A read in place through row pointers; see packed.cpp's head comment for
// the A sources and the fixed K blocking. Internal to engine/cpu (packed.cpp, bf16_centres.cpp).
#pragma once
#include <cstdint>
#include <vector>

#include "engine/cpu/packed.h"
#include "engine/ops.h"
#include "engine/tensor.h"

namespace tabula::detail::igemm {

constexpr int64_t KC = 256;  // k per block: fixed, part of the numerical definition of the result

// The K blocking: segments of `len` consecutive k (for a conv: one tap, a chunk of input channels), grouped into
// blocks of equal-length segments of at most KC k in all.
struct Segment {
  int64_t c0;      // conv: first input channel of the chunk; dense A: the k offset
  int64_t dh, dw;  // conv: the tap's offset from the window origin (i * dilation_h, j * dilation_w)
};
struct KBlock {
  int64_t seg0, nseg, len, k0;
};
struct KPlan {
  std::vector<Segment> segs;
  std::vector<KBlock> blocks;
};

// Dense A (rows of K contiguous values): blocks of KC.
KPlan dense_plan(int64_t K);
// Conv taps: every tap's Cin channels in chunks of at most KC, consecutive equal chunks grouped up to KC.
KPlan tap_plan(int64_t kh, int64_t kw, const Conv2dOptions& o, int64_t cin);
// Rows of a k x k window over few channels: kernel row i is one segment of len = kw * C k (c0 = i * len), grouped
// into blocks of at most KC.
KPlan row_plan(int64_t kh, int64_t len, int64_t dilation_h);

// Where the rows of A are. T: float (the fp32 GEMM) or uint16_t (bf16 bit patterns, the activations already
// rounded by round_activations below).
template <class T>
struct ASource {
  enum class Kind { dense, taps, tap_rows, im2col } kind = Kind::dense;
  const T* a = nullptr;  // dense: row r at a + r * lda; taps / tap_rows / im2col: the channels-last input
  int64_t lda = 0;
  int64_t row0 = 0;  // the GEMM's row r is row (output pixel) row0 + r of this source (a band of a conv's output)
  // taps / im2col: per image, what a pixel in the padding reads (C values); nullptr: zeros (bf16 centres: -c)
  const T* const* pad_rows = nullptr;
  // conv geometry (taps / im2col)
  int64_t H = 0, W = 0, C = 0, Ho = 0, Wo = 0, kh = 0, kw = 0;
  Conv2dOptions o;
  // Pointer to input pixel row (n, ih, iw)'s channels, or nullptr in the padding.
  const T* pixel(int64_t n, int64_t ih, int64_t iw) const {
    if (ih < 0 || ih >= H || iw < 0 || iw >= W) return nullptr;
    return a + ((n * H + ih) * W + iw) * C;
  }
};

struct Epilogue {
  const float* scale = nullptr;
  const float* shift = nullptr;
  const float* residual = nullptr;  // row r at residual + r * ldr
  int64_t ldr = 0;
  Activation act = Activation::none;
  // bf16 centres (Bf16Centres): GEMM row r takes row shift_index[row0 + r] of shift_table ([rows, N]: the shift
  // with the W c of the row's centre and, for a padded conv, of its in-map taps; bf16_centres.h) in place of `shift`
  const int32_t* shift_index = nullptr;
  const float* shift_table = nullptr;
};

// B as packed panels (a PackedMatrix's, or a scratch buffer packed by detail::pack_b_panels). K: rows as stored
// (bf16: pairs of rows, so a k offset is k * nr elements in either type).
template <class T>
struct BPanels {
  const T* data;
  int64_t K, N, nr;
  const T* panel(int64_t p) const { return data + p * K * nr; }
  int64_t rows() const { return K; }
  int64_t cols() const { return N; }
};
inline BPanels<float> panels_of(const PackedMatrix& m) { return {m.panel(0), m.rows(), m.cols(), m.nr()}; }
inline BPanels<uint16_t> bf16_panels_of(const PackedMatrix& m) {
  return {m.panel_bf16(0), m.stored_rows(), m.cols(), m.nr()};
}

// `count` independent GEMMs of the same shape in one parallel loop (Winograd's 36 transform points): GEMM b reads
// the dense A at a + b * a_step, the rows k_step * b .. of B, and writes C + b * c_step.
struct GemmBatch {
  int64_t count = 1, a_step = 0, k_step = 0, c_step = 0;
};

// C[M, N] (row stride ldc) = A @ B over the K plan, then the epilogue: one task per (GEMM of the batch, row block,
// column block). T: float or uint16_t (bf16), instantiated in indirect_gemm.cpp.
template <class T>
void indirect_gemm(int64_t M, const ASource<T>& A, const KPlan& plan, const BPanels<T>& B, float* C_all,
                   int64_t ldc, const Epilogue& ep, const GemmBatch& batch = {});

// The bf16 copy of activations that a bf16 GEMM reads: rows of `cols` values (stride lds) rounded to bf16, with
// row stride ldd >= cols (the zeros past cols complete the last k pair). From the activation allocator.
Tensor round_activations(int64_t rows, int64_t cols, const float* src, int64_t lds, int64_t ldd);

}  // namespace tabula::detail::igemm
