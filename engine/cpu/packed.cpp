// Packed weights and ops::conv2d / ops::linear on them (packed.h), through the indirect GEMM driver
// (indirect_gemm.{h,cpp}).
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
#include "engine/cpu/indirect_gemm.h"
#include "engine/ops_common.h"
#include "engine/cpu/rowops.h"
#include "engine/threads.h"
#include "engine/cpu/winograd.h"

namespace tabula {

using namespace detail::igemm;  // NOLINT(google-build-using-namespace): the driver's types, internal to engine/cpu

namespace {
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

namespace {
// pack_b_panels_bf16 of B into dst and of its low halves B - bf16(B) into lo_dst (Bf16Centres::w_lo), panel by
// panel: a panel's low halves are taken while its columns of B are in cache, into a K x nr scratch packed as the
// panel of a K x nn matrix (the same values, so the same bits as packing all the low halves at once).
void pack_b_panels_bf16_and_low(int64_t K, int64_t N, const float* src, int64_t sk, int64_t sn, uint16_t* dst,
                                uint16_t* lo_dst) {
  const int64_t nr = bf16_nr(), panels = (N + nr - 1) / nr, Kp = (K + 1) / 2 * 2;
  const PackBf16 pack = gemm_bf16_kernel()->pack;
  parallel_for(panels, 1, [&](int64_t p0, int64_t p1) {
    std::vector<float> lo(static_cast<size_t>(K * nr));
    for (int64_t p = p0; p < p1; ++p) {
      pack(K, N, src, sk, sn, dst, p, p + 1);
      const int64_t n0 = p * nr, nn = std::min(nr, N - n0);
      auto low = [&](int64_t k, int64_t j) {
        const float v = src[k * sk + (n0 + j) * sn];
        lo[static_cast<size_t>(k * nn + j)] = v - bf16_to_f32(f32_to_bf16(v));
      };
      if (sk == 1) {  // a linear's weight [out, in]: a column's k are contiguous
        for (int64_t j = 0; j < nn; ++j)
          for (int64_t k = 0; k < K; ++k) low(k, j);
      } else {
        for (int64_t k = 0; k < K; ++k)
          for (int64_t j = 0; j < nn; ++j) low(k, j);
      }
      pack(K, nn, lo.data(), nn, 1, lo_dst + p * Kp * nr, 0, 1);
    }
  });
}
}  // namespace
}  // namespace detail

PackedMatrix PackedMatrix::pack(int64_t K, int64_t N, const float* src, int64_t sk, int64_t sn, PackedType type) {
  PackedMatrix m;
  m.K_ = K;
  m.N_ = N;
  m.type_ = type;
  if (type == PackedType::bf16) {
    m.nr_ = detail::bf16_nr();
    m.centres_ = std::make_shared<Bf16Centres>();
    const int64_t elems = std::max<int64_t>(detail::packed_b_bf16_elems(K, N), 1);
    m.data_ = Tensor::heap({elems}, DType::bf16);
    // the low halves W - bf16(W), for the centres' W c with the fp32 weights (packed.h Bf16Centres)
    if (detail::reserve_low_weights(static_cast<int64_t>(m.data_.nbytes()))) {
      m.centres_->w_lo = Tensor::heap({elems}, DType::bf16);
      detail::pack_b_panels_bf16_and_low(K, N, src, sk, sn, m.data_.data<uint16_t>(),
                                         m.centres_->w_lo.data<uint16_t>());
    } else {
      detail::pack_b_panels_bf16(K, N, src, sk, sn, m.data_.data<uint16_t>());
    }
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
  // bf16 with centres: each image's centre and padding row (-c, or zeros)
  std::vector<int8_t> image_centre;
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
  if (detail::recording_bf16_centres())
    detail::record_centres(w.b, s.kh, s.kw, x.data<float>(), s.H * s.W, s.C,
                           w.opt.padding[0] != 0 || w.opt.padding[1] != 0);
  detail::drop_low_weights(w.b);
  const Bf16Centres& cs = *w.b.centres();
  const bool centred = cs.count() > 0 && cs.K == s.C;
  std::vector<int8_t>& image_centre = d.image_centre;  // one centre per image: its padding pixels then read -c
  if (centred) {
    image_centre = detail::choose_centres(pixels, s.H * s.W, s.C, x.data<float>(), s.C, cs);
    d.zeros.assign(static_cast<size_t>(s.C), 0);
    for (int64_t n = 0; n < s.N; ++n) {
      const int j = image_centre[static_cast<size_t>(n)];
      d.pad_rows.push_back(j < 0 ? d.zeros.data() : cs.neg.data() + j * cs.K);
    }
    A.pad_rows = d.pad_rows.data();
  }
  auto round = [&](int64_t ldd) {
    return centred ? detail::round_centred(pixels, s.H * s.W, s.C, x.data<float>(), s.C, ldd, cs, image_centre)
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
    detail::CentredShifts shifts;
    if (!d.image_centre.empty()) {
      shifts = detail::conv_centred_shifts(*w.b.centres(), d.image_centre, {s.N, s.H, s.W, s.Ho, s.Wo, w.opt},
                                           w.cout, ep.scale, ep.shift);
      ep.shift_index = shifts.index.data(), ep.shift_table = shifts.table.data();
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
    if (detail::recording_bf16_centres()) detail::record_centres(w.b, 1, 1, x.data<float>(), M, K, false);
    detail::drop_low_weights(w.b);
    const Bf16Centres& cs = *w.b.centres();
    std::vector<int8_t> row_centre;  // the nearest centre of each row (a class token's differs from a patch's)
    detail::CentredShifts shifts;
    if (cs.count() > 0) {
      row_centre = detail::choose_centres(M, 1, K, x.data<float>(), K, cs);
      shifts = detail::linear_centred_shifts(cs, row_centre, w.out_features, ep.scale, ep.shift);
      ep.shift_index = shifts.index.data(), ep.shift_table = shifts.table.data();
    }
    const Tensor xb = cs.count() > 0 ? detail::round_centred(M, 1, K, x.data<float>(), K, Kp, cs, row_centre)
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
