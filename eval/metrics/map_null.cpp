// The null side of copairs' mAP (map.h): random-ranking AP distributions (copairs' own numpy PCG64 stream replayed
// bit for bit, or tabula's Floyd sampler), the group p-value and Benjamini-Hochberg.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>

#include "eval/metrics/map.h"
#include "eval/metrics/numpy_sum.h"

namespace tabula::eval {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Unbiased integer in [0, n) by rejection (portable, unlike std::uniform_int_distribution).
uint64_t bounded(std::mt19937_64& rng, uint64_t n) {
  uint64_t limit = std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % n;
  uint64_t x;
  do x = rng();
  while (x >= limit);
  return x % n;
}

}  // namespace

std::vector<float> null_distribution(int64_t n_pos, int64_t n_total, int64_t null_size, uint64_t seed) {
  if (n_pos < 1 || n_total < n_pos) throw std::invalid_argument("null_distribution: need 1 <= n_pos <= n_total");
  uint64_t conf = (static_cast<uint64_t>(n_pos) << 32) ^ static_cast<uint64_t>(n_total);
  std::mt19937_64 rng(splitmix64(seed ^ splitmix64(conf)));
  std::vector<float> out(null_size);
  std::vector<uint8_t> taken(n_total, 0);
  std::vector<int64_t> ranks;
  ranks.reserve(n_pos);
  for (int64_t s = 0; s < null_size; ++s) {
    // Floyd's algorithm: n_pos distinct ranks out of n_total, uniformly.
    ranks.clear();
    for (int64_t j = n_total - n_pos; j < n_total; ++j) {
      int64_t t = static_cast<int64_t>(bounded(rng, static_cast<uint64_t>(j) + 1));
      int64_t pick = taken[t] ? j : t;
      taken[pick] = 1;
      ranks.push_back(pick);
    }
    std::sort(ranks.begin(), ranks.end());
    float sum = 0;
    for (int64_t k = 0; k < n_pos; ++k) {
      taken[ranks[k]] = 0;
      sum += static_cast<float>(k + 1) / static_cast<float>(ranks[k] + 1);
    }
    out[s] = sum / static_cast<float>(n_pos);
  }
  return out;
}

namespace {

// numpy/random/bit_generator.pyx SeedSequence constants.
constexpr uint32_t kInitA = 0x43b0d7e5, kMultA = 0x931e8875, kInitB = 0x8b51f9dd, kMultB = 0x58f38ded;
constexpr uint32_t kMixMultL = 0xca01f9dd, kMixMultR = 0x4973f715;

uint32_t hashmix(uint32_t value, uint32_t& hash_const) {
  value ^= hash_const;
  hash_const *= kMultA;
  value *= hash_const;
  return value ^ (value >> 16);
}

uint32_t mix(uint32_t x, uint32_t y) {
  uint32_t r = kMixMultL * x - kMixMultR * y;
  return r ^ (r >> 16);
}

// SeedSequence(seed).generate_state(n_words, np.uint32) for a non-negative integer seed (no spawn key).
std::vector<uint32_t> seed_sequence_state(uint64_t seed, size_t n_words) {
  std::vector<uint32_t> entropy;  // the integer as little-endian 32-bit words, [0] for 0
  do {
    entropy.push_back(static_cast<uint32_t>(seed));
    seed >>= 32;
  } while (seed);
  uint32_t pool[4];
  uint32_t hash_const = kInitA;
  for (size_t i = 0; i < 4; ++i) pool[i] = hashmix(i < entropy.size() ? entropy[i] : 0, hash_const);
  for (size_t src = 0; src < 4; ++src)
    for (size_t dst = 0; dst < 4; ++dst)
      if (src != dst) pool[dst] = mix(pool[dst], hashmix(pool[src], hash_const));
  for (size_t src = 4; src < entropy.size(); ++src)
    for (size_t dst = 0; dst < 4; ++dst) pool[dst] = mix(pool[dst], hashmix(entropy[src], hash_const));
  std::vector<uint32_t> out(n_words);
  hash_const = kInitB;
  for (size_t i = 0; i < n_words; ++i) {
    uint32_t v = pool[i % 4] ^ hash_const;
    hash_const *= kMultB;
    v *= hash_const;
    out[i] = v ^ (v >> 16);
  }
  return out;
}

}  // namespace

NumpyPcg64::NumpyPcg64(uint64_t seed) {
  // PCG64(SeedSequence(seed)): generate_state(4, uint64) -> initstate = s[0] << 64 | s[1], initseq = s[2] << 64 | s[3]
  // (each uint64 the little-endian pair of 32-bit words), then pcg_setseq_128_srandom_r.
  std::vector<uint32_t> w = seed_sequence_state(seed, 8);
  uint64_t v[4];
  for (int i = 0; i < 4; ++i) v[i] = static_cast<uint64_t>(w[2 * i]) | (static_cast<uint64_t>(w[2 * i + 1]) << 32);
  const u128 initstate = (static_cast<u128>(v[0]) << 64) | v[1];
  const u128 initseq = (static_cast<u128>(v[2]) << 64) | v[3];
  inc_ = (initseq << 1) | 1u;
  state_ = 0;
  next64();
  state_ += initstate;
  next64();
  has32_ = false;
}

uint64_t NumpyPcg64::next64() {
  static const u128 kMult = (static_cast<u128>(0x2360ED051FC65DA4ull) << 64) | 0x4385DF649FCCF645ull;
  state_ = state_ * kMult + inc_;
  const uint64_t x = static_cast<uint64_t>(state_ >> 64) ^ static_cast<uint64_t>(state_);
  const unsigned rot = static_cast<unsigned>(state_ >> 122);
  return (x >> rot) | (x << ((64 - rot) & 63));
}

uint32_t NumpyPcg64::next32() {
  if (has32_) {
    has32_ = false;
    return buf32_;
  }
  const uint64_t next = next64();
  has32_ = true;
  buf32_ = static_cast<uint32_t>(next >> 32);
  return static_cast<uint32_t>(next);
}

uint64_t NumpyPcg64::integers(uint64_t high) {
  if (high < 1 || high > (uint64_t{1} << 32)) throw std::invalid_argument("NumpyPcg64::integers: high out of range");
  const uint64_t rng = high - 1;
  if (rng == 0) return 0;
  if (rng == 0xFFFFFFFFull) return next32();
  const uint32_t rng_excl = static_cast<uint32_t>(rng) + 1;
  uint64_t m = static_cast<uint64_t>(next32()) * rng_excl;
  uint32_t leftover = static_cast<uint32_t>(m);
  if (leftover < rng_excl) {
    const uint32_t threshold = (0xFFFFFFFFu - static_cast<uint32_t>(rng)) % rng_excl;
    while (leftover < threshold) {
      m = static_cast<uint64_t>(next32()) * rng_excl;
      leftover = static_cast<uint32_t>(m);
    }
  }
  return m >> 32;
}

uint64_t NumpyPcg64::interval(uint64_t max) {
  if (max == 0) return 0;
  uint64_t mask = max;
  for (int s : {1, 2, 4, 8, 16, 32}) mask |= mask >> s;
  uint64_t value;
  if (max <= 0xFFFFFFFFull) {
    while ((value = (next32() & mask)) > max) {
    }
  } else {
    while ((value = (next64() & mask)) > max) {
    }
  }
  return value;
}

std::vector<uint64_t> copairs_null_seeds(uint64_t seed, size_t n_confs) {
  NumpyPcg64 rng(seed);
  std::vector<uint64_t> out(n_confs);
  for (uint64_t& s : out) s = rng.integers(8096);
  return out;
}

std::vector<float> copairs_random_ap(int64_t null_size, int64_t n_pos, int64_t n_total, uint64_t seed) {
  if (n_pos < 1 || n_total < n_pos) throw std::invalid_argument("copairs_random_ap: need 1 <= n_pos <= n_total");
  NumpyPcg64 rng(seed);
  std::vector<float> out(null_size);
  std::vector<int64_t> row(n_total), first(n_pos);
  std::vector<float> pr(n_pos);
  for (int64_t s = 0; s < null_size; ++s) {
    // One row of Generator.permuted(..., axis=1): numpy's _shuffle_raw, a Fisher-Yates pass from the end.
    for (int64_t k = 0; k < n_total; ++k) row[k] = k;
    for (int64_t i = n_total - 1; i >= 1; --i) std::swap(row[i], row[rng.interval(static_cast<uint64_t>(i))]);
    std::copy(row.begin(), row.begin() + n_pos, first.begin());
    std::sort(first.begin(), first.end());
    // average_precision(rel_k): arange(1, k+1, float32) / (rel_k + 1), summed per row, / num_pos, in float32.
    for (int64_t k = 0; k < n_pos; ++k) pr[k] = static_cast<float>(k + 1) / static_cast<float>(first[k] + 1);
    out[s] = pairwise_sum(pr.data(), n_pos) / static_cast<float>(n_pos);
  }
  return out;
}

double map_p_value(double map, const std::vector<const float*>& member_nulls, int64_t null_size) {
  const float m = static_cast<float>(member_nulls.size());
  // copairs compares `null_dist > map_score` with map_score a Python float, which numpy casts to the null's
  // float32 (NEP 50; numpy 1's value-based casting did the same): the comparison is in float32.
  const float map32 = static_cast<float>(map);
  int64_t num = 0;
  for (int64_t s = 0; s < null_size; ++s) {
    float acc = 0;
    for (const float* v : member_nulls) acc += v[s];
    float mean = acc / m;
    if (mean > map32) ++num;
  }
  return static_cast<double>(num + 1) / static_cast<double>(null_size + 1);
}

std::vector<double> benjamini_hochberg(const std::vector<double>& p) {
  const size_t n = p.size();
  std::vector<size_t> idx(n);
  for (size_t i = 0; i < n; ++i) idx[i] = i;
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return p[a] < p[b]; });
  std::vector<double> raw(n), out(n);
  for (size_t k = 0; k < n; ++k) {
    double ecdf = static_cast<double>(k + 1) / static_cast<double>(n);
    raw[k] = p[idx[k]] / ecdf;
  }
  double running = std::numeric_limits<double>::infinity();
  for (size_t k = n; k-- > 0;) {
    running = std::min(running, raw[k]);
    out[idx[k]] = std::min(running, 1.0);
  }
  return out;
}

}  // namespace tabula::eval
