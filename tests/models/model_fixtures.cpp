#include "tests/models/model_fixtures.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "models/registry.h"
#include "tests/test_util.h"
#include "util/npy.h"

namespace tabula::test {
namespace {

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

}  // namespace

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  return out;
}

Shape parse_shape(const std::string& s) {
  Shape sh;
  for (const auto& p : split(s, ',')) sh.push_back(std::stoll(p));
  return sh;
}

std::vector<ForwardCase> forward_cases() {
  std::vector<ForwardCase> cases;
  std::ifstream f(fixture("models/cases.tsv"));
  if (!f) throw std::runtime_error("missing fixture models/cases.tsv");
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto c = split(line, '\t');
    if (c.size() != 6) throw std::runtime_error("models/cases.tsv: bad line '" + line + "'");
    ForwardCase fc;
    fc.id = c[0];
    fc.arch = c[1];
    fc.seed = std::stoull(c[2]);
    fc.input = parse_shape(c[3]);
    fc.weight_abs_sum = std::stod(c[4]);
    fc.taps = split(c[5], ',');
    cases.push_back(fc);
  }
  std::ifstream t(fixture("models/taps.tsv"));
  if (!t) throw std::runtime_error("missing fixture models/taps.tsv");
  while (std::getline(t, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto c = split(line, '\t');
    if (c.size() != 5) throw std::runtime_error("models/taps.tsv: bad line '" + line + "'");
    for (auto& fc : cases)
      if (fc.id == c[0]) fc.expected.push_back({c[1], parse_shape(c[2]), std::stoll(c[3]), std::stod(c[4])});
  }
  return cases;
}

Tensor hash_input(const Shape& shape, uint64_t seed) {
  Tensor x = Tensor::empty(shape);
  float* p = x.data<float>();
  const uint64_t m = 0xFFFFFFFFull;
  for (int64_t i = 0; i < x.numel(); ++i) {
    uint64_t s = (static_cast<uint64_t>(i) * 2654435761ull + seed * 40503ull + 12345ull) & m;
    s = ((s ^ (s >> 15)) * 2246822519ull) & m;
    s = ((s ^ (s >> 13)) * 3266489917ull) & m;
    s = s ^ (s >> 16);
    p[i] = static_cast<float>(static_cast<double>(s >> 8) / static_cast<double>(1 << 23) - 1.0);
  }
  return x;
}

double perturb(std::vector<NamedTensor>& sd) {
  double total = 0;
  for (size_t k64 = 0; k64 < sd.size(); ++k64) {
    NamedTensor& t = sd[k64];
    if (t.dtype != DType::f32) continue;
    const int64_t k = static_cast<int64_t>(k64);
    const std::string& n = t.name;
    float* w = t.f32();
    for (int64_t i = 0; i < t.numel(); ++i) {
      double v;
      if (ends_with(n, "running_var")) v = 0.5 + static_cast<double>((i * 5 + k) % 9) / 8;
      else if (ends_with(n, "running_mean")) v = static_cast<double>((i * 7 + 3 * k) % 11 - 5) / 32;
      else if (ends_with(n, "gamma") || (t.shape.size() == 1 && ends_with(n, ".weight")))
        v = 0.75 + static_cast<double>((i * 3 + k) % 5) / 8;
      else if (ends_with(n, ".bias")) v = static_cast<double>((i + 2 * k) % 7 - 3) / 16;
      else if (n == "cls_token" || n == "reg_token" || n == "register_tokens" || n == "mask_token")
        v = static_cast<double>((i * 3 + k) % 13 - 6) / 16;
      else break;
      w[i] = static_cast<float>(v);
    }
    for (int64_t i = 0; i < t.numel(); ++i) total += std::fabs(static_cast<double>(w[i]));
  }
  return total;
}

double tap_error(const Tensor& got_in, const std::string& case_id, const TapFixture& f, std::string* why) {
  if (got_in.shape() != f.shape) {
    if (why) *why = "shape " + shape_str(got_in.shape()) + ", torch " + shape_str(f.shape);
    return INFINITY;
  }
  const NpyArray want = read_npy(fixture("models/" + case_id + "." + f.tap + ".npy").string());
  const std::vector<float> got = got_in.contiguous().to_vector();
  const std::vector<float> w = want.to_f32();
  const int64_t n = static_cast<int64_t>(w.size());
  if ((static_cast<int64_t>(got.size()) + f.stride - 1) / f.stride != n) {
    if (why) *why = "fixture holds " + std::to_string(n) + " values, expected " + std::to_string(got.size()) + "/" +
                    std::to_string(f.stride);
    return INFINITY;
  }
  double worst = 0;
  int64_t worst_i = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = std::fabs(static_cast<double>(got[static_cast<size_t>(i * f.stride)]) - w[static_cast<size_t>(i)]);
    if (!(d <= worst)) worst = d, worst_i = i;  // NaN counts as worst
  }
  const double rel = worst / (f.max_abs > 0 ? f.max_abs : 1.0);
  if (why) {
    std::ostringstream o;
    o << "max rel err " << rel << " at flat " << worst_i * f.stride << " (got "
      << got[static_cast<size_t>(worst_i * f.stride)] << ", torch " << w[static_cast<size_t>(worst_i)]
      << ", max|tap| " << f.max_abs << ")";
    *why = o.str();
  }
  return std::isnan(worst) ? INFINITY : rel;
}

Tensor read_tensor(const std::string& npy_path) {
  const NpyArray a = read_npy(npy_path);
  return Tensor::from_vector(a.shape, a.to_f32());
}

void expect_timm_pretrained_cfg(const std::vector<std::string>& c) {
  ASSERT_EQ(c.size(), 7u) << c[0];
  const auto cfg = timm_pretrained_cfg(c[0]);
  ASSERT_TRUE(cfg.has_value()) << c[0];
  EXPECT_EQ(cfg->input_size, std::stoi(c[2])) << c[0];
  EXPECT_EQ(cfg->crop_pct, std::stod(c[3])) << c[0];
  EXPECT_EQ(cfg->interpolation, c[4]) << c[0];
  const auto mean = split(c[5], ','), sd = split(c[6], ',');
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(cfg->mean[i], static_cast<float>(std::stod(mean[i]))) << c[0];
    EXPECT_EQ(cfg->std[i], static_cast<float>(std::stod(sd[i]))) << c[0];
  }
}

Tensor hash_input_hw(const Shape& input, uint64_t seed) {
  return hash_input(input, seed * 10 + static_cast<uint64_t>(input[2] + input[3]));
}

std::vector<std::vector<std::string>> FixtureFolder::rows(const std::string& file) const {
  std::ifstream f(fixture(dir_ + "/" + file));
  if (!f) throw std::runtime_error("missing fixture " + dir_ + "/" + file);
  std::vector<std::vector<std::string>> out;
  for (std::string line; std::getline(f, line);) {
    if (line.empty() || line[0] == '#') continue;
    out.push_back(split(line, '\t'));
  }
  return out;
}

std::map<std::pair<std::string, uint64_t>, std::vector<std::vector<std::string>>> FixtureFolder::init_hashes() const {
  std::map<std::pair<std::string, uint64_t>, std::vector<std::vector<std::string>>> out;
  for (auto& r : rows("named.tsv")) {
    if (r.size() != 5) throw std::runtime_error(dir_ + "/named.tsv: a row of " + std::to_string(r.size()) + " columns");
    out[{r[0], std::stoull(r[1])}].push_back(std::move(r));
  }
  return out;
}

std::vector<FixtureCase> FixtureFolder::cases() const {
  std::vector<FixtureCase> out;
  for (const auto& c : case_rows()) {
    if (c.size() < 4) throw std::runtime_error(dir_ + "/cases.tsv: case " + c[0] + " has under 4 columns");
    out.push_back({c[0], c[1], std::stoull(c[2]), parse_shape(c[3])});
  }
  return out;
}

std::map<std::string, SampledTap> FixtureFolder::taps(const std::string& case_id) const {
  std::map<std::string, SampledTap> out;
  std::ifstream f(fixture(dir_ + "/taps.tsv"));
  for (std::string line; std::getline(f, line);) {
    const auto c = split(line, '\t');
    if (c.size() == 5 && c[0] == case_id) out[c[1]] = {parse_shape(c[2]), std::stoll(c[3])};
  }
  return out;
}

double FixtureFolder::rel_error(const Tensor& got_in, const std::string& case_id, const std::string& tap,
                                const SampledTap& t) const {
  const NpyArray a = read_npy(fixture(dir_ + "/" + case_id + "." + tap + ".npy").string());
  const std::vector<float> want = a.to_f32();
  if (match_ == ShapeMatch::exact) {
    EXPECT_EQ(got_in.shape(), t.shape) << case_id << " " << tap;
    if (got_in.shape() != t.shape) return INFINITY;
  } else {
    EXPECT_EQ(got_in.numel(), shape_numel(t.shape)) << case_id << " " << tap << ": " << got_in.str();
    if (got_in.numel() != shape_numel(t.shape)) return INFINITY;
  }
  const Tensor got = got_in.contiguous();
  double err = 0, scale = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    err = std::max(err, std::fabs(static_cast<double>(got.data<float>()[i * t.stride]) - want[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(want[i])));
  }
  return err / std::max(scale, 1e-30);
}

}  // namespace tabula::test
