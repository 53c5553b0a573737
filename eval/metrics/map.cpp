#include "eval/metrics/map.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <stdexcept>
#include <unordered_map>

namespace tabula::eval {

namespace {

// Codes of a metadata column for pair matching and grouping. A column whose cells all parse as numbers is compared
// by value ("1" == "1.0"), as pandas would after reading the CSV; otherwise by string. Empty cells are an error:
// copairs refuses null metadata in the columns it matches on.
struct ColumnCodes {
  std::vector<int32_t> code;
  bool numeric = false;
  std::vector<double> value;  // when numeric
};

ColumnCodes column_codes(const Table& meta, const std::string& name) {
  size_t c = meta.index(name);
  const auto& cells = meta.column(c);
  ColumnCodes out;
  for (size_t r = 0; r < cells.size(); ++r)
    if (cells[r].empty() || cells[r] == "NA" || cells[r] == "NaN" || cells[r] == "nan")
      throw std::runtime_error(meta.where(r, c) + ": empty/NA value in a column used to build pairs");
  out.numeric = !cells.empty();
  out.value.resize(cells.size());
  for (size_t r = 0; r < cells.size() && out.numeric; ++r) {
    try {
      out.value[r] = meta.number(r, c);
    } catch (const std::exception&) {
      out.numeric = false;
    }
  }
  if (out.numeric) {
    std::vector<std::string> canon(cells.size());
    for (size_t r = 0; r < cells.size(); ++r) canon[r] = format_number(out.value[r]);
    out.code = factorize(canon);
  } else {
    out.value.clear();
    out.code = factorize(cells);
  }
  return out;
}

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

struct Entry {
  float key;      // 1 - sim in float32, as copairs sorts
  uint8_t label;  // 1 positive, 0 negative
};

}  // namespace

double ap_from_ranked(const std::vector<uint8_t>& rel) {
  int64_t tp = 0, n_pos = 0;
  double sum = 0;
  for (size_t k = 0; k < rel.size(); ++k)
    if (rel[k]) {
      ++tp;
      ++n_pos;
      sum += static_cast<double>(tp) / static_cast<double>(k + 1);
    }
  return n_pos ? sum / static_cast<double>(n_pos) : std::numeric_limits<double>::quiet_NaN();
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

AveragePrecision average_precision(const RowMatrixF& features, const Table& meta, const MapOptions& opt) {
  RowMatrixF copy = features;
  return average_precision(std::move(copy), meta, opt);
}

AveragePrecision average_precision(RowMatrixF&& features, const Table& meta, const MapOptions& opt) {
  check_rows_match(features, meta, "features");
  auto check_rule = [](const std::vector<std::string>& same, const std::vector<std::string>& diff, const char* which) {
    if (same.empty() && diff.empty())
      throw std::runtime_error(std::string(which) + ": give at least one sameby or diffby column");
    for (const auto& s : same)
      if (std::find(diff.begin(), diff.end(), s) != diff.end())
        throw std::runtime_error(std::string(which) + ": column '" + s + "' is in both sameby and diffby");
  };
  check_rule(opt.pos_sameby, opt.pos_diffby, "positive pairs");
  check_rule(opt.neg_sameby, opt.neg_diffby, "negative pairs");

  const int64_t n = features.rows();
  std::map<std::string, ColumnCodes> codes;
  for (const auto* list : {&opt.pos_sameby, &opt.pos_diffby, &opt.neg_sameby, &opt.neg_diffby})
    for (const auto& c : *list)
      if (!codes.count(c)) codes.emplace(c, column_codes(meta, c));
  Rule pos, neg;
  for (const auto& c : opt.pos_sameby) pos.same.push_back(codes[c].code.data());
  for (const auto& c : opt.pos_diffby) pos.diff.push_back(codes[c].code.data());
  for (const auto& c : opt.neg_sameby) neg.same.push_back(codes[c].code.data());
  for (const auto& c : opt.neg_diffby) neg.diff.push_back(codes[c].code.data());
  build_buckets(pos, n);
  build_buckets(neg, n);
  // Normalised in place: the only copy of the features is the one the caller handed over.
  RowMatrixF xn = std::move(features);
  l2_normalize_rows_inplace(xn, "features");

  AveragePrecision out;
  out.ap.assign(n, std::numeric_limits<double>::quiet_NaN());
  out.nap.assign(n, std::numeric_limits<double>::quiet_NaN());
  out.n_pos.assign(n, 0);
  out.n_total.assign(n, 0);

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

  if (opt.parts < 1 || opt.part < 0 || opt.part >= opt.parts) throw std::invalid_argument("MapOptions: need 0 <= part < parts");
  if (opt.parts > 1 && !opt.allgather) throw std::invalid_argument("MapOptions: parts > 1 needs allgather");
  const int64_t block = kQueryBlock;
  const int64_t n_blocks = (n + block - 1) / block;
  std::vector<int64_t> blocks;  // this part's blocks (all of them in one process)
  for (int64_t b = opt.part; b < n_blocks; b += opt.parts) blocks.push_back(b);
  parallel_for(static_cast<int64_t>(blocks.size()), opt.threads, [&](int64_t bk0, int64_t bk1) {
    std::vector<Entry> list;
    RowMatrixF sims;
    for (int64_t bk = bk0; bk < bk1; ++bk) {
      const int64_t b = blocks[bk];
      int64_t q0 = b * block, q1 = std::min(n, q0 + block);
      if (dense) similarity_block(xn, q0, q1, xn, sims);
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t i = order[q];
        const float* xi = xn.row(i).data();
        auto sim = [&](int64_t j) -> float {
          return dense ? sims(q - q0, j) : dot_f32(xi, xn.row(j).data(), xn.cols());
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
        int64_t tp = 0;
        double sum = 0;
        for (size_t k = 0; k < list.size(); ++k)
          if (list[k].label) {
            ++tp;
            sum += static_cast<double>(tp) / static_cast<double>(k + 1);
          }
        out.n_pos[i] = tp;
        out.n_total[i] = static_cast<int64_t>(list.size());
        if (tp) out.ap[i] = sum / static_cast<double>(tp);
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
          if (at + sizeof(Result) > bytes.size()) throw std::runtime_error("eval map: part " + std::to_string(p) + " sent too few results");
          Result r;
          std::memcpy(&r, bytes.data() + at, sizeof r);
          at += sizeof r;
          const int64_t i = order[q];
          out.ap[i] = r.ap, out.n_pos[i] = r.n_pos, out.n_total[i] = r.n_total;
        }
      if (at != bytes.size()) throw std::runtime_error("eval map: part " + std::to_string(p) + " sent too many results");
    }
  }

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
  return out;
}

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

double map_p_value(double map, const std::vector<const float*>& member_nulls, int64_t null_size) {
  const float m = static_cast<float>(member_nulls.size());
  int64_t num = 0;
  for (int64_t s = 0; s < null_size; ++s) {
    float acc = 0;
    for (const float* v : member_nulls) acc += v[s];
    float mean = acc / m;
    if (static_cast<double>(mean) > map) ++num;
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

std::vector<std::vector<size_t>> group_rows(const Table& meta, const std::vector<std::string>& by,
                                            const std::vector<size_t>& rows) {
  std::vector<ColumnCodes> cols;
  std::vector<const std::vector<std::string>*> text;
  for (const auto& c : by) {
    cols.push_back(column_codes(meta, c));
    text.push_back(&meta.column(c));
  }
  auto less = [&](size_t a, size_t b) {
    for (size_t k = 0; k < cols.size(); ++k) {
      if (cols[k].code[a] == cols[k].code[b]) continue;
      if (cols[k].numeric) return cols[k].value[a] < cols[k].value[b];
      return (*text[k])[a] < (*text[k])[b];
    }
    return false;
  };
  std::vector<size_t> sorted = rows;
  std::stable_sort(sorted.begin(), sorted.end(), less);
  std::vector<std::vector<size_t>> groups;
  for (size_t k = 0; k < sorted.size(); ++k) {
    if (k == 0 || less(sorted[k - 1], sorted[k])) groups.emplace_back();
    groups.back().push_back(sorted[k]);
  }
  return groups;
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
  std::vector<std::vector<float>> nulls(confs.size());
  // Configuration c belongs to part c mod parts; its stream is seeded by the configuration alone, never the part.
  const int64_t n_confs = static_cast<int64_t>(confs.size());
  const int64_t my_confs = opt.parts > 1 ? (n_confs - opt.part + opt.parts - 1) / opt.parts : n_confs;
  parallel_for(std::max<int64_t>(0, my_confs), opt.threads, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const int64_t c = opt.part + k * opt.parts;
      nulls[c] = null_distribution(confs[c].first, confs[c].second, opt.null_size, opt.seed);
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
        if (at + len > bytes.size()) throw std::runtime_error("eval map: part " + std::to_string(p) + " sent too few null values");
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
      double s = 0, sn = 0;
      for (size_t i : out.members[k]) s += ap.ap[i], sn += ap.nap[i];
      double cnt = static_cast<double>(out.members[k].size());
      out.map[k] = s / cnt;
      mean_nap[k] = sn / cnt;
      const std::vector<float>& v = sorted_null[group_seq[k]];
      auto first_above = std::upper_bound(v.begin(), v.end(), out.map[k],
                                          [](double m, float x) { return m < static_cast<double>(x); });
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

Table average_precision_table(const Table& meta, const AveragePrecision& ap) {
  Table t = meta;
  std::vector<std::string> np(meta.rows()), nt(meta.rows()), a(meta.rows()), na(meta.rows());
  for (size_t i = 0; i < meta.rows(); ++i) {
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
