#include "engine/cpu/fma_peak.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>

#include "engine/system.h"

namespace tabula {

const char* fma_peak_isa() {
  const CpuFeatures& f = cpu_features();
  return f.has_avx512() ? "avx512" : f.has_avx2_fma() ? "avx2" : "scalar";
}

namespace {
double scalar_chains(long iterations) {
  float acc[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  for (long it = 0; it < iterations; ++it)
    for (float& a : acc) a = std::fma(a, 0.999999f, 1e-7f);
  return acc[0] + acc[7];
}
}  // namespace

namespace {
// The best GFLOP/s of `run` over about `seconds`, timed in thread CPU time: on a shared machine wall time would
// count the time other processes ran.
double best_rate(double (*run)(long), double flop_per_iter, double seconds) {
  using clock = std::chrono::steady_clock;
  auto thread_seconds = [] {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  };
  volatile double sink = run(1000);  // warm up (frequency ramp)
  long iters = 1 << 16;
  double best = 0;
  auto deadline = clock::now() + std::chrono::duration<double>(seconds);
  while (clock::now() < deadline) {
    const double t0 = thread_seconds();
    sink = sink + run(iters);
    const double dt = thread_seconds() - t0;
    if (dt < 1e-3) {
      iters *= 4;
      continue;
    }
    best = std::max(best, flop_per_iter * static_cast<double>(iters) / dt / 1e9);
  }
  return best;
}
}  // namespace

double measure_fma_peak_gflops_per_core(double seconds) {
  const CpuFeatures& f = cpu_features();
  double (*run)(long) = f.has_avx512()     ? detail::fma_chains_avx512
                        : f.has_avx2_fma() ? detail::fma_chains_avx2
                                           : scalar_chains;
  const double flop_per_iter = f.has_avx512() ? 24 * 16 * 2 : f.has_avx2_fma() ? 12 * 8 * 2 : 8 * 2;
  return best_rate(run, flop_per_iter, seconds);
}

double measure_bf16_peak_gflops_per_core(double seconds) {
  if (!cpu_features().has_avx512_bf16()) return 0;
  return best_rate(detail::dpbf16_chains_avx512bf16, 24 * 16 * 2 * 2, seconds);
}

}  // namespace tabula
