#include "eval/metrics/recall.h"

#include <immintrin.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>
#include <unordered_map>

#include "engine/fileio.h"
#include "engine/system.h"

namespace tabula::eval {

namespace {

// Order-preserving unsigned key of a float (-0 folded onto +0, since searchsorted sees them equal).
uint32_t sort_key(float v) {
  if (v == 0.0f) v = 0.0f;
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
float from_key(uint32_t k) {
  uint32_t b = (k & 0x80000000u) ? (k & 0x7FFFFFFFu) : ~k;
  float v;
  std::memcpy(&v, &b, 4);
  return v;
}

// Horizontal sum in a fixed tree order (GCC 12's _mm512_reduce_add_ps trips -Wmaybe-uninitialized).
__attribute__((target("avx512f"))) inline float hsum16(__m512 v) {
  alignas(64) float lane[16];
  _mm512_store_ps(lane, v);
  for (int w = 8; w >= 1; w /= 2)
    for (int k = 0; k < w; ++k) lane[k] += lane[k + w];
  return lane[0];
}

// One pair: a single accumulator fed 16-wide FMAs over k, then reduced. The 4 x 4 tile below runs the very same
// per-pair sequence, so a pair's value does not depend on where it sits in a block.
__attribute__((target("avx512f,fma"))) float sim_one_avx512(const float* a, const float* b, int64_t full,
                                                             __mmask16 tail) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t k = 0; k < full; k += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + k), _mm512_loadu_ps(b + k), acc);
  if (tail) acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, a + full), _mm512_maskz_loadu_ps(tail, b + full), acc);
  return hsum16(acc);
}

// s(i, j) = <x_i, x_j> for i in [r0, r1), j in [c0, n), into out[(i - r0) * ld + (j - c0)], AVX-512 FMA in 4 x 4
// register tiles (the library's Eigen is built for SSE2 only).
__attribute__((target("avx512f,fma"))) void sim_block_avx512(const float* x, int64_t d, int64_t r0, int64_t r1,
                                                              int64_t c0, int64_t n, float* out, int64_t ld) {
  const int64_t full = d / 16 * 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (d - full)) - 1);
  int64_t j = c0;
  for (; j + 4 <= n; j += 4) {
    const float* b[4] = {x + j * d, x + (j + 1) * d, x + (j + 2) * d, x + (j + 3) * d};
    int64_t i = r0;
    for (; i + 4 <= r1; i += 4) {
      const float* a[4] = {x + i * d, x + (i + 1) * d, x + (i + 2) * d, x + (i + 3) * d};
      __m512 acc[4][4];
      for (int p = 0; p < 4; ++p)
        for (int q = 0; q < 4; ++q) acc[p][q] = _mm512_setzero_ps();
      __m512 va[4], vb[4];
      for (int64_t k = 0; k < full; k += 16) {
        for (int p = 0; p < 4; ++p) va[p] = _mm512_loadu_ps(a[p] + k), vb[p] = _mm512_loadu_ps(b[p] + k);
        for (int p = 0; p < 4; ++p)
          for (int q = 0; q < 4; ++q) acc[p][q] = _mm512_fmadd_ps(va[p], vb[q], acc[p][q]);
      }
      if (tail) {
        for (int p = 0; p < 4; ++p)
          va[p] = _mm512_maskz_loadu_ps(tail, a[p] + full), vb[p] = _mm512_maskz_loadu_ps(tail, b[p] + full);
        for (int p = 0; p < 4; ++p)
          for (int q = 0; q < 4; ++q) acc[p][q] = _mm512_fmadd_ps(va[p], vb[q], acc[p][q]);
      }
      for (int p = 0; p < 4; ++p)
        for (int q = 0; q < 4; ++q) out[(i + p - r0) * ld + (j + q - c0)] = hsum16(acc[p][q]);
    }
    for (; i < r1; ++i)
      for (int q = 0; q < 4; ++q) out[(i - r0) * ld + (j + q - c0)] = sim_one_avx512(x + i * d, b[q], full, tail);
  }
  for (; j < n; ++j)
    for (int64_t i = r0; i < r1; ++i) out[(i - r0) * ld + (j - c0)] = sim_one_avx512(x + i * d, x + j * d, full, tail);
}

}  // namespace

void similarity_rows(const RowMatrixF& xn, int64_t r0, int64_t r1, int64_t c0, RowMatrixF& out) {
  static const bool avx512 = cpu_features().has_avx512();
  const int64_t n = xn.rows();
  out.resize(r1 - r0, n - c0);
  if (avx512)
    sim_block_avx512(xn.data(), xn.cols(), r0, r1, c0, n, out.data(), n - c0);
  else
    out.noalias() = xn.middleRows(r0, r1 - r0) * xn.middleRows(c0, n - c0).transpose();
}

std::string python_float_repr(double v) {
  char buf[64];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, p);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

std::string recall_column_name(double lo, double hi) {
  return "recall_" + python_float_repr(lo) + "_" + python_float_repr(hi);
}

std::vector<std::pair<std::string, std::string>> read_relationships(const std::string& path) {
  std::string text = read_file_text(path);
  // A tab in the header line means TSV; parse it as CSV after swapping separators only when no comma is present.
  size_t eol = text.find('\n');
  std::string header = text.substr(0, eol);
  if (header.find('\t') != std::string::npos && header.find(',') == std::string::npos)
    std::replace(text.begin(), text.end(), '\t', ',');
  Table t = parse_csv(text, path);
  if (t.cols() < 2) throw std::runtime_error(path + ": a relationship file needs two columns (entity1, entity2)");
  std::vector<std::pair<std::string, std::string>> out;
  for (size_t r = 0; r < t.rows(); ++r) {
    if (t.at(r, 0).empty() || t.at(r, 1).empty())
      throw std::runtime_error(t.where(r, t.at(r, 0).empty() ? 0 : 1) + ": empty entity in a relationship");
    out.emplace_back(t.at(r, 0), t.at(r, 1));
  }
  return out;
}

std::vector<std::pair<int64_t, int64_t>> relationship_pairs(
    const std::vector<std::string>& labels, const std::vector<std::pair<std::string, std::string>>& rels) {
  std::unordered_map<std::string, int64_t> row;
  for (size_t i = 0; i < labels.size(); ++i)
    if (!row.emplace(labels[i], static_cast<int64_t>(i)).second)
      throw std::runtime_error("duplicate perturbation label '" + labels[i] +
                               "' in the map (aggregate replicates first)");
  std::set<std::pair<std::string, std::string>> seen;
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const auto& [a0, b0] : rels) {
    std::string a = a0, b = b0;
    if (b < a) std::swap(a, b);  // EFAAR: tuple(sorted([e1, e2]))
    if (a == b || !seen.insert({a, b}).second) continue;
    auto ia = row.find(a), ib = row.find(b);
    if (ia == row.end() || ib == row.end()) continue;
    out.emplace_back(std::min(ia->second, ib->second), std::max(ia->second, ib->second));
  }
  return out;
}

namespace {

// Exchanges between the parts of a distributed run (no-ops in one process): integer sums are exact in any order;
// collected floats are joined in part order (only their order statistics are used, which do not depend on it).
struct PartExchange {
  const RecallParts& parts;
  bool distributed() const { return parts.parts > 1; }
  void sum(std::vector<int64_t>& v) const {
    if (!distributed()) return;
    std::string mine(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(int64_t));
    std::vector<std::string> all = parts.allgather(mine);
    std::fill(v.begin(), v.end(), 0);
    for (const std::string& a : all) {
      if (a.size() != mine.size()) throw std::runtime_error("eval recall: a part sent counts of another size");
      for (size_t k = 0; k < v.size(); ++k) {
        int64_t x;
        std::memcpy(&x, a.data() + k * sizeof(int64_t), sizeof x);
        v[k] += x;
      }
    }
  }
  void join(std::vector<float>& v) const {
    if (!distributed()) return;
    std::vector<std::string> all =
        parts.allgather(std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float)));
    v.clear();
    for (const std::string& a : all) {
      const size_t at = v.size();
      v.resize(at + a.size() / sizeof(float));
      std::memcpy(v.data() + at, a.data(), a.size() / sizeof(float) * sizeof(float));
    }
  }
};

// What one threshold pair needs from the sorted null (0-based ranks); see the header for the searchsorted rules.
struct Need {
  int64_t lo_rank = -1, hi_rank = -1;  // -1: condition always false (lo) / always true (hi)
  bool lo_all = false, hi_never = false;
};

Need threshold_need(double lo, double hi, int64_t null_size) {
  const double nn = static_cast<double>(null_size);
  Need nd;
  int64_t c = std::clamp<int64_t>(static_cast<int64_t>(lo * nn), 0, null_size);
  while (c > 0 && static_cast<double>(c) / nn > lo) --c;
  while (c < null_size && static_cast<double>(c + 1) / nn <= lo) ++c;
  if (static_cast<double>(c) / nn > lo) nd.lo_rank = -1;  // lo < 0: never
  else if (c >= null_size) nd.lo_all = true;
  else nd.lo_rank = c;
  int64_t k = std::clamp<int64_t>(static_cast<int64_t>(hi * nn), 0, null_size);
  while (k > 0 && static_cast<double>(k - 1) / nn >= hi) --k;
  while (k <= null_size && static_cast<double>(k) / nn < hi) ++k;
  if (k > null_size) nd.hi_never = true;
  else nd.hi_rank = k - 1;  // -1 when k == 0: always
  return nd;
}

// Streams every upper-triangle similarity s(i, j), i < j, of the normalised map to visit(thread, s), recording the
// annotated pairs' similarities on the way. Row blocks are dealt round-robin so the triangle's uneven rows balance
// across threads; a distributed run sweeps only its part's blocks (b mod parts == part).
class TriangleSweep {
 public:
  static constexpr int64_t kBlock = 256;
  TriangleSweep(const RowMatrixF& xn, const std::vector<std::pair<int64_t, int64_t>>& pairs, int threads,
                const PartExchange& ex, std::vector<float>& query_similarity)
      : xn_(xn), n_(xn.rows()), threads_(threads), ex_(ex), pairs_(pairs), query_(query_similarity), by_row_(n_) {
    for (size_t q = 0; q < pairs.size(); ++q) by_row_[pairs[q].first].emplace_back(pairs[q].second, q);
  }
  int threads() const { return threads_; }

  template <class Visit>
  void run(Visit&& visit) {
    const bool record = !queries_recorded_;
    const int64_t n_blocks = (n_ + kBlock - 1) / kBlock;
    const int64_t step = static_cast<int64_t>(threads_) * ex_.parts.parts;
    parallel_for(threads_, threads_, [&](int64_t t0, int64_t t1) {
      RowMatrixF s;
      for (int64_t t = t0; t < t1; ++t)
        for (int64_t b = ex_.parts.part + t * ex_.parts.parts; b < n_blocks; b += step) {
          int64_t r0 = b * kBlock, r1 = std::min(n_, r0 + kBlock);
          similarity_rows(xn_, r0, r1, r0, s);
          for (int64_t i = r0; i < r1; ++i) {
            const float* row = s.row(i - r0).data() - r0;  // row[j] = s(i, j)
            for (int64_t j = i + 1; j < n_; ++j) visit(t, row[j]);
            if (record)
              for (auto [j, q] : by_row_[i]) query_[q] = row[j];
          }
        }
    });
    if (record) share_queries();
    queries_recorded_ = true;
  }

 private:
  // Each annotated pair's similarity was recorded by the part owning the pair's first row.
  void share_queries() {
    if (!ex_.distributed()) return;
    std::vector<std::string> all = ex_.parts.allgather(
        std::string(reinterpret_cast<const char*>(query_.data()), query_.size() * sizeof(float)));
    for (size_t q = 0; q < pairs_.size(); ++q) {
      const std::string& a = all.at(static_cast<size_t>((pairs_[q].first / kBlock) % ex_.parts.parts));
      if (a.size() != query_.size() * sizeof(float))
        throw std::runtime_error("eval recall: a part sent another number of pair similarities");
      std::memcpy(&query_[q], a.data() + q * sizeof(float), sizeof(float));
    }
  }

  const RowMatrixF& xn_;
  const int64_t n_;
  const int threads_;
  const PartExchange& ex_;
  const std::vector<std::pair<int64_t, int64_t>>& pairs_;
  std::vector<float>& query_;
  std::vector<std::vector<std::pair<int64_t, size_t>>> by_row_;  // annotated pairs by their first row
  bool queries_recorded_ = false;
};

// One pass: quantiles of a sample of rows (1024 rows' upper-triangle similarities, ~5 % of the work at N = 20,000)
// give a band of +-1 % around each needed rank; the full pass counts values below each band and keeps those inside.
// A rank is exact when the counts prove it falls inside its band; the others are returned (a very uneven map) for
// the two-pass path.
std::vector<int64_t> banded_order_stats(const RowMatrixF& xn, const std::vector<int64_t>& pending, int64_t null_size,
                                        TriangleSweep& sweep, const PartExchange& ex,
                                        std::map<int64_t, float>& order_stat) {
  const int64_t n = xn.rows();
  const double nn = static_cast<double>(null_size);
  const int64_t stride = std::max<int64_t>(1, n / 1024);
  std::vector<float> sample;
  RowMatrixF srow;
  for (int64_t i = 0; i + 1 < n; i += stride) {
    similarity_rows(xn, i, i + 1, i + 1, srow);
    sample.insert(sample.end(), srow.data(), srow.data() + srow.size());
  }
  const double delta = 0.01;
  const float inf = std::numeric_limits<float>::infinity();
  auto sample_index = [&](double q) {
    return std::clamp<int64_t>(static_cast<int64_t>(q * static_cast<double>(sample.size())), 0,
                               static_cast<int64_t>(sample.size()) - 1);
  };
  // Only a few positions of the sorted sample are needed (two per band): they are selected in ascending order, each
  // nth_element working on what lies above the previous one, which leaves the values a full sort would put there
  // (the sample is ~10^7 values at N = 20,000; sorting it all was ~5 % of the run).
  std::vector<int64_t> wanted;
  for (int64_t r : pending) {
    const double f = (static_cast<double>(r) + 0.5) / nn;
    if (f - delta > 0) wanted.push_back(sample_index(f - delta));
    if (f + delta < 1) wanted.push_back(sample_index(f + delta));
  }
  std::sort(wanted.begin(), wanted.end());
  wanted.erase(std::unique(wanted.begin(), wanted.end()), wanted.end());
  int64_t selected_from = 0;
  for (int64_t k : wanted) {
    std::nth_element(sample.begin() + selected_from, sample.begin() + k, sample.end());
    selected_from = k + 1;
  }
  struct Band {
    int64_t rank;
    float lo, hi;
  };
  std::vector<Band> bands;
  for (int64_t r : pending) {
    const double f = (static_cast<double>(r) + 0.5) / nn;
    bands.push_back({r, f - delta <= 0 ? -inf : sample[sample_index(f - delta)],
                     f + delta >= 1 ? inf : sample[sample_index(f + delta)]});
  }
  const size_t nb = bands.size();
  const int threads = sweep.threads();
  std::vector<std::vector<int64_t>> below(threads, std::vector<int64_t>(nb, 0));
  std::vector<std::vector<std::vector<float>>> inside(threads, std::vector<std::vector<float>>(nb));
  sweep.run([&](int64_t t, float v) {
    if (v == 0.0f) v = 0.0f;
    for (size_t b = 0; b < nb; ++b) {
      if (v < bands[b].lo) ++below[t][b];
      else if (v <= bands[b].hi) inside[t][b].push_back(v);
    }
  });
  std::vector<int64_t> below_all(nb, 0);
  for (size_t b = 0; b < nb; ++b)
    for (int t = 0; t < threads; ++t) below_all[b] += below[t][b];
  ex.sum(below_all);
  std::vector<int64_t> still;
  for (size_t b = 0; b < nb; ++b) {
    int64_t cnt = below_all[b];
    std::vector<float> vals;
    for (int t = 0; t < threads; ++t) {
      vals.insert(vals.end(), inside[t][b].begin(), inside[t][b].end());
      std::vector<float>().swap(inside[t][b]);
    }
    ex.join(vals);
    int64_t r = bands[b].rank;
    if (cnt <= r && r < cnt + static_cast<int64_t>(vals.size())) {
      std::nth_element(vals.begin(), vals.begin() + (r - cnt), vals.end());
      order_stat[r] = vals[r - cnt];
    } else {
      still.push_back(r);
    }
  }
  return still;
}

// Two passes: a histogram of the top 16 bits of each similarity's order-preserving key locates each rank's bin;
// bins small enough (<= collect_limit values) are collected and the rank picked with nth_element, a huge bin (many
// equal values) is resolved by a histogram of the low 16 bits, which pins the exact float.
void histogram_order_stats(const std::vector<int64_t>& pending, int64_t collect_limit, TriangleSweep& sweep,
                           const PartExchange& ex, std::map<int64_t, float>& order_stat) {
  const int threads = sweep.threads();
  std::vector<std::vector<int64_t>> hist(threads, std::vector<int64_t>(1 << 16, 0));
  sweep.run([&](int64_t t, float v) { ++hist[t][sort_key(v) >> 16]; });
  std::vector<int64_t> total(1 << 16, 0);
  for (auto& h : hist)
    for (size_t k = 0; k < h.size(); ++k) total[k] += h[k];
  hist.clear();
  ex.sum(total);
  std::map<int64_t, std::pair<uint32_t, int64_t>> where;  // rank -> (bin, offset inside the bin)
  for (int64_t r : pending) {
    int64_t cum = 0;
    for (uint32_t k = 0; k < (1u << 16); ++k) {
      if (cum + total[k] > r) {
        where[r] = {k, r - cum};
        break;
      }
      cum += total[k];
    }
  }
  if (where.empty()) return;
  std::set<uint32_t> collect_bins, refine_bins;
  for (auto& [r, w] : where) (total[w.first] <= collect_limit ? collect_bins : refine_bins).insert(w.first);
  std::vector<std::map<uint32_t, std::vector<float>>> got(threads);
  std::vector<std::map<uint32_t, std::vector<int64_t>>> low(threads);
  for (int t = 0; t < threads; ++t)
    for (uint32_t b : refine_bins) low[t][b].assign(1 << 16, 0);
  sweep.run([&](int64_t t, float v) {
    uint32_t k = sort_key(v), hi = k >> 16;
    if (collect_bins.count(hi)) got[t][hi].push_back(v);
    else if (refine_bins.count(hi)) ++low[t][hi][k & 0xFFFF];
  });
  for (auto& [r, w] : where) {
    auto [bin, off] = w;
    if (collect_bins.count(bin)) {
      std::vector<float> vals;
      for (auto& g : got) vals.insert(vals.end(), g[bin].begin(), g[bin].end());
      ex.join(vals);
      std::nth_element(vals.begin(), vals.begin() + off, vals.end());
      order_stat[r] = vals[off];
    } else {
      std::vector<int64_t> counts(1 << 16, 0);
      for (auto& l : low)
        for (uint32_t k = 0; k < (1u << 16); ++k) counts[k] += l[bin][k];
      ex.sum(counts);
      int64_t cum = 0;
      for (uint32_t k = 0; k < (1u << 16); ++k) {
        if (cum + counts[k] > off) {
          order_stat[r] = from_key((bin << 16) | k);
          break;
        }
        cum += counts[k];
      }
    }
  }
}

}  // namespace

RecallResult relationship_recall(const RowMatrixF& map, const std::vector<std::pair<int64_t, int64_t>>& pairs,
                                 const std::vector<std::pair<double, double>>& thresholds, int threads,
                                 int64_t collect_limit, const RecallParts& parts) {
  const int64_t n = map.rows();
  if (parts.parts < 1 || parts.part < 0 || parts.part >= parts.parts)
    throw std::invalid_argument("RecallParts: need 0 <= part < parts");
  if (parts.parts > 1 && !parts.allgather) throw std::invalid_argument("RecallParts: parts > 1 needs allgather");
  if (n < 2) throw std::runtime_error("relationship recall needs at least two perturbations in the map");
  if (pairs.empty()) throw std::runtime_error("no annotated relationship has both entities in the map");
  RecallResult res;
  res.null_size = n * (n - 1) / 2;
  res.query_size = static_cast<int64_t>(pairs.size());
  res.pairs = pairs;
  res.query_similarity.assign(pairs.size(), 0.0f);
  const RowMatrixF xn = l2_normalize_rows(map, "map");

  std::vector<Need> needs;
  std::vector<int64_t> pending;  // the order statistics (ranks in the sorted null) the thresholds need
  for (auto [a, b] : thresholds) {
    const double lo = std::min(a, b), hi = std::max(a, b);
    needs.push_back(threshold_need(lo, hi, res.null_size));
    if (needs.back().lo_rank >= 0) pending.push_back(needs.back().lo_rank);
    if (needs.back().hi_rank >= 0) pending.push_back(needs.back().hi_rank);
    res.thresholds.emplace_back(lo, hi);
  }
  std::sort(pending.begin(), pending.end());
  pending.erase(std::unique(pending.begin(), pending.end()), pending.end());

  const PartExchange ex{parts};
  TriangleSweep sweep(xn, pairs, threads <= 0 ? default_threads() : threads, ex, res.query_similarity);
  std::map<int64_t, float> order_stat;
  if (!pending.empty() && res.null_size >= (int64_t(1) << 20))
    pending = banded_order_stats(xn, pending, res.null_size, sweep, ex, order_stat);
  // Always run (also with nothing pending): the first sweep records the annotated pairs' similarities.
  histogram_order_stats(pending, collect_limit, sweep, ex, order_stat);

  for (const Need& nd : needs) {
    int64_t hits = 0;
    for (float q : res.query_similarity) {
      if (q == 0.0f) q = 0.0f;
      bool low_hit = nd.lo_all || (nd.lo_rank >= 0 && q < order_stat[nd.lo_rank]);
      bool high_hit = !nd.hi_never && (nd.hi_rank < 0 || q > order_stat[nd.hi_rank]);
      hits += low_hit || high_hit;
    }
    res.recall.push_back(static_cast<double>(hits) / static_cast<double>(res.query_size));
  }
  return res;
}

}  // namespace tabula::eval
