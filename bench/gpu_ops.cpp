// Google Benchmark cases for the CUDA backend's ops (ops:: on device tensors) at ResNet-50 / ViT-B/16 / DINOv2
// ViT-L/14 shapes, in each precision (arg: 0 fp32, 1 tf32, 2 bf16, 3 fp16), reporting TFLOP/s. Every case skips
// (with a message) on a machine without a CUDA device or a build without the backend. Batch: BENCH_BATCH (default
// 64).
//
//   ./build/tabula_bench_ops --benchmark_filter=Gpu
//
// Times are wall time around the op with the device stream synchronised before and after (manual time), so
// they include launch overhead, as a forward without graph capture pays it.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdlib>
#include <random>

#include "engine/system.h"
#include "engine/validate.h"

#if TABULA_HAVE_CUDA
#include "engine/cuda/ops.h"
#include "engine/ops.h"

using namespace tabula;

namespace {

int64_t gpu_batch() {
  const char* e = std::getenv("BENCH_BATCH");
  return e ? std::atoll(e) : 64;
}

bool gpu_ready(benchmark::State& state, int64_t precision_arg) {
  if (cuda_devices().empty()) {
    state.SkipWithError("no CUDA device");
    return false;
  }
  cuda::set_precision(static_cast<cuda::Precision>(precision_arg));
  state.SetLabel(std::string(cuda::precision_name(cuda::precision())));
  return true;
}

Tensor gpu_random(const Shape& s, std::mt19937_64& g) { return cuda::to_device(validate::random_tensor(s, g), 0); }

template <class F>
void time_op(benchmark::State& state, double flops, F&& op) {
  op();  // warm-up: allocator cache, cuBLASLt/cuDNN algorithm choice
  cuda::synchronize(0);
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    op();
    cuda::synchronize(0);
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  state.counters["TFLOP/s"] = benchmark::Counter(flops * 1e-12 * static_cast<double>(state.iterations()),
                                                 benchmark::Counter::kIsRate);
}

// Square GEMM: the matrix peak the backend reaches (compare with the device's datasheet / torch.matmul).
void BM_GpuMatmul(benchmark::State& state) {
  if (!gpu_ready(state, state.range(1))) return;
  std::mt19937_64 g(1);
  const int64_t n = state.range(0);
  Tensor a = gpu_random({n, n}, g), b = gpu_random({n, n}, g);
  time_op(state, 2.0 * n * n * n, [&] { ops::matmul(a, b); });
}
BENCHMARK(BM_GpuMatmul)->ArgsProduct({{4096, 8192}, {0, 1, 2, 3}})->UseManualTime()->Unit(benchmark::kMillisecond);

// ViT linear layers: [B*197, 768] x [768, N] (qkv 2304, mlp fc1 3072 + GELU), weights converted once.
void BM_GpuLinear(benchmark::State& state) {
  if (!gpu_ready(state, state.range(2))) return;
  std::mt19937_64 g(2);
  const int64_t M = gpu_batch() * state.range(0), K = 768, N = state.range(1);
  Tensor x = gpu_random({M, K}, g), w = cuda::convert_weight(gpu_random({N, K}, g)), b = gpu_random({N}, g);
  time_op(state, 2.0 * M * N * K, [&] { ops::linear(x, w, b, N == 3072 ? Activation::gelu : Activation::none); });
}
BENCHMARK(BM_GpuLinear)->ArgsProduct({{197}, {2304, 3072}, {0, 1, 2}})->UseManualTime()->Unit(benchmark::kMillisecond);

// ResNet-50 convs: stem 7x7/2, a 3x3 body conv at 56x56, a 1x1 expansion at 14x14 (+ bias, residual, ReLU).
void BM_GpuConv(benchmark::State& state) {
  if (!gpu_ready(state, state.range(1))) return;
  std::mt19937_64 g(3);
  struct C { int64_t cin, hw, cout, k, stride, pad; };
  const C cs[] = {{3, 224, 64, 7, 2, 3}, {64, 56, 64, 3, 1, 1}, {256, 14, 1024, 1, 1, 0}};
  const C c = cs[state.range(0)];
  const int64_t B = gpu_batch(), ho = (c.hw + 2 * c.pad - c.k) / c.stride + 1;
  Tensor x = gpu_random({B, c.cin, c.hw, c.hw}, g), w = gpu_random({c.cout, c.cin, c.k, c.k}, g),
         b = gpu_random({c.cout}, g);
  Tensor r = gpu_random({B, c.cout, ho, ho}, g);
  Conv2dOptions o{{c.stride, c.stride}, {c.pad, c.pad}, {1, 1}, 1};
  time_op(state, 2.0 * B * c.cout * ho * ho * c.cin * c.k * c.k, [&] { ops::conv2d(x, w, b, o, Activation::relu, r); });
}
BENCHMARK(BM_GpuConv)->ArgsProduct({{0, 1, 2}, {0, 1, 2}})->UseManualTime()->Unit(benchmark::kMillisecond);

// Attention: ViT-B (12 heads, 197 tokens, D 64) and DINOv2 ViT-L/14 at 224 (16 heads, 257 tokens, D 64).
// Precision fp32 runs the exact kernel, the others the flash kernel.
void BM_GpuAttention(benchmark::State& state) {
  if (!gpu_ready(state, state.range(2))) return;
  std::mt19937_64 g(4);
  const int64_t B = gpu_batch(), H = state.range(1), N = state.range(0), D = 64;
  Tensor q = gpu_random({B, H, N, D}, g), k = gpu_random({B, H, N, D}, g), v = gpu_random({B, H, N, D}, g);
  time_op(state, 4.0 * B * H * N * N * D, [&] { ops::scaled_dot_product_attention(q, k, v); });
}
BENCHMARK(BM_GpuAttention)
    ->ArgsProduct({{197}, {12}, {0, 2}})
    ->Args({257, 16, 2})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

// Row ops are bandwidth-bound: reported as TFLOP/s of ~5 flops/element for comparability only.
void BM_GpuLayerNorm(benchmark::State& state) {
  if (!gpu_ready(state, 0)) return;
  std::mt19937_64 g(5);
  const int64_t rows = gpu_batch() * 197, C = state.range(0);
  Tensor x = gpu_random({rows, C}, g), w = gpu_random({C}, g), b = gpu_random({C}, g);
  time_op(state, 5.0 * rows * C, [&] { ops::layer_norm(x, w, b, 1e-6); });
}
BENCHMARK(BM_GpuLayerNorm)->Arg(768)->Arg(1024)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace
#endif  // TABULA_HAVE_CUDA
