// Packed weights and the indirect GEMM driver behind ops::conv2d / ops::linear on packed weights (packed.h).
//
// C[M, N] = A[M, K] @ B[K, N] with B packed once (the weights) and A read in place through row pointers:
//   linear / 1x1 stride-1 conv   A row r = token or pixel r of a row-major / channels-last tensor
//   k x k conv, Cin >= 16        A row r = output pixel r, K = taps x Cin: one pointer per (tap, channel chunk)
//                                into the channels-last input (a shared zero row where the tap is in the padding)
//   k x k conv, Cin < 16         (the RGB stem) one pointer per kernel row (kw * Cin consecutive floats), gathered
//                                only where the window crosses the map's left/right edge; with a horizontal
//                                dilation the task's rows are gathered into a small im2col buffer first
// K is cut into blocks of at most KC = 256 k (for convs: whole (tap, channel chunk) segments) in a fixed way that
// depends only on the shapes; each C element is the micro-kernel's FMA chain over one block, added to C block by
// block in order. The tiling into tasks may depend on the thread count; the arithmetic of an element never does.
// Weights packed in bf16 (PackedType::bf16) run the same driver over bf16 copies of the activations (rounded once
// per op by round_activations) with the AVX512-BF16 kernel; k then comes in pairs, so every segment has even length.
#include "engine/cpu/packed.h"

#include <sys/mman.h>

#include <algorithm>
#include <memory>
#include <atomic>
#include <array>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/cpu/bf16_centres.h"
#include "engine/cpu/gemm_kernels.h"
#include "engine/ops_common.h"
#include "engine/cpu/rowops.h"
#include "engine/threads.h"
#include "engine/cpu/winograd.h"

namespace tabula {

namespace {
constexpr int64_t KC = 256;       // k per block: fixed, part of the numerical definition of the result
constexpr int64_t kMaxNC = 512;   // columns per task: a KC x NC block of packed weights stays in L2
constexpr int64_t kMinTapCin = 16;  // below this a conv gathers im2col rows instead of one pointer per tap

// Winograd weights take 4x the memory of the direct ones (36 vs 9 values per (Cin, Cout) pair), and they are kept
// in addition (PackedConv2d::weight() must return the exact torch weights). ResNet-50's layer4 3x3 convs
// (512 x 512 on 7x7 maps) ran 1.7x faster with Winograd but would add 75 MiB of weights for ~2 % of the forward
// time: above 256 x 256 channels a conv keeps the direct path (bench/RESULTS_engine.md).
constexpr int64_t kWinoMaxWeights = 256 * 256;
}  // namespace

// ---------------------------------------------------------------------------------------------------------------
namespace {
#ifndef MADV_POPULATE_READ  // Linux 5.14
#define MADV_POPULATE_READ 22
#define MADV_POPULATE_WRITE 23
#endif
// Packing a big weight from its file mapping into fresh memory took a page fault per 4 KiB on either side (ViT-g:
// 1.1 M faults). The whole pages of each share a packing thread takes are mapped in one call instead (25 K faults
// left), the source's from the page cache. Not asked for 2 MiB pages: with them ViT-g's load took twice the CPU
// time (THP defrag is `madvise` on the test VM, so the kernel compacts memory synchronously for such pages). Only
// hints: an old kernel's refusal changes nothing, and neither call alters a byte.
void advise(const void* p, size_t bytes, int advice, size_t min_bytes) {
  constexpr size_t kPage = 4096;
  if (bytes < min_bytes) return;
  const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + kPage - 1) / kPage * kPage;
  const uintptr_t e = (reinterpret_cast<uintptr_t>(p) + bytes) / kPage * kPage;
  if (e > b) ::madvise(reinterpret_cast<void*>(b), e - b, advice);
}
}  // namespace

namespace detail {
int64_t packed_b_floats(int64_t K, int64_t N) {
  const int64_t nr = gemm_indirect_kernel().nr;
  return (N + nr - 1) / nr * nr * K;
}

void pack_b_panels(int64_t K, int64_t N, const float* src, int64_t sk, int64_t sn, float* dst) {
  const int64_t nr = gemm_indirect_kernel().nr, panels = (N + nr - 1) / nr;
  constexpr size_t kMinShare = size_t{64} << 10;
  parallel_for(panels, 1, [&](int64_t p0, int64_t p1) {
    // Each share's own pages of both sides (a linear weight's rows n0.. are contiguous when sk == 1).
    advise(dst + p0 * K * nr, static_cast<size_t>((p1 - p0) * K * nr) * sizeof(float), MADV_POPULATE_WRITE,
           kMinShare);
    if (sk == 1 && sn == K)
      advise(src + p0 * nr * K, static_cast<size_t>((std::min(N, p1 * nr) - p0 * nr) * K) * sizeof(float),
             MADV_POPULATE_READ, kMinShare);
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t k = 0; k < K; ++k) {
        float* row = dst + (p * K + k) * nr;
        const int64_t n0 = p * nr, nn = std::min(nr, N - n0);
        if (sn == 1) {
          std::memcpy(row, src + k * sk + n0, static_cast<size_t>(nn) * sizeof(float));
        } else {
          for (int64_t j = 0; j < nn; ++j) row[j] = src[k * sk + (n0 + j) * sn];
        }
        for (int64_t j = nn; j < nr; ++j) row[j] = 0.f;
      }
  });
}
}  // namespace detail

namespace detail {
namespace {
int64_t bf16_nr() {
  const GemmBf16KernelInfo* k = gemm_bf16_kernel();
  if (!k) op_error("pack_b_panels_bf16", "bf16 packing needs a CPU with AVX512-BF16");
  return k->nr;
}
}  // namespace

int64_t packed_b_bf16_elems(int64_t K, int64_t N) {
  const int64_t nr = bf16_nr();
  return (N + nr - 1) / nr * nr * ((K + 1) / 2 * 2);
}

void pack_b_panels_bf16(int64_t K, int64_t N, const float* src, int64_t sk, int64_t sn, uint16_t* dst) {
  const int64_t nr = bf16_nr(), panels = (N + nr - 1) / nr;
  const PackBf16 pack = gemm_bf16_kernel()->pack;
  parallel_for(panels, 1, [&](int64_t p0, int64_t p1) { pack(K, N, src, sk, sn, dst, p0, p1); });
}
}  // namespace detail

PackedMatrix PackedMatrix::pack(int64_t K, int64_t N, const float* src, int64_t sk, int64_t sn, PackedType type) {
  PackedMatrix m;
  m.K_ = K;
  m.N_ = N;
  m.type_ = type;
  if (type == PackedType::bf16) {
    m.nr_ = detail::bf16_nr();
    m.centres_ = std::make_shared<Bf16Centres>();
    m.data_ = Tensor::heap({std::max<int64_t>(detail::packed_b_bf16_elems(K, N), 1)}, DType::bf16);
    detail::pack_b_panels_bf16(K, N, src, sk, sn, m.data_.data<uint16_t>());
    std::vector<float> lo(static_cast<size_t>(K * N));
    for (int64_t k = 0; k < K; ++k)
      for (int64_t n = 0; n < N; ++n) {
        const float v = src[k * sk + n * sn];
        lo[static_cast<size_t>(k * N + n)] = v - bf16_to_f32(f32_to_bf16(v));
      }
    m.centres_->w_lo = Tensor::heap({std::max<int64_t>(detail::packed_b_bf16_elems(K, N), 1)}, DType::bf16);
    detail::pack_b_panels_bf16(K, N, lo.data(), N, 1, m.centres_->w_lo.data<uint16_t>());
    return m;
  }
  m.nr_ = detail::gemm_indirect_kernel().nr;
  m.data_ = Tensor::heap({std::max<int64_t>(detail::packed_b_floats(K, N), 1)});
  detail::pack_b_panels(K, N, src, sk, sn, m.data_.data<float>());
  return m;
}

float PackedMatrix::at(int64_t k, int64_t n) const {
  if (type_ == PackedType::f32) return panel(n / nr_)[k * nr_ + n % nr_];
  return bf16_to_f32(panel_bf16(n / nr_)[(k / 2) * 2 * nr_ + (n % nr_) * 2 + k % 2]);
}

PackedType default_packed_type() {
  return ops::cpu_precision() == Precision::bf16 ? PackedType::bf16 : PackedType::f32;
}

PackedConv2d::PackedConv2d(const Tensor& weight, const Conv2dOptions& o, PackedType type) : opt(o) {
  check_f32_cpu("PackedConv2d", weight, "weight");
  if (weight.dim() != 4) op_error("PackedConv2d", "weight must be [Cout, Cin, kh, kw], got " + weight.str());
  if (o.groups != 1)
    op_error("PackedConv2d", "grouped convolutions are not packed (groups=" + std::to_string(o.groups) + ")");
  cout = weight.size(0), cin = weight.size(1), kh = weight.size(2), kw = weight.size(3);
  const Tensor w = weight.contiguous();
  const float* wp = w.data<float>();
  // B[k = (i * kw + j) * cin + ci, co] = w[co, ci, i, j]: pack from a K x N view with a per-k offset table.
  const int64_t K = cin * kh * kw;
  std::vector<float> bt(static_cast<size_t>(K * cout));  // B row-major, then packed
  for (int64_t co = 0; co < cout; ++co)
    for (int64_t ci = 0; ci < cin; ++ci)
      for (int64_t i = 0; i < kh; ++i)
        for (int64_t j = 0; j < kw; ++j)
          bt[static_cast<size_t>(((i * kw + j) * cin + ci) * cout + co)] = wp[((co * cin + ci) * kh + i) * kw + j];
  const bool winograd = ops::winograd_enabled() && winograd_conv_eligible(cout, cin, kh, kw, o);
  b = PackedMatrix::pack(K, cout, bt.data(), cout, 1, winograd ? PackedType::f32 : type);
  if (winograd) {
    const std::vector<float> u = detail::winograd_weight_transform(wp, cout, cin);
    wino = PackedMatrix::pack(detail::kWinoPoints * cin, cout, u.data(), cout, 1);
  }
  shape_only = Tensor::zeros({1, 1, 1, 1}).expand({cout, cin, kh, kw});
}

bool winograd_conv_eligible(int64_t cout, int64_t cin, int64_t kh, int64_t kw, const Conv2dOptions& o) {
  return kh == 3 && kw == 3 && o.stride[0] == 1 && o.stride[1] == 1 && o.dilation[0] == 1 && o.dilation[1] == 1 &&
         o.groups == 1 && cin >= 16 && cout >= 16 && cin * cout <= kWinoMaxWeights;
}

PackedLinear::PackedLinear(const Tensor& weight, PackedType type) {
  check_f32_cpu("PackedLinear", weight, "weight");
  if (weight.dim() != 2) op_error("PackedLinear", "weight must be [out, in], got " + weight.str());
  out_features = weight.size(0), in_features = weight.size(1);
  const Tensor w = weight.contiguous();
  b = PackedMatrix::pack(in_features, out_features, w.data<float>(), 1, in_features, type);
}

std::pair<Tensor, Tensor> batch_norm_scale_shift(const Tensor& gamma, const Tensor& beta, const Tensor& mean,
                                                 const Tensor& var, double eps) {
  const int64_t C = mean.numel();
  for (const Tensor* t : {&gamma, &beta, &mean, &var})
    if (t->defined() && t->numel() != C)
      op_error("batch_norm_scale_shift", "BatchNorm parameters must all have " + std::to_string(C) + " elements");
  Tensor scale = Tensor::heap({C}), shift = Tensor::heap({C});
  const Tensor g = gamma.defined() ? gamma.contiguous() : Tensor(), b = beta.defined() ? beta.contiguous() : Tensor();
  const Tensor m = mean.contiguous(), v = var.contiguous();
  for (int64_t c = 0; c < C; ++c) {
    // the same expression as ops::batch_norm, so the fused and the tapped (unfused) paths agree
    const double sc =
        (g.defined() ? g.data<float>()[c] : 1.0) / std::sqrt(static_cast<double>(v.data<float>()[c]) + eps);
    scale.data<float>()[c] = static_cast<float>(sc);
    shift.data<float>()[c] = static_cast<float>((b.defined() ? b.data<float>()[c] : 0.0) - m.data<float>()[c] * sc);
  }
  return {scale, shift};
}

// ---------------------------------------------------------------------------------------------------------------
bool is_channels_last(const Tensor& x) {
  if (x.dim() != 4) return false;
  const int64_t C = x.size(1), H = x.size(2), W = x.size(3);
  return x.stride(1) == 1 && x.stride(3) == C && x.stride(2) == W * C && x.stride(0) == H * W * C;
}

Tensor empty_channels_last(int64_t N, int64_t C, int64_t H, int64_t W) {
  return Tensor::empty({N, H, W, C}).permute({0, 3, 1, 2});
}

Tensor to_channels_last(const Tensor& x_in) {
  auto [N, C, H, W] = detail::check_4d("to_channels_last", x_in);
  if (is_channels_last(x_in)) return x_in;
  const Tensor x = x_in.contiguous();
  Tensor y = empty_channels_last(N, C, H, W);
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  const int64_t HW = H * W;
  // per (image, block of 64 pixels): a [C, 64] -> [64, C] transpose, both sides touching whole cache lines
  constexpr int64_t kB = 64;
  const int64_t blocks = (HW + kB - 1) / kB;
  parallel_for(N * blocks, grain_for(N * blocks, kB * C), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n = t / blocks, p0 = (t % blocks) * kB, p1 = std::min(HW, p0 + kB);
      const float* src = xp + n * C * HW;
      float* dst = yp + n * HW * C;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t p = p0; p < p1; ++p) dst[p * C + c] = src[c * HW + p];
    }
  });
  return y;
}

// ---------------------------------------------------------------------------------------------------------------
namespace {

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
KPlan dense_plan(int64_t K) {
  KPlan p;
  for (int64_t k0 = 0; k0 < K; k0 += KC) {
    p.blocks.push_back({static_cast<int64_t>(p.segs.size()), 1, std::min(KC, K - k0), k0});
    p.segs.push_back({k0, 0, 0});
  }
  return p;
}

// Conv taps: every tap's Cin channels in chunks of at most KC, consecutive equal chunks grouped up to KC.
KPlan tap_plan(int64_t kh, int64_t kw, const Conv2dOptions& o, int64_t cin) {
  KPlan p;
  std::vector<int64_t> lens;
  for (int64_t t = 0; t < kh * kw; ++t)
    for (int64_t c0 = 0; c0 < cin; c0 += KC) {
      p.segs.push_back({c0, (t / kw) * o.dilation[0], (t % kw) * o.dilation[1]});
      lens.push_back(std::min(KC, cin - c0));
    }
  int64_t k0 = 0;
  for (size_t s = 0; s < p.segs.size();) {
    KBlock b{static_cast<int64_t>(s), 0, lens[s], k0};
    while (s < p.segs.size() && lens[s] == b.len && (b.nseg + 1) * b.len <= KC) ++b.nseg, ++s;
    k0 += b.nseg * b.len;
    p.blocks.push_back(b);
  }
  return p;
}

// Rows of a k x k window over few channels: kernel row i is one segment of len = kw * C k (c0 = i * len), grouped
// into blocks of at most KC.
KPlan row_plan(int64_t kh, int64_t len, int64_t dilation_h) {
  KPlan p;
  for (int64_t i = 0; i < kh; ++i) p.segs.push_back({i * len, i * dilation_h, 0});
  const int64_t per_block = std::max<int64_t>(1, KC / len);
  for (int64_t s0 = 0; s0 < kh; s0 += per_block)
    p.blocks.push_back({s0, std::min(per_block, kh - s0), len, s0 * len});
  return p;
}

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
  // bf16 centres (Bf16Centres): GEMM row r adds W c of its centre j = centre[row0 + r] (-1: none) with the shift,
  // as the shift row j + 1 of centre_shift ([count + 1, N]: centred_shifts), in place of `shift`
  const int8_t* centre = nullptr;
  const float* centre_shift = nullptr;
};


// act(v * scale + shift + residual) for one element (partial tiles; the kernels do the same in registers).
inline float epilogue_scalar(float v, const Epilogue& ep, int64_t r, int64_t j) {
  if (ep.scale) v = std::fma(v, ep.scale[j], ep.shift ? ep.shift[j] : 0.f);
  else if (ep.shift) v += ep.shift[j];
  if (ep.residual) v += ep.residual[r * ep.ldr + j];
  if (ep.act == Activation::relu) v = v > 0.f || std::isnan(v) ? v : 0.f;
  return v;
}

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
BPanels<float> panels_of(const PackedMatrix& m) { return {m.panel(0), m.rows(), m.cols(), m.nr()}; }
BPanels<uint16_t> bf16_panels_of(const PackedMatrix& m) {
  return {m.panel_bf16(0), m.stored_rows(), m.cols(), m.nr()};
}

// The micro-kernel for each element type, behind one call signature.
template <class T>
struct MicroKernel;
template <>
struct MicroKernel<float> {
  const detail::GemmIndirectKernelInfo& k = detail::gemm_indirect_kernel();
  int64_t mr() const { return k.mr; }
  int64_t nr() const { return k.nr; }
  void operator()(int64_t nseg, int64_t len, const float* const* a, const float* bp, float* c, int64_t ldc,
                  bool accumulate, const detail::TileEpilogue* ep) const {
    k.fn(nseg, len, a, bp, c, ldc, accumulate, ep);
  }
};
template <>
struct MicroKernel<uint16_t> {
  const detail::GemmBf16KernelInfo* k = detail::gemm_bf16_kernel();
  MicroKernel() {
    if (!k) op_error("indirect_gemm", "bf16 weights on a CPU without AVX512-BF16");
  }
  int64_t mr() const { return k->mr; }
  int64_t nr() const { return k->nr; }
  void operator()(int64_t nseg, int64_t len, const uint16_t* const* a, const uint16_t* bp, float* c, int64_t ldc,
                  bool accumulate, const detail::TileEpilogue* ep) const {
    k->fn(nseg, len, a, bp, c, ldc, accumulate, ep);
  }
};

template <class T>
const T* zero_row() {
  alignas(64) static const T zeros[KC] = {};  // the A row of a tap in the padding (segments are <= KC long)
  return zeros;
}

// `count` independent GEMMs of the same shape in one parallel loop (Winograd's 36 transform points): GEMM b reads
// the dense A at a + b * a_step, the rows k_step * b .. of B, and writes C + b * c_step.
struct GemmBatch {
  int64_t count = 1, a_step = 0, k_step = 0, c_step = 0;
};

// How C is cut into tasks: column blocks of NC, row blocks of MC.
struct TaskTiling {
  int64_t MC, NC, mtiles, ntiles;
};

// >= 8 tasks per thread (dynamic scheduling evens out the rest). Few rows (ResNet layer4: M = 784) are made up
// for by narrower column blocks first (down to 128 columns), rows per task (MC) only then: every task streams
// its column block of the weights over all of K, so a task of few rows reads many weight bytes per FLOP
// (layer4's 3x3 convs, K = 4608: +12-24 %).
TaskTiling task_tiling(int64_t M, int64_t N, int64_t MR, int64_t NR, int64_t count) {
  const int64_t want = 8 * static_cast<int64_t>(get_num_threads());
  int64_t ntiles = (N + kMaxNC - 1) / kMaxNC;
  auto nc_for = [&](int64_t nt) { return ((N + nt - 1) / nt + NR - 1) / NR * NR; };
  while (((M + 8 * MR - 1) / (8 * MR)) * ntiles * count < want && nc_for(ntiles + 1) >= 128 &&
         nc_for(ntiles + 1) < nc_for(ntiles))
    ++ntiles;
  const int64_t NC = nc_for(ntiles);
  ntiles = (N + NC - 1) / NC;
  int64_t MC = 8 * MR;
  while (MC > MR && ((M + MC - 1) / MC) * ntiles * count < want) MC -= MR;
  return {MC, NC, (M + MC - 1) / MC, ntiles};
}

// taps: each row's output pixel as (n, first input row, first input column), computed once per task so that
// the per-segment pointer setup does no integer division
struct RowOrigin {
  int64_t n, ih0, iw0;
  int64_t off;    // tap_rows: offset of input pixel (n, ih0, iw0) in elements (used only inside the map)
  bool inside_w;  // tap_rows: the window's kw columns are all inside the map
};

// Per-thread buffers of a task, reused across tasks and calls.
template <class T>
struct TaskScratch {
  std::vector<const T*> ptrs;  // row pointers of every micro-panel for every segment of a K block
  std::vector<T> cols;         // im2col rows / border kernel rows of this task (Cin < 16 convs)
  std::vector<RowOrigin> origin;
};
template <class T>
TaskScratch<T>& task_scratch() {
  thread_local TaskScratch<T> s;
  return s;
}

// C[M, N] (row stride ldc) = A @ B over the K plan, then the epilogue: one task per (GEMM of the batch, row block,
// column block), column-block-major.
template <class T>
class IndirectGemm {
 public:
  IndirectGemm(int64_t M, const ASource<T>& A, const KPlan& plan, const BPanels<T>& B, float* C_all, int64_t ldc,
               const Epilogue& ep, const GemmBatch& batch)
      : M_(M), A_(A), plan_(plan), B_(B), C_all_(C_all), ldc_(ldc), ep_(ep), batch_(batch) {
    MR_ = kern_.mr(), NR_ = kern_.nr();
    if (B.nr != NR_) op_error("indirect_gemm", "weights were packed for another micro-kernel");
    tiling_ = task_tiling(M, B.cols(), MR_, NR_, batch.count);
  }

  void run() const {
    if (M_ <= 0 || B_.cols() <= 0) return;
    parallel_for(batch_.count * tiling_.mtiles * tiling_.ntiles, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t bt = t0; bt < t1; ++bt) task(bt);
    });
  }

 private:
  // Where one task writes: C block [i0, i0 + mc) x [j0, j0 + nc) of GEMM gb of the batch.
  struct Task {
    const T* abase;
    float* C;
    int64_t kbase, i0, j0, mc, nc;
  };

  void task(int64_t bt) const {
    const TaskTiling& g = tiling_;
    const int64_t gb = bt / (g.mtiles * g.ntiles), t = bt % (g.mtiles * g.ntiles);
    // column-block-major: consecutive tasks (on both threads) share one KC x NC block of weights, which stays in
    // L2 while the rows stream (for ViT-B's fc1, N = 3072: +10 % over row-major, the other shapes alike)
    Task tk;
    tk.abase = A_.a + gb * batch_.a_step;
    tk.C = C_all_ + gb * batch_.c_step;
    tk.kbase = gb * batch_.k_step;
    tk.i0 = (t % g.mtiles) * g.MC, tk.j0 = (t / g.mtiles) * g.NC;
    tk.mc = std::min(g.MC, M_ - tk.i0), tk.nc = std::min(g.NC, B_.cols() - tk.j0);
    TaskScratch<T>& s = task_scratch<T>();
    using Kind = typename ASource<T>::Kind;
    if (A_.kind == Kind::taps || A_.kind == Kind::tap_rows) row_origins(tk, s);
    if (A_.kind == Kind::tap_rows) s.cols.resize(static_cast<size_t>(tk.mc * B_.rows()));  // border rows' gathers
    if (A_.kind == Kind::im2col) gather_im2col(tk, s);
    for (size_t bi = 0; bi < plan_.blocks.size(); ++bi) {
      const KBlock& kb = plan_.blocks[bi];
      row_pointers(tk, kb, s);
      micro_panels(tk, kb, bi > 0, bi + 1 == plan_.blocks.size(), s);
    }
    // activations the kernels do not apply (GELU, SiLU): on the finished rows while they are in cache
    if (!relu_in_kernel())
      for (int64_t i = 0; i < tk.mc; ++i) detail::activation_inplace(tk.C + (tk.i0 + i) * ldc_ + tk.j0, tk.nc, ep_.act);
  }

  bool relu_in_kernel() const { return ep_.act == Activation::relu || ep_.act == Activation::none; }

  void row_origins(const Task& tk, TaskScratch<T>& s) const {
    const ASource<T>& A = A_;
    s.origin.resize(static_cast<size_t>(tk.mc));
    for (int64_t r = 0; r < tk.mc; ++r) {
      const int64_t p = A.row0 + tk.i0 + r, n = p / (A.Ho * A.Wo), oh = (p / A.Wo) % A.Ho, ow = p % A.Wo;
      const int64_t ih0 = oh * A.o.stride[0] - A.o.padding[0], iw0 = ow * A.o.stride[1] - A.o.padding[1];
      s.origin[static_cast<size_t>(r)] = {n, ih0, iw0, ((n * A.H + ih0) * A.W + iw0) * A.C,
                                          iw0 >= 0 && iw0 + A.kw <= A.W};
    }
  }

  // rows i0 .. i0 + mc of the im2col matrix, k = (i * kw + j) * C + c as the packed weight; k past kh * kw * C
  // (bf16: the pad that completes the last pair) zero.
  void gather_im2col(const Task& tk, TaskScratch<T>& s) const {
    const ASource<T>& A = A_;
    const int64_t K = B_.rows();
    s.cols.resize(static_cast<size_t>(tk.mc * K));
    // (plain loops, not memcpy: a tap is only C < 16 values; with dilation 1 a tap row's kw pixels are one
    // contiguous run of kw * C values in the channels-last input)
    for (int64_t r = 0; r < tk.mc; ++r) {
      const int64_t p = A.row0 + tk.i0 + r, n = p / (A.Ho * A.Wo), oh = (p / A.Wo) % A.Ho, ow = p % A.Wo;
      T* dst = s.cols.data() + r * K;
      T* const end = dst + K;
      const int64_t iw0 = ow * A.o.stride[1] - A.o.padding[1];
      const bool row_inside = A.o.dilation[1] == 1 && iw0 >= 0 && iw0 + A.kw <= A.W;
      for (int64_t i = 0; i < A.kh; ++i) {
        const int64_t ih = oh * A.o.stride[0] - A.o.padding[0] + i * A.o.dilation[0];
        if (row_inside && ih >= 0 && ih < A.H) {
          const T* src = A.a + ((n * A.H + ih) * A.W + iw0) * A.C;
          for (int64_t e = 0; e < A.kw * A.C; ++e) dst[e] = src[e];
          dst += A.kw * A.C;
          continue;
        }
        for (int64_t j = 0; j < A.kw; ++j, dst += A.C) {
          const T* src = A.pixel(n, ih, iw0 + j * A.o.dilation[1]);
          if (!src && A.pad_rows) src = A.pad_rows[n];
          for (int64_t c = 0; c < A.C; ++c) dst[c] = src ? src[c] : T{};
        }
      }
      while (dst < end) *dst++ = T{};
    }
  }

  // Row pointers of every micro-panel of the task for every segment of the block.
  void row_pointers(const Task& tk, const KBlock& kb, TaskScratch<T>& s) const {
    const ASource<T>& A = A_;
    using Kind = typename ASource<T>::Kind;
    const int64_t K = B_.rows(), panels = (tk.mc + MR_ - 1) / MR_;
    s.ptrs.resize(static_cast<size_t>(panels * kb.nseg * MR_));
    for (int64_t pi = 0; pi < panels; ++pi) {
      const int64_t ir = pi * MR_, r0 = tk.i0 + ir, ni = std::min(MR_, tk.mc - ir);
      for (int64_t sgi = 0; sgi < kb.nseg; ++sgi) {
        const Segment& sg = plan_.segs[static_cast<size_t>(kb.seg0 + sgi)];
        const T** dst = s.ptrs.data() + (pi * kb.nseg + sgi) * MR_;
        for (int64_t i = 0; i < MR_; ++i) {
          if (i >= ni) {
            dst[i] = zero_row<T>();
            continue;
          }
          const int64_t r = r0 + i;
          switch (A.kind) {
            case Kind::dense: dst[i] = tk.abase + (A.row0 + r) * A.lda + sg.c0; break;
            case Kind::im2col: dst[i] = s.cols.data() + (ir + i) * K + sg.c0; break;
            case Kind::tap_rows: {
              // one kernel row of the window: kw * C consecutive values of the channels-last input, in place
              // when the row is inside the map, else gathered with its zeros into this task's buffer
              const RowOrigin& o = s.origin[static_cast<size_t>(ir + i)];
              const int64_t ih = o.ih0 + sg.dh;
              if (ih < 0 || ih >= A.H) {
                dst[i] = zero_row<T>();
              } else if (o.inside_w) {
                dst[i] = A.a + o.off + sg.dh * A.W * A.C;
              } else {
                T* g = s.cols.data() + (ir + i) * K + sg.c0;
                for (int64_t j = 0; j < A.kw; ++j, g += A.C) {
                  const T* src = A.pixel(o.n, ih, o.iw0 + j);
                  for (int64_t c = 0; c < A.C; ++c) g[c] = src ? src[c] : T{};
                }
                dst[i] = s.cols.data() + (ir + i) * K + sg.c0;
              }
              break;
            }
            case Kind::taps: {
              const RowOrigin& o = s.origin[static_cast<size_t>(ir + i)];
              const T* px = A.pixel(o.n, o.ih0 + sg.dh, o.iw0 + sg.dw);
              dst[i] = px ? px + sg.c0 : A.pad_rows ? A.pad_rows[o.n] + sg.c0 : zero_row<T>();
              break;
            }
          }
        }
      }
    }
  }

  // One MR x NR tile: micro-panel pi, columns jr.. of the task's block; full tiles run the epilogue in the kernel,
  // partial ones go through a scratch tile with the epilogue on the valid part.
  void tile(const Task& tk, const KBlock& kb, const T* const* ptrs, int64_t pi, int64_t jr, bool accumulate,
            bool last) const {
    const int64_t r0 = tk.i0 + pi * MR_, ni = std::min(MR_, tk.mc - pi * MR_);
    const int64_t j = tk.j0 + jr, nj = std::min(NR_, tk.nc - jr);
    const T* bp = B_.panel(j / NR_) + (tk.kbase + kb.k0) * NR_;
    const T* const* ap = ptrs + pi * kb.nseg * MR_;
    float* cp = tk.C + r0 * ldc_ + j;
    // with centres: the shift row of the tile's rows' centre (one for all its rows, else the scratch path below)
    const float* shift = ep_.shift;
    bool one_shift = true;
    if (ep_.centre) {
      const int8_t* rc = ep_.centre + A_.row0 + r0;
      for (int64_t i = 1; i < ni; ++i) one_shift = one_shift && rc[i] == rc[0];
      shift = ep_.centre_shift + (rc[0] + 1) * B_.cols();
    }
    if (ni == MR_ && nj == NR_ && (one_shift || !last)) {
      detail::TileEpilogue te;
      const bool use_ep = last && (ep_.scale || shift || ep_.residual || ep_.act == Activation::relu);
      if (use_ep) {
        te.scale = ep_.scale ? ep_.scale + j : nullptr;
        te.shift = shift ? shift + j : nullptr;
        te.residual = ep_.residual ? ep_.residual + r0 * ep_.ldr + j : nullptr;
        te.ldr = ep_.ldr;
        te.relu = ep_.act == Activation::relu;
      }
      kern_(kb.nseg, kb.len, ap, bp, cp, ldc_, accumulate, use_ep ? &te : nullptr);
      return;
    }
    alignas(64) float scratch[16 * 32];
    if (accumulate)
      for (int64_t i = 0; i < ni; ++i) std::memcpy(scratch + i * NR_, cp + i * ldc_, nj * sizeof(float));
    kern_(kb.nseg, kb.len, ap, bp, scratch, NR_, accumulate, nullptr);
    Epilogue row_ep = ep_;
    for (int64_t i = 0; i < ni; ++i) {
      if (ep_.centre) row_ep.shift = ep_.centre_shift + (ep_.centre[A_.row0 + r0 + i] + 1) * B_.cols();
      for (int64_t jj = 0; jj < nj; ++jj)
        cp[i * ldc_ + jj] =
            last ? epilogue_scalar(scratch[i * NR_ + jj], row_ep, r0 + i, j + jj) : scratch[i * NR_ + jj];
    }
  }

  // A micro-panel (12 rows x the block's k) stays in L1 while the block's packed weight panels stream from
  // L2. (The BLIS order, weight panel in L1 and A from L2, measured the same here; with KC = 128 for dense A,
  // so that a weight panel fits L1 beside the streaming rows, 1-3 % slower on ResNet-50's 1x1 convs.)
  // With at most two column panels per task (N <= 64 on AVX-512: layer1's 256 -> 64 convs) a micro-panel's rows
  // serve only two kernel calls, so the next micro-panel's rows are prefetched while this one computes
  // (ResNet-50 layer1 conv1: +9 %; N = 128 and wider measured the same or up to 3 % slower with it). Not for the
  // RGB stem's kernel rows: its input image is small enough to stay in L2, and the 168 prefetches per
  // micro-panel cost more than they save (stem +2.7 %).
  // With 3-8 column panels, a dense A and K in one block (layer1's 64 -> 256 and 256 -> 128 convs on 56x56
  // maps) the prefetches are spread over the micro-panel's kernel calls instead, a share before each call
  // (those convs +2-6 %; a burst before the first call did less there, and with K in several blocks, e.g.
  // layer3's 1024 -> 256, spreading them cost 3-5 %).
  void micro_panels(const Task& tk, const KBlock& kb, bool accumulate, bool last, const TaskScratch<T>& s) const {
    using Kind = typename ASource<T>::Kind;
    constexpr int64_t per_line = 64 / static_cast<int64_t>(sizeof(T));  // elements per cache line
    const int64_t panels = (tk.mc + MR_ - 1) / MR_, calls = (tk.nc + NR_ - 1) / NR_;
    const bool burst = tk.nc <= 2 * NR_ && A_.kind != Kind::tap_rows;
    const bool spread = !burst && calls <= 8 && plan_.blocks.size() == 1 && A_.kind == Kind::dense;
    const int64_t lines_per_row = (kb.len + per_line - 1) / per_line, lines = kb.nseg * MR_ * lines_per_row;
    const T* const* ptrs = s.ptrs.data();
    for (int64_t pi = 0; pi < panels; ++pi) {
      const T* const* nx = pi + 1 < panels ? ptrs + (pi + 1) * kb.nseg * MR_ : nullptr;
      if (burst && nx) {
        for (int64_t q = 0; q < kb.nseg * MR_; ++q)
          for (int64_t off = 0; off < kb.len; off += per_line) __builtin_prefetch(nx[q] + off, 0, 3);
      }
      for (int64_t c = 0; c < calls; ++c) {
        if (spread && nx)
          for (int64_t e = c * lines / calls, e1 = (c + 1) * lines / calls; e < e1; ++e)
            __builtin_prefetch(nx[e / lines_per_row] + (e % lines_per_row) * per_line, 0, 3);
        tile(tk, kb, ptrs, pi, c * NR_, accumulate, last);
      }
    }
  }

  MicroKernel<T> kern_;
  int64_t M_;
  const ASource<T>& A_;
  const KPlan& plan_;
  BPanels<T> B_;
  float* C_all_;
  int64_t ldc_;
  Epilogue ep_;
  GemmBatch batch_;
  int64_t MR_ = 0, NR_ = 0;
  TaskTiling tiling_{};
};

template <class T>
void indirect_gemm(int64_t M, const ASource<T>& A, const KPlan& plan, const BPanels<T>& B, float* C_all,
                   int64_t ldc, const Epilogue& ep, const GemmBatch& batch = {}) {
  IndirectGemm<T>(M, A, plan, B, C_all, ldc, ep, batch).run();
}

// The bf16 copy of activations that a bf16 GEMM reads: rows of `cols` values (stride lds) rounded to bf16, with
// row stride ldd >= cols (the zeros past cols complete the last k pair). From the activation allocator.
Tensor round_activations(int64_t rows, int64_t cols, const float* src, int64_t lds, int64_t ldd) {
  Tensor t = Tensor::empty({std::max<int64_t>(rows * ldd, 1)}, DType::bf16);
  uint16_t* dst = t.data<uint16_t>();
  const detail::RoundRowsBf16 round = detail::gemm_bf16_kernel()->round_rows;
  parallel_for(rows, grain_for(rows, std::max<int64_t>(cols, 1)), [&](int64_t r0, int64_t r1) {
    round(r1 - r0, cols, src + r0 * lds, lds, dst + r0 * ldd, ldd);
  });
  return t;
}

// ---- bf16 centres (packed.h Bf16Centres; the row-wise pieces in bf16_centres.cpp) ------------------------------
thread_local bool t_recording_centres = false;
using detail::centred_shifts;
using detail::choose_centres;
using detail::round_centred;

// Adds centres from a reference forward's input (`rows` rows of cs.K values): its first, middle and mean row,
// rounded to bf16, and their W c: a GEMM of the centres tiled over the `taps` (k = tap * K + channel, the packed
// layout) with the bf16 kernel, exact products and fp32 sums.
// exact_weights: W c with the fp32 weights (W' + W_lo); not for a conv with padding, whose padding pixels read -c
// through the bf16 weights W' (W' c then cancels there exactly; with W c the border pixels would keep W_lo c).
void record_centres(const PackedMatrix& b, int64_t taps, const float* x, int64_t rows, int64_t K, bool exact_weights) {
  Bf16Centres& cs = *b.centres();
  if (rows <= 0 || K <= 0 || (cs.K != 0 && cs.K != K) || cs.count() + 3 > ops::kMaxBf16Centres) return;
  cs.K = K;
  std::vector<double> mean(static_cast<size_t>(K), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < K; ++k) mean[static_cast<size_t>(k)] += x[r * K + k];
  std::vector<std::vector<float>> add = {std::vector<float>(x, x + K),
                                         std::vector<float>(x + rows / 2 * K, x + rows / 2 * K + K), {}};
  for (double m : mean) add[2].push_back(static_cast<float>(m / static_cast<double>(rows)));
  for (const auto& row : add)
    for (float v : row) {
      const uint16_t h = f32_to_bf16(v);
      cs.c.push_back(bf16_to_f32(h));
      cs.neg.push_back(static_cast<uint16_t>(h ^ 0x8000u));
    }
  const int64_t J = cs.count(), N = b.cols(), Kp = b.stored_rows();
  std::vector<uint16_t> a(static_cast<size_t>(J * Kp), 0);
  for (int64_t j = 0; j < J; ++j)
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t k = 0; k < K; ++k)
        a[static_cast<size_t>(j * Kp + t * K + k)] = f32_to_bf16(cs.c[static_cast<size_t>(j * K + k)]);
  cs.wc.assign(static_cast<size_t>(J * N), 0.f);
  ASource<uint16_t> A;
  A.a = a.data();
  A.lda = Kp;
  indirect_gemm(J, A, dense_plan(Kp), bf16_panels_of(b), cs.wc.data(), N, Epilogue{});
  if (exact_weights && cs.w_lo.defined()) {
    std::vector<float> lo(static_cast<size_t>(J * N));
    indirect_gemm(J, A, dense_plan(Kp), BPanels<uint16_t>{cs.w_lo.data<uint16_t>(), Kp, N, b.nr()}, lo.data(), N,
                  Epilogue{});
    for (size_t i = 0; i < lo.size(); ++i) cs.wc[i] += lo[i];
  }
}

// Outside a recording the low halves of the weights are no longer needed (Bf16Centres::w_lo).
void drop_low_weights(const PackedMatrix& b) {
  if (!t_recording_centres && b.centres()->w_lo.defined()) b.centres()->w_lo = Tensor();
}

}  // namespace

namespace ops {
Bf16CentreRecording::Bf16CentreRecording() : previous_(t_recording_centres) { t_recording_centres = true; }
Bf16CentreRecording::~Bf16CentreRecording() { t_recording_centres = previous_; }
}  // namespace ops

namespace detail {
void gemm_packed_b(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, const float* bpanels, float* c,
                   int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K == 0) {
    for (int64_t i = 0; i < M; ++i) std::fill_n(c + i * ldc, N, 0.f);
    return;
  }
  ASource<float> A;
  A.a = a;
  A.lda = lda;
  indirect_gemm(M, A, dense_plan(K), BPanels<float>{bpanels, K, N, gemm_indirect_kernel().nr}, c, ldc, Epilogue{});
}

void gemm_packed_b_bf16(int64_t M, int64_t N, int64_t K, const uint16_t* a, int64_t lda, const uint16_t* bpanels,
                        float* c, int64_t ldc) {
  if (K % 2 != 0) op_error("gemm_packed_b_bf16", "K must be even (bf16 pairs), got " + std::to_string(K));
  if (M <= 0 || N <= 0) return;
  if (K == 0) {
    for (int64_t i = 0; i < M; ++i) std::fill_n(c + i * ldc, N, 0.f);
    return;
  }
  ASource<uint16_t> A;
  A.a = a;
  A.lda = lda;
  indirect_gemm(M, A, dense_plan(K), BPanels<uint16_t>{bpanels, K, N, bf16_nr()}, c, ldc, Epilogue{});
}
}  // namespace detail

namespace {
// Winograd F(4x4, 3x3) (winograd.h) over the whole batch: the tiles are taken in chunks whose transformed input
// V and GEMM results M (point-major: [36][tiles][C] and [36][tiles][Cout]) stay within a few MiB, so they are
// written and read back through the caches rather than memory; per chunk the input transform, the 36 GEMMs (one
// parallel loop; GEMM xi reads the dense [tiles, Cin] block of point xi) and the output transform with the
// epilogue. The chunking changes no arithmetic: each output element is one tile's transforms around the GEMM's
// fixed K blocking.
constexpr int64_t kWinoChunkBytes = int64_t{2} << 20;  // 0.5-8 MiB measured alike; the whole batch up to 1.6x slower

void winograd_conv(const Tensor& x, const PackedConv2d& w, const detail::ConvShapes& s, const Epilogue& ep,
                   float* y) {
  using namespace detail;
  WinogradGeometry g;
  g.N = s.N, g.H = s.H, g.W = s.W, g.C = s.C, g.Cout = s.Cout, g.Ho = s.Ho, g.Wo = s.Wo;
  g.pad_h = w.opt.padding[0], g.pad_w = w.opt.padding[1];
  g.th = (s.Ho + kWinoTile - 1) / kWinoTile, g.tw = (s.Wo + kWinoTile - 1) / kWinoTile;
  const int64_t T = g.tiles(), C = s.C, Co = s.Cout;
  const int64_t MR = gemm_indirect_kernel().mr;
  const int64_t per_tile = kWinoPoints * (C + Co) * static_cast<int64_t>(sizeof(float));
  const int64_t chunk = std::min(T, std::max<int64_t>(8 * MR, kWinoChunkBytes / per_tile / MR * MR));
  // scratch from the activation allocator (the reuse arena plans it with the rest of the forward)
  Tensor scratch = Tensor::empty({chunk * kWinoPoints * (C + Co)});
  float* const V = scratch.data<float>();
  float* const M = V + chunk * kWinoPoints * C;
  WinogradEpilogue wep;
  wep.scale = ep.scale, wep.shift = ep.shift, wep.residual = ep.residual, wep.act = ep.act;
  const float* xp = x.data<float>();
  ASource<float> A;
  A.kind = ASource<float>::Kind::dense;
  A.a = V;
  A.lda = C;
  const KPlan plan = dense_plan(C);
  for (int64_t t0 = 0; t0 < T; t0 += chunk) {
    const int64_t tc = std::min(chunk, T - t0);
    parallel_for(tc, grain_for(tc, kWinoPoints * C * 4), [&](int64_t a, int64_t b) {
      winograd_input_transform(g, xp, t0 + a, t0 + b, V + a * C, tc * C);
    });
    indirect_gemm(tc, A, plan, panels_of(w.wino), M, Co, Epilogue{}, GemmBatch{kWinoPoints, tc * C, C, tc * Co});
    parallel_for(tc, grain_for(tc, kWinoPoints * Co * 4), [&](int64_t a, int64_t b) {
      winograd_output_transform(g, M + a * Co, tc * Co, t0 + a, t0 + b, wep, y);
    });
  }
}

void check_channel_vector(std::string_view op, const Tensor& t, int64_t C, std::string_view name) {
  if (!t.defined()) return;
  check_f32_cpu(op, t, name);
  if (t.numel() != C)
    op_error(op, std::string(name) + " " + t.str() + " must have " + std::to_string(C) +
                     " elements (one per output channel)");
}

}  // namespace

Tensor PackedConv2d::weight() const {
  Tensor w = Tensor::heap({cout, cin, kh, kw});
  float* p = w.data<float>();
  for (int64_t n = 0; n < cout; ++n)
    for (int64_t ci = 0; ci < cin; ++ci)
      for (int64_t i = 0; i < kh; ++i)
        for (int64_t j = 0; j < kw; ++j) p[((n * cin + ci) * kh + i) * kw + j] = b.at((i * kw + j) * cin + ci, n);
  return w;
}

Tensor PackedLinear::weight() const {
  Tensor w = Tensor::heap({out_features, in_features});
  float* p = w.data<float>();
  for (int64_t o = 0; o < out_features; ++o)
    for (int64_t i = 0; i < in_features; ++i) p[o * in_features + i] = b.at(i, o);
  return w;
}

namespace {

// The packed conv's A operand and K plan for a direct (non-Winograd) conv of these shapes.
template <class T>
struct DirectConv {
  ASource<T> A;
  KPlan plan;
  Tensor rounded;  // bf16: the input rounded to bf16, which A points into
  // bf16 with centres: each output row's centre (its image's) and each image's padding row (-c, or zeros)
  std::vector<int8_t> row_centre;
  std::vector<const T*> pad_rows;
  std::vector<T> zeros;
};

DirectConv<float> direct_conv_source(const Tensor& x, const PackedConv2d& w, const detail::ConvShapes& s) {
  DirectConv<float> d;
  ASource<float>& A = d.A;
  using Kind = ASource<float>::Kind;
  A.a = x.data<float>();
  A.H = s.H, A.W = s.W, A.C = s.C, A.Ho = s.Ho, A.Wo = s.Wo, A.kh = s.kh, A.kw = s.kw;
  A.o = w.opt;
  const bool pointwise = s.kh == 1 && s.kw == 1 && w.opt.stride[0] == 1 && w.opt.stride[1] == 1 &&
                         w.opt.padding[0] == 0 && w.opt.padding[1] == 0;
  if (pointwise) {  // a 1x1 conv on a channels-last map is a GEMM on [N*H*W, Cin]
    A.kind = Kind::dense;
    A.lda = s.C;
    d.plan = dense_plan(s.C);
  } else if (s.C >= kMinTapCin) {
    A.kind = Kind::taps;
    d.plan = tap_plan(s.kh, s.kw, w.opt, s.C);
  } else {
    if (w.opt.dilation[1] == 1 && s.kw * s.C <= KC) {
      // (the RGB stem) one segment per kernel row: its kw pixels are kw * C consecutive floats, read in place
      // except where the window crosses the map's left or right edge (gathered) -- no im2col copy of every row
      A.kind = Kind::tap_rows;
      d.plan = row_plan(s.kh, s.kw * s.C, w.opt.dilation[0]);
    } else {
      A.kind = Kind::im2col;
      d.plan = dense_plan(s.C * s.kh * s.kw);
    }
  }
  return d;
}

// The same for bf16 weights: A reads a bf16 copy of the input. The kernel takes k in pairs, so every segment has
// an even length: a 1x1 conv's rows are padded to an even Cin; a k x k conv over an even Cin >= 16 reads taps in
// place; any other (the RGB stem) gathers im2col rows, padded to an even K, whose pairs may span two taps.
DirectConv<uint16_t> direct_conv_source_bf16(const Tensor& x, const PackedConv2d& w, const detail::ConvShapes& s) {
  DirectConv<uint16_t> d;
  ASource<uint16_t>& A = d.A;
  using Kind = ASource<uint16_t>::Kind;
  A.H = s.H, A.W = s.W, A.C = s.C, A.Ho = s.Ho, A.Wo = s.Wo, A.kh = s.kh, A.kw = s.kw;
  A.o = w.opt;
  const bool pointwise = s.kh == 1 && s.kw == 1 && w.opt.stride[0] == 1 && w.opt.stride[1] == 1 &&
                         w.opt.padding[0] == 0 && w.opt.padding[1] == 0;
  const int64_t pixels = s.N * s.H * s.W, Cp = (s.C + 1) / 2 * 2;
  if (t_recording_centres)
    record_centres(w.b, s.kh * s.kw, x.data<float>(), s.H * s.W, s.C, w.opt.padding[0] == 0 && w.opt.padding[1] == 0);
  drop_low_weights(w.b);
  const Bf16Centres& cs = *w.b.centres();
  const bool centred = cs.count() > 0 && cs.K == s.C;
  std::vector<int8_t> image_centre;  // one centre per image: its padding pixels then read -c
  if (centred) {
    image_centre = choose_centres(pixels, s.H * s.W, s.C, x.data<float>(), s.C, cs);
    d.row_centre.resize(static_cast<size_t>(s.N * s.Ho * s.Wo));
    for (size_t r = 0; r < d.row_centre.size(); ++r)
      d.row_centre[r] = image_centre[r / static_cast<size_t>(s.Ho * s.Wo)];
    d.zeros.assign(static_cast<size_t>(s.C), 0);
    for (int64_t n = 0; n < s.N; ++n) {
      const int j = image_centre[static_cast<size_t>(n)];
      d.pad_rows.push_back(j < 0 ? d.zeros.data() : cs.neg.data() + j * cs.K);
    }
    A.pad_rows = d.pad_rows.data();
  }
  auto round = [&](int64_t ldd) {
    return centred ? round_centred(pixels, s.H * s.W, s.C, x.data<float>(), s.C, ldd, cs, image_centre)
                   : round_activations(pixels, s.C, x.data<float>(), s.C, ldd);
  };
  if (pointwise) {
    d.rounded = round(Cp);
    A.kind = Kind::dense;
    A.lda = Cp;
    d.plan = dense_plan(Cp);
  } else {
    d.rounded = round(s.C);
    if (s.C >= kMinTapCin && s.C % 2 == 0) {
      A.kind = Kind::taps;
      d.plan = tap_plan(s.kh, s.kw, w.opt, s.C);
    } else {
      A.kind = Kind::im2col;
      d.plan = dense_plan(w.b.stored_rows());
    }
  }
  A.a = d.rounded.data<uint16_t>();
  return d;
}

// f(A, plan, B) with the direct conv's operands in the weights' type (bf16 with centres: set in ep too).
template <class F>
Tensor with_direct_conv(const Tensor& x, const PackedConv2d& w, const detail::ConvShapes& s, Epilogue& ep, F&& f) {
  if (w.b.type() == PackedType::bf16) {
    const DirectConv<uint16_t> d = direct_conv_source_bf16(x, w, s);
    std::vector<float> shifts;
    if (!d.row_centre.empty()) {
      shifts = centred_shifts(*w.b.centres(), w.cout, ep.scale, ep.shift);
      ep.centre = d.row_centre.data(), ep.centre_shift = shifts.data();
    }
    return f(d.A, d.plan, bf16_panels_of(w.b));
  }
  const DirectConv<float> d = direct_conv_source(x, w, s);
  return f(d.A, d.plan, panels_of(w.b));
}

// ops::conv2d and ops::conv2d_into_residual (reuse_residual: the result may be written over the residual).
Tensor packed_conv2d(std::string_view op, const Tensor& x_in, const PackedConv2d& w, const Tensor& scale_in,
                     const Tensor& shift_in, Activation act, const Tensor& residual, bool reuse_residual) {
  if (!w.defined()) op_error(op, "weights were not packed");
  if (on_gpu(x_in)) op_error(op, "packed weights are a CPU layout (Model::to_device uploads the torch layout)");
  const detail::ConvShapes s = detail::conv2d_shapes(op, x_in, w.shape_only, Tensor(), w.opt, residual);
  check_channel_vector(op, scale_in, s.Cout, "scale");
  check_channel_vector(op, shift_in, s.Cout, "shift");
  const Tensor x = to_channels_last(x_in);
  const Tensor res = residual.defined() ? to_channels_last(residual) : Tensor();
  const Tensor scale = scale_in.defined() ? scale_in.contiguous() : Tensor();
  const Tensor shift = shift_in.defined() ? shift_in.contiguous() : Tensor();
  // The output over the residual: every output element is written once, by the tile or tile transform that read
  // its residual element just before (the kernels' epilogue, epilogue_scalar, the Winograd output transform), so
  // the values are those of a fresh output, unless the input is the residual itself or the GEMM stores partial
  // sums first (K in more than one block).
  auto output = [&](bool one_pass) {
    if (reuse_residual && res.defined() && one_pass && !res.shares_storage_with(x)) return res;
    return empty_channels_last(s.N, s.Cout, s.Ho, s.Wo);
  };
  Epilogue ep;
  ep.scale = scale.defined() ? scale.data<float>() : nullptr;
  ep.shift = shift.defined() ? shift.data<float>() : nullptr;
  ep.residual = res.defined() ? res.data<float>() : nullptr;
  ep.ldr = s.Cout;
  ep.act = act;
  if (w.wino.defined()) {  // 3x3 stride 1 (winograd_conv_eligible)
    Tensor y = output(true);
    winograd_conv(x, w, s, ep, y.data<float>());
    return y;
  }

  return with_direct_conv(x, w, s, ep, [&](const auto& A, const KPlan& plan, const auto& B) {
    Tensor y = output(plan.blocks.size() == 1);
    indirect_gemm(s.N * s.Ho * s.Wo, A, plan, B, y.data<float>(), s.Cout, ep);
    return y;
  });
}

}  // namespace

namespace ops {

Tensor conv2d(const Tensor& x, const PackedConv2d& w, const Tensor& scale, const Tensor& shift, Activation act,
              const Tensor& residual) {
  return packed_conv2d("ops::conv2d(packed)", x, w, scale, shift, act, residual, false);
}

Tensor conv2d_into_residual(const Tensor& x, const PackedConv2d& w, const Tensor& scale, const Tensor& shift,
                            Activation act, Tensor residual) {
  return packed_conv2d("ops::conv2d_into_residual", x, w, scale, shift, act, residual, true);
}

Tensor conv2d_max_pool2d(const Tensor& x_in, const PackedConv2d& w, const Tensor& scale_in, const Tensor& shift_in,
                         Activation act, std::array<int64_t, 2> k, std::array<int64_t, 2> st,
                         std::array<int64_t, 2> pad) {
  constexpr std::string_view op = "ops::conv2d_max_pool2d";
  if (!w.defined()) op_error(op, "weights were not packed");
  if (on_gpu(x_in)) op_error(op, "packed weights are a CPU layout (Model::to_device uploads the torch layout)");
  const detail::ConvShapes s = detail::conv2d_shapes(op, x_in, w.shape_only, Tensor(), w.opt, Tensor());
  check_channel_vector(op, scale_in, s.Cout, "scale");
  check_channel_vector(op, shift_in, s.Cout, "shift");
  detail::check_pool_args(op, k, st, pad, {1, 1});
  const auto [Hp, Wp] = detail::pool_output_hw(op, s.Ho, s.Wo, k, st, pad, {1, 1}, false);
  if (w.wino.defined())  // Winograd works on tiles of the whole batch: no bands
    return max_pool2d(conv2d(x_in, w, scale_in, shift_in, act), k, st, pad);
  const Tensor x = to_channels_last(x_in);
  const Tensor scale = scale_in.defined() ? scale_in.contiguous() : Tensor();
  const Tensor shift = shift_in.defined() ? shift_in.contiguous() : Tensor();
  Epilogue ep;
  ep.scale = scale.defined() ? scale.data<float>() : nullptr;
  ep.shift = shift.defined() ? shift.data<float>() : nullptr;
  ep.act = act;
  ep.ldr = s.Cout;
  return with_direct_conv(x, w, s, ep, [&](const auto& A0, const KPlan& plan, const auto& B) {
    // Bands of pooled rows whose conv rows (~1 MiB, the rows shared by two bands computed by both) stay in L2 from the
    // conv's stores to the pooling's loads: a fixed rule from the shapes (ResNet-50's stem: 17 pooled rows from 35
    // conv rows, 3 % of the conv recomputed).
    const int64_t row_bytes = s.Wo * s.Cout * static_cast<int64_t>(sizeof(float));
    const int64_t band = std::max<int64_t>(1, ((int64_t{1} << 20) / row_bytes - k[0]) / st[0] + 1);
    const int64_t bands = (Hp + band - 1) / band;
    Tensor y = empty_channels_last(s.N, s.Cout, Hp, Wp);
    float* const yp = y.data<float>();
    // one band of conv rows per thread, from the activation allocator (planned with the rest of the forward); a task
    // takes a free slot (at most one task per thread runs at a time)
    const int64_t slot_floats = std::min(s.Ho, (band - 1) * st[0] + k[0]) * s.Wo * s.Cout;
    const int nslots = get_num_threads();
    Tensor scratch = Tensor::empty({nslots * slot_floats});
    std::unique_ptr<std::atomic<bool>[]> busy(new std::atomic<bool>[static_cast<size_t>(nslots)]());
    parallel_for(s.N * bands, 1, [&](int64_t t0, int64_t t1) {
      int slot = 0;
      while (busy[static_cast<size_t>(slot)].exchange(true)) slot = (slot + 1) % nslots;
      float* const conv_rows = scratch.data<float>() + slot * slot_floats;
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t n = t / bands, ph0 = (t % bands) * band, ph1 = std::min(Hp, ph0 + band);
        // the conv rows the band's windows reach inside the map
        const int64_t r0 = std::max<int64_t>(0, ph0 * st[0] - pad[0]);
        const int64_t r1 = std::min(s.Ho, (ph1 - 1) * st[0] - pad[0] + k[0]);
        auto A = A0;
        A.row0 = (n * s.Ho + r0) * s.Wo;
        // (inside a parallel_for chunk the GEMM runs on this thread: each band is one task)
        indirect_gemm((r1 - r0) * s.Wo, A, plan, B, conv_rows, s.Cout, ep);
        detail::max_pool_rows_channels_last(conv_rows, r0, r1, s.Wo, s.Cout, yp + (n * Hp + ph0) * Wp * s.Cout, ph0,
                                            ph1, Wp, k, st, pad, {1, 1});
      }
      busy[static_cast<size_t>(slot)].store(false);
    });
    return y;
  });
}

namespace {
// act(x W^T * scale + shift + residual); scale undefined: act(x W^T + shift + residual) (shift = the bias).
Tensor packed_linear(std::string_view op, const Tensor& x_in, const PackedLinear& w, const Tensor& scale_in,
                     const Tensor& b_in, Activation act, const Tensor& residual) {
  if (!w.defined()) op_error(op, "weights were not packed");
  if (on_gpu(x_in)) op_error(op, "packed weights are a CPU layout (Model::to_device uploads the torch layout)");
  check_f32_cpu(op, x_in, "input");
  if (x_in.dim() < 1 || x_in.size(-1) != w.in_features)
    op_error(op, "input " + x_in.str() + " must end in " + std::to_string(w.in_features) + " features");
  check_channel_vector(op, b_in, w.out_features, scale_in.defined() ? "shift" : "bias");
  check_channel_vector(op, scale_in, w.out_features, "scale");
  const int64_t K = w.in_features, M = x_in.numel() / std::max<int64_t>(K, 1);
  const Tensor x = x_in.contiguous();
  const Tensor b = b_in.defined() ? b_in.contiguous() : Tensor();
  const Tensor sc = scale_in.defined() ? scale_in.contiguous() : Tensor();
  Shape ys = x.shape();
  ys.back() = w.out_features;
  const Tensor r = detail::linear_residual(op, residual, ys);
  Tensor y = Tensor::empty(ys);
  if (K == 0) {  // an empty sum: bias (and residual) only
    for (int64_t i = 0; i < M * w.out_features; ++i) {
      float v = b.defined() ? b.data<float>()[i % w.out_features] : 0.f;
      if (r.defined()) v += r.data<float>()[i];
      y.data<float>()[i] = v;
    }
    if (act != Activation::none) detail::activation_inplace(y.data<float>(), y.numel(), act);
    return y;
  }
  Epilogue ep;
  ep.scale = sc.defined() ? sc.data<float>() : nullptr;
  ep.shift = b.defined() ? b.data<float>() : nullptr;
  ep.residual = r.defined() ? r.data<float>() : nullptr;
  ep.ldr = w.out_features;
  ep.act = act;
  if (w.b.type() == PackedType::bf16) {  // x rounded to bf16 rows, padded to an even K
    const int64_t Kp = w.b.stored_rows();
    if (t_recording_centres) record_centres(w.b, 1, x.data<float>(), M, K, true);
    drop_low_weights(w.b);
    const Bf16Centres& cs = *w.b.centres();
    std::vector<int8_t> row_centre;  // the nearest centre of each row (a class token's differs from a patch's)
    std::vector<float> shifts;
    if (cs.count() > 0) {
      row_centre = choose_centres(M, 1, K, x.data<float>(), K, cs);
      shifts = centred_shifts(cs, w.out_features, ep.scale, ep.shift);
      ep.centre = row_centre.data(), ep.centre_shift = shifts.data();
    }
    const Tensor xb = cs.count() > 0 ? round_centred(M, 1, K, x.data<float>(), K, Kp, cs, row_centre)
                                     : round_activations(M, K, x.data<float>(), K, Kp);
    ASource<uint16_t> A;
    A.a = xb.data<uint16_t>();
    A.lda = Kp;
    indirect_gemm(M, A, dense_plan(Kp), bf16_panels_of(w.b), y.data<float>(), w.out_features, ep);
    return y;
  }
  ASource<float> A;
  A.a = x.data<float>();
  A.lda = K;
  indirect_gemm(M, A, dense_plan(K), panels_of(w.b), y.data<float>(), w.out_features, ep);
  return y;
}
}  // namespace

Tensor linear(const Tensor& x, const PackedLinear& w, const Tensor& b, Activation act, const Tensor& residual) {
  return packed_linear("ops::linear(packed)", x, w, Tensor(), b, act, residual);
}

Tensor linear_scale_shift(const Tensor& x, const PackedLinear& w, const Tensor& scale, const Tensor& shift,
                          const Tensor& residual) {
  if (!scale.defined()) op_error("ops::linear_scale_shift", "scale is required");
  return packed_linear("ops::linear_scale_shift", x, w, scale, shift, Activation::none, residual);
}

}  // namespace ops
}  // namespace tabula
