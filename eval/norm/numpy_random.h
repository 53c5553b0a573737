// numpy's legacy global-style generator, np.random.RandomState(seed), for the draws scikit-learn makes with
// `random_state=int` (check_random_state): MT19937 seeded by init_genrand (numpy's mt19937_seed, the same stream as
// std::mt19937(seed)), random_sample = 53-bit doubles from two 32-bit outputs, and the legacy Gaussian
// (legacy-distributions.c legacy_gauss): Marsaglia's polar method, the second value of each pair cached for the
// next call. normal(loc=0, scale=1, size) fills C order with these values.
#pragma once
#include <cstdint>
#include <random>

namespace tabula::eval {

class NumpyRandomState {
 public:
  explicit NumpyRandomState(uint32_t seed) : mt_(seed) {}
  // RandomState.random_sample(): (a >> 5) * 2^26 + (b >> 6), over 2^53.
  double random_sample();
  // RandomState.standard_normal() / normal(0, 1).
  double standard_normal();

 private:
  std::mt19937 mt_;
  bool has_gauss_ = false;
  double gauss_ = 0.0;
};

}  // namespace tabula::eval
