// F.conv2d on cuDNN: NCHW fp32 (fused bias + residual + ReLU where cuDNN allows), NHWC tensor-core convolutions
// for 16-bit activations; depthwise convolutions by a direct channels-last kernel.
#include "engine/cuda/common.cuh"
#include <cudnn.h>

#include <algorithm>
#include <map>
#include <mutex>

namespace tabula::cuda {
namespace {

#define TABULA_CUDNN_CHECK(call) check_cudnn((call), #call, __FILE__, __LINE__)
void check_cudnn(cudnnStatus_t s, const char* what, const char* file, int line) {
  if (s == CUDNN_STATUS_SUCCESS) return;
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + what + ": " +
                           cudnnGetErrorString(s));
}

std::mutex g_dnn_mu;
// ---- cuDNN ----
struct Dnn {
  cudnnHandle_t h = nullptr;
  std::map<std::string, std::pair<cudnnConvolutionFwdAlgo_t, size_t>> algos;
};
Dnn& dnn(int dev) {
  static std::map<int, Dnn> handles;
  std::lock_guard<std::mutex> lock(g_dnn_mu);
  Dnn& d = handles[dev];
  if (!d.h) TABULA_CUDNN_CHECK(cudnnCreate(&d.h));
  return d;
}
// The cuDNN descriptors of one forward convolution (released with the object) and the algorithm for it: cuDNN's
// heuristics only (no timing, so the choice is the same every run), deterministic algorithms only, cached per
// shape and precision. gemm_first (fp32 fidelity): the first usable implicit-GEMM/GEMM algorithm -- a plain dot
// product per output, like the reference -- and only when cuDNN offers none, any deterministic one (FFT/Winograd
// round differently); otherwise cuDNN's own order.
struct ConvPlan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t c = nullptr;
  cudnnConvolutionFwdAlgo_t algo{};
  size_t workspace = 0;

  ConvPlan(Dnn& dn, const char* op, cudnnTensorFormat_t fmt, cudnnDataType_t dt, cudnnMathType_t math,
           const std::string& key_prefix, const Shape& xs, const Shape& ws, int64_t Ho, int64_t Wo,
           const Conv2dOptions& o, bool gemm_first) {
    try {
      auto I = [](int64_t v) { return static_cast<int>(v); };
      TABULA_CUDNN_CHECK(cudnnCreateTensorDescriptor(&x));
      TABULA_CUDNN_CHECK(cudnnCreateTensorDescriptor(&y));
      TABULA_CUDNN_CHECK(cudnnCreateFilterDescriptor(&w));
      TABULA_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&c));
      TABULA_CUDNN_CHECK(cudnnSetTensor4dDescriptor(x, fmt, dt, I(xs[0]), I(xs[1]), I(xs[2]), I(xs[3])));
      TABULA_CUDNN_CHECK(cudnnSetTensor4dDescriptor(y, fmt, dt, I(xs[0]), I(ws[0]), I(Ho), I(Wo)));
      TABULA_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w, dt, fmt, I(ws[0]), I(ws[1]), I(ws[2]), I(ws[3])));
      TABULA_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(c, I(o.padding[0]), I(o.padding[1]), I(o.stride[0]),
                                                         I(o.stride[1]), I(o.dilation[0]), I(o.dilation[1]),
                                                         CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
      TABULA_CUDNN_CHECK(cudnnSetConvolutionGroupCount(c, I(o.groups)));
      TABULA_CUDNN_CHECK(cudnnSetConvolutionMathType(c, math));
      const std::string key = key_prefix + ":" + shape_str(xs) + shape_str(ws) + std::to_string(o.stride[0]) + "," +
                              std::to_string(o.stride[1]) + "," + std::to_string(o.padding[0]) + "," +
                              std::to_string(o.padding[1]) + "," + std::to_string(o.dilation[0]) + "," +
                              std::to_string(o.dilation[1]) + "," + std::to_string(o.groups);
      auto it = dn.algos.find(key);
      if (it != dn.algos.end()) {
        std::tie(algo, workspace) = it->second;
        return;
      }
      cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
      int found = 0;
      TABULA_CUDNN_CHECK(
          cudnnGetConvolutionForwardAlgorithm_v7(dn.h, x, w, c, y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &found, perf));
      auto usable = [&](const cudnnConvolutionFwdAlgoPerf_t& a) {
        return a.status == CUDNN_STATUS_SUCCESS && a.determinism == CUDNN_DETERMINISTIC &&
               a.memory <= (size_t{1} << 30);
      };
      auto gemm_like = [](cudnnConvolutionFwdAlgo_t a) {
        return a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM || a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM ||
               a == CUDNN_CONVOLUTION_FWD_ALGO_GEMM;
      };
      bool ok = false;
      for (int i = 0; i < found && !ok && gemm_first; ++i)
        if (usable(perf[i]) && gemm_like(perf[i].algo)) algo = perf[i].algo, workspace = perf[i].memory, ok = true;
      for (int i = 0; i < found && !ok; ++i)
        if (usable(perf[i])) algo = perf[i].algo, workspace = perf[i].memory, ok = true;
      if (!ok)
        op_error(op, "cuDNN offers no deterministic algorithm for " + key_prefix + " " + shape_str(xs) + " * " +
                         shape_str(ws));
      dn.algos.emplace(key, std::make_pair(algo, workspace));
    } catch (...) {
      release();
      throw;
    }
  }
  ~ConvPlan() { release(); }
  ConvPlan(const ConvPlan&) = delete;
  ConvPlan& operator=(const ConvPlan&) = delete;

 private:
  void release() {
    if (x) cudnnDestroyTensorDescriptor(x), x = nullptr;
    if (y) cudnnDestroyTensorDescriptor(y), y = nullptr;
    if (w) cudnnDestroyFilterDescriptor(w), w = nullptr;
    if (c) cudnnDestroyConvolutionDescriptor(c), c = nullptr;
  }
};

// Depthwise convolution (groups = C_in = C_out, ConvNeXt's conv_dw) on channels-last maps: one thread per output
// value, consecutive threads on consecutive channels (coalesced loads of x and y); the window summed in fp32 in
// (i, j) order, then bias, residual and activation, stored in the activations' type. cuDNN's grouped NCHW path
// would need the channels-last activations transposed both ways around every block.
struct DwGeom {
  int64_t N, C, H, W, kh, kw, Ho, Wo, sh, sw, ph, pw, dh, dw;
};
__global__ void depthwise_kernel(const void* x, ET xt, const float* w, const float* bias, const void* res, ET rt,
                                 void* y, ET yt, DwGeom g, Activation act) {
  const int64_t n_out = g.N * g.Ho * g.Wo * g.C;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < n_out;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = idx % g.C, pix = idx / g.C;
    const int64_t ow = pix % g.Wo, oh = (pix / g.Wo) % g.Ho, n = pix / (g.Wo * g.Ho);
    const float* wc = w + c * g.kh * g.kw;
    float acc = 0.f;
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t ih = oh * g.sh - g.ph + i * g.dh;
      if (ih < 0 || ih >= g.H) continue;
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t iw = ow * g.sw - g.pw + j * g.dw;
        if (iw < 0 || iw >= g.W) continue;
        acc = fmaf(ld(x, ((n * g.H + ih) * g.W + iw) * g.C + c, xt), wc[i * g.kw + j], acc);
      }
    }
    if (bias) acc += bias[c];
    if (res) acc += ld(res, idx, rt);
    st(y, idx, act_apply(acc, act), yt);
  }
}

Tensor depthwise_conv2d(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, const Conv2dOptions& o,
                        Activation act, const Tensor& residual, int dev, int64_t Ho, int64_t Wo) {
  const Tensor x = dense_channels_last(x_in, dev, x_in.dtype());
  const Tensor w = dense_as(w_in, dev, DType::f32);  // [C, 1, kh, kw]: any stored layout is this order
  const Tensor b = b_in.defined() ? dense_as(b_in, dev, DType::f32) : Tensor();
  const Tensor r = residual.defined() ? dense_channels_last(residual, dev, residual.dtype()) : Tensor();
  const DwGeom g{x.size(0), x.size(1), x.size(2), x.size(3), w.size(2), w.size(3), Ho, Wo,
                 o.stride[0], o.stride[1], o.padding[0], o.padding[1], o.dilation[0], o.dilation[1]};
  Tensor y = empty_channels_last(g.N, g.C, Ho, Wo, dev, x.dtype());
  const int64_t n = g.N * g.C * Ho * Wo;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(blocks_for(n), int64_t{1} << 20));
  depthwise_kernel<<<blocks, 256, 0, stream(dev)>>>(x.raw(), et(x), fptr(w), b.defined() ? fptr(b) : nullptr,
                                                     r.defined() ? r.raw() : nullptr, r.defined() ? et(r) : ET::f32,
                                                     y.raw(), et(y), g, act);
  LAUNCH_CHECK();
  return y;
}

// 16-bit activations: NHWC convolution on the tensor cores. x channels-last in its 16-bit type, the weight
// rearranged to [Cout, kh, kw, Cin/g] and rounded per call (f32 parameters stay f32 in the model), fp32
// accumulation; bias, residual and activation in fp32 in one pass over the 16-bit result.
Tensor conv2d_nhwc(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, const Conv2dOptions& o, Activation act,
                   const Tensor& residual, int dev, int64_t Ho, int64_t Wo) {
  const char* op = "cuda::conv2d";
  const DType dt = x_in.dtype();
  const int64_t N = x_in.size(0), C = x_in.size(1), H = x_in.size(2), W = x_in.size(3);
  const int64_t Cout = w_in.size(0), Cg = w_in.size(1), kh = w_in.size(2), kw = w_in.size(3), g = o.groups;
  // Windows that tile the image (ViT's patch embedding: kernel = stride, no padding): the conv is one GEMM over
  // the patches, [N*Ho*Wo, C*kh*kw] x [C*kh*kw, Cout], whose row-major result is the channels-last output.
  if (kh * kw > 1 && o.stride[0] == kh && o.stride[1] == kw && o.padding[0] == 0 && o.padding[1] == 0 &&
      o.dilation[0] == 1 && o.dilation[1] == 1 && g == 1 && H == Ho * kh && W == Wo * kw) {
    const Precision p16 = dt == DType::bf16 ? Precision::bf16 : Precision::fp16;
    Tensor xc = x_in.is_contiguous() ? x_in : contiguous(x_in);
    Tensor patches = empty({N, Ho, Wo, C, kh, kw}, dev, dt);  // im2col of non-overlapping windows: a permutation
    copy_into(op, patches, xc.view({N, C, Ho, kh, Wo, kw}).permute({0, 2, 4, 1, 3, 5}), dev);
    Tensor wk = dense_as(w_in, dev, dt);  // [Cout, C*kh*kw] in (c, i, j) order, as the patches
    Tensor y = empty_channels_last(N, Cout, Ho, Wo, dev, dt);
    const int64_t K = C * kh * kw, M = N * Ho * Wo;
    const bool bias_in_gemm = b_in.defined() && !residual.defined() && act == Activation::none;
    Tensor b16 = bias_in_gemm ? dense_as(b_in, dev, dt) : Tensor();
    lt_matmul(dev, true, wk.raw(), K, 0, patches.raw(), K, 0, y.raw(), dt, Cout, M, K, 1,
              bias_in_gemm ? b16.raw() : nullptr, p16);
    if (!bias_in_gemm && (b_in.defined() || residual.defined() || act != Activation::none)) {
      Tensor b = b_in.defined() ? dense_as(b_in, dev, DType::f32) : Tensor();
      Tensor r = residual.defined() ? dense_channels_last(residual, dev, residual.dtype()) : Tensor();
      epilogue(y, dev, b.defined() ? fptr(b) : nullptr, 1, Cout, r, act);
    }
    return y;
  }
  Tensor x = dense_channels_last(x_in, dev, dt);
  // The weight as [Cout, kh, kw, Cg] storage: as given when it was converted at load (models/device.h
  // upload_conv_weight), else rearranged and rounded here.
  Tensor w = w_in;
  if (!(w_in.dtype() == dt && is_channels_last(w_in) && aligned(w_in.raw()))) {
    w = empty({Cout, kh, kw, Cg}, dev, dt).permute({0, 3, 1, 2});  // [Cout, Cg, kh, kw] view of the KRSC storage
    copy_into(op, w, w_in, dev);
  }
  Tensor y = empty_channels_last(N, Cout, Ho, Wo, dev, dt);
  Dnn& dn = dnn(dev);
  TABULA_CUDNN_CHECK(cudnnSetStream(dn.h, stream(dev)));
  const ConvPlan plan(dn, op, CUDNN_TENSOR_NHWC, dt == DType::bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_HALF,
                      CUDNN_TENSOR_OP_MATH, "nhwc" + std::string(dtype_name(dt)), x.shape(), w_in.shape(), Ho, Wo, o,
                      /*gemm_first=*/false);
  Tensor ws = plan.workspace ? empty({static_cast<int64_t>(plan.workspace)}, dev, DType::u8) : Tensor();
  const float alpha = 1.f, beta = 0.f;
  TABULA_CUDNN_CHECK(cudnnConvolutionForward(dn.h, &alpha, plan.x, x.raw(), plan.w, w.raw(), plan.c, plan.algo,
                                             ws.defined() ? ws.raw() : nullptr, plan.workspace, &beta, plan.y,
                                             y.raw()));
  if (b_in.defined() || residual.defined() || act != Activation::none) {
    Tensor b = b_in.defined() ? dense_as(b_in, dev, DType::f32) : Tensor();
    Tensor r = residual.defined() ? dense_channels_last(residual, dev, residual.dtype()) : Tensor();
    epilogue(y, dev, b.defined() ? fptr(b) : nullptr, 1, Cout, r, act);
  }
  return y;
}
}  // namespace

Tensor CudaBackend::conv2d(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, const Conv2dOptions& o,
                           Activation act, const Tensor& residual) {
  const OpTimer timer("conv2d", x_in, w_in);
  const char* op = "cuda::conv2d";
  const int dev = common_device(op, {&x_in, &w_in, &b_in, &residual});
  if (x_in.dim() != 4 || w_in.dim() != 4)
    op_error(op, "expects x [N, C, H, W] and weight [Cout, Cin/g, kh, kw], got " + x_in.str() + ", " + w_in.str());
  const int64_t N = x_in.size(0), C = x_in.size(1), H = x_in.size(2), W = x_in.size(3);
  const int64_t Cout = w_in.size(0), kh = w_in.size(2), kw = w_in.size(3), g = o.groups;
  if (g < 1 || C % g || Cout % g || w_in.size(1) != C / g)
    op_error(op, "weight " + w_in.str() + " does not match input " + x_in.str() + " with groups=" + std::to_string(g));
  if (b_in.defined() && b_in.numel() != Cout)
    op_error(op, "bias must have " + std::to_string(Cout) + " elements, got " + b_in.str());
  for (int a = 0; a < 2; ++a)
    if (o.stride[a] < 1 || o.dilation[a] < 1 || o.padding[a] < 0)
      op_error(op, "stride and dilation must be >= 1 and padding >= 0, got stride " + std::to_string(o.stride[a]) +
                       ", dilation " + std::to_string(o.dilation[a]) + ", padding " + std::to_string(o.padding[a]));
  const int64_t Ho = pooling_output_size(H, kh, o.padding[0], o.stride[0], o.dilation[0], false);
  const int64_t Wo = pooling_output_size(W, kw, o.padding[1], o.stride[1], o.dilation[1], false);
  if (Ho <= 0 || Wo <= 0) op_error(op, "empty output for input " + x_in.str() + " and kernel " + w_in.str());
  if (residual.defined() && residual.shape() != Shape{N, Cout, Ho, Wo})
    op_error(op, "residual must be " + shape_str({N, Cout, Ho, Wo}) + ", got " + residual.str());
  if (N * Cout * Ho * Wo == 0) return empty({N, Cout, Ho, Wo}, dev, x_in.dtype());
  if (g > 1 && g == C && Cout == C) return depthwise_conv2d(x_in, w_in, b_in, o, act, residual, dev, Ho, Wo);
  if (x_in.dtype() != DType::f32) return conv2d_nhwc(x_in, w_in, b_in, o, act, residual, dev, Ho, Wo);
  Tensor x = dense(x_in, dev), w = dense_as(w_in, dev, DType::f32), y = empty({N, Cout, Ho, Wo}, dev);
  Dnn& dn = dnn(dev);
  TABULA_CUDNN_CHECK(cudnnSetStream(dn.h, stream(dev)));
  // fp32: plain FMA math (no TF32); every other precision lets cuDNN use tensor cores on the f32 data.
  const ConvPlan plan(dn, op, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT,
                      g_precision == Precision::fp32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH,
                      std::to_string(static_cast<int>(g_precision)), x.shape(), w.shape(), Ho, Wo, o,
                      /*gemm_first=*/true);
  Tensor ws = plan.workspace ? empty({static_cast<int64_t>(plan.workspace)}, dev, DType::u8) : Tensor();
  const float alpha = 1.f, beta = 0.f;
  // cuDNN's fused form y = act(conv(x) + alpha2 * z + bias) is exactly act(conv + bias + residual) for ReLU or
  // none; cuDNN runs it with the implicit-precomputed-GEMM algorithm (the only one allowed for identity).
  const bool fused = (act == Activation::none || act == Activation::relu) && (b_in.defined() || residual.defined()) &&
                     plan.algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM;
  if (fused) {
    Tensor b;
    if (b_in.defined()) {
      b = dense_as(b_in, dev, DType::f32);
    } else {
      b = empty({Cout}, dev);
      TABULA_CUDA_CHECK(cudaMemsetAsync(b.raw(), 0, b.nbytes(), stream(dev)));
    }
    Tensor r = residual.defined() ? dense_as(residual, dev, DType::f32) : Tensor();
    cudnnTensorDescriptor_t bd = nullptr;
    cudnnActivationDescriptor_t ad = nullptr;
    auto cleanup = [&] {
      if (bd) cudnnDestroyTensorDescriptor(bd);
      if (ad) cudnnDestroyActivationDescriptor(ad);
    };
    try {
      TABULA_CUDNN_CHECK(cudnnCreateTensorDescriptor(&bd));
      TABULA_CUDNN_CHECK(
          cudnnSetTensor4dDescriptor(bd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, static_cast<int>(Cout), 1, 1));
      TABULA_CUDNN_CHECK(cudnnCreateActivationDescriptor(&ad));
      TABULA_CUDNN_CHECK(cudnnSetActivationDescriptor(
          ad, act == Activation::relu ? CUDNN_ACTIVATION_RELU : CUDNN_ACTIVATION_IDENTITY, CUDNN_PROPAGATE_NAN, 0.0));
      const float alpha2 = r.defined() ? 1.f : 0.f;
      // Without a residual z is y itself with alpha2 = 0; cuDNN does not promise to skip reading z then, and
      // 0 * NaN (an uninitialised or poisoned y) would be NaN, so y starts as zeros.
      if (!r.defined()) TABULA_CUDA_CHECK(cudaMemsetAsync(y.raw(), 0, y.nbytes(), stream(dev)));
      TABULA_CUDNN_CHECK(cudnnConvolutionBiasActivationForward(
          dn.h, &alpha, plan.x, x.raw(), plan.w, w.raw(), plan.c, plan.algo, ws.defined() ? ws.raw() : nullptr,
          plan.workspace, &alpha2, plan.y, r.defined() ? r.raw() : y.raw(), bd, b.raw(), ad, plan.y, y.raw()));
    } catch (...) {
      cleanup();
      throw;
    }
    cleanup();
  } else {
    TABULA_CUDNN_CHECK(cudnnConvolutionForward(dn.h, &alpha, plan.x, x.raw(), plan.w, w.raw(), plan.c, plan.algo,
                                               ws.defined() ? ws.raw() : nullptr, plan.workspace, &beta, plan.y,
                                               y.raw()));
  }
  if (!fused && (b_in.defined() || residual.defined() || act != Activation::none)) {
    Tensor b = b_in.defined() ? dense_as(b_in, dev, DType::f32) : Tensor();
    Tensor r = residual.defined() ? dense_as(residual, dev, DType::f32) : Tensor();
    epilogue(y, dev, b.defined() ? fptr(b) : nullptr, Ho * Wo, Cout, r, act);
  }
  return y;
}
}  // namespace tabula::cuda
