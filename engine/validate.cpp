#include "engine/validate.h"

#include <sys/random.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>

namespace tabula::validate {

uint64_t run_seed() {
  static const uint64_t seed = [] {
    if (const char* e = std::getenv("TABULA_TEST_SEED")) return static_cast<uint64_t>(std::strtoull(e, nullptr, 10));
    // getrandom(2) rather than std::random_device: libstdc++'s random_device pulls in glibc 2.36's arc4random,
    // which alone would raise the minimum glibc of the deployed binary (README "Deploy on a cluster").
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, 0) != static_cast<ssize_t>(sizeof s))
      throw std::runtime_error(std::string("validate::run_seed: getrandom failed: ") + std::strerror(errno));
    return s;
  }();
  return seed;
}

Tensor random_tensor(const Shape& shape, std::mt19937_64& rng, float scale) {
  Tensor t = Tensor::empty(shape);
  std::uniform_real_distribution<float> mag(scale / 64, scale);
  std::bernoulli_distribution sign(0.5);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = sign(rng) ? mag(rng) : -mag(rng);
  return t;
}

Tensor uniform_tensor(const Shape& shape, std::mt19937_64& rng, float lo, float hi) {
  Tensor t = Tensor::empty(shape);
  std::uniform_real_distribution<float> u(lo, hi);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = u(rng);
  return t;
}

Report compare(const Tensor& got_in, const Tensor& want_in, Tolerance tol) {
  Report r;
  if (!got_in.defined() || !want_in.defined() || got_in.shape() != want_in.shape()) {
    r.ok = false;
    r.message = "shape mismatch: got " + got_in.str() + ", want " + want_in.str();
    return r;
  }
  std::vector<float> got = got_in.to_vector(), want = want_in.to_vector();
  r.numel = static_cast<int64_t>(got.size());
  double worst_ratio = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    if (std::isnan(w) || std::isnan(g)) {
      if (std::isnan(w) != std::isnan(g)) {
        ++r.bad;
        if (std::isnan(g)) ++r.unwritten;
        if (worst_ratio < INFINITY) worst_ratio = INFINITY, r.worst = static_cast<int64_t>(i);
      }
      continue;
    }
    if (std::isinf(w) || std::isinf(g)) {
      if (g != w) {
        ++r.bad;
        if (worst_ratio < INFINITY) worst_ratio = INFINITY, r.worst = static_cast<int64_t>(i);
      }
      continue;
    }
    const double abs_err = std::fabs(g - w);
    const double rel_err = abs_err / std::max(std::fabs(w), 1e-30);
    r.max_abs = std::max(r.max_abs, abs_err);
    if (std::fabs(w) > tol.atol) r.max_rel = std::max(r.max_rel, rel_err);
    const double ratio = abs_err / (tol.atol + tol.rtol * std::fabs(w));
    if (ratio > 1) ++r.bad;
    if (ratio > worst_ratio) worst_ratio = ratio, r.worst = static_cast<int64_t>(i);
  }
  if (r.worst >= 0) r.worst_got = got[r.worst], r.worst_want = want[r.worst];
  r.ok = r.bad == 0;
  std::ostringstream m;
  m << (r.ok ? "ok" : "MISMATCH") << ": " << r.bad << "/" << r.numel << " out of tolerance (atol " << tol.atol
    << ", rtol " << tol.rtol << "), " << r.unwritten << " unwritten (NaN), max abs err " << r.max_abs
    << ", max rel err " << r.max_rel;
  if (r.worst >= 0) m << ", worst at flat index " << r.worst << ": got " << r.worst_got << " want " << r.worst_want;
  r.message = m.str();
  return r;
}

Report check(const std::function<Tensor()>& impl, const std::function<Tensor()>& reference, Tolerance tol) {
  Tensor want = reference();
  struct PoisonScope {
    PoisonScope() { set_poison_allocations(true); }
    ~PoisonScope() { set_poison_allocations(false); }
  };
  Tensor got;
  {
    PoisonScope scope;
    got = impl();
  }
  return compare(got, want, tol);
}

}  // namespace tabula::validate
