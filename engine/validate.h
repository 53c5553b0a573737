// The one validator every op test uses (after llm.c's validate_result and ggml's test-backend-ops):
//   - inputs are fresh random values drawn from a seed chosen per run (printed, and replayable with
//     TABULA_TEST_SEED=<seed>), never zeros, so a test cannot pass on a degenerate input;
//   - outputs are poisoned with NaN before the implementation runs (set_poison_allocations), so an element it
//     never writes is reported instead of silently matching;
//   - the report gives max abs / max rel error, the worst element and the number of elements out of tolerance.
#pragma once
#include <cstdint>
#include <functional>
#include <random>
#include <string>

#include "engine/tensor.h"

namespace tabula::validate {

// The run's base seed: TABULA_TEST_SEED if set, else from getrandom(2) (fixed for the process).
uint64_t run_seed();

// Uniform in [-scale, -scale/64] U [scale/64, scale]: random signs and magnitudes, never (near) zero.
Tensor random_tensor(const Shape& shape, std::mt19937_64& rng, float scale = 1.0f);
// Uniform in [lo, hi] (for positive-only inputs such as variances).
Tensor uniform_tensor(const Shape& shape, std::mt19937_64& rng, float lo, float hi);

struct Tolerance {
  double atol = 1e-5;
  double rtol = 1e-4;
};

struct Report {
  bool ok = true;
  int64_t numel = 0, bad = 0, unwritten = 0;  // unwritten: NaN where the reference has a number
  double max_abs = 0, max_rel = 0;
  int64_t worst = -1;  // flat index of the element with the largest |got - want| / (atol + rtol |want|)
  float worst_got = 0, worst_want = 0;
  std::string message;  // one line, for test failure output
};

// Compares element-wise: |got - want| <= atol + rtol * |want|; NaN matches only NaN; shapes must agree.
Report compare(const Tensor& got, const Tensor& want, Tolerance tol = {});

// Runs `impl` with allocation poisoning on (so unwritten outputs are NaN) and compares with `reference`'s result.
Report check(const std::function<Tensor()>& impl, const std::function<Tensor()>& reference, Tolerance tol = {});

}  // namespace tabula::validate
