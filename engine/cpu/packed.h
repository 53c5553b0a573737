// Weights prepared once, at load time, for the fast CPU path, and the ops that take them.
//
// A model's conv and linear weights are packed once into the layout the GEMM micro-kernel reads (k-major panels
// of NR output channels), so no forward call re-packs or re-transposes a weight. Activations are never packed:
// the indirect GEMM (gemm_kernels.h) reads them in place through row pointers, which makes a 1x1 conv on a
// channels-last map exactly a GEMM and a k x k conv a GEMM over (tap, input channel) without an im2col buffer.
// Convolutions run over the whole batch (M = N * Ho * Wo rows) in channels-last layout ("NHWC", torch's
// channels_last memory format): the output is a tensor of logical shape [N, C, H, W] with strides
// (H*W*C, 1, W*C, C), which every op accepts like any strided tensor.
//
// The reference of a packed op is the unpacked one: ops::conv2d(x, packed, scale, shift, act, residual) equals
// act(ref::conv2d(x, weight) * scale + shift + residual) per output channel, tested by the op validator.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "engine/backend.h"
#include "engine/ops.h"

namespace tabula {

// What packed weights hold. f32: the fp32 GEMM (and the exact torch weights). bf16: weights rounded once to bf16
// (round to nearest even) for the AVX512-BF16 micro-kernel; the activations are rounded to bf16 as they enter that
// GEMM, it accumulates in fp32, and everything after it (bias, BatchNorm, residual, activation) stays fp32 -- the
// numerics contract of the CUDA bf16 path.
enum class PackedType { f32, bf16 };

// Reference-centred rounding of a bf16 GEMM's activations. Rounding x to bf16 costs an error of ~2^-9 |x| per
// value; when the inputs of different images share a large common part (untrained networks embed different
// microscopy wells to cosine ~0.99998: a ViT's class token after attention is an average over all tokens), that
// error is as large as what tells the images apart. So each A row is rounded as its deviation from a centre c,
//   y = W bf16(x - c) + W c,
// with W c computed once in fp32 accumulation (c is bf16-exact, so its products are exact) and added to C before
// the GEMM accumulates: the error then scales with |x - c|. The centres are rows recorded from forwards of
// reference images (Model::record_bf16_centres: a black and a white image): their first, middle and mean rows
// (token / pixel). A linear picks per row the centre nearest to it (or none: plain rounding), a conv per image.
// The choice reads only the row (image), so the result is the same for any batch and thread count; whatever centre
// is picked, the identity above holds, so the choice decides only how small the rounding error is.
// W c is the fp32 weights' product where their low halves W_lo = W - bf16(W) were kept from packing (W' c + W_lo c,
// to ~2^-16: the bf16 weights' rounding, which moves an untrained net's common activations by more than the images'
// differences, then touches only the deviation x - c), else W' c. A padded conv's padding pixels read -c, so W' c
// cancels there; its W_lo c is added per output pixel over the taps inside the map only (a border pattern: the
// sum over a rectangle of taps, from the prefix sums lo_prefix), so each pixel gets sum over its in-map taps of
// W'_t bf16(x_t - c) + W_t c.
struct Bf16Centres {
  int64_t K = 0;           // values per centre: a linear's in_features, a conv's Cin (one input pixel)
  std::vector<float> c;    // count() centres of K values, each bf16-exact
  std::vector<uint16_t> neg;  // the same negated, as bf16 (a conv's padding pixels)
  // [count(), N]: W c summed over a conv's kh x kw taps; with the fp32 weights, except a padded conv's: W' c
  std::vector<float> wc;
  // a padded conv with its low halves kept: [count(), (kh + 1) x (kw + 1), N], entry (j, i, i') the sum of
  // W_lo_t c_j over the taps t = (a, b) with a < i, b < i'
  std::vector<double> lo_prefix;
  int64_t kh = 1, kw = 1;
  // B - bf16(B) in the bf16 layout, kept from packing until the first forward that records nothing, within a
  // process-wide budget (bf16_centres.h reserve_low_weights)
  Tensor w_lo;
  Bf16Centres() = default;
  Bf16Centres(const Bf16Centres&) = delete;
  Bf16Centres& operator=(const Bf16Centres&) = delete;
  ~Bf16Centres();
  // Frees w_lo (and returns its bytes to the budget).
  void release_low_weights();
  int64_t count() const { return K ? static_cast<int64_t>(c.size()) / K : 0; }
};

// The B operand [K, N] of C = A @ B in the indirect micro-kernel's layout.
//   f32:  panel p holds columns [p * nr, p * nr + nr) as K consecutive rows of nr floats, columns past N zero.
//   bf16: panel p holds ceil(K / 2) rows of nr (k, k + 1) pairs: uint16_t element (k, n) of the panel at
//         (k / 2) * 2 * nr + (n - p * nr) * 2 + k % 2, k past K and columns past N zero (one row of a panel is what
//         one `vdpbf16ps` multiplies: 16 columns x one pair, per 64 bytes).
// nr is the kernel's (32 for AVX-512 and AVX512-BF16), chosen when packing on the machine that runs it.
//
// Packing API (for code that holds weights elsewhere, e.g. memory-mapped): PackedMatrix::pack reads B from any fp32
// pointer with strides and allocates its own buffer; detail::pack_b_panels / pack_b_panels_bf16 (below) write the
// same layouts into a caller's buffer of packed_b_floats / packed_b_bf16_elems elements.
class PackedMatrix {
 public:
  PackedMatrix() = default;
  // element (k, n) of B is src[k * sk + n * sn]; bf16 needs the CPU's bf16 kernel (ops::set_cpu_precision's check)
  static PackedMatrix pack(int64_t K, int64_t N, const float* src, int64_t sk, int64_t sn,
                           PackedType type = PackedType::f32);
  bool defined() const { return data_.defined(); }
  PackedType type() const { return type_; }
  int64_t rows() const { return K_; }
  int64_t cols() const { return N_; }
  int64_t nr() const { return nr_; }
  // rows as stored: K, or K rounded up to even for bf16 (the zero row that completes the last pair)
  int64_t stored_rows() const { return type_ == PackedType::bf16 ? (K_ + 1) / 2 * 2 : K_; }
  const float* panel(int64_t p) const { return data_.data<float>() + p * K_ * nr_; }  // f32 only
  const uint16_t* panel_bf16(int64_t p) const { return data_.data<uint16_t>() + p * stored_rows() * nr_; }
  float at(int64_t k, int64_t n) const;  // element (k, n) of B as stored (bf16: the rounded value)
  size_t nbytes() const { return data_.defined() ? data_.nbytes() : 0; }
  // bf16: the centres its GEMMs round around (shared by copies; empty until recorded); nullptr for f32
  Bf16Centres* centres() const { return centres_.get(); }

 private:
  Tensor data_;
  std::shared_ptr<Bf16Centres> centres_;
  PackedType type_ = PackedType::f32;
  int64_t K_ = 0, N_ = 0, nr_ = 0;
};

// The type weights packed now get: bf16 after ops::set_cpu_precision(Precision::bf16), else f32.
PackedType default_packed_type();

// nn.Conv2d weight [Cout, Cin, kh, kw] (groups = 1) packed with k = (i * kw + j) * Cin + ci, the order in which a
// channels-last input holds one output pixel's receptive field.
struct PackedConv2d {
  PackedConv2d() = default;
  // type bf16: the direct path's weights in bf16, except for a conv that takes the Winograd path, which stays
  // fp32 (its transformed weights and GEMM; winograd_conv_eligible says where that beats the bf16 direct conv).
  PackedConv2d(const Tensor& weight, const Conv2dOptions& opt, PackedType type = default_packed_type());
  bool defined() const { return b.defined(); }
  // The weight it was packed from, [Cout, Cin, kh, kw] (exact when b is f32: packing only moves floats; bf16: the
  // rounded values). Model::to_device uploads this, since the GPU path takes the torch layout.
  Tensor weight() const;
  int64_t cout = 0, cin = 0, kh = 0, kw = 0;
  Conv2dOptions opt;
  PackedMatrix b;
  // Winograd F(4x4, 3x3) weights (engine/cpu/winograd.h), transformed and packed at load for the 3x3 stride-1 convs
  // where that path is faster (winograd_conv_eligible); K = 36 * Cin rows, point-major (rows xi * Cin + ci).
  // Undefined otherwise, or when ops::set_winograd_enabled(false) was in effect at construction.
  PackedMatrix wino;
  Tensor shape_only;  // zero-stride [Cout, Cin, kh, kw] view (argument checks share ops_common's rules)
};

// Whether a conv of these weights gets the Winograd F(4x4, 3x3) path: 3x3, stride 1, dilation 1, groups 1,
// Cin >= 16 and Cout >= 16, and Cin * Cout <= 256 * 256. A fixed rule from the weight shape (measured per ResNet-50
// shape in bench/RESULTS_engine.md), never from timings taken at run time, so a model computes the same bits on
// every run and machine with the same ISA.
bool winograd_conv_eligible(int64_t cout, int64_t cin, int64_t kh, int64_t kw, const Conv2dOptions& opt);

// nn.Linear weight [out, in] packed as B = weight^T [in, out].
struct PackedLinear {
  PackedLinear() = default;
  explicit PackedLinear(const Tensor& weight, PackedType type = default_packed_type());
  bool defined() const { return b.defined(); }
  Tensor weight() const;  // the [out, in] weight it was packed from (exact for f32, rounded for bf16)
  int64_t out_features = 0, in_features = 0;
  PackedMatrix b;
};

// Eval-mode BatchNorm as per-channel y = x * scale + shift, scale = gamma / sqrt(var + eps), shift = beta -
// mean * scale, computed in double and rounded once (the form torch's CPU batch_norm evaluates in inference).
std::pair<Tensor, Tensor> batch_norm_scale_shift(const Tensor& gamma, const Tensor& beta, const Tensor& mean,
                                                 const Tensor& var, double eps = 1e-5);

// Channels-last layout of a 4-D [N, C, H, W] tensor: strides (H*W*C, 1, W*C, C).
bool is_channels_last(const Tensor& x);
Tensor empty_channels_last(int64_t N, int64_t C, int64_t H, int64_t W);
Tensor to_channels_last(const Tensor& x);  // x itself when already channels-last

namespace detail {
// Scratch packing for operands that change per call (attention's K^T and V per head): the B layout above into
// `dst` (packed_b_floats(K, N) floats), and C[M, N] (row stride ldc) = A[M, K] (row r at a + r * lda) @ B.
// gemm_packed_b parallelises over rows unless called from inside a parallel_for chunk (then it runs inline).
int64_t packed_b_floats(int64_t K, int64_t N);
void pack_b_panels(int64_t K, int64_t N, const float* src, int64_t sk, int64_t sn, float* dst);
// The bf16 layout (PackedMatrix) into `dst` of packed_b_bf16_elems(K, N) uint16_t.
int64_t packed_b_bf16_elems(int64_t K, int64_t N);
void pack_b_panels_bf16(int64_t K, int64_t N, const float* src, int64_t sk, int64_t sn, uint16_t* dst);
void gemm_packed_b(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, const float* bpanels, float* c,
                   int64_t ldc);
// The bf16 twin (AVX512-BF16 only): A rows of K bf16 values (K even: a row's zero past the real K completes the last
// pair), B in pack_b_panels_bf16's layout of K rows, C in fp32 -- the attention's Q K^T and P V with
// --precision bf16. The bits depend only on the shapes, never on the thread count.
void gemm_packed_b_bf16(int64_t M, int64_t N, int64_t K, const uint16_t* a, int64_t lda, const uint16_t* bpanels,
                        float* c, int64_t ldc);
}  // namespace detail

namespace ops {
// The CPU's GEMM precision, process-wide (--precision with --device cpu): fp32 (the default) or bf16, which
// weights packed afterwards take (default_packed_type). bf16 throws std::invalid_argument on a CPU without
// AVX512-BF16, naming the CPU and what it offers; tf32 and fp16 throw too (GPU only). Ops on packed weights follow
// the weights' type, whatever the current setting.
void set_cpu_precision(Precision p);
Precision cpu_precision();

// While one is alive on this thread, every op on bf16 packed weights adds centres (Bf16Centres) taken from its
// input, which must be a forward of one reference image: its first, middle and mean row (a conv: pixel), at most
// kMaxBf16Centres per weight. Model::record_bf16_centres runs the forwards.
constexpr int64_t kMaxBf16Centres = 6;
class Bf16CentreRecording {
 public:
  Bf16CentreRecording();
  ~Bf16CentreRecording();
  Bf16CentreRecording(const Bf16CentreRecording&) = delete;
  Bf16CentreRecording& operator=(const Bf16CentreRecording&) = delete;

 private:
  bool previous_;
};

// act(conv2d(x, w) * scale + shift + residual), scale and shift per output channel ([Cout]; undefined = 1 and 0):
// a conv with a bias (shift = bias), or a conv followed by an eval-mode BatchNorm (batch_norm_scale_shift), then
// the block's residual add and ReLU, in one pass. x: [N, Cin, H, W] in any layout (channels-last is read in
// place, anything else is converted first); residual [N, Cout, Ho, Wo] likewise. Returns a channels-last tensor.
Tensor conv2d(const Tensor& x, const PackedConv2d& w, const Tensor& scale, const Tensor& shift,
              Activation act = Activation::none, const Tensor& residual = {});
// The same, with the residual given up by the caller: the result is written over the residual's memory when that
// changes no value -- when K is one 256-block (a 1x1 conv with Cin <= 256, a k x k conv with k * k * Cin <= 256)
// and on the Winograd path; otherwise a fresh tensor is returned and the residual is left as it was. A block's
// output then needs no memory of its own, and the stores find the residual's lines already in cache instead of
// fetching a cold line first (ResNet-50, batch 16, CPU time per forward: layer1's three conv3 57 -> 41 ms, layer2's
// four 54 -> 45 ms, layer3's six 69 -> 66 ms). The residual must be writable memory that nothing else reads
// afterwards (models check that its storage has no other owner); if it is the input x, a fresh tensor is returned.
Tensor conv2d_into_residual(const Tensor& x, const PackedConv2d& w, const Tensor& scale, const Tensor& shift,
                            Activation act, Tensor residual);
// ops::max_pool2d(ops::conv2d(x, w, scale, shift, act), k, s, p) (dilation 1, floor mode) with the same bits, in bands
// of output rows whose conv rows are pooled while they are in L2, so the conv's output map is never written out
// and read back (ResNet's stem + max-pool: a 51 MB map at batch 16). The Winograd path has no bands: conv, then pool.
Tensor conv2d_max_pool2d(const Tensor& x, const PackedConv2d& w, const Tensor& scale, const Tensor& shift,
                         Activation act, std::array<int64_t, 2> k, std::array<int64_t, 2> s, std::array<int64_t, 2> p);
// F.linear with a packed weight: act(x [..., in] @ W^T + bias + residual) -> [..., out], all fused in the GEMM
// (residual: the result's shape or undefined, as ops::linear).
Tensor linear(const Tensor& x, const PackedLinear& w, const Tensor& bias = {}, Activation act = Activation::none,
              const Tensor& residual = {});
// (x @ W^T) * scale + shift + residual with per-feature scale and shift in the GEMM epilogue (as the packed conv's
// folded BatchNorm): a Linear followed by a LayerScale, shift = bias * scale (ConvNeXt's fc2 and gamma before the
// residual add). Within an ulp or two of torch's (x @ W^T + bias) * scale, rounded once instead of twice.
Tensor linear_scale_shift(const Tensor& x, const PackedLinear& w, const Tensor& scale, const Tensor& shift,
                          const Tensor& residual = {});
}  // namespace ops

}  // namespace tabula
