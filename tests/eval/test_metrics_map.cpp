// copairs parity for replicate-retrieval mAP: fixtures written by copairs 0.5.5 (weights_tools/reference/
// metrics_fixtures.py), including rank lists with positive/negative ties and pairs that are both.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>

#include "engine/fileio.h"
#include "util/npy.h"
#include "eval/metrics/map.h"
#include "tests/eval/metrics_test_util.h"

using namespace tabula;
using namespace tabula::eval;
using tabula::test::metrics_fixture;
namespace fs = std::filesystem;

namespace {

struct CopairsCase {
  RowMatrixF x;
  Table meta, ap, map;
  MapOptions opt;
  std::vector<std::pair<int64_t, int64_t>> confs;
  std::vector<std::vector<float>> nulls;
};

CopairsCase load_case(const std::string& name) {
  CopairsCase c;
  c.x = load_features(metrics_fixture(name + "/features.npy"));
  c.meta = read_csv(metrics_fixture(name + "/meta.csv"));
  c.ap = read_csv(metrics_fixture(name + "/ap.csv"));
  c.map = read_csv(metrics_fixture(name + "/map.csv"));
  auto p = tabula::test::read_params(metrics_fixture(name + "/params.csv"));
  auto split = [](const std::string& s) {
    std::vector<std::string> v;
    size_t a = 0;
    while (a < s.size()) {
      size_t b = s.find(',', a);
      if (b == std::string::npos) b = s.size();
      if (b > a) v.push_back(s.substr(a, b - a));
      a = b + 1;
    }
    return v;
  };
  c.opt.pos_sameby = split(p["pos_sameby"]);
  c.opt.pos_diffby = split(p["pos_diffby"]);
  c.opt.neg_sameby = split(p["neg_sameby"]);
  c.opt.neg_diffby = split(p["neg_diffby"]);
  c.opt.null_size = std::stoll(p["null_size"]);
  c.opt.seed = std::stoull(p["seed"]);
  NpyArray confs = read_npy(metrics_fixture(name + "/null_confs.npy"));
  NpyArray nulls = read_npy(metrics_fixture(name + "/nulls.npy"));
  for (int64_t k = 0; k < confs.shape[0]; ++k) {
    c.confs.emplace_back(confs.as<int64_t>()[2 * k], confs.as<int64_t>()[2 * k + 1]);
    const float* v = nulls.as<float>() + k * nulls.shape[1];
    c.nulls.emplace_back(v, v + nulls.shape[1]);
  }
  return c;
}

double cell(const Table& t, size_t r, const std::string& col) {
  const std::string& s = t.column(col)[r];
  return s.empty() ? NAN : t.number(r, t.index(col));
}

void expect_ap_matches(const std::string& name, int threads, int64_t panel_min_candidates = 8) {
  CopairsCase c = load_case(name);
  c.opt.threads = threads;
  c.opt.panel_min_candidates = panel_min_candidates;
  AveragePrecision ap = average_precision(c.x, c.meta, c.opt);
  ASSERT_EQ(ap.ap.size(), c.ap.rows());
  int nan_rows = 0;
  for (size_t i = 0; i < c.ap.rows(); ++i) {
    SCOPED_TRACE(name + " row " + std::to_string(i));
    EXPECT_EQ(ap.n_pos[i], static_cast<int64_t>(cell(c.ap, i, "n_pos_pairs")));
    EXPECT_EQ(ap.n_total[i], static_cast<int64_t>(cell(c.ap, i, "n_total_pairs")));
    double want = cell(c.ap, i, "average_precision");
    if (std::isnan(want)) {
      ++nan_rows;
      EXPECT_TRUE(std::isnan(ap.ap[i]));
      EXPECT_TRUE(std::isnan(ap.nap[i]));
    } else {
      EXPECT_NEAR(ap.ap[i], want, 1e-6);
      EXPECT_NEAR(ap.nap[i], cell(c.ap, i, "normalized_average_precision"), 1e-6);
      // With sameby on both rules the cosine, the ranking and the AP sum are copairs' own operations: same bits.
      if (!c.opt.neg_sameby.empty()) {
        EXPECT_EQ(ap.ap[i], want);
      }
    }
  }
  if (name == "map_jump" || name == "map_ties") {
    EXPECT_GT(nan_rows, 0) << "DMSO rows have no positives";
  }

  MeanAveragePrecision m = mean_average_precision(c.meta, ap, c.opt);
  ASSERT_EQ(m.table.rows(), c.map.rows());
  for (size_t g = 0; g < c.map.rows(); ++g) {
    SCOPED_TRACE(name + " group " + std::to_string(g));
    for (const auto& col : c.opt.pos_sameby) EXPECT_EQ(m.table.column(col)[g], c.map.column(col)[g]);
    EXPECT_NEAR(m.map[g], cell(c.map, g, "mean_average_precision"), 1e-6);
    if (!c.opt.neg_sameby.empty()) {
      EXPECT_EQ(m.map[g], cell(c.map, g, "mean_average_precision"));  // pandas' Kahan mean of copairs' APs
    }
    EXPECT_NEAR(cell(m.table, g, "mean_normalized_average_precision"),
                cell(c.map, g, "mean_normalized_average_precision"), 1e-6);
  }
}

}  // namespace

TEST(MetricsMap, JumpPresetMatchesCopairs) { expect_ap_matches("map_jump", 2); }
TEST(MetricsMap, TiesMatchCopairs) { expect_ap_matches("map_ties", 2); }
TEST(MetricsMap, DenseNegativesWithDiffbyMatchCopairs) { expect_ap_matches("map_dense", 2); }
TEST(MetricsMap, PairsThatAreBothPositiveAndNegativeMatchCopairs) { expect_ap_matches("map_overlap", 1); }

TEST(MetricsMap, BothDotPathsMatchCopairs) {
  // Every tile on a DotPanel, then every pair one dot at a time (reusing the symmetric pair): copairs' bits both ways.
  for (int64_t min_panel : {1, 1 << 30})
    for (const char* name : {"map_jump", "map_ties", "map_overlap"}) {
      SCOPED_TRACE(std::string(name) + " panel_min_candidates " + std::to_string(min_panel));
      expect_ap_matches(name, 2, min_panel);
    }
}

TEST(MetricsMap, TiedPositiveRanksBeforeNegative) {
  // Query 0: one positive and one negative at exactly the same similarity -> AP 1 (positive first).
  RowMatrixF x(3, 2);
  x << 1, 0, 1, 1, 1, 1;
  Table meta({"cpd", "plate"});
  meta.add_row({"a", "p"});
  meta.add_row({"a", "p"});
  meta.add_row({"b", "p"});
  MapOptions opt;
  opt.pos_sameby = {"cpd"};
  opt.neg_sameby = {"plate"};
  opt.neg_diffby = {"cpd"};
  AveragePrecision ap = average_precision(x, meta, opt);
  EXPECT_EQ(ap.ap[0], 1.0);
  EXPECT_EQ(ap.n_total[0], 2);
}

TEST(MetricsMap, ResultsIndependentOfThreadCount) {
  CopairsCase c = load_case("map_jump");
  c.opt.threads = 1;
  AveragePrecision a = average_precision(c.x, c.meta, c.opt);
  MeanAveragePrecision ma = mean_average_precision(c.meta, a, c.opt);
  c.opt.threads = 3;
  AveragePrecision b = average_precision(c.x, c.meta, c.opt);
  MeanAveragePrecision mb = mean_average_precision(c.meta, b, c.opt);
  for (size_t i = 0; i < a.ap.size(); ++i)
    EXPECT_TRUE(a.ap[i] == b.ap[i] || (std::isnan(a.ap[i]) && std::isnan(b.ap[i])));
  EXPECT_EQ(ma.p_value, mb.p_value);
}

TEST(MetricsMap, PValueFormulaWithCopairsNulls) {
  // Given copairs' own null vectors, the p-value and its BH correction must be copairs' to the last bit.
  for (const char* name : {"map_jump", "map_ties", "map_dense", "map_overlap"}) {
    SCOPED_TRACE(name);
    CopairsCase c = load_case(name);
    c.opt.null_rng = NullRng::floyd;  // tabula's own stream here; NullAndPValuesEqualCopairsBitwise checks the replay
    AveragePrecision ap = average_precision(c.x, c.meta, c.opt);
    MeanAveragePrecision m = mean_average_precision(c.meta, ap, c.opt);
    std::vector<double> copairs_p;
    for (size_t g = 0; g < c.map.rows(); ++g) {
      std::vector<const float*> nulls;
      for (size_t i : m.members[g]) {
        auto it = std::find(c.confs.begin(), c.confs.end(), std::make_pair(ap.n_pos[i], ap.n_total[i]));
        ASSERT_NE(it, c.confs.end());
        nulls.push_back(c.nulls[it - c.confs.begin()].data());
      }
      double want = cell(c.map, g, "p_value");
      copairs_p.push_back(want);
      EXPECT_DOUBLE_EQ(map_p_value(cell(c.map, g, "mean_average_precision"), nulls, c.opt.null_size), want) << g;
    }
    std::vector<double> bh = benjamini_hochberg(copairs_p);
    for (size_t g = 0; g < bh.size(); ++g) EXPECT_DOUBLE_EQ(bh[g], cell(c.map, g, "corrected_p_value")) << g;
    // Our own null is a different random stream: p-values agree in distribution only; with a planted signal the
    // strongly active compounds are significant in both.
    // The cached/sorted path in mean_average_precision equals the direct formula on our own nulls.
    for (size_t g = 0; g < m.members.size(); ++g) {
      std::vector<std::vector<float>> own;
      std::vector<const float*> ptrs;
      for (size_t i : m.members[g]) own.push_back(null_distribution(ap.n_pos[i], ap.n_total[i], c.opt.null_size, c.opt.seed));
      for (auto& v : own) ptrs.push_back(v.data());
      EXPECT_EQ(m.p_value[g], map_p_value(m.map[g], ptrs, c.opt.null_size)) << g;
    }
    for (size_t g = 0; g < bh.size(); ++g)
      if (copairs_p[g] < 0.01) {
        EXPECT_LT(m.p_value[g], 0.05) << g;
      }
  }
}

TEST(MetricsMap, NullDistributionMatchesExpectedAp) {
  // The mean of the random-ranking null is the exact expected AP (copairs' normalisation constant).
  for (auto [k, n] : {std::pair<int64_t, int64_t>{1, 10}, {3, 40}, {5, 5}, {4, 300}}) {
    std::vector<float> v = null_distribution(k, n, 20000, 1);
    double mean = 0;
    for (float f : v) mean += f;
    mean /= v.size();
    EXPECT_NEAR(mean, expected_ap(k, n - k), 0.01) << k << " " << n;
  }
  EXPECT_EQ(null_distribution(3, 40, 100, 5), null_distribution(3, 40, 100, 5));
  EXPECT_NE(null_distribution(3, 40, 100, 5), null_distribution(3, 40, 100, 6));
}

TEST(MetricsMap, PValuesUniformUnderRandomLabels) {
  // Random features, random compound labels: per-profile p-values (each profile its own group) must be uniform.
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  const int n_cpd = 600, reps = 4, n_ctrl = 200;
  const int n = n_cpd * reps + n_ctrl;
  RowMatrixF x(n, 8);
  for (int i = 0; i < n; ++i)
    for (int d = 0; d < 8; ++d) x(i, d) = normal(rng);
  Table meta({"cpd", "well", "plate"});
  for (int i = 0; i < n; ++i) {
    std::string cpd = "DMSO";
    if (i < n_cpd * reps) cpd = std::to_string(i % n_cpd);
    meta.add_row({cpd, std::to_string(i), "P1"});
  }
  MapOptions opt;
  opt.pos_sameby = {"cpd"};
  opt.pos_diffby = {"well"};
  opt.neg_sameby = {"plate"};
  opt.neg_diffby = {"cpd"};
  opt.null_size = 1000;
  AveragePrecision ap = average_precision(x, meta, opt);
  // DMSO rows are positives of each other here; keep only compound profiles.
  for (int i = n_cpd * reps; i < n; ++i) ap.ap[i] = NAN, ap.n_pos[i] = 0;
  opt.map_groupby = {"well"};
  for (NullRng null_rng : {NullRng::copairs, NullRng::floyd}) {
    SCOPED_TRACE(null_rng == NullRng::copairs ? "copairs null" : "floyd null");
    opt.null_rng = null_rng;
    MeanAveragePrecision m = mean_average_precision(meta, ap, opt);
    ASSERT_EQ(m.p_value.size(), static_cast<size_t>(n_cpd * reps));
    for (double alpha : {0.05, 0.1, 0.25, 0.5, 0.75}) {
      double frac = 0;
      for (double p : m.p_value) frac += p <= alpha;
      frac /= m.p_value.size();
      EXPECT_NEAR(frac, alpha, 4 * std::sqrt(alpha * (1 - alpha) / m.p_value.size()) + 0.005) << alpha;
    }
  }
}

TEST(MetricsMap, BadInputNamesTheProblem) {
  CopairsCase c = load_case("map_jump");
  auto message = [&](auto&& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  MapOptions o = c.opt;
  o.pos_sameby = {"Metadata_Nope"};
  EXPECT_NE(message([&] { average_precision(c.x, c.meta, o); }).find("no column 'Metadata_Nope'"), std::string::npos);
  RowMatrixF short_x = c.x.topRows(10);
  EXPECT_NE(message([&] { average_precision(short_x, c.meta, c.opt); }).find("rows"), std::string::npos);
  Table holes = c.meta;
  Table t2(holes.columns());
  for (size_t r = 0; r < holes.rows(); ++r) {
    std::vector<std::string> row;
    for (size_t k = 0; k < holes.cols(); ++k) row.push_back(r == 5 && k == 2 ? "" : holes.at(r, k));
    t2.add_row(row);
  }
  t2.set_source("meta.csv");
  std::string msg = message([&] { average_precision(c.x, t2, c.opt); });
  EXPECT_NE(msg.find("meta.csv:7: column 'Metadata_negcon'"), std::string::npos) << msg;
  o = c.opt;
  o.pos_sameby = {"Metadata_Reference_Index", "Metadata_Plate", "Metadata_JCP2022"};
  o.pos_diffby = {};
  Table single({"cpd", "plate"});
  RowMatrixF x2(3, 2);
  x2 << 1, 0, 0, 1, 1, 1;
  single.add_row({"a", "p"});
  single.add_row({"b", "p"});
  single.add_row({"c", "p"});
  MapOptions o2;
  o2.pos_sameby = {"cpd"};
  o2.neg_sameby = {"plate"};
  o2.neg_diffby = {"cpd"};
  EXPECT_NE(message([&] { average_precision(x2, single, o2); }).find("no positive pairs"), std::string::npos);
  x2(1, 0) = 0, x2(1, 1) = 0;
  EXPECT_NE(message([&] { average_precision(x2, single, o2); }).find("row 1 is all zeros"), std::string::npos);
  o2.pos_diffby = {"cpd"};
  EXPECT_NE(message([&] { average_precision(x2, single, o2); }).find("both sameby and diffby"), std::string::npos);
}

namespace {

// Random JUMP-like metadata and features with exact ties: features drawn from a few quantised values (many equal
// dot products), duplicated rows (a positive tied with a negative), and an extra sameby/diffby column.
struct RandomCase {
  RowMatrixF x;
  Table meta;
};

RandomCase random_case(uint32_t seed, int n_cpd, int reps, int n_plates, int dmso_per_plate, int dims) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> level(-2, 2), plate_of(0, n_plates - 1);
  RandomCase c;
  c.meta = Table({"cpd", "plate", "negcon", "ref", "batch"});
  std::vector<std::array<std::string, 5>> rows;
  for (int k = 0; k < n_cpd; ++k)
    for (int r = 0; r < reps; ++r) {
      int p = plate_of(rng);
      std::string cpd = "c";
      cpd += std::to_string(k);  // (not "c" + ...: GCC 12's -Wrestrict false positive)
      rows.push_back({cpd, std::to_string(p), "False", "-1", std::to_string(p % 2)});
    }
  for (int p = 0; p < n_plates; ++p)
    for (int d = 0; d < dmso_per_plate; ++d)
      rows.push_back({"DMSO", std::to_string(p), "True", "", std::to_string(p % 2)});
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i][3].empty()) rows[i][3] = std::to_string(i);
    c.meta.add_row({rows[i].begin(), rows[i].end()});
  }
  const int64_t n = static_cast<int64_t>(rows.size());
  c.x.resize(n, dims);
  for (int64_t i = 0; i < n; ++i)
    for (int d = 0; d < dims; ++d) c.x(i, d) = static_cast<float>(level(rng));
  for (int64_t i = 0; i < n; ++i) {
    if (c.x.row(i).squaredNorm() == 0) c.x(i, 0) = 1;
    if (i % 7 == 3) c.x.row(i) = c.x.row((i * 13) % n);  // duplicates: exact ties across labels
  }
  return c;
}

bool same_bits(const AveragePrecision& a, const AveragePrecision& b) {
  if (a.ap.size() != b.ap.size()) return false;
  for (size_t i = 0; i < a.ap.size(); ++i) {
    bool ap = a.ap[i] == b.ap[i] || (std::isnan(a.ap[i]) && std::isnan(b.ap[i]));
    bool nap = a.nap[i] == b.nap[i] || (std::isnan(a.nap[i]) && std::isnan(b.nap[i]));
    if (!ap || !nap || a.n_pos[i] != b.n_pos[i] || a.n_total[i] != b.n_total[i]) {
      ADD_FAILURE() << "row " << i << ": ap " << a.ap[i] << " vs " << b.ap[i] << ", n_pos " << a.n_pos[i] << " vs "
                    << b.n_pos[i] << ", n_total " << a.n_total[i] << " vs " << b.n_total[i];
      return false;
    }
  }
  return true;
}

}  // namespace

TEST(MetricsMap, CountingPathEqualsRankedReferenceBitwise) {
  // The streaming/counting fast path against the full-rank-list reference, on data full of exact ties, for several
  // pair rules, tile sizes (buckets split across tiles) and thread counts.
  RandomCase c = random_case(11, 60, 4, 5, 6, 6);
  struct Rules {
    std::vector<std::string> ps, pd, ns, nd;
  };
  for (const Rules& r : {Rules{{"cpd", "ref"}, {}, {"plate"}, {"negcon", "ref"}},  // JUMP phenotypic activity
                         Rules{{"cpd"}, {"plate"}, {"batch"}, {"cpd"}},           // replicates across plates
                         Rules{{"cpd"}, {}, {"plate"}, {}}}) {                    // pairs both positive and negative
    MapOptions opt;
    opt.pos_sameby = r.ps, opt.pos_diffby = r.pd, opt.neg_sameby = r.ns, opt.neg_diffby = r.nd;
    AveragePrecision want = average_precision_ranked(RowMatrixF(c.x), c.meta, opt);
    for (int64_t tile : {1, 3, 7, 1024})
      for (int threads : {1, 2, 3})
        for (int64_t min_panel : {1, 8, 1 << 30}) {
          SCOPED_TRACE(r.ps[0] + "/" + r.ns[0] + " tile " + std::to_string(tile) + " threads " +
                       std::to_string(threads) + " panel_min_candidates " + std::to_string(min_panel));
          opt.tile_rows = tile;
          opt.threads = threads;
          opt.panel_min_candidates = min_panel;
          EXPECT_TRUE(same_bits(average_precision(c.x, c.meta, opt), want));
        }
  }
}

TEST(MetricsMap, StreamsFeaturesFromTheNpyFile) {
  // `tabula eval map` reads rows from the .npy as it needs them; the result is the in-memory one, bit for bit, and a
  // float64 file (not streamable) is converted on load to the same numbers.
  RandomCase c = random_case(5, 40, 3, 4, 5, 9);
  fs::path dir = tabula::test::scratch_dir();
  write_npy((dir / "x.npy").string(), {c.x.rows(), c.x.cols()}, c.x.data());
  MapOptions opt;
  opt.pos_sameby = {"cpd", "ref"}, opt.neg_sameby = {"plate"}, opt.neg_diffby = {"negcon", "ref"};
  opt.tile_rows = 4;
  AveragePrecision want = average_precision(c.x, c.meta, opt);
  FeatureRows file = FeatureRows::open_npy((dir / "x.npy").string());
  EXPECT_FALSE(file.in_memory());
  EXPECT_TRUE(same_bits(average_precision(file, c.meta, opt), want));
  std::vector<double> d(c.x.data(), c.x.data() + c.x.size());
  write_npy((dir / "x64.npy").string(), DType::f64, {c.x.rows(), c.x.cols()}, d.data());
  FeatureRows conv = FeatureRows::open_npy((dir / "x64.npy").string());
  EXPECT_TRUE(conv.in_memory());
  EXPECT_TRUE(same_bits(average_precision(conv, c.meta, opt), want));
}

TEST(MetricsMap, NumpyPcg64StreamMatchesNumpy) {
  Table s = read_csv(metrics_fixture("map_null/stream.csv"));
  std::map<std::pair<std::string, uint64_t>, std::vector<uint64_t>> want;
  for (size_t r = 0; r < s.rows(); ++r)
    want[{s.column("what")[r], std::stoull(s.column("seed")[r])}].push_back(std::stoull(s.column("value")[r]));
  ASSERT_EQ(want.size(), 7u);
  for (const auto& [key, values] : want) {
    SCOPED_TRACE(key.first + " seed " + std::to_string(key.second));
    NumpyPcg64 rng(key.second);
    for (uint64_t v : values) EXPECT_EQ(key.first == "raw64" ? rng.next64() : rng.integers(8096), v);
  }
  EXPECT_EQ(copairs_null_seeds(12345, 24), (want[{"integers8096", 12345}]));
}

TEST(MetricsMap, CopairsRandomApBitwise) {
  // copairs.compute.random_ap: numpy's permuted() rows, float32 precisions, numpy's pairwise float32 sum (the
  // cases cover < 8 terms, the 8-accumulator block and the recursive halves).
  Table cases = read_csv(metrics_fixture("map_null/cases.csv"));
  NpyArray want = read_npy(metrics_fixture("map_null/random_ap.npy"));
  ASSERT_EQ(want.shape[0], static_cast<int64_t>(cases.rows()));
  for (size_t k = 0; k < cases.rows(); ++k) {
    int64_t n_pos = std::stoll(cases.column("n_pos")[k]), n_total = std::stoll(cases.column("n_total")[k]);
    SCOPED_TRACE(std::to_string(n_pos) + " of " + std::to_string(n_total));
    std::vector<float> got = copairs_random_ap(want.shape[1], n_pos, n_total, std::stoull(cases.column("seed")[k]));
    const float* w = want.as<float>() + k * want.shape[1];
    for (int64_t s = 0; s < want.shape[1]; ++s) EXPECT_EQ(got[s], w[s]) << s;
  }
}

TEST(MetricsMap, NullAndPValuesEqualCopairsBitwise) {
  // copairs run with a fresh cache: its null vectors, p-values and BH-corrected p-values, to the last bit.
  for (const char* name : {"map_jump", "map_ties", "map_dense", "map_overlap"}) {
    SCOPED_TRACE(name);
    CopairsCase c = load_case(name);
    std::vector<uint64_t> seeds = copairs_null_seeds(c.opt.seed, c.confs.size());
    for (size_t k = 0; k < c.confs.size(); ++k)
      EXPECT_EQ(copairs_random_ap(c.opt.null_size, c.confs[k].first, c.confs[k].second, seeds[k]), c.nulls[k]) << k;
    AveragePrecision ap = average_precision(c.x, c.meta, c.opt);
    MeanAveragePrecision m = mean_average_precision(c.meta, ap, c.opt);
    ASSERT_EQ(m.p_value.size(), c.map.rows());
    for (size_t g = 0; g < c.map.rows(); ++g) {
      EXPECT_EQ(m.p_value[g], cell(c.map, g, "p_value")) << g;
      EXPECT_EQ(m.corrected_p_value[g], cell(c.map, g, "corrected_p_value")) << g;
      EXPECT_EQ(m.table.column("below_corrected_p")[g], c.map.column("below_corrected_p")[g]) << g;
    }
  }
}

TEST(MetricsMap, NaNFeaturesNamed) {
  CopairsCase c = load_case("map_jump");
  c.x(17, 5) = NAN;
  try {
    average_precision(c.x, c.meta, c.opt);
    ADD_FAILURE() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("row 17, column 5 is NaN"), std::string::npos) << e.what();
  }
  fs::path dir = tabula::test::scratch_dir();
  c.x(17, 5) = INFINITY;
  c.x(40, 0) = NAN;
  write_npy((dir / "x.npy").string(), {c.x.rows(), c.x.cols()}, c.x.data());
  for (int threads : {1, 2, 5}) {
    c.opt.threads = threads;
    try {
      average_precision(FeatureRows::open_npy((dir / "x.npy").string()), c.meta, c.opt);
      ADD_FAILURE() << "no error";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find("x.npy: row 17, column 5 is inf"), std::string::npos) << e.what();
    }
  }
}

TEST(MetricsMap, BadRowsWithoutPairsAreStillRefused) {
  // Norms are computed when the passes first read a row; rows no pass reads (here row 3: its own compound and its
  // own plate, so no pair) are checked at the end, and a bad row read mid-pass still names the file's first bad row.
  RowMatrixF x(5, 2);
  x << 1, 0, 1, 1, 0, 1, 2, 2, 1, 2;
  Table meta({"cpd", "plate"});
  for (auto [cpd, plate] : {std::pair{"a", "p"}, {"a", "p"}, {"b", "p"}, {"c", "q"}, {"b", "p"}}) meta.add_row({cpd, plate});
  MapOptions opt;
  opt.pos_sameby = {"cpd"};
  opt.neg_sameby = {"plate"};
  opt.neg_diffby = {"cpd"};
  AveragePrecision ok = average_precision(x, meta, opt);
  EXPECT_EQ(ok.n_total[3], 0);
  auto expect_error = [&](const std::string& what) {
    try {
      average_precision(x, meta, opt);
      ADD_FAILURE() << "no error, expected " << what;
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  x(3, 1) = NAN;
  expect_error("row 3, column 1 is NaN");
  x(3, 1) = 0, x(3, 0) = 0;
  expect_error("row 3 is all zeros");
  x(3, 0) = 1, x(4, 0) = INFINITY;  // read by pass 1, but row 3 comes first in the file
  x(3, 1) = NAN;
  expect_error("row 3, column 1 is NaN");
}

TEST(MetricsMap, RowCountMismatchNamesBothFiles) {
  CopairsCase c = load_case("map_jump");
  fs::path dir = tabula::test::scratch_dir();
  RowMatrixF short_x = c.x.topRows(10);
  write_npy((dir / "x.npy").string(), {short_x.rows(), short_x.cols()}, short_x.data());
  try {
    average_precision(FeatureRows::open_npy((dir / "x.npy").string()), c.meta, c.opt);
    ADD_FAILURE() << "no error";
  } catch (const std::exception& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("x.npy has 10 rows but"), std::string::npos) << msg;
    EXPECT_NE(msg.find("meta.csv has " + std::to_string(c.meta.rows())), std::string::npos) << msg;
  }
}

TEST(MetricsMap, CosineIsCopairsBitwise) {
  // copairs.compute.pairwise_cosine and np.sum(x * y) for lengths on each path of numpy's pairwise summation; the
  // vectorised and the portable dot give the same bits.
  for (int d : {5, 8, 100, 130, 300, 768}) {
    SCOPED_TRACE("d = " + std::to_string(d));
    auto load = [&](const char* what) {
      return read_npy(metrics_fixture("map_null/cos_" + std::to_string(d) + "_" + what + ".npy"));
    };
    NpyArray x = load("x"), y = load("y"), sim = load("sim"), dot = load("dot");
    for (int64_t r = 0; r < x.shape[0]; ++r) {
      const float* a = x.as<float>() + r * d;
      const float* b = y.as<float>() + r * d;
      EXPECT_EQ(numpy_dot_f32(a, b, d), dot.as<float>()[r]) << r;
      EXPECT_EQ(numpy_dot_f32_reference(a, b, d), dot.as<float>()[r]) << r;
      std::vector<float> an(a, a + d), bn(b, b + d);
      const float na = numpy_norm_f32(a, d), nb = numpy_norm_f32(b, d);
      for (float& v : an) v = v / na;
      for (float& v : bn) v = v / nb;
      EXPECT_EQ(numpy_dot_f32(an.data(), bn.data(), d), sim.as<float>()[r]) << r;
    }
  }
}

TEST(MetricsMap, DotPanelIsNumpyDotBitwise) {
  // The panel kernel (16 candidates per SIMD register) against the scalar numpy_dot_f32_reference, for lengths on
  // every path of numpy's pairwise summation (plain, one block with and without a tail, unequal halves, 768), with
  // the AVX-512 and the portable loop, lanes partly filled, refilled, and the same query in both slots.
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (int64_t n : {0, 1, 5, 7, 8, 9, 15, 16, 100, 128, 129, 130, 255, 300, 383, 768, 1000, 1536}) {
    SCOPED_TRACE("n = " + std::to_string(n));
    std::vector<float> rows(static_cast<size_t>(20 * n)), qs(static_cast<size_t>(2 * n));
    for (float& v : rows) v = normal(rng);
    for (float& v : qs) v = normal(rng);
    for (bool simd : {true, false}) {
      DotPanel panel(n, simd);
      for (int filled : {11, 16, 3}) {
        for (int l = 0; l < filled; ++l) panel.set(l, rows.data() + (l + filled) % 20 * n);
        float o0[DotPanel::kLanes], o1[DotPanel::kLanes];
        panel.dot2(qs.data(), qs.data() + n, o0, o1);
        for (int l = 0; l < filled; ++l) {
          const float* r = rows.data() + (l + filled) % 20 * n;
          EXPECT_EQ(o0[l], numpy_dot_f32_reference(qs.data(), r, n)) << "lane " << l << " simd " << simd;
          EXPECT_EQ(o1[l], numpy_dot_f32_reference(qs.data() + n, r, n)) << "lane " << l << " simd " << simd;
        }
        panel.dot2(qs.data() + n, qs.data() + n, o0, o1);
        for (int l = 0; l < filled; ++l) EXPECT_EQ(o0[l], o1[l]);
      }
    }
    DotPanel empty(n);
    float o0[DotPanel::kLanes], o1[DotPanel::kLanes];
    empty.dot2(qs.data(), qs.data() + n, o0, o1);
    for (int l = 0; l < DotPanel::kLanes; ++l) EXPECT_EQ(o0[l], 0.f);
  }
}

TEST(MetricsMap, ApSumIsCopairs) {
  // copairs sums TP_k / k over the whole rank list with np.add.reduceat: first term + pairwise sum of the rest.
  // For 3 positives in a list of 36 that is not the left-to-right sum; check against that sum written out.
  std::vector<uint8_t> rel(36, 0);
  rel[1] = rel[17] = rel[30] = 1;
  std::vector<double> pr(36, 0.0);
  pr[1] = 1.0 / 2, pr[17] = 2.0 / 18, pr[30] = 3.0 / 31;
  // Blocks of 8 over pr[1..35] (35 terms: 32 in the block loop, 3 after): r[j] = sum of pr[1 + j + 8m].
  double r[8] = {0};
  for (int k = 0; k < 32; ++k) r[k % 8] += pr[1 + k];
  double rest = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
  for (int k = 32; k < 35; ++k) rest += pr[1 + k];
  EXPECT_EQ(ap_from_ranked(rel), (pr[0] + rest) / 3.0);
}

TEST(MetricsMap, PValueComparesInFloat32LikeCopairs) {
  // copairs: `(null_dist > map_score).sum()` with a float32 null and a Python-float mAP, which numpy casts to
  // float32. A null value just above the mAP in float64 but equal to it in float32 does not count. (Seen in the
  // 100,000-profile benchmark: 3 of 20,000 groups differ by one count when compared in float64.)
  const float x = 0.2515151f;
  const double map = std::nextafter(static_cast<double>(x), 0.0);
  ASSERT_EQ(static_cast<float>(map), x);
  ASSERT_GT(static_cast<double>(x), map);
  std::vector<float> null = {x, 0.1f, 0.9f};
  EXPECT_EQ(map_p_value(map, {null.data()}, 3), 2.0 / 4.0);  // only 0.9 is above
}

TEST(MetricsMap, StreamedApCsvEqualsTableCsv) {
  CopairsCase c = load_case("map_ties");
  AveragePrecision ap = average_precision(c.x, c.meta, c.opt);
  fs::path dir = tabula::test::scratch_dir();
  write_average_precision_csv((dir / "ap.csv").string(), c.meta, ap);
  EXPECT_EQ(read_file_text((dir / "ap.csv").string()), to_csv(average_precision_table(c.meta, ap)));
}

TEST(MetricsMap, GroupWithoutPositivesIsLeftOutLikeCopairs) {
  // A compound with a single replicate has no positive pair: its AP is NaN (an empty cell in
  // average_precision.csv) and its group is absent from mean_average_precision.csv, as copairs drops rows with
  // n_pos_pairs == 0 before grouping. Not an error while other groups have positives.
  RowMatrixF x(7, 3);
  x << 1, 0, 0, 0.9f, 0.1f, 0, 0, 1, 0, 0.1f, 0.9f, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1;
  Table meta({"cpd", "plate"});
  for (const char* c : {"a", "a", "b", "b", "lonely", "DMSO", "DMSO"}) meta.add_row({c, "P1"});
  MapOptions opt;
  opt.pos_sameby = {"cpd"};
  opt.neg_sameby = {"plate"};
  opt.neg_diffby = {"cpd"};
  opt.null_size = 50;
  AveragePrecision ap = average_precision(x, meta, opt);
  EXPECT_EQ(ap.n_pos[4], 0);
  EXPECT_EQ(ap.n_total[4], 6);
  EXPECT_TRUE(std::isnan(ap.ap[4]));
  EXPECT_EQ(average_precision_table(meta, ap).column("average_precision")[4], "");
  MeanAveragePrecision m = mean_average_precision(meta, ap, opt);
  std::vector<std::string> groups = m.table.column("cpd");
  EXPECT_EQ(groups, (std::vector<std::string>{"DMSO", "a", "b"}));
}
