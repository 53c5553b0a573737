// PyTorch's CPU random number generator and the float32 distributions its init functions use, replayed
// bit for bit: `torch.manual_seed(s); t.uniform_(a, b)` / `t.normal_(m, s)` on a contiguous float32 tensor
// and the same calls here on a float buffer of the same length give the same bits (torch 2.15, x86-64).
//
// What torch does, from the sources it ships (ATen/core/{DistributionsHelper,TransformationHelper}.h,
// ATen/native/cpu/{DistributionTemplates.h,avx_mathfun.h}, ATen/CPUGeneratorImpl.cpp):
//  * the generator is mt19937 seeded with the low 32 bits of the seed (std::mt19937 semantics), plus a
//    cached second Box-Muller sample for the scalar normal path (cleared by manual_seed);
//  * float uniform_(from, to): u = (draw & (2^24-1)) * 2^-24, value = fma(u, to - from, from) in float (the
//    compiler contracts torch's `x * (to - from) + from`), and a value equal to `to` becomes `from`;
//  * float normal_ on >= 16 contiguous elements: all uniforms first, then Box-Muller over blocks of 16
//    (pairs j, j+8), the last partial block recomputed from 16 fresh uniforms. On x86-64 with AVX2 (also
//    when torch reports capability AVX512, as checked here) torch runs the AVX2 NormalFill16, whose
//    log/sin/cos are avx_mathfun's Cephes polynomials (not libm, not Sleef). We run the same polynomials
//    with the same FMA contractions GCC made in torch's build (found by experiment, bitwise on 10^5 values):
//    8-wide with AVX2 when the CPU has it, lane by lane otherwise, with identical bits either way. (torch
//    itself, on a CPU without AVX2 or on ARM, takes a libm/NEON path and gets other bits; tabula always
//    gives the AVX2 torch's.)
//  * normal_ on < 16 elements: at::normal_distribution<double> per element (53-bit uniforms from two draws,
//    log1p/sin/cos in double, the sine half cached in the generator for the next scalar call).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>

namespace tabula {

// MT19937 (Matsumoto & Nishimura), the sequence of std::mt19937 / at::mt19937 for a 32-bit seed. Own
// implementation on 32-bit words so the twist vectorises, and so discard() skips tempering: replaying a
// constructor throws away tens of millions of draws.
class Mt19937 {
 public:
  static constexpr int kN = 624;
  explicit Mt19937(uint32_t seed = 5489u) { seed_with(seed); }
  void seed_with(uint32_t seed);
  uint32_t operator()() {
    if (index_ >= kN) twist();
    uint32_t y = state_[index_++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    return y ^ (y >> 18);
  }
  void discard(uint64_t n);
  // The next n outputs, in order (operator() n times), a state block at a time so the tempering vectorises.
  void fill(uint32_t* out, size_t n);

 private:
  void twist();
  uint32_t state_[kN];
  int index_ = kN;
};

class TorchGenerator {
 public:
  static constexpr uint64_t kDefaultSeed = 67280421310721ULL;  // c10::detail::default_rng_seed_val
  explicit TorchGenerator(uint64_t seed = kDefaultSeed) { manual_seed(seed); }

  // torch.manual_seed(seed) on the CPU generator.
  void manual_seed(uint64_t seed);
  uint64_t initial_seed() const { return seed_; }

  uint32_t random() { return static_cast<uint32_t>(engine_()); }
  // CPUGeneratorImpl::random64: two draws, the first one is the high word.
  uint64_t random64() {
    const uint64_t hi = random();
    const uint64_t lo = random();
    return (hi << 32) | lo;
  }
  void discard(uint64_t n) { engine_.discard(n); }
  // random() n times into out.
  void fill_random(uint32_t* out, size_t n) { engine_.fill(out, n); }

  std::optional<double> next_double_normal_sample;  // at::normal_distribution<double>'s cached sine half

 private:
  Mt19937 engine_;
  uint64_t seed_ = 0;
};

// Tensor.uniform_(from, to) on n contiguous float32 values. Like torch, throws std::invalid_argument for
// from > to (uniform_) or std < 0 (normal_).
void uniform_(float* data, size_t n, double from, double to, TorchGenerator& gen);
// Tensor.normal_(mean, std) on n contiguous float32 values.
void normal_(float* data, size_t n, double mean, double std, TorchGenerator& gen);
// Tensor.erfinv_() on float32. torch computes this with MKL's vsErfInv (high-accuracy mode), which we cannot
// replay; we compute erfinv in double (torch's calc_erfinv algorithm, Newton-refined) and round once, which
// agrees with torch bitwise on ~99.3% of inputs and within 1 ULP on the rest. Large buffers use all cores
// (element-wise, so the result does not depend on the thread count).
void erfinv_(float* data, size_t n);
double calc_erfinv(double y);

namespace detail {
// The float uniform_(from, to) makes of one 32-bit draw (what uniform_ stores for it).
float uniform_value(uint32_t draw, float from, float to);
// Runs fn(begin, end) over [0, n) in contiguous chunks on up to hardware_concurrency threads (at most 16), one
// chunk when n < 2 * grain. For element-wise work after every random draw is taken, so the result is the same
// for any thread count.
void parallel_chunks(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn);
// One 16-element Box-Muller block as torch's AVX2 NormalFill16 computes it: 8-wide AVX2 intrinsics
// (engine/rng_avx2.cpp, used when the CPU has AVX2+FMA) and a portable lane-by-lane replay (explicit fmaf
// calls). Tests check they agree bitwise.
void normal_fill_16_avx2(float* data, float mean, float std);
void normal_fill_16_portable(float* data, float mean, float std);
bool normal_fill_uses_avx2();
}  // namespace detail

}  // namespace tabula
