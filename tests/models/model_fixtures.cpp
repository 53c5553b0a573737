#include "tests/models/model_fixtures.h"

#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "util/npy.h"
#include "tests/test_util.h"

namespace tabula::test {
namespace {

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

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

}  // namespace

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

}  // namespace tabula::test
