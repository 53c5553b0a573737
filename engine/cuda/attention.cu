// F.scaled_dot_product_attention: cuBLASLt GEMMs around a row softmax, a flash-style streaming kernel for long
// sequences, and a tensor-core FlashAttention-2 style kernel for 16-bit activations.
#include "engine/cuda/common.cuh"

namespace tabula::cuda {
namespace {

// softmax(x * scale) over rows of C of fp32 attention scores into p, any storage type: the f32 probabilities in
// place (p == x: each element is read and written by the same thread only) or a 16-bit P for the P @ V product.
__global__ void scaled_softmax_kernel(void* p, ET pt, const float* x, int64_t C, float scale) {
  __shared__ float shm[32];
  const int64_t r0 = blockIdx.x * C;
  const float* xr = x + r0;
  float m = -INFINITY;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) m = fmaxf(m, xr[c] * scale);
  m = block_max(m, shm);
  float s = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += expf(xr[c] * scale - m);
  const float inv = 1.f / block_sum(s, shm);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) st(p, r0 + c, expf(xr[c] * scale - m) * inv, pt);
}

// Warp-per-row forms for rows up to 32 * PER elements, held in registers: one read and one write per element and
// warp shuffles only (the block kernels above re-read the row for each statistic and synchronise the block).
// softmax(x * scale) of fp32 scores into p (any storage type; p may be x itself: each row is read before written).
template <int PER>
__global__ void softmax_warp_kernel(void* p, ET pt, const float* x, int64_t rows, int C, float scale) {
  const int64_t row = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const float* xr = x + row * C;
  float v[PER];
  float m = -INFINITY;
#pragma unroll
  for (int t = 0; t < PER; ++t) {
    const int c = lane + 32 * t;
    v[t] = c < C ? xr[c] * scale : -INFINITY;
    m = fmaxf(m, v[t]);
  }
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  float sum = 0.f;
#pragma unroll
  for (int t = 0; t < PER; ++t) {
    v[t] = lane + 32 * t < C ? expf(v[t] - m) : 0.f;
    sum += v[t];
  }
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  const float inv = 1.f / sum;
#pragma unroll
  for (int t = 0; t < PER; ++t) {
    const int c = lane + 32 * t;
    if (c < C) st(p, row * C + c, v[t] * inv, pt);
  }
}
template <int PER>
struct SoftmaxWarp {
  static void launch(unsigned blocks, int dev, void* p, ET pt, const float* x, int64_t rows, int C, float scale) {
    softmax_warp_kernel<PER><<<blocks, 128, 0, stream(dev)>>>(p, pt, x, rows, C, scale);
  }
};

// f32 values rounded to the precision's storage type, kept in f32 (the V operand of the fp32 P @ V product).
__global__ void round_kernel(float* y, const float* x, int64_t n, Precision p) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) y[i] = round_to(x[i], p);
}

// ---- attention ----
// Flash-style forward: one warp per query row, keys streamed with an online softmax (running max m, running
// sum l, output rescaled when m grows), so the Nq x Nk matrix never exists. A block holds kFlashRows query rows
// of one (batch, head) and stages kFlashKeys keys/values at a time in shared memory, so each K/V element is read
// from global memory once per block instead of once per row. Lane t owns dims t, t+32, ... of its row.
// Inputs are rounded to the precision's storage type on load; every sum is fp32, in a fixed order.
constexpr int kMaxHeadDim = 256;
constexpr int kFlashRows = 8;   // warps per block
constexpr int kFlashKeys = 16;  // keys per shared-memory tile: 2 x 16 x 256 x 4 B = 32 KiB at most
__global__ void attention_flash_kernel(float* out, const float* q, const float* k, const float* v, int64_t Nq,
                                       int64_t Nk, int D, int Dv, float scale, Precision p) {
  __shared__ float ks[kFlashKeys * kMaxHeadDim];
  __shared__ float vs[kFlashKeys * kMaxHeadDim];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t chunks = (Nq + kFlashRows - 1) / kFlashRows;
  const int64_t bh = blockIdx.x / chunks, i = (blockIdx.x % chunks) * kFlashRows + warp;
  const bool active = i < Nq;  // uniform per warp; inactive warps still help load tiles and meet the barriers
  const int64_t row = bh * Nq + i;
  float qreg[kMaxHeadDim / 32], acc[kMaxHeadDim / 32];
  const int nd = (D + 31) / 32, nv = (Dv + 31) / 32;
  for (int t = 0; t < nd; ++t) {
    const int d = lane + 32 * t;
    qreg[t] = active && d < D ? round_to(q[row * D + d], p) : 0.f;
  }
  for (int t = 0; t < nv; ++t) acc[t] = 0.f;
  float m = -INFINITY, l = 0.f;
  for (int64_t j0 = 0; j0 < Nk; j0 += kFlashKeys) {
    const int nt = static_cast<int>(Nk - j0 < kFlashKeys ? Nk - j0 : kFlashKeys);
    __syncthreads();  // every warp is done with the previous tile
    const float* kt = k + (bh * Nk + j0) * D;
    const float* vt = v + (bh * Nk + j0) * Dv;
    for (int idx = threadIdx.x; idx < nt * D; idx += blockDim.x) ks[idx] = round_to(kt[idx], p);
    for (int idx = threadIdx.x; idx < nt * Dv; idx += blockDim.x) vs[idx] = round_to(vt[idx], p);
    __syncthreads();
    if (!active) continue;
    for (int jj = 0; jj < nt; ++jj) {
      float s = 0.f;
      for (int t = 0; t < nd; ++t) {
        const int d = lane + 32 * t;
        if (d < D) s += qreg[t] * ks[jj * D + d];
      }
      for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
      s *= scale;
      const float m_new = fmaxf(m, s);
      const float corr = expf(m - m_new);  // 0 on the first key (m = -inf)
      const float e = expf(s - m_new);
      l = l * corr + e;
      for (int t = 0; t < nv; ++t) {
        const int d = lane + 32 * t;
        acc[t] = acc[t] * corr + (d < Dv ? e * vs[jj * Dv + d] : 0.f);
      }
      m = m_new;
    }
  }
  if (!active) return;
  for (int t = 0; t < nv; ++t) {
    const int d = lane + 32 * t;
    if (d < Dv) out[row * Dv + d] = acc[t] / l;
  }
}

// Exact path (and the attention-probabilities tap): one block per query row; the row of scores lives in shared
// memory, softmax as softmax_kernel, probabilities written out, then P @ V.
__global__ void attention_exact_kernel(float* out, float* probs, const float* q, const float* k, const float* v,
                                       int64_t Nq, int64_t Nk, int D, int Dv, float scale, Precision p) {
  extern __shared__ float srow[];
  __shared__ float shm[32];
  const int64_t row = blockIdx.x, bh = row / Nq;
  const float* qr = q + row * D;
  for (int64_t j = threadIdx.x; j < Nk; j += blockDim.x) {
    const float* kj = k + (bh * Nk + j) * D;
    float s = 0.f;
    for (int d = 0; d < D; ++d) s += round_to(qr[d], p) * round_to(kj[d], p);
    srow[j] = s * scale;
  }
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < Nk; j += blockDim.x) mx = fmaxf(mx, srow[j]);
  mx = block_max(mx, shm);
  float sum = 0.f;
  for (int64_t j = threadIdx.x; j < Nk; j += blockDim.x) sum += (srow[j] = expf(srow[j] - mx));
  const float inv = 1.f / block_sum(sum, shm);  // block_sum's barriers also publish srow
  for (int64_t j = threadIdx.x; j < Nk; j += blockDim.x) {
    srow[j] *= inv;
    if (probs) probs[row * Nk + j] = srow[j];
  }
  __syncthreads();
  for (int d = threadIdx.x; d < Dv; d += blockDim.x) {
    float a = 0.f;
    for (int64_t j = 0; j < Nk; ++j) a += srow[j] * round_to(v[(bh * Nk + j) * Dv + d], p);
    out[row * Dv + d] = a;
  }
}

// Window attention (Swin's WindowAttention): as the exact kernel, with the head's relative position bias and the
// window's shift mask added to the scaled scores. One block per query row; windows are short (49 or 144 tokens),
// so the row lives in shared memory and q, k, v are read from global memory (cached) without tiling.
__global__ void biased_attention_kernel(float* out, float* probs, const float* q, const float* k, const float* v,
                                        const float* bias, const float* mask, int64_t H, int64_t N, int64_t nW, int D,
                                        int Dv, float scale, Precision p) {
  extern __shared__ float srow[];
  __shared__ float shm[32];
  const int64_t row = blockIdx.x, bh = row / N, i = row % N, h = bh % H, w = (bh / H) % nW;
  const float* qr = q + row * D;
  for (int64_t j = threadIdx.x; j < N; j += blockDim.x) {
    const float* kj = k + (bh * N + j) * D;
    float s = 0.f;
    for (int d = 0; d < D; ++d) s += round_to(qr[d], p) * round_to(kj[d], p);
    s *= scale;
    if (bias) s += bias[(h * N + i) * N + j];
    if (mask) s += mask[(w * N + i) * N + j];
    srow[j] = s;
  }
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < N; j += blockDim.x) mx = fmaxf(mx, srow[j]);
  mx = block_max(mx, shm);
  float sum = 0.f;
  for (int64_t j = threadIdx.x; j < N; j += blockDim.x) sum += (srow[j] = expf(srow[j] - mx));
  const float inv = 1.f / block_sum(sum, shm);  // block_sum's barriers also publish srow
  for (int64_t j = threadIdx.x; j < N; j += blockDim.x) {
    srow[j] *= inv;
    if (probs) probs[row * N + j] = srow[j];
  }
  __syncthreads();
  for (int d = threadIdx.x; d < Dv; d += blockDim.x) {
    float a = 0.f;
    for (int64_t j = 0; j < N; ++j) a += srow[j] * round_to(v[(bh * N + j) * Dv + d], p);
    out[row * Dv + d] = a;
  }
}

// Tensor-core attention for 16-bit q/k/v (head dim D in {64, 80, 96, 128}), FlashAttention-2 style: a block
// takes 128 query rows of one (batch, head), a warp 16 of them, and streams the keys in tiles of 64 through shared
// memory with an online softmax. Everything per row stays in registers in the PTX mma.m16n8k16 fragment layouts:
// S = Q K^T with fp32 accumulation, the scaled, masked row maxima and exp in fp32 (row sums l of the fp32
// exponentials), P = exp(S - m) rounded to 16 bits and fed to O = O * exp(m_old - m) + P V (fp32 accumulators);
// at the end O / l. The N x N matrix never exists. q/k/v are read through their strides (the views of one packed
// qkv tensor need no copies), out is written through its strides. Fixed summation order: deterministic.
//
// m16n8k16 fragments (g = lane / 4, t = lane % 4; two 16-bit values per 32-bit register, lower column first):
//   A 16x16 row-major: {A[g][2t..], A[g+8][2t..], A[g][2t+8..], A[g+8][2t+8..]}
//   B 16x8 (k x n):   {B[2t..2t+1][g], B[2t+8..2t+9][g]}
//   C 16x8 fp32:      {C[g][2t], C[g][2t+1], C[g+8][2t], C[g+8][2t+1]}
constexpr int kFaRows = 128, kFaKeys = 64, kFaThreads = 256;  // 8 warps x 16 query rows share each K/V tile
template <int D>
constexpr size_t flash_smem_bytes() { return size_t{2} * kFaKeys * (D + 8) * 2; }  // K and V tiles, rows padded by 8
struct Strides3 {
  int64_t b, h, n;
};
template <typename T>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  T l = fromf<T>(lo), h = fromf<T>(hi);
  uint16_t ul, uh;
  memcpy(&ul, &l, 2), memcpy(&uh, &h, 2);
  return static_cast<uint32_t>(ul) | (static_cast<uint32_t>(uh) << 16);
}
template <typename T>
__device__ __forceinline__ uint32_t pack2(T lo, T hi) {
  uint16_t ul, uh;
  memcpy(&ul, &lo, 2), memcpy(&uh, &hi, 2);
  return static_cast<uint32_t>(ul) | (static_cast<uint32_t>(uh) << 16);
}
__device__ __forceinline__ uint32_t ld32(const void* p) { return *reinterpret_cast<const uint32_t*>(p); }

template <typename T, int D>
__global__ void __launch_bounds__(kFaThreads)
    flash_attention_kernel(T* out, Strides3 os, const T* q, Strides3 qs, const T* k, Strides3 ks, const T* v,
                           Strides3 vs, int H, int Nq, int Nk, float scale) {
  constexpr int LDT = D + 8, CH = D / 8, KS = D / 16, NT = D / 8;
  extern __shared__ __align__(16) unsigned char smem[];
  T* Ks = reinterpret_cast<T*>(smem);
  T* Vs = Ks + kFaKeys * LDT;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int qblocks = (Nq + kFaRows - 1) / kFaRows;
  const int bh = blockIdx.x / qblocks, q0 = (blockIdx.x % qblocks) * kFaRows;
  const int b = bh / H, h = bh % H;
  const T* kb = k + b * ks.b + h * ks.h;
  const T* vb = v + b * vs.b + h * vs.h;
  // This lane's two query rows (g and g + 8 of the warp's 16) as A fragments, for the whole key loop.
  const int n0 = q0 + warp * 16 + g, n1 = n0 + 8;
  const T* qr0 = q + b * qs.b + h * qs.h + static_cast<int64_t>(n0) * qs.n;
  const T* qr1 = qr0 + 8 * qs.n;
  uint32_t qa[KS][4];
#pragma unroll
  for (int kk = 0; kk < KS; ++kk) {
    qa[kk][0] = n0 < Nq ? ld32(qr0 + kk * 16 + 2 * t) : 0u;
    qa[kk][1] = n1 < Nq ? ld32(qr1 + kk * 16 + 2 * t) : 0u;
    qa[kk][2] = n0 < Nq ? ld32(qr0 + kk * 16 + 8 + 2 * t) : 0u;
    qa[kk][3] = n1 < Nq ? ld32(qr1 + kk * 16 + 8 + 2 * t) : 0u;
  }
  float o[NT][4];
#pragma unroll
  for (int i = 0; i < NT; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
  for (int k0 = 0; k0 < Nk; k0 += kFaKeys) {
    __syncthreads();  // every warp is done with the previous tile
    for (int i = threadIdx.x; i < kFaKeys * CH; i += kFaThreads) {
      const int r = i / CH, c = (i % CH) * 8;
      uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
      if (k0 + r < Nk) {  // keys past the end: zeros (their P is 0; zero V keeps 0 * V finite)
        kv = *reinterpret_cast<const uint4*>(kb + static_cast<int64_t>(k0 + r) * ks.n + c);
        vv = *reinterpret_cast<const uint4*>(vb + static_cast<int64_t>(k0 + r) * vs.n + c);
      }
      *reinterpret_cast<uint4*>(Ks + r * LDT + c) = kv;
      *reinterpret_cast<uint4*>(Vs + r * LDT + c) = vv;
    }
    __syncthreads();
    // S[16, 64] = Q_w K_tile^T: 8 n-tiles of 8 keys; B[d][key] = K[key][d]
    float sc[8][4];
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
      sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.f;
      const T* kr = Ks + (nt * 8 + g) * LDT + 2 * t;
#pragma unroll
      for (int kk = 0; kk < KS; ++kk) mma16816<T>(sc[nt], qa[kk], ld32(kr + kk * 16), ld32(kr + kk * 16 + 8));
    }
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const bool valid = k0 + nt * 8 + 2 * t + e < Nk;
        sc[nt][e] = valid ? sc[nt][e] * scale : -INFINITY;
        sc[nt][2 + e] = valid ? sc[nt][2 + e] * scale : -INFINITY;
        mx0 = fmaxf(mx0, sc[nt][e]);
        mx1 = fmaxf(mx1, sc[nt][2 + e]);
      }
#pragma unroll
    for (int o2 = 1; o2 <= 2; o2 <<= 1) {  // the 4 lanes of a group hold one row
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, o2));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, o2));
    }
    const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);  // finite: every tile holds a key (k0 < Nk)
    const float c0 = expf(m0 - mn0), c1 = expf(m1 - mn1);    // 0 on the first tile
    float s0 = 0.f, s1 = 0.f;
    uint32_t pa[4][4];  // P as A fragments of the 4 key steps of 16
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
      const float p00 = expf(sc[nt][0] - mn0), p01 = expf(sc[nt][1] - mn0);
      const float p10 = expf(sc[nt][2] - mn1), p11 = expf(sc[nt][3] - mn1);
      s0 += p00 + p01, s1 += p10 + p11;
      const int kk = nt / 2, hi = (nt % 2) * 2;
      pa[kk][hi] = pack2<T>(p00, p01);
      pa[kk][hi + 1] = pack2<T>(p10, p11);
    }
#pragma unroll
    for (int o2 = 1; o2 <= 2; o2 <<= 1) {
      s0 += __shfl_xor_sync(0xffffffffu, s0, o2);
      s1 += __shfl_xor_sync(0xffffffffu, s1, o2);
    }
    l0 = l0 * c0 + s0, l1 = l1 * c1 + s1, m0 = mn0, m1 = mn1;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) o[nt][0] *= c0, o[nt][1] *= c0, o[nt][2] *= c1, o[nt][3] *= c1;
    // O[16, D] += P[16, 64] V_tile[64, D]: B[key][d] = V[key][d], two keys per register
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const T* vc = Vs + nt * 8 + g;
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        const int r = kk * 16 + 2 * t;
        mma16816<T>(o[nt], pa[kk], pack2<T>(vc[r * LDT], vc[(r + 1) * LDT]),
                    pack2<T>(vc[(r + 8) * LDT], vc[(r + 9) * LDT]));
      }
    }
  }
  const float i0 = 1.f / l0, i1 = 1.f / l1;
  T* or0 = out + b * os.b + h * os.h + static_cast<int64_t>(n0) * os.n + 2 * t;
  T* or1 = or0 + 8 * os.n;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    if (n0 < Nq) *reinterpret_cast<uint32_t*>(or0 + nt * 8) = pack2<T>(o[nt][0] * i0, o[nt][1] * i0);
    if (n1 < Nq) *reinterpret_cast<uint32_t*>(or1 + nt * 8) = pack2<T>(o[nt][2] * i1, o[nt][3] * i1);
  }
}
template <typename T, int D>
void launch_flash(T* out, Strides3 os, const T* q, Strides3 qs, const T* k, Strides3 ks, const T* v, Strides3 vs,
                  int64_t B, int H, int Nq, int Nk, float scale, int dev) {
  constexpr size_t shm = flash_smem_bytes<D>();
  static const bool attr = [] {
    TABULA_CUDA_CHECK(cudaFuncSetAttribute(flash_attention_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(shm)));
    return true;
  }();
  (void)attr;
  const int64_t blocks = B * H * ((Nq + kFaRows - 1) / kFaRows);
  flash_attention_kernel<T, D>
      <<<static_cast<unsigned>(blocks), kFaThreads, shm, stream(dev)>>>(out, os, q, qs, k, ks, v, vs, H, Nq, Nk, scale);
}

}  // namespace

Tensor CudaBackend::scaled_dot_product_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                                                 std::optional<double> scale_opt, Tensor* attn_probs) {
  const OpTimer timer("scaled_dot_product_attention", q_in);
  const char* op = "cuda::scaled_dot_product_attention";
  const int dev = common_device(op, {&q_in, &k_in, &v_in});
  if (q_in.dim() != 4 || k_in.dim() != 4 || v_in.dim() != 4)
    op_error(op, "expects q/k/v [B, H, N, D], got " + q_in.str() + ", " + k_in.str() + ", " + v_in.str());
  const int64_t B = q_in.size(0), H = q_in.size(1), Nq = q_in.size(2), D = q_in.size(3), Nk = k_in.size(2),
                Dv = v_in.size(3);
  if (k_in.size(0) != B || v_in.size(0) != B || k_in.size(1) != H || v_in.size(1) != H || k_in.size(3) != D ||
      v_in.size(2) != Nk)
    op_error(op, "shapes do not match: q " + q_in.str() + ", k " + k_in.str() + ", v " + v_in.str());
  if (D > kMaxHeadDim || Dv > kMaxHeadDim) op_error(op, "head dim above 256 is not supported on cuda: " + q_in.str());
  if (Nk == 0) op_error(op, "no keys");
  const float scale = static_cast<float>(scale_opt ? *scale_opt : 1.0 / std::sqrt(static_cast<double>(D)));
  const DType ydt = result_dtype({&q_in, &k_in, &v_in});
  const int64_t BH = B * H, rows = BH * Nq;
  constexpr size_t kAttnScoresBudget = size_t{4} << 30;
  const bool half = g_precision == Precision::bf16 || g_precision == Precision::fp16;

  // 16-bit activations (a bf16/fp16 forward), no probabilities asked for: as torch's fused attention, in chunks of
  // (batch, head) pairs whose scores fit the budget. S = Q K^T from the 16-bit q, k with fp32 accumulation and fp32
  // scores, P = softmax(S * scale) in fp32 stored in 16 bits, O = P V on the tensor cores in 16 bits.
  if (half && ydt != DType::f32 && !attn_probs && D == Dv && (D == 64 || D == 80 || D == 96 || D == 128) &&
      q_in.dtype() == operand_dtype() && k_in.dtype() == q_in.dtype() && v_in.dtype() == q_in.dtype() && rows > 0 &&
      B * H * ((Nq + kFaRows - 1) / kFaRows) <= 0x7fffffff) {
    // q/k/v read in place when each row of D is 16-byte aligned; else one dense copy each.
    auto rows_ok = [](const Tensor& t) {
      return t.stride(3) == 1 && t.stride(0) % 8 == 0 && t.stride(1) % 8 == 0 && t.stride(2) % 8 == 0 &&
             aligned(t.raw(), 16);
    };
    Tensor q = rows_ok(q_in) ? q_in : dense(q_in, dev), k = rows_ok(k_in) ? k_in : dense(k_in, dev);
    Tensor v = rows_ok(v_in) ? v_in : dense(v_in, dev);
    // The result is stored [B, Nq, H, D] (what the module's transpose(1, 2).reshape reads) and returned as the
    // [B, H, Nq, D] view, as the CPU attention does.
    Tensor out = empty({B, Nq, H, D}, dev, ydt).permute({0, 2, 1, 3});
    auto s3 = [](const Tensor& t) { return Strides3{t.stride(0), t.stride(1), t.stride(2)}; };
    const int Hi = static_cast<int>(H), Nqi = static_cast<int>(Nq), Nki = static_cast<int>(Nk);
#define TABULA_FLASH(T, DD)                                                                                          \
  launch_flash<T, DD>(static_cast<T*>(out.raw()), s3(out), static_cast<const T*>(q.raw()), s3(q),                    \
                      static_cast<const T*>(k.raw()), s3(k), static_cast<const T*>(v.raw()), s3(v), B, Hi, Nqi, Nki, \
                      scale, dev)
    if (ydt == DType::bf16) {
      if (D == 64) TABULA_FLASH(__nv_bfloat16, 64);
      else if (D == 80) TABULA_FLASH(__nv_bfloat16, 80);
      else if (D == 96) TABULA_FLASH(__nv_bfloat16, 96);
      else TABULA_FLASH(__nv_bfloat16, 128);
    } else {
      if (D == 64) TABULA_FLASH(__half, 64);
      else if (D == 80) TABULA_FLASH(__half, 80);
      else if (D == 96) TABULA_FLASH(__half, 96);
      else TABULA_FLASH(__half, 128);
    }
#undef TABULA_FLASH
    LAUNCH_CHECK();
    return out;
  }
  if (half && ydt != DType::f32 && !attn_probs) {
    const DType opd = operand_dtype();
    Tensor q = dense_as(q_in, dev, opd), k = dense_as(k_in, dev, opd), v = dense_as(v_in, dev, opd);
    Tensor out = empty({B, H, Nq, Dv}, dev, ydt);
    if (rows == 0) return out;
    const int64_t per = Nq * Nk;
    const int64_t chunk = std::max<int64_t>(
        1, std::min<int64_t>(BH, static_cast<int64_t>(kAttnScoresBudget / (static_cast<size_t>(per) * 6))));
    Tensor S = empty({chunk * per}, dev), P = empty({chunk * per}, dev, opd);
    const unsigned threads = Nk >= 256 ? 256 : 128;
    for (int64_t c0 = 0; c0 < BH; c0 += chunk) {
      const int64_t cnt = std::min(chunk, BH - c0);
      // column-major S^T[Nk, Nq] = K[Nk, D] . Q^T[D, Nq] per (batch, head)
      lt_matmul(dev, true, at_elem(k, c0 * Nk * D), D, Nk * D, at_elem(q, c0 * Nq * D), D, Nq * D, S.raw(), DType::f32,
                Nk, Nq, D, cnt, nullptr, g_precision);
      if (Nk <= kWarpRowMax)
        launch_warp_rows<SoftmaxWarp>(cnt * Nq, static_cast<int>(Nk), dev, P.raw(), et(P),
                                      static_cast<const float*>(S.raw()), cnt * Nq, static_cast<int>(Nk), scale);
      else
        scaled_softmax_kernel<<<static_cast<unsigned>(cnt * Nq), threads, 0, stream(dev)>>>(P.raw(), et(P), fptr(S), Nk,
                                                                                            scale);
      LAUNCH_CHECK();
      // column-major O^T[Dv, Nq] = V^T[Dv, Nk] . P^T[Nk, Nq]
      lt_matmul(dev, false, at_elem(v, c0 * Nk * Dv), Dv, Nk * Dv, P.raw(), Nk, Nq * Nk, at_elem(out, c0 * Nq * Dv),
                ydt, Dv, Nq, Nk, cnt, nullptr, g_precision);
    }
    return out;
  }

  // f32 activations (and any probabilities request): the inputs in f32, only q, k, v rounded to the precision.
  Tensor q = dense_as(q_in, dev, DType::f32), k = dense_as(k_in, dev, DType::f32), v = dense_as(v_in, dev, DType::f32);
  Tensor out = empty({B, H, Nq, Dv}, dev);
  auto result = [&](Tensor o) { return ydt == DType::f32 ? o : dense_as(o, dev, ydt); };
  if (rows == 0) return result(out);
  // The fast path: two cuBLASLt batched GEMMs around a row softmax, S = Q K^T (q, k rounded to the precision,
  // fp32 accumulation), P = softmax(S * scale) in fp32 (it is also the attention-probabilities tap), O = P V in
  // full fp32 with v rounded to the precision -- so only q, k, v are rounded, exactly as the reference is given
  // them, and tf32 leaves attention in fp32. It materialises S (B*H*Nq*Nk floats); past kAttnScoresBudget the
  // streaming kernels below take over.
  const Precision qk_p = half ? g_precision : Precision::fp32;
  if (static_cast<size_t>(BH * Nq * Nk) * sizeof(float) <= kAttnScoresBudget) {
    Tensor probs = empty({B, H, Nq, Nk}, dev);
    Tensor ql = lowered(q, dev, qk_p), kl = lowered(k, dev, qk_p);
    lt_matmul(dev, true, kl.raw(), D, Nk * D, ql.raw(), D, Nq * D, probs.raw(), DType::f32, Nk, Nq, D, BH, nullptr,
              qk_p);
    const unsigned threads = Nk >= 256 ? 256 : 128;
    scaled_softmax_kernel<<<static_cast<unsigned>(BH * Nq), threads, 0, stream(dev)>>>(probs.raw(), ET::f32,
                                                                                       fptr(probs), Nk, scale);
    LAUNCH_CHECK();
    Tensor vr = v;
    if (qk_p != Precision::fp32) {
      vr = empty(v.shape(), dev);
      round_kernel<<<blocks_for(v.numel()), 256, 0, stream(dev)>>>(fptr_mut(vr), fptr(v), v.numel(), qk_p);
      LAUNCH_CHECK();
    }
    lt_matmul(dev, false, vr.raw(), Dv, Nk * Dv, probs.raw(), Nk, Nq * Nk, out.raw(), DType::f32, Dv, Nq, Nk, BH,
              nullptr, Precision::fp32);
    if (attn_probs) *attn_probs = probs;
    return result(out);
  }
  // Too long for the scores in memory: fp32 or a probabilities request take the exact kernel (one row of scores
  // in shared memory), the rest the flash-style streaming kernel.
  if (attn_probs || g_precision == Precision::fp32) {
    Tensor probs = attn_probs ? empty({B, H, Nq, Nk}, dev) : Tensor();
    // The row of Nk scores, plus 16 bytes: compute-sanitizer saw the compiler's vectorised reads of the row's
    // tail (LDS of 3 floats at the last element) step past an allocation of exactly Nk floats.
    const size_t shm = (static_cast<size_t>(Nk) + 4) * sizeof(float);
    if (shm > 200 * 1024)
      op_error(op, "exact attention keeps a row of scores in shared memory: Nk=" + std::to_string(Nk) + " is too long");
    if (shm > 48 * 1024)
      TABULA_CUDA_CHECK(cudaFuncSetAttribute(attention_exact_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(shm)));
    attention_exact_kernel<<<static_cast<unsigned>(rows), 128, shm, stream(dev)>>>(
        fptr_mut(out), probs.defined() ? fptr_mut(probs) : nullptr, fptr(q), fptr(k), fptr(v), Nq, Nk,
        static_cast<int>(D), static_cast<int>(Dv), scale, g_precision);
    LAUNCH_CHECK();
    if (attn_probs) *attn_probs = probs;
    return result(out);
  }
  const int64_t blocks = B * H * ((Nq + kFlashRows - 1) / kFlashRows);
  if (blocks > 0x7fffffff) op_error(op, "too many query rows for one launch: " + q_in.str());
  attention_flash_kernel<<<static_cast<unsigned>(blocks), kFlashRows * 32, 0, stream(dev)>>>(
      fptr_mut(out), fptr(q), fptr(k), fptr(v), Nq, Nk, static_cast<int>(D), static_cast<int>(Dv), scale, g_precision);
  LAUNCH_CHECK();
  return result(out);
}

Tensor CudaBackend::biased_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const Tensor& bias_in,
                                     const Tensor& mask_in, std::optional<double> scale_opt, Tensor* attn_probs) {
  const OpTimer timer("biased_attention", q_in);
  const char* op = "cuda::biased_attention";
  const int dev = common_device(op, {&q_in, &k_in, &v_in, &bias_in, &mask_in});  // (undefined ones are skipped)
  const auto [sh, nW] = detail::biased_attention_shapes(op, q_in, k_in, v_in, bias_in, mask_in);
  const auto [B, H, N, Nk, D, Dv] = sh;
  if (N == 0) op_error(op, "no keys");
  const float scale = static_cast<float>(scale_opt ? *scale_opt : 1.0 / std::sqrt(static_cast<double>(D)));
  const DType ydt = result_dtype({&q_in, &k_in, &v_in});
  const bool half = g_precision == Precision::bf16 || g_precision == Precision::fp16;
  // f32 throughout; in the 16-bit precisions q, k, v are rounded to the storage type on load (as the reference is
  // given them), the bias, mask, scores and sums stay fp32.
  Tensor q = dense_as(q_in, dev, DType::f32), k = dense_as(k_in, dev, DType::f32), v = dense_as(v_in, dev, DType::f32);
  Tensor bias = bias_in.defined() ? dense_as(bias_in, dev, DType::f32) : Tensor();
  Tensor mask = mask_in.defined() ? dense_as(mask_in, dev, DType::f32) : Tensor();
  Tensor out = empty({B, H, N, Dv}, dev);
  Tensor probs = attn_probs ? empty({B, H, N, N}, dev) : Tensor();
  const int64_t rows = B * H * N;
  if (rows > 0) {
    if (rows > 0x7fffffff) op_error(op, "too many query rows for one launch: " + q_in.str());
    const size_t shm = (static_cast<size_t>(N) + 4) * sizeof(float);  // + 16 bytes: see attention_exact_kernel
    if (shm > 48 * 1024) op_error(op, "a window of " + std::to_string(N) + " tokens is too long for cuda");
    biased_attention_kernel<<<static_cast<unsigned>(rows), N >= 256 ? 256 : 64, shm, stream(dev)>>>(
        fptr_mut(out), probs.defined() ? fptr_mut(probs) : nullptr, fptr(q), fptr(k), fptr(v),
        bias.defined() ? fptr(bias) : nullptr, mask.defined() ? fptr(mask) : nullptr, H, N, nW, static_cast<int>(D),
        static_cast<int>(Dv), scale, half ? g_precision : Precision::fp32);
    LAUNCH_CHECK();
  }
  if (attn_probs) *attn_probs = probs;
  return ydt == DType::f32 ? out : dense_as(out, dev, ydt);
}
}  // namespace tabula::cuda
