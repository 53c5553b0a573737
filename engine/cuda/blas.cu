// Matrix products on cuBLASLt: linear (bias, residual and activation fused), matmul, convert_weight.
#include "engine/cuda/common.cuh"
#include <cublasLt.h>

#include <map>
#include <mutex>

namespace tabula::cuda {
namespace {

#define TABULA_CUBLAS_CHECK(call) check_cublas((call), #call, __FILE__, __LINE__)
void check_cublas(cublasStatus_t s, const char* what, const char* file, int line) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + what + ": cuBLAS status " +
                           std::to_string(static_cast<int>(s)));
}
// ---- cuBLASLt ----
struct Blas {
  cublasLtHandle_t lt = nullptr;
  Tensor workspace;  // 32 MiB, allocated once per device
  std::map<std::string, cublasLtMatmulAlgo_t> algos;  // heuristic choice cached per problem: same kernel every run
};
constexpr size_t kWorkspace = size_t{32} << 20;
std::mutex g_blas_mu;
Blas& blas(int dev) {
  static std::map<int, Blas> handles;
  std::lock_guard<std::mutex> lock(g_blas_mu);
  Blas& b = handles[dev];
  if (!b.lt) {
    TABULA_CUBLAS_CHECK(cublasLtCreate(&b.lt));
    b.workspace = empty({static_cast<int64_t>(kWorkspace)}, dev, DType::u8);
  }
  return b;
}

cudaDataType_t cuda_type(DType d) {
  return d == DType::bf16 ? CUDA_R_16BF : d == DType::f16 ? CUDA_R_16F : CUDA_R_32F;
}
// The largest power of two (<= 256) dividing the address: cuBLASLt chooses kernels for the alignment it is told.
uint32_t alignment_of(const void* p) {
  uint32_t a = 256;
  while (a > 1 && reinterpret_cast<uintptr_t>(p) % a) a >>= 1;
  return a;
}

}  // namespace

// Column-major D[m, n] = op(A)[m, k] @ B[k, n] (+ bias[m]) for `batch` strided problems. A/B are f32 or the
// precision's 16-bit copies (`p` is the precision they are stored in and the math runs in); D is f32 or 16-bit
// (`d_type`; a bias has D's type). C (optional, laid out and typed as D) is added: D = A B + C + bias (beta = 1).
// Row-major callers swap operands (see linear/matmul).
void lt_matmul(int dev, bool trans_a, const void* A, int64_t lda, int64_t stride_a, const void* B, int64_t ldb,
               int64_t stride_b, void* D, DType d_type, int64_t m, int64_t n, int64_t k, int64_t batch,
               const void* bias, Precision p, const void* C) {
  Blas& bl = blas(dev);
  const cudaDataType_t in_type = p == Precision::bf16 ? CUDA_R_16BF : p == Precision::fp16 ? CUDA_R_16F : CUDA_R_32F;
  const cudaDataType_t d_cuda = cuda_type(d_type);
  const cublasComputeType_t compute = p == Precision::tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                             : CUBLAS_COMPUTE_32F;  // Lt never uses TF32 here
  cublasLtMatmulDesc_t desc;
  TABULA_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, compute, CUDA_R_32F));
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, ld = nullptr;
  auto cleanup = [&] {
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (ld) cublasLtMatrixLayoutDestroy(ld);
    cublasLtMatmulDescDestroy(desc);
  };
  try {
    const cublasOperation_t ta = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = CUBLAS_OP_N;
    TABULA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    TABULA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    if (bias) {
      const cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;  // GELU stays a separate erf kernel: Lt's is tanh-GELU
      TABULA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof(ep)));
      TABULA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
      TABULA_CUBLAS_CHECK(
          cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &d_cuda, sizeof(d_cuda)));
    }
    TABULA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&la, in_type, trans_a ? k : m, trans_a ? m : k, lda));
    TABULA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb, in_type, k, n, ldb));
    TABULA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&ld, d_cuda, m, n, m));
    if (batch > 1) {
      const int32_t bc = static_cast<int32_t>(batch);
      const int64_t sd = m * n;
      for (auto [l, s] : {std::pair{la, stride_a}, std::pair{lb, stride_b}, std::pair{ld, sd}}) {
        TABULA_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof(bc)));
        TABULA_CUBLAS_CHECK(
            cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &s, sizeof(s)));
      }
    }
    const uint32_t al_a = alignment_of(A), al_b = alignment_of(B), al_d = alignment_of(D);
    const uint32_t al_c = C ? std::min(alignment_of(C), al_d) : al_d;
    const std::string key = std::to_string(static_cast<int>(p)) + (trans_a ? "T" : "N") + std::to_string(m) + "," +
                            std::to_string(n) + "," + std::to_string(k) + "," + std::to_string(lda) + "," +
                            std::to_string(ldb) + "," + std::to_string(batch) + "," + std::to_string(stride_a) + "," +
                            std::to_string(stride_b) + (bias ? "b" : "") + (C ? "c" : "") +
                            std::string(dtype_name(d_type)) + "@" + std::to_string(al_a) + "," + std::to_string(al_b) +
                            "," + std::to_string(al_c) + "," + std::to_string(al_d);
    cublasLtMatmulAlgo_t algo;
    {
      std::lock_guard<std::mutex> lock(g_blas_mu);
      auto it = bl.algos.find(key);
      if (it != bl.algos.end()) {
        algo = it->second;
      } else {
        cublasLtMatmulPreference_t pref;
        TABULA_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
        const size_t ws = kWorkspace;
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
        // Offsets into a batch (attention chunks) are not 256-byte aligned: say what the operands really are.
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof(al_a));
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof(al_b));
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof(al_c));
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d, sizeof(al_d));
        cublasLtMatmulHeuristicResult_t res{};
        int found = 0;
        const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(bl.lt, desc, la, lb, ld, ld, pref, 1, &res, &found);
        cublasLtMatmulPreferenceDestroy(pref);
        TABULA_CUBLAS_CHECK(st);
        if (found == 0)
          throw std::runtime_error("cuda::matmul: cuBLASLt has no algorithm for m=" + std::to_string(m) +
                                   " n=" + std::to_string(n) + " k=" + std::to_string(k) + " in " +
                                   std::string(precision_name(p)) + " with a " + std::string(dtype_name(d_type)) +
                                   " result");
        algo = res.algo;
        bl.algos.emplace(key, algo);
      }
    }
    const float alpha = 1.f, beta = C ? 1.f : 0.f;
    TABULA_CUBLAS_CHECK(cublasLtMatmul(bl.lt, desc, &alpha, A, la, B, lb, &beta, C ? C : D, ld, D, ld, &algo,
                                       bl.workspace.raw(), kWorkspace, stream(dev)));
  } catch (...) {
    cleanup();
    throw;
  }
  cleanup();
}

namespace {
// A linear weight as the GEMM consumes it: f32 weights are rounded here (per call), weights from convert_weight
// are used as they are after checking they were converted for the current precision.
Tensor weight_operand(std::string_view op, const Tensor& w, int dev) {
  if (!w.defined()) op_error(op, "weight is undefined");
  const int d = device_of(op, w);
  if (d != dev) op_error(op, "weight on cuda:" + std::to_string(d) + ", input on cuda:" + std::to_string(dev));
  if (w.dtype() == DType::f32) return lowered(w, dev, g_precision);
  if (w.dtype() != operand_dtype())
    op_error(op, "weight " + w.str() +
                     " was converted for another precision: " + std::string(precision_name(g_precision)) + " needs " +
                     std::string(dtype_name(operand_dtype())) + " (or f32)");
  if (!w.is_contiguous() || !aligned(w.raw()))
    op_error(op, "a converted weight must be the contiguous tensor convert_weight returned, got a view " + w.str());
  return w;
}

}  // namespace

Tensor convert_weight(const Tensor& w) {
  const int dev = common_device("cuda::convert_weight", {&w});
  return lowered(w, dev, g_precision);
}

// The result has the input's storage type: f32 activations give f32 (the GEMM rounds its operands to the
// precision), 16-bit activations give 16-bit results written by the GEMM itself, bias included.
Tensor CudaBackend::linear(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, Activation act,
                           const Tensor& residual) {
  const OpTimer timer("linear", x_in, w_in);
  const int dev = common_device("cuda::linear", {&x_in, &b_in, &residual});
  if (w_in.dim() != 2 || x_in.dim() < 1 || x_in.size(-1) != w_in.size(1))
    op_error("cuda::linear", "input " + x_in.str() + " does not match weight " + w_in.str());
  const int64_t K = w_in.size(1), N = w_in.size(0), M = K ? x_in.numel() / K : 0;
  if (b_in.defined() && b_in.numel() != N)
    op_error("cuda::linear", "bias must have " + std::to_string(N) + " elements, got " + b_in.str());
  Shape os = x_in.shape();
  os.back() = N;
  const DType ydt = x_in.dtype();
  Tensor y = empty(os, dev, ydt);
  if (M == 0 || N == 0) return y;
  if (K == 0) op_error("cuda::linear", "in_features is 0");
  Tensor x = lowered(x_in, dev, g_precision), w = weight_operand("cuda::linear", w_in, dev);
  Tensor b = b_in.defined() ? dense_as(b_in, dev, ydt) : Tensor();
  Tensor r;
  if (residual.defined()) {
    if (residual.shape() != y.shape())
      op_error("cuda::linear", "residual must be " + y.str() + ", got " + residual.str());
    r = dense_as(residual, dev, ydt);
  }
  // Row-major Y[M, N] = X[M, K] W[N, K]^T  <=>  column-major Y^T[N, M] = W^T . X^T with W stored K x N (ld K).
  lt_matmul(dev, true, w.raw(), K, 0, x.raw(), K, 0, y.raw(), ydt, N, M, K, 1, b.defined() ? b.raw() : nullptr,
            g_precision, r.defined() ? r.raw() : nullptr);
  if (act != Activation::none) apply_activation(y, y, act, dev);
  return y;
}

Tensor CudaBackend::matmul(const Tensor& a_in, const Tensor& b_in) {
  const OpTimer timer("matmul", a_in);
  const int dev = common_device("cuda::matmul", {&a_in, &b_in});
  if (a_in.dim() < 2 || b_in.dim() < 2)
    op_error("cuda::matmul", "operands must be at least 2-D, got " + a_in.str() + " and " + b_in.str());
  const int64_t M = a_in.size(-2), K = a_in.size(-1), N = b_in.size(-1);
  if (b_in.size(-2) != K) op_error("cuda::matmul", "inner dims differ: " + a_in.str() + " @ " + b_in.str());
  int64_t batch = 1;
  for (int64_t d = 0; d + 2 < a_in.dim(); ++d) batch *= a_in.size(d);
  if (b_in.dim() > 2) {
    if (b_in.dim() != a_in.dim()) op_error("cuda::matmul", "batch dims differ: " + a_in.str() + " @ " + b_in.str());
    for (int64_t d = 0; d + 2 < a_in.dim(); ++d)
      if (a_in.size(d) != b_in.size(d))
        op_error("cuda::matmul", "batch dims differ: " + a_in.str() + " @ " + b_in.str());
  }
  Shape os = a_in.shape();
  os.back() = N;
  const DType ydt = result_dtype({&a_in, &b_in});
  Tensor y = empty(os, dev, ydt);
  if (y.numel() == 0) return y;
  if (K == 0) op_error("cuda::matmul", "inner dimension is 0");
  Tensor a = lowered(a_in, dev, g_precision), b = lowered(b_in, dev, g_precision);
  // Row-major C = A B  <=>  column-major C^T[N, M] = B^T[N, K] . A^T[K, M] (B as N x K with ld N, A as K x M, ld K).
  if (b_in.dim() == 2)  // broadcast b: fold the batch into M
    lt_matmul(dev, false, b.raw(), N, 0, a.raw(), K, 0, y.raw(), ydt, N, batch * M, K, 1, nullptr, g_precision);
  else
    lt_matmul(dev, false, b.raw(), N, K * N, a.raw(), K, M * K, y.raw(), ydt, N, M, K, batch, nullptr, g_precision);
  return y;
}
}  // namespace tabula::cuda
