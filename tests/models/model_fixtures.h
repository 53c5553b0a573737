// Shared by the model tests: the fixture cases written by weights_tools/reference/models_fixtures.py and the
// C++ twins of its deterministic input and parameter perturbation.
#pragma once
#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "models/model.h"

namespace tabula::test {

struct TapFixture {
  std::string tap;
  Shape shape;
  int64_t stride = 1;
  double max_abs = 0;
};

struct ForwardCase {
  std::string id, arch;
  uint64_t seed = 0;
  Shape input;
  double weight_abs_sum = 0;
  std::vector<std::string> taps;
  std::vector<TapFixture> expected;  // the taps and "__out__"
};

// gtest prints a parameter with this (test names in ctest stay readable and stable).
inline void PrintTo(const ForwardCase& c, std::ostream* os) { *os << c.id << " (" << c.arch << ")"; }

std::vector<ForwardCase> forward_cases();  // tests/fixtures/models/cases.tsv + taps.tsv
// models_fixtures.py hash_input: uniform [-1, 1) from an integer hash of the flat index.
Tensor hash_input(const Shape& shape, uint64_t seed);
// models_fixtures.py perturb(): exactly representable values for BN/LN/bias/LayerScale/token tensors, by
// state_dict position. Returns sum |w| over the f32 tensors (float64), as the fixture stores.
double perturb(std::vector<NamedTensor>& state_dict);
// max |got - want| / max|tap| over the stored values of the tap (got sampled with the fixture's stride).
double tap_error(const Tensor& got, const std::string& case_id, const TapFixture& f, std::string* why);

}  // namespace tabula::test
