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
//    (pairs j, j+8), the last partial block recomputed from 16 fresh uniforms. torch dispatches this kernel
//    to its AVX2 build on every AVX2/AVX-512 machine, whose log/sin/cos are avx_mathfun's Cephes
//    polynomials (not libm, not Sleef); we replay those polynomials lane by lane with the same FMA
//    contractions GCC made in torch's build (checked bitwise on 10^5 values);
//  * normal_ on < 16 elements: at::normal_distribution<double> per element (53-bit uniforms from two draws,
//    log1p/sin/cos in double, the sine half cached in the generator for the next scalar call).
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>

namespace tabula {

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

  std::optional<double> next_double_normal_sample;  // at::normal_distribution<double>'s cached sine half

 private:
  std::mt19937 engine_;
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
// One 16-element Box-Muller block as torch's AVX2 NormalFill16 computes it: 8-wide AVX2 intrinsics
// (engine/rng_avx2.cpp, used when the CPU has AVX2+FMA) and a portable lane-by-lane replay (explicit fmaf
// calls). Tests check they agree bitwise.
void normal_fill_16_avx2(float* data, float mean, float std);
void normal_fill_16_portable(float* data, float mean, float std);
bool normal_fill_uses_avx2();
}  // namespace detail

}  // namespace tabula
