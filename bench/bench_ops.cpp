// Google Benchmark micro-benchmarks of the fast CPU ops at ResNet-50 and ViT-B/16 shapes (batch 16 unless
// BENCH_BATCH says otherwise), reporting GFLOP/s and % of the machine's measured FMA peak
// (per-core FMA-chain peak x threads). Threads: TABULA_THREADS (default: all cores).
//
//   ./build/tabula_bench_ops --benchmark_filter=Gemm   (see bench/RESULTS_engine.md for recorded numbers)
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <random>

#include "engine/arena.h"
#include "engine/cpu/fma_peak.h"
#include "engine/cpu/gemm_kernels.h"
#include "engine/ops.h"
#include "engine/cpu/packed.h"
#include "engine/system.h"
#include "engine/threads.h"
#include "engine/validate.h"

using namespace tabula;

namespace {

int64_t batch() {
  const char* e = std::getenv("BENCH_BATCH");
  return e ? std::atoll(e) : 16;
}

double machine_peak_gflops() {
  static const double peak = measure_fma_peak_gflops_per_core(0.3) * get_num_threads();
  return peak;
}

// Times the loop itself so that GFLOP/s and % of peak come from the same measurement.
// The build machine is shared, so besides wall-clock rates the CPU-time rate is reported:
// flop / (process CPU seconds / threads) estimates what the threads achieve while they actually run.
double process_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Outputs come from an activation arena, as in a model's forward (ArenaScope): sized by a first untimed call,
// so the timed calls do not pay for fresh pages (page faults of a 50 MB output cost as much as the conv).
template <class F>
void run_timed(benchmark::State& state, double flop, F&& f) {
  Arena arena;
  {
    ArenaScope scope(&arena);
    f();
  }
  arena.reserve(arena.high_water());
  double seconds = 0, cpu = 0;
  for (auto _ : state) {
    arena.reset();
    ArenaScope scope(&arena);
    auto t0 = std::chrono::steady_clock::now();
    double c0 = process_cpu_seconds();
    f();
    cpu += process_cpu_seconds() - c0;
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  const double total = flop * static_cast<double>(state.iterations()) / 1e9;
  const double gflops = total / seconds, gflops_cpu = total / (cpu / get_num_threads());
  state.counters["GFLOP/s"] = gflops;
  state.counters["%peak"] = 100.0 * gflops / machine_peak_gflops();
  state.counters["GFLOP/s(cpu)"] = gflops_cpu;
  state.counters["%peak(cpu)"] = 100.0 * gflops_cpu / machine_peak_gflops();
  state.counters["threads"] = get_num_threads();
}

void BM_FmaPeak(benchmark::State& state) {
  double per_core = 0;
  for (auto _ : state) per_core = measure_fma_peak_gflops_per_core(0.2);
  state.counters["GFLOP/s/core"] = per_core;
  state.counters["GFLOP/s(machine)"] = per_core * get_num_threads();
  state.SetLabel(fma_peak_isa());
}
BENCHMARK(BM_FmaPeak)->Iterations(1)->Unit(benchmark::kMillisecond);

// linear: [M, K] x [N, K]^T, M = batch * tokens
void BM_Linear(benchmark::State& state) {
  const int64_t M = batch() * state.range(0), K = state.range(1), N = state.range(2);
  std::mt19937_64 g(1);
  Tensor x = validate::random_tensor({M, K}, g), w = validate::random_tensor({N, K}, g),
         b = validate::random_tensor({N}, g);
  const Activation act = state.range(3) ? Activation::gelu : Activation::none;
  run_timed(state, 2.0 * M * N * K, [&] { benchmark::DoNotOptimize(ops::linear(x, w, b, act)); });
  state.SetLabel(std::string(ops::gemm_kernel_name()) + (state.range(3) ? " +bias+gelu" : " +bias"));
}
// ViT-B/16 at 224: 197 tokens, dim 768: qkv, proj, fc1 (+GELU), fc2
BENCHMARK(BM_Linear)->Args({197, 768, 2304, 0})->Args({197, 768, 768, 0})->Args({197, 768, 3072, 1})
    ->Args({197, 3072, 768, 0})->Args({197, 768, 3072, 0})->Unit(benchmark::kMillisecond)->UseRealTime();

// The same linears with the weight packed once (engine/cpu/packed.h), as the ViT runs them.
void BM_LinearPacked(benchmark::State& state) {
  const int64_t M = batch() * state.range(0), K = state.range(1), N = state.range(2);
  std::mt19937_64 g(1);
  Tensor x = validate::random_tensor({M, K}, g), w = validate::random_tensor({N, K}, g),
         b = validate::random_tensor({N}, g);
  const PackedLinear pw(w);
  const Activation act = state.range(3) ? Activation::gelu : Activation::none;
  run_timed(state, 2.0 * M * N * K, [&] { benchmark::DoNotOptimize(ops::linear(x, pw, b, act)); });
  state.SetLabel(std::string(ops::gemm_kernel_name()) + (state.range(3) ? " packed +bias+gelu" : " packed +bias"));
}
BENCHMARK(BM_LinearPacked)->Args({197, 768, 2304, 0})->Args({197, 768, 768, 0})->Args({197, 768, 3072, 1})
    ->Args({197, 3072, 768, 0})->Args({197, 768, 3072, 0})->Unit(benchmark::kMillisecond)->UseRealTime();

// The indirect micro-kernel alone on one thread: 12 A rows and a 256 x 32 B panel resident in L1, no epilogue;
// its rate over the measured FMA peak of one core is the ceiling of every packed conv / linear.
void BM_IndirectKernel(benchmark::State& state) {
  const detail::GemmIndirectKernelInfo& k = detail::gemm_indirect_kernel();
  const int64_t kc = state.range(0);
  std::mt19937_64 g(8);
  Tensor a = validate::random_tensor({k.mr, kc}, g), b = validate::random_tensor({kc, k.nr}, g);
  std::vector<const float*> rows;
  for (int i = 0; i < k.mr; ++i) rows.push_back(a.data<float>() + i * kc);
  alignas(64) float c[16 * 32];
  const int64_t reps = 2000;
  const double t_cpu0 = process_cpu_seconds();
  double seconds = 0;
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    for (int64_t r = 0; r < reps; ++r) k.fn(1, kc, rows.data(), b.data<float>(), c, k.nr, r > 0, nullptr);
    benchmark::DoNotOptimize(c[0]);
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  const double cpu = process_cpu_seconds() - t_cpu0;
  const double flop = 2.0 * k.mr * k.nr * kc * reps * static_cast<double>(state.iterations());
  const double per_core = measure_fma_peak_gflops_per_core(0.1);
  state.counters["GFLOP/s"] = flop / seconds / 1e9;
  state.counters["%peak(core)"] = 100.0 * flop / seconds / 1e9 / per_core;
  state.counters["%peak(core,cpu)"] = 100.0 * flop / cpu / 1e9 / per_core;
  state.SetLabel(k.name);
}
BENCHMARK(BM_IndirectKernel)->Arg(64)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();

// `vdpbf16ps` chains: the bf16 GEMM's ceiling (twice the FMA peak where a 512-bit vdpbf16ps issues as often as an
// fp32 FMA).
void BM_Bf16Peak(benchmark::State& state) {
  if (!detail::gemm_bf16_kernel()) return state.SkipWithError("no AVX512-BF16 on this CPU");
  double per_core = 0, fma = 0;
  for (auto _ : state) per_core = measure_bf16_peak_gflops_per_core(0.2), fma = measure_fma_peak_gflops_per_core(0.2);
  state.counters["GFLOP/s/core"] = per_core;
  state.counters["x_fma_peak"] = per_core / fma;
}
BENCHMARK(BM_Bf16Peak)->Iterations(1)->Unit(benchmark::kMillisecond);

// The bf16 micro-kernel alone on one thread, as BM_IndirectKernel: MR rows of kc k and a kc x NR panel resident in
// L1 (arg 1 = 0), or (arg 1 = 1) the A rows in L1 and a KC x 512 block of weight panels streamed from L2 panel by
// panel, as the driver runs a task's columns; % of the vdpbf16ps peak measured in the same process.
void BM_Bf16Kernel(benchmark::State& state) {
  const detail::GemmBf16KernelInfo* k = detail::gemm_bf16_kernel();
  if (!k) return state.SkipWithError("no AVX512-BF16 on this CPU");
  const int64_t kc = state.range(0), panels = state.range(1) ? 512 / k->nr : 1;
  std::mt19937_64 g(8);
  std::uniform_int_distribution<int> u(0x3c00, 0x4000);  // bf16 bit patterns of moderate positive values
  std::vector<uint16_t> a(static_cast<size_t>(k->mr * kc)), b(static_cast<size_t>(panels * kc * k->nr));
  for (uint16_t& x : a) x = static_cast<uint16_t>(u(g));
  for (uint16_t& x : b) x = static_cast<uint16_t>(u(g));
  std::vector<const uint16_t*> rows;
  for (int i = 0; i < k->mr; ++i) rows.push_back(a.data() + i * kc);
  alignas(64) float c[32 * 64];
  const int64_t reps = 2000 / panels;
  const double t_cpu0 = process_cpu_seconds();
  double seconds = 0;
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    for (int64_t r = 0; r < reps; ++r)
      for (int64_t p = 0; p < panels; ++p)
        k->fn(1, kc, rows.data(), b.data() + p * kc * k->nr, c + (p % 2) * 32, 64, r > 0, nullptr);
    benchmark::DoNotOptimize(c[0]);
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  const double cpu = process_cpu_seconds() - t_cpu0;
  const double flop = 2.0 * k->mr * k->nr * kc * reps * panels * static_cast<double>(state.iterations());
  const double per_core = measure_bf16_peak_gflops_per_core(0.1);
  state.counters["GFLOP/s"] = flop / seconds / 1e9;
  state.counters["%peak(core)"] = 100.0 * flop / seconds / 1e9 / per_core;
  state.counters["%peak(core,cpu)"] = 100.0 * flop / cpu / 1e9 / per_core;
  state.SetLabel(k->name);
}
BENCHMARK(BM_Bf16Kernel)->Args({64, 0})->Args({256, 0})->Args({256, 1})->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// BM_LinearPacked with bf16 weights (--precision bf16): % of the vdpbf16ps peak in "%bf16peak(cpu)".
void BM_LinearPackedBf16(benchmark::State& state) {
  if (!detail::gemm_bf16_kernel()) return state.SkipWithError("no AVX512-BF16 on this CPU");
  const int64_t M = batch() * state.range(0), K = state.range(1), N = state.range(2);
  std::mt19937_64 g(1);
  Tensor x = validate::random_tensor({M, K}, g), w = validate::random_tensor({N, K}, g),
         b = validate::random_tensor({N}, g);
  const PackedLinear pw(w, PackedType::bf16);
  const Activation act = state.range(3) ? Activation::gelu : Activation::none;
  run_timed(state, 2.0 * M * N * K, [&] { benchmark::DoNotOptimize(ops::linear(x, pw, b, act)); });
  state.counters["%bf16peak(cpu)"] =
      100.0 * state.counters["GFLOP/s(cpu)"] / (measure_bf16_peak_gflops_per_core(0.1) * get_num_threads());
  state.SetLabel(state.range(3) ? "bf16 packed +bias+gelu" : "bf16 packed +bias");
}
BENCHMARK(BM_LinearPackedBf16)->Args({197, 768, 2304, 0})->Args({197, 768, 768, 0})->Args({197, 768, 3072, 1})
    ->Args({197, 3072, 768, 0})->Unit(benchmark::kMillisecond)->UseRealTime();

// ResNet-50 convolutions as the model runs them: weights packed once, channels-last activations, the whole batch
// in one GEMM, BN scale/shift + ReLU in the epilogue. Args: Cin, Cout, k, stride, H (input), and 1 = Winograd
// F(4x4, 3x3) weights where the conv is eligible (as models load them), 0 = the direct path.
void BM_ConvPacked(benchmark::State& state) {
  const int64_t cin = state.range(0), cout = state.range(1), k = state.range(2), s = state.range(3), H = state.range(4);
  std::mt19937_64 g(3);
  Tensor x = to_channels_last(validate::random_tensor({batch(), cin, H, H}, g));
  Tensor w = validate::random_tensor({cout, cin, k, k}, g, 0.1f);
  Tensor sc = validate::random_tensor({cout}, g), sh = validate::random_tensor({cout}, g);
  Conv2dOptions o;
  o.stride = {s, s};
  o.padding = {k / 2, k / 2};
  ops::set_winograd_enabled(state.range(5) != 0);
  const PackedConv2d pw(w, o);
  ops::set_winograd_enabled(true);
  const int64_t Ho = (H + 2 * (k / 2) - k) / s + 1;
  // FLOPs of the direct convolution also for Winograd (which does ~4x fewer): an effective rate
  run_timed(state, 2.0 * batch() * cout * Ho * Ho * cin * k * k,
            [&] { benchmark::DoNotOptimize(ops::conv2d(x, pw, sc, sh, Activation::relu)); });
  state.SetLabel(std::string(ops::gemm_kernel_name()) + (pw.wino.defined() ? " winograd F(4,3) NHWC" : " packed NHWC"));
}
BENCHMARK(BM_ConvPacked)
    ->Args({3, 64, 7, 2, 224, 1})      // conv1 (im2col rows: 3 channels)
    ->Args({64, 64, 1, 1, 56, 1})      // layer1 conv1
    ->Args({64, 64, 3, 1, 56, 1})      // layer1 conv2 (Winograd)
    ->Args({64, 64, 3, 1, 56, 0})      //   direct
    ->Args({64, 256, 1, 1, 56, 1})     // layer1 conv3 / downsample
    ->Args({256, 64, 1, 1, 56, 1})     // layer1 conv1 (blocks 1, 2)
    ->Args({128, 128, 3, 2, 56, 1})    // layer2.0 conv2 (stride 2)
    ->Args({256, 512, 1, 2, 56, 1})    // layer2.0 downsample (1x1 stride 2)
    ->Args({128, 128, 3, 1, 28, 1})    // layer2 conv2 (Winograd)
    ->Args({128, 128, 3, 1, 28, 0})    //   direct
    ->Args({256, 256, 3, 1, 14, 1})    // layer3 conv2 (Winograd)
    ->Args({256, 256, 3, 1, 14, 0})    //   direct
    ->Args({1024, 256, 1, 1, 14, 1})   // layer3 conv1
    ->Args({512, 512, 3, 1, 7, 1})     // layer4 conv2 (7x7; Winograd if eligible)
    ->Args({512, 512, 3, 1, 7, 0})     //   direct
    ->Args({512, 2048, 1, 1, 7, 1})    // layer4 conv3
    ->Unit(benchmark::kMillisecond)->UseRealTime();

// Every 1x1 conv shape of ResNet-50 (torchvision v1.5: the stride on conv2 and the downsample) with the epilogue the
// model runs it with: BN scale/shift, then ReLU (conv1), residual + ReLU (conv3), nothing (downsample).
// Args: Cin, Cout, stride, H (input), role (0 conv1, 1 conv3, 2 downsample).
void BM_ResNet50Pointwise(benchmark::State& state) {
  const int64_t cin = state.range(0), cout = state.range(1), s = state.range(2), H = state.range(3),
                Ho = (H - 1) / s + 1;
  const int64_t role = state.range(4);
  std::mt19937_64 g(4);
  Tensor x = to_channels_last(validate::random_tensor({batch(), cin, H, H}, g));
  Tensor w = validate::random_tensor({cout, cin, 1, 1}, g, 0.05f);
  Tensor sc = validate::random_tensor({cout}, g), sh = validate::random_tensor({cout}, g);
  Tensor res = role == 1 ? to_channels_last(validate::random_tensor({batch(), cout, Ho, Ho}, g)) : Tensor();
  Conv2dOptions o;
  o.stride = {s, s};
  const PackedConv2d pw(w, o);
  const Activation act = role == 2 ? Activation::none : Activation::relu;
  run_timed(state, 2.0 * batch() * cout * Ho * Ho * cin,
            [&] { benchmark::DoNotOptimize(ops::conv2d(x, pw, sc, sh, act, res)); });
  state.SetLabel(role == 0 ? "conv1 +bn+relu" : role == 1 ? "conv3 +bn+residual+relu" : "downsample +bn");
}
BENCHMARK(BM_ResNet50Pointwise)
    ->Args({64, 64, 1, 56, 0})->Args({256, 64, 1, 56, 0})->Args({64, 256, 1, 56, 1})->Args({64, 256, 1, 56, 2})
    ->Args({256, 128, 1, 56, 0})->Args({512, 128, 1, 28, 0})->Args({128, 512, 1, 28, 1})->Args({256, 512, 2, 56, 2})
    ->Args({512, 256, 1, 28, 0})->Args({1024, 256, 1, 14, 0})->Args({256, 1024, 1, 14, 1})->Args({512, 1024, 2, 28, 2})
    ->Args({1024, 512, 1, 14, 0})->Args({2048, 512, 1, 7, 0})->Args({512, 2048, 1, 7, 1})->Args({1024, 2048, 2, 14, 2})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

// Square GEMM (no epilogue): the kernel's ceiling
void BM_GemmSquare(benchmark::State& state) {
  const int64_t n = state.range(0);
  std::mt19937_64 g(2);
  Tensor a = validate::random_tensor({n, n}, g), b = validate::random_tensor({n, n}, g), c = Tensor::empty({n, n});
  run_timed(state, 2.0 * n * n * n, [&] {
    ops::gemm(n, n, n, a.data<float>(), n, false, b.data<float>(), n, false, c.data<float>(), n);
    benchmark::ClobberMemory();
  });
  state.SetLabel(ops::gemm_kernel_name());
}
BENCHMARK(BM_GemmSquare)->Arg(512)->Arg(1024)->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();

// ResNet-50 convolutions (BN folded: bias + ReLU fused): args Cin, Cout, k, stride, H
void BM_Conv(benchmark::State& state) {
  const int64_t cin = state.range(0), cout = state.range(1), k = state.range(2), s = state.range(3), H = state.range(4);
  std::mt19937_64 g(3);
  Tensor x = validate::random_tensor({batch(), cin, H, H}, g), w = validate::random_tensor({cout, cin, k, k}, g, 0.1f);
  Tensor b = validate::random_tensor({cout}, g);
  Conv2dOptions o;
  o.stride = {s, s};
  o.padding = {k / 2, k / 2};
  const int64_t Ho = (H + 2 * (k / 2) - k) / s + 1;
  // FLOPs of the direct convolution (also for Winograd, which does fewer: an effective rate)
  run_timed(state, 2.0 * batch() * cout * Ho * Ho * cin * k * k,
            [&] { benchmark::DoNotOptimize(ops::conv2d(x, w, b, o, Activation::relu)); });
  state.SetLabel(std::string(ops::gemm_kernel_name()) + " im2col");
}
BENCHMARK(BM_Conv)
    ->Args({3, 64, 7, 2, 224})      // conv1
    ->Args({64, 64, 1, 1, 56})      // layer1 conv1
    ->Args({64, 64, 3, 1, 56})      // layer1 conv2
    ->Args({64, 256, 1, 1, 56})     // layer1 conv3
    ->Args({128, 128, 3, 1, 28})    // layer2 conv2
    ->Args({256, 256, 3, 1, 14})    // layer3 conv2
    ->Args({1024, 256, 1, 1, 14})   // layer3 conv1
    ->Args({512, 512, 3, 1, 7})     // layer4 conv2 (7x7)
    ->Args({512, 2048, 1, 1, 7})    // layer4 conv3
    ->Unit(benchmark::kMillisecond)->UseRealTime();

// ViT-B/16 attention: heads 12, head_dim 64, tokens as given (197 at 224 px; 257 / 261 for DINOv2 /14 (+reg))
void BM_Attention(benchmark::State& state) {
  const int64_t N = state.range(0), H = 12, D = 64;
  std::mt19937_64 g(4);
  Tensor q = validate::random_tensor({batch(), H, N, D}, g), k = validate::random_tensor({batch(), H, N, D}, g);
  Tensor v = validate::random_tensor({batch(), H, N, D}, g);
  run_timed(state, 4.0 * batch() * H * N * N * D,
            [&] { benchmark::DoNotOptimize(ops::scaled_dot_product_attention(q, k, v)); });
  state.SetLabel("flash (no NxN)");
}
BENCHMARK(BM_Attention)->Arg(197)->Arg(257)->Arg(261)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_LayerNorm(benchmark::State& state) {
  std::mt19937_64 g(5);
  Tensor x = validate::random_tensor({batch(), 197, 768}, g), w = validate::random_tensor({768}, g);
  run_timed(state, 8.0 * x.numel(), [&] { benchmark::DoNotOptimize(ops::layer_norm(x, w, w, 1e-6)); });
}
BENCHMARK(BM_LayerNorm)->Unit(benchmark::kMillisecond)->UseRealTime();

// One ViT-B/16 encoder block written with the op API the way a model's forward is (timm Block: x + attn(norm1(x)),
// x + mlp(norm2(x))), at batch 16 x 197 tokens: the whole-block rate, all ops included. Arg 1 = 1: the linears'
// weights in bf16 (--precision bf16), "%bf16peak(cpu)" against the vdpbf16ps peak.
void BM_VitBBlock(benchmark::State& state) {
  const bool bf16 = state.range(1) != 0;
  if (bf16 && !detail::gemm_bf16_kernel()) return state.SkipWithError("no AVX512-BF16 on this CPU");
  const PackedType type = bf16 ? PackedType::bf16 : PackedType::f32;
  const int64_t B = batch(), N = state.range(0), C = 768, H = 12, D = 64;
  std::mt19937_64 g(6);
  auto rnd = [&](Shape s, float sc) { return validate::random_tensor(s, g, sc); };
  Tensor x = rnd({B, N, C}, 1.f), ln1w = rnd({C}, 1.f), ln1b = rnd({C}, .1f), ln2w = rnd({C}, 1.f),
         ln2b = rnd({C}, .1f);
  Tensor qkv_w = rnd({3 * C, C}, .03f), qkv_b = rnd({3 * C}, .01f), proj_w = rnd({C, C}, .03f), proj_b = rnd({C}, .01f);
  Tensor fc1_w = rnd({4 * C, C}, .03f), fc1_b = rnd({4 * C}, .01f), fc2_w = rnd({C, 4 * C}, .02f),
         fc2_b = rnd({C}, .01f);
  // weights packed once, as models/vit.cpp does at load
  const PackedLinear qkv_p(qkv_w, type), proj_p(proj_w, type), fc1_p(fc1_w, type), fc2_p(fc2_w, type);
  auto block = [&] {
    Tensor h = ops::layer_norm(x, ln1w, ln1b, 1e-6);
    Tensor qkv = ops::linear(h, qkv_p, qkv_b).view({B, N, 3, H, D}).permute({2, 0, 3, 1, 4});  // [3, B, H, N, D]
    Tensor a = ops::scaled_dot_product_attention(qkv.select(0, 0), qkv.select(0, 1), qkv.select(0, 2));
    a = a.transpose(1, 2).reshape({B, N, C});
    Tensor x1 = ops::add(x, ops::linear(a, proj_p, proj_b));
    Tensor m = ops::linear(ops::layer_norm(x1, ln2w, ln2b, 1e-6), fc1_p, fc1_b, Activation::gelu);
    return ops::add(x1, ops::linear(m, fc2_p, fc2_b));
  };
  const double flop = 2.0 * B * N * C * (3 * C + C + 8 * C) + 4.0 * B * H * N * N * D;
  run_timed(state, flop, [&] { benchmark::DoNotOptimize(block()); });
  if (bf16)
    state.counters["%bf16peak(cpu)"] =
        100.0 * state.counters["GFLOP/s(cpu)"] / (measure_bf16_peak_gflops_per_core(0.1) * get_num_threads());
}
BENCHMARK(BM_VitBBlock)->Args({197, 0})->Args({197, 1})->Unit(benchmark::kMillisecond)->UseRealTime();

// One ResNet-50 bottleneck (layer3: 1024 -> 256 -> 256 -> 1024 at 14x14, BN folded, ReLU and residual fused).
void BM_ResNet50Bottleneck(benchmark::State& state) {
  const int64_t B = batch(), C = 1024, W = 256, S = 14;
  std::mt19937_64 g(7);
  auto rnd = [&](Shape s, float sc) { return validate::random_tensor(s, g, sc); };
  Tensor x = rnd({B, C, S, S}, 1.f), w1 = rnd({W, C, 1, 1}, .03f), w2 = rnd({W, W, 3, 3}, .02f),
         w3 = rnd({C, W, 1, 1}, .06f);
  Tensor b1 = rnd({W}, .1f), b2 = rnd({W}, .1f), b3 = rnd({C}, .1f);
  Conv2dOptions pad1;
  pad1.padding = {1, 1};
  // packed weights and channels-last maps, as models/resnet.cpp runs it
  const PackedConv2d p1(w1, {}), p2(w2, pad1), p3(w3, {});
  const Tensor xc = to_channels_last(x);
  auto block = [&] {
    Tensor h = ops::conv2d(xc, p1, Tensor(), b1, Activation::relu);
    h = ops::conv2d(h, p2, Tensor(), b2, Activation::relu);
    return ops::conv2d(h, p3, Tensor(), b3, Activation::relu, /*residual=*/xc);
  };
  const double flop = 2.0 * B * S * S * (C * W + W * W * 9 + W * C);
  run_timed(state, flop, [&] { benchmark::DoNotOptimize(block()); });
}
BENCHMARK(BM_ResNet50Bottleneck)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
