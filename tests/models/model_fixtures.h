// Shared by the model tests: the fixture cases written by weights_tools/reference/models_fixtures.py, the C++ twins
// of its deterministic input and parameter perturbation, and the reader of the per-architecture fixture folders.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"
#include "models/arch.h"
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

// what() of the exception `fn` throws; "" when it throws none.
std::string error_of(const std::function<void()>& fn);

// The ModelConfig of a toy Model `M` a test writes (family "toy", no keys, no init): `Self` is the config itself,
// which may carry the toy's own fields (M reads them with arch.as<Self>()).
template <class Self, class M>
struct ToyModelConfig : ModelConfig {
  std::unique_ptr<ModelConfig> clone() const override {
    return std::make_unique<Self>(static_cast<const Self&>(*this));
  }
  std::string family() const override { return "toy"; }
  void apply_keys(const KeyValues&) override {}
  std::unique_ptr<Model> construct(const ArchConfig& arch) const override { return std::make_unique<M>(arch); }
  void init_weights(const ModuleTree&, InitState&) const override {}
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

std::vector<std::string> split(const std::string& s, char sep);
Shape parse_shape(const std::string& s);  // "1,3,224,224"

Tensor read_tensor(const std::string& npy_path);  // an .npy file as an f32 tensor

// The input the per-architecture scripts feed an image model: hash_input seeded by seed * 10 + H + W.
Tensor hash_input_hw(const Shape& input, uint64_t seed);

// A pretrained_cfgs.tsv row (arch, timm name, input size, crop_pct, interpolation, mean, std; written by the
// convnext/swin fixture scripts from timm) against tabula's timm_pretrained_cfg of the arch (fatal on a bad row).
void expect_timm_pretrained_cfg(const std::vector<std::string>& row);

// One stored tap of a per-architecture fixture folder: its torch shape and the sampling stride of the stored values.
struct SampledTap {
  Shape shape;
  int64_t stride = 1;
};

// A cases.tsv row's common columns: case id, model id, seed, input shape.
struct FixtureCase {
  std::string id, model;
  uint64_t seed = 0;
  Shape input;
};

// How a captured tensor must agree with the fixture's shape: `exact`, or `numel` where tabula keeps another view of
// the same values in the same order (Swin's NHWC maps are tabula's [B, H*W, C] tokens).
enum class ShapeMatch { exact, numel };

// A fixture folder tests/fixtures/<dir>/ as the per-architecture scripts (convnext_fixtures.py, swin_fixtures.py,
// conch_fixtures.py, newvit_fixtures.py) write it: cases.tsv (case id, model id, seed, input shape, then the
// folder's own columns), taps.tsv (case, tap, shape, stride, max_abs), <case>.<tap>.npy (every stride-th value) and
// named.tsv (the full-size init: arch, seed, tensor name, shape, sha256 in state_dict order).
class FixtureFolder {
 public:
  FixtureFolder(std::string dir, ShapeMatch match) : dir_(std::move(dir)), match_(match) {}
  // <dir>/<file> split on tabs; blank and '#' lines skipped; a missing file throws. Each test reads its own columns.
  std::vector<std::vector<std::string>> rows(const std::string& file) const;
  std::vector<std::vector<std::string>> case_rows() const { return rows("cases.tsv"); }
  std::vector<FixtureCase> cases() const;                                    // case_rows()' common columns
  std::map<std::string, SampledTap> taps(const std::string& case_id) const;  // tap name -> stored tap
  // max |got - want| / max |want| over the stored (sampled) values; a shape mismatch fails the test and is infinite.
  double rel_error(const Tensor& got, const std::string& case_id, const std::string& tap, const SampledTap& t) const;
  // named.tsv's rows grouped by (arch, seed), each group in state_dict order.
  std::map<std::pair<std::string, uint64_t>, std::vector<std::vector<std::string>>> init_hashes() const;

 private:
  std::string dir_;
  ShapeMatch match_;
};

}  // namespace tabula::test
