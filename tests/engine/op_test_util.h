// Helpers shared by the op test files (tests/engine): a random stream per op name (seeded from the run seed, so
// TABULA_TEST_SEED replays a failure), shape pickers, and the validator's report as a gtest expectation.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <random>
#include <string>

#include "engine/validate.h"

namespace tabula::test {

inline std::mt19937_64 rng_for(const char* op) {
  std::seed_seq seq{validate::run_seed(), static_cast<uint64_t>(std::hash<std::string>{}(op))};
  return std::mt19937_64(seq);
}
inline int64_t pick(std::mt19937_64& g, std::initializer_list<int64_t> v) {
  return *(v.begin() + std::uniform_int_distribution<size_t>(0, v.size() - 1)(g));
}
inline int64_t uni(std::mt19937_64& g, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(g);
}

}  // namespace tabula::test

#define EXPECT_VALID(report, what)                                                                           \
  do {                                                                                                       \
    auto r_ = (report);                                                                                      \
    EXPECT_TRUE(r_.ok) << what << ": " << r_.message << " (seed " << tabula::validate::run_seed()           \
                       << "; replay with TABULA_TEST_SEED)";                                                 \
  } while (0)
