#include "eval/metrics/map.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <stdexcept>
#include <unordered_map>

#include "eval/metrics/numpy_sum.h"

namespace tabula::eval {

namespace {

// One pair rule (positive or negative): all `same` codes equal, all `diff` codes different.
struct Rule {
  std::vector<const int32_t*> same, diff;
  std::vector<int32_t> bucket;                // composite sameby key of each row
  std::vector<std::vector<int32_t>> members;  // rows of each bucket, ascending
  bool dense() const { return same.empty(); }
  bool diff_ok(int64_t i, int64_t j) const {
    for (const int32_t* d : diff)
      if (d[i] == d[j]) return false;
    return true;
  }
};

void build_buckets(Rule& r, int64_t n) {
  if (r.same.empty()) return;
  r.bucket.assign(n, 0);
  std::vector<int32_t> key(r.same[0], r.same[0] + n);
  for (size_t c = 1; c < r.same.size(); ++c) {
    std::unordered_map<uint64_t, int32_t> ids;
    for (int64_t i = 0; i < n; ++i) {
      uint64_t k = (static_cast<uint64_t>(static_cast<uint32_t>(key[i])) << 32) | static_cast<uint32_t>(r.same[c][i]);
      auto [it, ins] = ids.emplace(k, static_cast<int32_t>(ids.size()));
      key[i] = it->second;
    }
  }
  int32_t nb = 0;
  for (int64_t i = 0; i < n; ++i) nb = std::max(nb, key[i] + 1);
  r.members.assign(nb, {});
  for (int64_t i = 0; i < n; ++i) r.members[key[i]].push_back(static_cast<int32_t>(i));
  r.bucket = std::move(key);
}

// copairs' AP of one rank list (compute.ap_contiguous): TP_k / k in float64 at each positive's rank k, 0 elsewhere,
// summed by np.add.reduceat (the first term, plus numpy's pairwise sum of the others), / the number of positives.
// `ranks`: the positives' 1-based ranks, ascending. `scratch` holds n_total zeros on entry and on return.
double copairs_ap(const int64_t* ranks, int64_t p, int64_t n_total, std::vector<double>& scratch) {
  if (static_cast<int64_t>(scratch.size()) < n_total) scratch.resize(n_total, 0.0);
  for (int64_t t = 0; t < p; ++t) scratch[ranks[t] - 1] = static_cast<double>(t + 1) / static_cast<double>(ranks[t]);
  const double sum = scratch[0] + pairwise_sum(scratch.data() + 1, n_total - 1);
  for (int64_t t = 0; t < p; ++t) scratch[ranks[t] - 1] = 0.0;
  return sum / static_cast<double>(p);
}

// pandas/_libs/groupby.pyx group_mean's compensated summation.
struct KahanSum {
  double sum = 0, compensation = 0;
  void add(double val) {
    const double y = val - compensation;
    const double t = sum + y;
    compensation = t - sum - y;
    if (compensation != compensation) compensation = 0;  // an infinite value (GH#50367)
    sum = t;
  }
};

struct Entry {
  float key;      // 1 - sim in float32, as copairs sorts
  uint8_t label;  // 1 positive, 0 negative
};

}  // namespace

double ap_from_ranked(const std::vector<uint8_t>& rel) {
  std::vector<int64_t> ranks;
  for (size_t k = 0; k < rel.size(); ++k)
    if (rel[k]) ranks.push_back(static_cast<int64_t>(k + 1));
  if (ranks.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::vector<double> scratch;
  return copairs_ap(ranks.data(), static_cast<int64_t>(ranks.size()), static_cast<int64_t>(rel.size()), scratch);
}

double expected_ap(int64_t m, int64_t n) {
  int64_t l = m + n;
  if (l < 1 || m < 0 || n < 0) throw std::invalid_argument("expected_ap: invalid counts");
  if (l == 1) return m == 1 ? 1.0 : 0.0;
  if (m == 0) return 0.0;
  if (m == l) return 1.0;
  double h = 0;
  for (int64_t k = 1; k <= l; ++k) h += 1.0 / static_cast<double>(k);
  double L = static_cast<double>(l);
  return (1.0 / L) * (((static_cast<double>(m) - 1.0) / (L - 1.0)) * (L - h) + h);
}

double normalize_ap(double ap, int64_t n_pos, int64_t n_neg) {
  double mu0 = expected_ap(n_pos, n_neg);
  double v = (ap - mu0) / std::max(1.0 - mu0, 1e-10);
  if (std::isnan(v)) return v;
  return std::clamp(v, -1.0, 1.0);
}

namespace {

// The pair rules of one run, built from the metadata once.
struct Pairing {
  std::map<std::string, ColumnCodes> codes;  // node-based: the rules point into it
  Rule pos, neg;
  int64_t n = 0;

  Pairing(const Table& meta, const MapOptions& opt, int64_t rows) : n(rows) {
    auto check_rule = [](const std::vector<std::string>& same, const std::vector<std::string>& diff,
                         const char* which) {
      if (same.empty() && diff.empty())
        throw std::runtime_error(std::string(which) + ": give at least one sameby or diffby column");
      for (const auto& s : same)
        if (std::find(diff.begin(), diff.end(), s) != diff.end())
          throw std::runtime_error(std::string(which) + ": column '" + s + "' is in both sameby and diffby");
    };
    check_rule(opt.pos_sameby, opt.pos_diffby, "positive pairs");
    check_rule(opt.neg_sameby, opt.neg_diffby, "negative pairs");
    for (const auto* list : {&opt.pos_sameby, &opt.pos_diffby, &opt.neg_sameby, &opt.neg_diffby})
      for (const auto& c : *list)
        if (!codes.count(c)) codes.emplace(c, column_codes(meta, c));
    for (const auto& c : opt.pos_sameby) pos.same.push_back(codes[c].code.data());
    for (const auto& c : opt.pos_diffby) pos.diff.push_back(codes[c].code.data());
    for (const auto& c : opt.neg_sameby) neg.same.push_back(codes[c].code.data());
    for (const auto& c : opt.neg_diffby) neg.diff.push_back(codes[c].code.data());
    build_buckets(pos, n);
    build_buckets(neg, n);
  }
  Pairing(const Pairing&) = delete;
  Pairing& operator=(const Pairing&) = delete;

  bool dense() const { return pos.dense() || neg.dense(); }
  // Pairs of profile i under rule r (r must have sameby columns).
  int64_t count(const Rule& r, int64_t i) const {
    int64_t c = 0;
    for (int32_t j : r.members[r.bucket[i]]) c += j != i && r.diff_ok(i, j);
    return c;
  }
};

AveragePrecision empty_result(int64_t n) {
  AveragePrecision out;
  out.ap.assign(n, std::numeric_limits<double>::quiet_NaN());
  out.nap.assign(n, std::numeric_limits<double>::quiet_NaN());
  out.n_pos.assign(n, 0);
  out.n_total.assign(n, 0);
  return out;
}

// The errors copairs raises for a run without positive or negative pairs, then the normalised AP.
void finish(AveragePrecision& out) {
  const int64_t n = static_cast<int64_t>(out.ap.size());
  int64_t any_pos = 0, any_total = 0;
  for (int64_t i = 0; i < n; ++i) any_pos += out.n_pos[i], any_total += out.n_total[i];
  if (any_pos == 0)
    throw std::runtime_error("no positive pairs: no two profiles satisfy pos_sameby/pos_diffby "
                             "(check the column names and that replicates exist)");
  if (any_total == any_pos)
    throw std::runtime_error("no negative pairs: no two profiles satisfy neg_sameby/neg_diffby");

  std::map<std::pair<int64_t, int64_t>, double> mu0;  // expected AP per configuration, computed once
  for (int64_t i = 0; i < n; ++i)
    if (out.n_pos[i] > 0) {
      auto key = std::make_pair(out.n_pos[i], out.n_total[i]);
      auto it = mu0.find(key);
      if (it == mu0.end()) it = mu0.emplace(key, expected_ap(key.first, key.second - key.first)).first;
      double v = (out.ap[i] - it->second) / std::max(1.0 - it->second, 1e-10);
      out.nap[i] = std::clamp(v, -1.0, 1.0);
    }
}

// Work of one pass of the counting path: the queries in members[q0, q1) of one bucket against every member of
// that bucket.
struct TileJob {
  int32_t bucket;
  int64_t q0, q1;
};

// Row norms computed when a row is first read instead of in a separate pass over the file: 0 = not read yet (a
// valid norm is > 0). A row can be read by two jobs at once (a bucket split into tiles); both compute the same bits,
// and the slots are accessed atomically.
struct LazyNorms {
  const FeatureRows& x;
  std::vector<float> norm;
  explicit LazyNorms(const FeatureRows& rows) : x(rows), norm(static_cast<size_t>(rows.rows()), 0.f) {}

  float of(int32_t i, const float* row) {
    std::atomic_ref<float> slot(norm[static_cast<size_t>(i)]);
    float v = slot.load(std::memory_order_relaxed);
    if (v > 0) return v;
    v = numpy_norm_f32(row, x.cols());
    // NaN/inf cells give a NaN/inf norm, an all-zero row a zero one: then the whole file is scanned so the error
    // names the file's first bad row, as checking before any pass did. An infinite norm from finite cells (squares
    // overflowing float32) is not an error, as before: the row divides to zeros, like numpy's.
    if (!(v > 0 && v < std::numeric_limits<float>::infinity())) {
      bool finite = true;
      for (int64_t c = 0; c < x.cols(); ++c) finite = finite && std::isfinite(row[c]);
      if (!finite || !(v > 0)) {
        checked_row_norms(x, 1);  // throws naming the first bad row
        throw std::logic_error(x.name() + ": row " + std::to_string(i) + " is not finite but the full scan passed");
      }
    }
    slot.store(v, std::memory_order_relaxed);
    return v;
  }
  // Rows never read by the passes (no pair of theirs needed a similarity) are still checked, so bad input is
  // refused whatever the pair rules: the rows not read yet, in runs.
  void check_unread(int threads) {
    const int64_t n = x.rows();
    std::vector<int32_t> ids;
    for (int64_t i = 0; i < n; ++i)
      if (!(norm[static_cast<size_t>(i)] > 0)) ids.push_back(static_cast<int32_t>(i));
    parallel_for(static_cast<int64_t>(ids.size()), threads, [&](int64_t k0, int64_t k1) {
      std::vector<float> row(static_cast<size_t>(x.cols()));
      for (int64_t k = k0; k < k1; ++k) {
        x.read(&ids[k], 1, row.data());
        of(ids[k], row.data());
      }
    });
  }
};

// Rows of `ids` read from x and divided by their norms: the same float32 bits as l2_normalize_rows_inplace.
void read_normalized(const FeatureRows& x, LazyNorms& norms, const int32_t* ids, int64_t k, float* dst) {
  x.read(ids, k, dst);
  const int64_t d = x.cols();
  for (int64_t r = 0; r < k; ++r) {
    float* row = dst + r * d;
    const float norm = norms.of(ids[r], row);
    for (int64_t c = 0; c < d; ++c) row[c] = row[c] / norm;
  }
}

// Per-thread scratch of the tile loops: the rows of the job's queries and of one candidate tile, and the panel the
// dot products run on.
struct TileScratch {
  std::vector<float> qbuf, cbuf;
  DotPanel panel;
  std::vector<int32_t> queries, cands, tuple_of, slot, codes;
  std::vector<uint8_t> mask, ok;
  std::vector<float> sims;
  std::vector<std::vector<int32_t>> tuples;
  TileScratch(int64_t tile, int64_t d)
      : qbuf(static_cast<size_t>(tile * d)), cbuf(static_cast<size_t>(tile * d)), panel(d) {}
};

// Runs fn(job, scratch, query_rows, cand_rows, c0, c1) over the rule's buckets in tiles of at most `tile` rows: each
// job holds the rows of its queries, and each candidate tile [c0, c1) of the bucket is read in turn (the query tile
// itself is reused). Jobs are handed out dynamically, but every query belongs to exactly one job and its results are
// written only there, so the output does not depend on the thread count or the schedule.
template <class Fn>
void for_each_tile(const FeatureRows& x, LazyNorms& norms, const Rule& r,
                   const std::vector<uint8_t>& is_query, int64_t tile, int threads, Fn&& fn) {
  std::vector<TileJob> jobs;
  for (size_t b = 0; b < r.members.size(); ++b) {
    const auto& m = r.members[b];
    if (m.size() < 2) continue;
    for (int64_t q0 = 0; q0 < static_cast<int64_t>(m.size()); q0 += tile) {
      int64_t q1 = std::min<int64_t>(static_cast<int64_t>(m.size()), q0 + tile);
      bool any = false;
      for (int64_t k = q0; k < q1 && !any; ++k) any = is_query[m[k]];
      if (any) jobs.push_back({static_cast<int32_t>(b), q0, q1});
    }
  }
  if (threads <= 0) threads = default_threads();
  std::atomic<int64_t> next{0};
  const int64_t d = x.cols();
  parallel_for(threads, threads, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      TileScratch s(tile, d);
      for (int64_t j = next++; j < static_cast<int64_t>(jobs.size()); j = next++) {
        const TileJob& job = jobs[j];
        const auto& m = r.members[job.bucket];
        const int64_t size = static_cast<int64_t>(m.size());
        read_normalized(x, norms, m.data() + job.q0, job.q1 - job.q0, s.qbuf.data());
        for (int64_t c0 = 0; c0 < size; c0 += tile) {
          const int64_t c1 = std::min(size, c0 + tile);
          const float* cand = s.qbuf.data();
          if (c0 != job.q0) {
            read_normalized(x, norms, m.data() + c0, c1 - c0, s.cbuf.data());
            cand = s.cbuf.data();
          }
          fn(job, s, s.qbuf.data(), cand, c0, c1);
        }
      }
    }
  });
}

// The pairs of one tile under rule r: visit(a, b, sim) for every query a in [job.q0, job.q1) (member positions of the
// bucket, is_query) and every candidate b in [c0, c1) with members i = m[a] != j = m[b] and r.diff_ok(i, j), in
// ascending b for each a; sim = numpy_dot_f32 of the two normalised rows, bit for bit (computed on a DotPanel).
// Which candidates pair with a query depends only on the query's diffby codes, so the queries are grouped by
// those codes (one group per plate in JUMP's preset: every compound well has negcon 0 and no reference index) and
// only candidates pairing with some group enter the panels.
template <class Visit>
void tile_pairs(const Rule& r, const std::vector<int32_t>& m, const TileJob& job, TileScratch& s,
                const std::vector<uint8_t>& is_query, const float* q, const float* cand, int64_t c0, int64_t c1,
                int64_t d, int64_t min_panel, Visit&& visit) {
  const size_t n_diff = r.diff.size();
  s.queries.clear();
  s.tuple_of.clear();
  s.tuples.clear();
  s.codes.resize(n_diff);
  for (int64_t a = job.q0; a < job.q1; ++a) {
    if (!is_query[m[a]]) continue;
    for (size_t k = 0; k < n_diff; ++k) s.codes[k] = r.diff[k][m[a]];
    size_t t = 0;
    while (t < s.tuples.size() && s.tuples[t] != s.codes) ++t;
    if (t == s.tuples.size()) s.tuples.push_back(s.codes);
    s.queries.push_back(static_cast<int32_t>(a));
    s.tuple_of.push_back(static_cast<int32_t>(t));
  }
  if (s.queries.empty()) return;
  // mask[k * tuples + t]: candidate k differs from tuple t in every diffby column.
  const size_t nt = s.tuples.size();
  s.cands.clear();
  s.mask.clear();
  s.ok.resize(nt);
  for (int64_t b = c0; b < c1; ++b) {
    const int32_t j = m[b];
    bool any = false;
    for (size_t t = 0; t < nt; ++t) {
      bool all = true;
      for (size_t k = 0; k < n_diff && all; ++k) all = r.diff[k][j] != s.tuples[t][k];
      s.ok[t] = all;
      any |= all;
    }
    if (!any) continue;
    s.cands.push_back(static_cast<int32_t>(b));
    for (size_t t = 0; t < nt; ++t) s.mask.push_back(s.ok[t]);
  }
  const int64_t nc = static_cast<int64_t>(s.cands.size());
  const int64_t nq = static_cast<int64_t>(s.queries.size());
  if (nc < min_panel || !s.panel.simd()) {
    // Few candidates (a compound's replicates): a panel would run mostly empty lanes, so one dot per pair, each
    // computed once: numpy's dot is symmetric bit for bit (the same rounded products, the same order), so when
    // both rows are queries of this tile the second visit reuses the first's value. Also the path on CPUs without
    // AVX-512 (the portable panel loop is slower than numpy_dot_f32's AVX2 blocks).
    const bool same_tile = cand == q;
    s.slot.assign(static_cast<size_t>(c1 - c0), -1);  // candidate index of member position c0 + k
    for (int64_t k = 0; k < nc; ++k) s.slot[static_cast<size_t>(s.cands[k] - c0)] = static_cast<int32_t>(k);
    s.sims.assign(static_cast<size_t>(nq * nc), std::numeric_limits<float>::quiet_NaN());
    for (int64_t u = 0; u < nq; ++u) {
      const int64_t a = s.queries[u];
      const int32_t i = m[a];
      const size_t t = static_cast<size_t>(s.tuple_of[u]);
      const int32_t a_slot = same_tile ? s.slot[static_cast<size_t>(a - c0)] : -1;
      for (int64_t k = 0; k < nc; ++k) {
        const int64_t b = s.cands[k];
        if (!s.mask[k * nt + t] || m[b] == i) continue;
        float sim = std::numeric_limits<float>::quiet_NaN();
        if (a_slot >= 0) {
          // (b, a) was visited first when b is an earlier query of this tile.
          const auto it = std::lower_bound(s.queries.begin(), s.queries.begin() + u, static_cast<int32_t>(b));
          if (it != s.queries.begin() + u && *it == b)
            sim = s.sims[static_cast<size_t>((it - s.queries.begin()) * nc + a_slot)];
        }
        if (sim != sim) sim = numpy_dot_f32(q + (a - job.q0) * d, cand + (b - c0) * d, d);
        s.sims[static_cast<size_t>(u * nc + k)] = sim;
        visit(a, b, sim);
      }
    }
    return;
  }
  float sim0[DotPanel::kLanes], sim1[DotPanel::kLanes];
  for (int64_t p0 = 0; p0 < nc; p0 += DotPanel::kLanes) {
    const int64_t p1 = std::min<int64_t>(nc, p0 + DotPanel::kLanes);
    for (int64_t k = p0; k < p1; ++k) s.panel.set(static_cast<int>(k - p0), cand + (s.cands[k] - c0) * d);
    for (int64_t u = 0; u < nq; u += 2) {
      const int64_t v = std::min(u + 1, nq - 1);  // an odd query count pairs the last query with itself
      const int64_t a0 = s.queries[u], a1 = s.queries[v];
      s.panel.dot2(q + (a0 - job.q0) * d, q + (a1 - job.q0) * d, sim0, sim1);
      for (int64_t w = u; w <= v; ++w) {
        const int64_t a = s.queries[w];
        const int32_t i = m[a];
        const float* sim = w == u ? sim0 : sim1;
        const size_t t = static_cast<size_t>(s.tuple_of[w]);
        for (int64_t k = p0; k < p1; ++k) {
          const int64_t b = s.cands[k];
          if (s.mask[k * nt + t] && m[b] != i) visit(a, b, sim[k - p0]);
        }
      }
    }
  }
}

}  // namespace

AveragePrecision average_precision_ranked(RowMatrixF&& features, const Table& meta, const MapOptions& opt) {
  check_rows_match(features, meta, "features");
  Pairing pairing(meta, opt, features.rows());
  const Rule& pos = pairing.pos;
  const Rule& neg = pairing.neg;
  const int64_t n = features.rows();
  // Normalised in place: the only copy of the features is the one the caller handed over.
  // Cosine as copairs computes it: x / np.linalg.norm(x) in float32, then np.sum(x * y) (numpy_dot_f32).
  RowMatrixF xn = std::move(features);
  const std::vector<float> norms = checked_row_norms(FeatureRows::borrow(xn), opt.threads);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < xn.cols(); ++c) xn(i, c) = xn(i, c) / norms[i];
  AveragePrecision out = empty_result(n);

  // Without a sameby column a rule pairs a profile with (almost) every other one: similarities then come from a
  // blocked GEMM over all rows. With sameby on both rules only each profile's buckets are visited, one dot
  // product per candidate. Each query takes all its similarities from one of the two paths, so ties it sees
  // are exact ties.
  const bool dense = pos.dense() || neg.dense();
  // Queries sharing a negative bucket (e.g. a plate's DMSO wells) run back to back so those rows stay in cache.
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  if (!dense)
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return neg.bucket[a] != neg.bucket[b] ? neg.bucket[a] < neg.bucket[b] : pos.bucket[a] < pos.bucket[b];
    });

  if (opt.parts < 1 || opt.part < 0 || opt.part >= opt.parts)
    throw std::invalid_argument("MapOptions: need 0 <= part < parts");
  if (opt.parts > 1 && !opt.allgather) throw std::invalid_argument("MapOptions: parts > 1 needs allgather");
  const int64_t block = kQueryBlock;
  const int64_t n_blocks = (n + block - 1) / block;
  std::vector<int64_t> blocks;  // this part's blocks (all of them in one process)
  for (int64_t b = opt.part; b < n_blocks; b += opt.parts) blocks.push_back(b);
  parallel_for(static_cast<int64_t>(blocks.size()), opt.threads, [&](int64_t bk0, int64_t bk1) {
    std::vector<Entry> list;
    std::vector<int64_t> ranks;
    std::vector<double> scratch;
    RowMatrixF sims;
    for (int64_t bk = bk0; bk < bk1; ++bk) {
      const int64_t b = blocks[bk];
      int64_t q0 = b * block, q1 = std::min(n, q0 + block);
      if (dense) similarity_block(xn, q0, q1, xn, sims);
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t i = order[q];
        const float* xi = xn.row(i).data();
        auto sim = [&](int64_t j) -> float {
          return dense ? sims(q - q0, j) : numpy_dot_f32(xi, xn.row(j).data(), xn.cols());
        };
        // A profile without positives has AP NaN whatever the ranking: only its pair count is needed, so no
        // similarity is computed (in JUMP's preset these are the controls, each paired with a whole plate).
        auto count = [&](const Rule& r) {
          int64_t c = 0;
          if (r.dense()) {
            for (int64_t j = 0; j < n; ++j) c += j != i && r.diff_ok(i, j);
          } else {
            for (int32_t j : r.members[r.bucket[i]]) c += j != i && r.diff_ok(i, j);
          }
          return c;
        };
        if (count(pos) == 0) {
          out.n_pos[i] = 0;
          out.n_total[i] = count(neg);
          continue;
        }
        list.clear();
        auto visit = [&](const Rule& r, uint8_t label) {
          if (r.dense()) {
            for (int64_t j = 0; j < n; ++j)
              if (j != i && r.diff_ok(i, j)) list.push_back({1.0f - sim(j), label});
          } else {
            for (int32_t j : r.members[r.bucket[i]])
              if (j != i && r.diff_ok(i, j)) list.push_back({1.0f - sim(j), label});
          }
        };
        visit(pos, 1);
        visit(neg, 0);
        std::sort(list.begin(), list.end(), [](const Entry& a, const Entry& c) {
          return a.key < c.key || (a.key == c.key && a.label > c.label);
        });
        ranks.clear();
        for (size_t k = 0; k < list.size(); ++k)
          if (list[k].label) ranks.push_back(static_cast<int64_t>(k + 1));
        const int64_t tp = static_cast<int64_t>(ranks.size());
        out.n_pos[i] = tp;
        out.n_total[i] = static_cast<int64_t>(list.size());
        if (tp) out.ap[i] = copairs_ap(ranks.data(), tp, out.n_total[i], scratch);
      }
    }
  });

  if (opt.parts > 1) {
    // Every part's queries to every part: (ap, n_pos, n_total) per query, in block order, as raw bytes (exact).
    struct Result {
      double ap;
      int64_t n_pos, n_total;
    };
    std::string mine;
    for (int64_t b : blocks)
      for (int64_t q = b * block; q < std::min(n, (b + 1) * block); ++q) {
        const int64_t i = order[q];
        Result r{out.ap[i], out.n_pos[i], out.n_total[i]};
        mine.append(reinterpret_cast<const char*>(&r), sizeof r);
      }
    std::vector<std::string> all = opt.allgather(mine);
    for (int p = 0; p < opt.parts; ++p) {
      size_t at = 0;
      const std::string& bytes = all.at(static_cast<size_t>(p));
      for (int64_t b = p; b < n_blocks; b += opt.parts)
        for (int64_t q = b * block; q < std::min(n, (b + 1) * block); ++q) {
          if (at + sizeof(Result) > bytes.size())
            throw std::runtime_error("eval map: part " + std::to_string(p) + " sent too few results");
          Result r;
          std::memcpy(&r, bytes.data() + at, sizeof r);
          at += sizeof r;
          const int64_t i = order[q];
          out.ap[i] = r.ap, out.n_pos[i] = r.n_pos, out.n_total[i] = r.n_total;
        }
      if (at != bytes.size())
        throw std::runtime_error("eval map: part " + std::to_string(p) + " sent too many results");
    }
  }

  finish(out);
  return out;
}

AveragePrecision average_precision(const FeatureRows& x, const Table& meta, const MapOptions& opt) {
  if (static_cast<size_t>(x.rows()) != meta.rows())
    throw std::runtime_error(x.name() + " has " + std::to_string(x.rows()) + " rows but " + meta.source() +
                             " has " + std::to_string(meta.rows()) + " (one metadata row per feature row is needed)");
  if (x.rows() > std::numeric_limits<int32_t>::max())
    throw std::runtime_error(x.name() + ": more than 2^31 - 1 profiles");
  // A rule without sameby columns pairs every profile with (almost) every other: rank lists over whole rows.
  if (opt.pos_sameby.empty() || opt.neg_sameby.empty()) return average_precision_ranked(x.load_all(), meta, opt);
  StageTimer timer(opt.timings);
  Pairing pairing(meta, opt, x.rows());
  const Rule& pos = pairing.pos;
  const Rule& neg = pairing.neg;
  const int64_t n = x.rows();
  const int64_t tile = std::max<int64_t>(1, opt.tile_rows);
  timer.stage("pair rules from metadata");
  LazyNorms norms(x);  // each row's norm and finite check when it is first read
  AveragePrecision out = empty_result(n);

  // AP needs, for each positive of a query, how many negatives rank above it; a negative ranks above a positive
  // exactly when its key (1 - sim, float32) is smaller (a tie goes to the positive, as copairs' stable sort with
  // positives first). So: pass 1 stores each query's positive keys (O(positive pairs), the replicates), sorted;
  // pass 2 streams the negatives and only counts them in the gaps between those keys. No rank list is built and no
  // negative similarity is kept. Each pass visits the rows bucket by bucket (a compound's replicates, a plate's
  // wells), so only one tile of rows per thread is in memory.
  // A profile without positives has AP NaN whatever the ranking: only its pair counts are needed (counted here);
  // the others' negatives are counted in pass 2, which visits them anyway.
  std::vector<int64_t> n_neg(n, 0);
  parallel_for(n, opt.threads, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      out.n_pos[i] = pairing.count(pos, i);
      if (out.n_pos[i] == 0) n_neg[i] = pairing.count(neg, i);
    }
  });
  if (opt.parts < 1 || opt.part < 0 || opt.part >= opt.parts)
    throw std::invalid_argument("MapOptions: need 0 <= part < parts");
  if (opt.parts > 1 && !opt.allgather) throw std::invalid_argument("MapOptions: parts > 1 needs allgather");
  // A distributed run splits the queries: profile i is this part's when its block of kQueryBlock profiles is
  // (block b to part b mod parts). Pair counts are cheap and computed everywhere; both passes and the AP only for
  // this part's queries, whose results are then exchanged. A query's numbers never depend on the other queries.
  auto owned = [&](int64_t i) { return (i / kQueryBlock) % opt.parts == opt.part; };
  std::vector<uint8_t> has_pos(n);
  std::vector<int64_t> key_at(n + 1, 0), gap_at(n + 1, 0);
  for (int64_t i = 0; i < n; ++i) {
    has_pos[i] = out.n_pos[i] > 0 && owned(i);
    key_at[i + 1] = key_at[i] + (has_pos[i] ? out.n_pos[i] : 0);
    gap_at[i + 1] = gap_at[i] + (has_pos[i] ? out.n_pos[i] + 1 : 0);
  }
  std::vector<float> pos_key(key_at[n]);
  std::vector<int32_t> gap(gap_at[n], 0);  // gap[g]: negatives with exactly g positive keys <= theirs
  timer.stage("pair counts");

  const int64_t d = x.cols();
  std::vector<int64_t> pos_written(key_at.begin(), key_at.end() - 1);  // next free slot of each query's keys
  for_each_tile(x, norms, pos, has_pos, tile, opt.threads,
                [&](const TileJob& job, TileScratch& s, const float* q, const float* cand, int64_t c0, int64_t c1) {
                  const auto& m = pos.members[job.bucket];
                  // A query's candidate tiles come in ascending order, all in its own job: its keys fill its
                  // slots left to right.
                  tile_pairs(pos, m, job, s, has_pos, q, cand, c0, c1, d, opt.panel_min_candidates,
                             [&](int64_t a, int64_t, float sim) { pos_key[pos_written[m[a]]++] = 1.0f - sim; });
                });
  parallel_for(n, opt.threads, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) std::sort(pos_key.begin() + key_at[i], pos_key.begin() + key_at[i + 1]);
  });
  timer.stage("positive similarities (pass 1)");
  for_each_tile(x, norms, neg, has_pos, tile, opt.threads,
                [&](const TileJob& job, TileScratch& s, const float* q, const float* cand, int64_t c0, int64_t c1) {
                  const auto& m = neg.members[job.bucket];
                  tile_pairs(neg, m, job, s, has_pos, q, cand, c0, c1, d, opt.panel_min_candidates,
                             [&](int64_t a, int64_t, float sim) {
                               const int32_t i = m[a];
                               const float* k0 = pos_key.data() + key_at[i];
                               const float* k1 = pos_key.data() + key_at[i + 1];
                               const float key = 1.0f - sim;
                               // upper_bound: the number of positive keys <= key. Counted without branches for a few
                               // keys (replicates), where a binary search mostly mispredicts.
                               int64_t below = 0;
                               if (k1 - k0 <= 16) {
                                 for (const float* k = k0; k < k1; ++k) below += !(key < *k);
                               } else {
                                 below = std::upper_bound(k0, k1, key) - k0;
                               }
                               ++gap[gap_at[i] + below];
                               ++n_neg[i];
                             });
                });
  for (int64_t i = 0; i < n; ++i)
    if (out.n_pos[i] == 0 || has_pos[i]) out.n_total[i] = out.n_pos[i] + n_neg[i];
  timer.stage("negatives counted (pass 2)");
  norms.check_unread(opt.threads);
  timer.stage("rows not read by the passes checked");
  // The t-th positive's rank is t + (negatives above it); AP from those ranks as copairs sums it (copairs_ap), as the
  // ranked reference does, so the same bits.
  parallel_for(n, opt.threads, [&](int64_t i0, int64_t i1) {
    std::vector<int64_t> ranks;
    std::vector<double> scratch;
    for (int64_t i = i0; i < i1; ++i) {
      if (!has_pos[i]) continue;
      const int64_t p = out.n_pos[i];
      const int32_t* g = gap.data() + gap_at[i];
      int64_t above = 0;
      ranks.resize(p);
      for (int64_t t = 1; t <= p; ++t) {
        above += g[t - 1];
        ranks[t - 1] = t + above;
      }
      out.ap[i] = copairs_ap(ranks.data(), p, out.n_total[i], scratch);
    }
  });
  if (opt.parts > 1) {
    // (ap, n_total) of every part's queries with positives, in profile order, as raw bytes (exact).
    struct Result {
      double ap;
      int64_t n_total;
    };
    std::string mine;
    for (int64_t i = 0; i < n; ++i)
      if (has_pos[i]) {
        const Result r{out.ap[i], out.n_total[i]};
        mine.append(reinterpret_cast<const char*>(&r), sizeof r);
      }
    const std::vector<std::string> all = opt.allgather(mine);
    std::vector<size_t> at(static_cast<size_t>(opt.parts), 0);
    for (int64_t i = 0; i < n; ++i) {
      if (out.n_pos[i] == 0) continue;
      const int part = static_cast<int>((i / kQueryBlock) % opt.parts);
      const std::string& bytes = all.at(static_cast<size_t>(part));
      size_t& k = at[static_cast<size_t>(part)];
      if (k + sizeof(Result) > bytes.size())
        throw std::runtime_error("eval map: part " + std::to_string(part) + " sent too few results");
      Result r;
      std::memcpy(&r, bytes.data() + k, sizeof r);
      k += sizeof r;
      out.ap[i] = r.ap, out.n_total[i] = r.n_total;
    }
    for (int p = 0; p < opt.parts; ++p)
      if (at[static_cast<size_t>(p)] != all[static_cast<size_t>(p)].size())
        throw std::runtime_error("eval map: part " + std::to_string(p) + " sent too many results");
  }
  finish(out);
  return out;
}

AveragePrecision average_precision(const RowMatrixF& features, const Table& meta, const MapOptions& opt) {
  return average_precision(FeatureRows::borrow(features), meta, opt);
}

AveragePrecision average_precision(RowMatrixF&& features, const Table& meta, const MapOptions& opt) {
  if (opt.pos_sameby.empty() || opt.neg_sameby.empty()) return average_precision_ranked(std::move(features), meta, opt);
  return average_precision(FeatureRows::borrow(features), meta, opt);
}

MeanAveragePrecision mean_average_precision(const Table& meta, const AveragePrecision& ap, const MapOptions& opt) {
  if (opt.null_size < 1) throw std::runtime_error("--null-size must be at least 1");
  const std::vector<std::string>& by = opt.map_groupby.empty() ? opt.pos_sameby : opt.map_groupby;
  if (by.empty()) throw std::runtime_error("mean average precision needs group columns (pos_sameby is empty)");
  std::vector<size_t> kept;
  for (size_t i = 0; i < ap.ap.size(); ++i)
    if (!std::isnan(ap.ap[i]) && ap.n_pos[i] > 0) kept.push_back(i);
  if (kept.empty()) throw std::runtime_error("no profile has a positive pair; mean average precision is undefined");

  MeanAveragePrecision out;
  out.members = group_rows(meta, by, kept);

  // One null vector per (n_pos, n_total) configuration present.
  std::map<std::pair<int64_t, int64_t>, size_t> conf_index;
  for (size_t i : kept) conf_index.emplace(std::make_pair(ap.n_pos[i], ap.n_total[i]), 0);
  std::vector<std::pair<int64_t, int64_t>> confs;
  for (auto& [k, v] : conf_index) v = confs.size(), confs.push_back(k);
  // Configurations in np.unique's order (by n_pos, then n_total), as copairs numbers them for its seeds.
  std::vector<std::vector<float>> nulls(confs.size());
  const std::vector<uint64_t> conf_seeds =
      opt.null_rng == NullRng::copairs ? copairs_null_seeds(opt.seed, confs.size()) : std::vector<uint64_t>{};
  // Configuration c belongs to part c mod parts; its stream is seeded by the configuration alone, never the part.
  const int64_t n_confs = static_cast<int64_t>(confs.size());
  const int64_t my_confs = opt.parts > 1 ? (n_confs - opt.part + opt.parts - 1) / opt.parts : n_confs;
  parallel_for(std::max<int64_t>(0, my_confs), opt.threads, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const int64_t c = opt.part + k * opt.parts;
      nulls[c] = opt.null_rng == NullRng::copairs
                     ? copairs_random_ap(opt.null_size, confs[c].first, confs[c].second, conf_seeds[c])
                     : null_distribution(confs[c].first, confs[c].second, opt.null_size, opt.seed);
    }
  });
  if (opt.parts > 1) {
    std::string mine;
    for (int64_t c = opt.part; c < n_confs; c += opt.parts)
      mine.append(reinterpret_cast<const char*>(nulls[c].data()), nulls[c].size() * sizeof(float));
    std::vector<std::string> all = opt.allgather(mine);
    for (int p = 0; p < opt.parts; ++p) {
      const std::string& bytes = all.at(static_cast<size_t>(p));
      size_t at = 0;
      for (int64_t c = p; c < n_confs; c += opt.parts) {
        const size_t len = static_cast<size_t>(opt.null_size) * sizeof(float);
        if (at + len > bytes.size())
          throw std::runtime_error("eval map: part " + std::to_string(p) + " sent too few null values");
        if (p != opt.part) {
          nulls[c].resize(static_cast<size_t>(opt.null_size));
          std::memcpy(nulls[c].data(), bytes.data() + at, len);
        }
        at += len;
      }
    }
  }

  const size_t g = out.members.size();
  out.map.resize(g);
  out.p_value.resize(g);
  std::vector<double> mean_nap(g);
  // A group's null is the float32 mean of its members' null vectors in member order, so groups whose members have
  // the same sequence of configurations (most groups: every replicate has the same n_pos, n_total) share one null.
  // Each distinct null is built once and sorted; a group's count #{null > mAP} is then a binary search. Same
  // numbers as map_p_value(), which is the reference this is tested against.
  std::map<std::vector<size_t>, size_t> seq_index;
  std::vector<size_t> group_seq(g);
  for (size_t k = 0; k < g; ++k) {
    std::vector<size_t> seq;
    for (size_t i : out.members[k]) seq.push_back(conf_index.at({ap.n_pos[i], ap.n_total[i]}));
    group_seq[k] = seq_index.emplace(std::move(seq), seq_index.size()).first->second;
  }
  std::vector<const std::vector<size_t>*> seqs(seq_index.size());
  for (const auto& [seq, idx] : seq_index) seqs[idx] = &seq;
  std::vector<std::vector<float>> sorted_null(seqs.size());
  parallel_for(static_cast<int64_t>(seqs.size()), opt.threads, [&](int64_t b, int64_t e) {
    for (int64_t q = b; q < e; ++q) {
      std::vector<float>& v = sorted_null[q];
      v.assign(opt.null_size, 0.0f);
      for (size_t c : *seqs[q])
        for (int64_t s = 0; s < opt.null_size; ++s) v[s] += nulls[c][s];
      const float m = static_cast<float>(seqs[q]->size());
      for (float& f : v) f /= m;
      std::sort(v.begin(), v.end());
    }
  });
  parallel_for(static_cast<int64_t>(g), opt.threads, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      // pandas' groupby mean (copairs aggregates with it): Kahan-compensated sum in row order, / count. The same
      // bits matter beyond the mAP itself: a p-value counts null values above it, and a 1-ulp difference can move
      // the mAP across a null value.
      KahanSum s, sn;
      for (size_t i : out.members[k]) s.add(ap.ap[i]), sn.add(ap.nap[i]);
      double cnt = static_cast<double>(out.members[k].size());
      out.map[k] = s.sum / cnt;
      mean_nap[k] = sn.sum / cnt;
      const std::vector<float>& v = sorted_null[group_seq[k]];
      auto first_above = std::upper_bound(v.begin(), v.end(), static_cast<float>(out.map[k]));  // see map_p_value
      int64_t num = v.end() - first_above;
      out.p_value[k] = static_cast<double>(num + 1) / static_cast<double>(opt.null_size + 1);
    }
  });
  out.corrected_p_value = benjamini_hochberg(out.p_value);

  std::vector<std::string> names = by;
  for (const char* c : {"mean_average_precision", "mean_normalized_average_precision", "p_value",
                        "corrected_p_value", "below_p", "below_corrected_p"})
    names.push_back(c);
  out.table = Table(names);
  for (size_t k = 0; k < g; ++k) {
    std::vector<std::string> row;
    for (const auto& c : by) row.push_back(meta.column(c)[out.members[k][0]]);
    row.push_back(format_number(out.map[k]));
    row.push_back(format_number(mean_nap[k]));
    row.push_back(format_number(out.p_value[k]));
    row.push_back(format_number(out.corrected_p_value[k]));
    row.push_back(out.p_value[k] < opt.threshold ? "True" : "False");
    row.push_back(out.corrected_p_value[k] < opt.threshold ? "True" : "False");
    out.table.add_row(row);
  }
  return out;
}

void write_average_precision_csv(const std::string& path, const Table& meta, const AveragePrecision& ap) {
  std::vector<std::string> header = meta.columns();
  for (const char* c : {"n_pos_pairs", "n_total_pairs", "average_precision", "normalized_average_precision"})
    header.push_back(c);
  const size_t k = meta.cols();
  write_csv_rows(path, header, meta.rows(), [&](size_t i, std::vector<std::string>& f) {
    for (size_t c = 0; c < k; ++c) f[c] = meta.at(i, c);
    f[k] = std::to_string(ap.n_pos[i]);
    f[k + 1] = std::to_string(ap.n_total[i]);
    f[k + 2] = std::isnan(ap.ap[i]) ? "" : format_number(ap.ap[i]);
    f[k + 3] = std::isnan(ap.nap[i]) ? "" : format_number(ap.nap[i]);
  });
}

Table average_precision_table(const Table& meta, const AveragePrecision& ap) {
  return average_precision_table(Table(meta), ap);
}

Table average_precision_table(Table&& meta, const AveragePrecision& ap) {
  Table t = std::move(meta);
  std::vector<std::string> np(t.rows()), nt(t.rows()), a(t.rows()), na(t.rows());
  for (size_t i = 0; i < t.rows(); ++i) {
    np[i] = std::to_string(ap.n_pos[i]);
    nt[i] = std::to_string(ap.n_total[i]);
    a[i] = std::isnan(ap.ap[i]) ? "" : format_number(ap.ap[i]);
    na[i] = std::isnan(ap.nap[i]) ? "" : format_number(ap.nap[i]);
  }
  t.add_column("n_pos_pairs", std::move(np));
  t.add_column("n_total_pairs", std::move(nt));
  t.add_column("average_precision", std::move(a));
  t.add_column("normalized_average_precision", std::move(na));
  return t;
}

}  // namespace tabula::eval
