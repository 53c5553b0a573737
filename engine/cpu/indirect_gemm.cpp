// The indirect GEMM driver (indirect_gemm.h): K blocks, tasks, row pointers, micro-kernel calls and the epilogue
// of partial tiles, for fp32 and bf16 packed weights.
#include "engine/cpu/indirect_gemm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/cpu/gemm_kernels.h"
#include "engine/cpu/rowops.h"
#include "engine/ops_common.h"
#include "engine/threads.h"

namespace tabula::detail::igemm {

KPlan dense_plan(int64_t K) {
  KPlan p;
  for (int64_t k0 = 0; k0 < K; k0 += KC) {
    p.blocks.push_back({static_cast<int64_t>(p.segs.size()), 1, std::min(KC, K - k0), k0});
    p.segs.push_back({k0, 0, 0});
  }
  return p;
}

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

KPlan row_plan(int64_t kh, int64_t len, int64_t dilation_h) {
  KPlan p;
  for (int64_t i = 0; i < kh; ++i) p.segs.push_back({i * len, i * dilation_h, 0});
  const int64_t per_block = std::max<int64_t>(1, KC / len);
  for (int64_t s0 = 0; s0 < kh; s0 += per_block)
    p.blocks.push_back({s0, std::min(per_block, kh - s0), len, s0 * len});
  return p;
}

namespace {
constexpr int64_t kMaxNC = 512;  // columns per task: a KC x NC block of packed weights stays in L2

// act(v * scale + shift + residual) for one element (partial tiles; the kernels do the same in registers).
inline float epilogue_scalar(float v, const Epilogue& ep, int64_t r, int64_t j) {
  if (ep.scale) v = std::fma(v, ep.scale[j], ep.shift ? ep.shift[j] : 0.f);
  else if (ep.shift) v += ep.shift[j];
  if (ep.residual) v += ep.residual[r * ep.ldr + j];
  if (ep.act == Activation::relu) v = v > 0.f || std::isnan(v) ? v : 0.f;
  return v;
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
    if (ni == MR_ && nj == NR_) {
      detail::TileEpilogue te;
      const float* row_shift[16];  // with centres: each row's shift (MR <= 16)
      const bool use_ep = last && (ep_.scale || ep_.shift || ep_.shift_index || ep_.residual ||
                                   ep_.act == Activation::relu);
      if (use_ep) {
        te.scale = ep_.scale ? ep_.scale + j : nullptr;
        te.shift = ep_.shift ? ep_.shift + j : nullptr;
        te.residual = ep_.residual ? ep_.residual + r0 * ep_.ldr + j : nullptr;
        te.ldr = ep_.ldr;
        te.relu = ep_.act == Activation::relu;
        if (ep_.shift_index) {
          const int32_t* index = ep_.shift_index + A_.row0 + r0;
          for (int64_t i = 0; i < ni; ++i) row_shift[i] = ep_.shift_table + index[i] * B_.cols() + j;
          te.row_shift = row_shift;
        }
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
      if (ep_.shift_index) row_ep.shift = ep_.shift_table + ep_.shift_index[A_.row0 + r0 + i] * B_.cols();
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

}  // namespace

template <class T>
void indirect_gemm(int64_t M, const ASource<T>& A, const KPlan& plan, const BPanels<T>& B, float* C_all,
                   int64_t ldc, const Epilogue& ep, const GemmBatch& batch) {
  IndirectGemm<T>(M, A, plan, B, C_all, ldc, ep, batch).run();
}

template void indirect_gemm<float>(int64_t, const ASource<float>&, const KPlan&, const BPanels<float>&, float*,
                                  int64_t, const Epilogue&, const GemmBatch&);
template void indirect_gemm<uint16_t>(int64_t, const ASource<uint16_t>&, const KPlan&, const BPanels<uint16_t>&,
                                     float*, int64_t, const Epilogue&, const GemmBatch&);

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

}  // namespace tabula::detail::igemm
