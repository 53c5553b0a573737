// The machine's measured single-precision FMA peak (for "% of peak" in benchmarks): independent FMA chains
// in the widest vector unit the dispatch allows, long enough to hide latency on two FMA ports.
#pragma once

namespace tabula {

// GFLOP/s of one core (one FMA = 2 FLOP), measured for about `seconds`; which ISA: fma_peak_isa().
double measure_fma_peak_gflops_per_core(double seconds = 0.2);
const char* fma_peak_isa();
// The same for `vdpbf16ps` (one instruction = 16 lanes x one bf16 pair = 64 FLOP), the peak of the CPU bf16 GEMM;
// 0 on a CPU without AVX512-BF16.
double measure_bf16_peak_gflops_per_core(double seconds = 0.2);

namespace detail {
double fma_chains_avx512(long iterations);  // returns a value that depends on the result (defeats DCE)
double fma_chains_avx2(long iterations);
double dpbf16_chains_avx512bf16(long iterations);
}  // namespace detail

}  // namespace tabula
