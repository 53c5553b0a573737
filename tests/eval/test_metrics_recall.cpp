// EFAAR relationship recall: fixture from EFAAR's compute_recall / aggregate / filter_relationships, reimplemented
// line by line in weights_tools/reference/metrics_fixtures.py, on sklearn's cosine_similarity.
#include <gtest/gtest.h>

#include <random>

#include "util/npy.h"
#include "eval/metrics/recall.h"
#include "eval/norm/normalize.h"
#include "tests/eval/metrics_test_util.h"

using namespace tabula;
using namespace tabula::eval;
using tabula::test::metrics_fixture;

TEST(MetricsRecall, MatchesEfaarExactly) {
  RowMatrixF x = load_features(metrics_fixture("recall/features.npy"));
  Table meta = read_csv(metrics_fixture("recall/meta.csv"));
  Table want = read_csv(metrics_fixture("recall/expected.csv"));
  auto rels = read_relationships(metrics_fixture("recall/relationships.csv"));
  for (size_t r = 0; r < want.rows(); ++r) {
    std::string method = want.column("aggregate")[r];
    SCOPED_TRACE(method);
    Table agg_meta;
    RowMatrixF agg = aggregate(x, meta, {"gene"}, method, &agg_meta);
    RowMatrixF efaar_agg = load_features(metrics_fixture("recall/agg_" + method + ".npy"));
    ASSERT_EQ(agg.rows(), efaar_agg.rows());
    EXPECT_EQ((agg - efaar_agg).cwiseAbs().maxCoeff(), 0.0f) << "aggregation differs from numpy";
    auto pairs = relationship_pairs(agg_meta.column("gene"), rels);
    for (int threads : {1, 2}) {
      RecallResult res = relationship_recall(agg, pairs, {{0.05, 0.95}, {0.1, 0.9}}, threads);
      EXPECT_EQ(res.null_size, static_cast<int64_t>(want.number(r, want.index("null_distribution_size"))));
      EXPECT_EQ(res.query_size, static_cast<int64_t>(want.number(r, want.index("query_distribution_size"))));
      EXPECT_EQ(res.recall[0], want.number(r, want.index("recall_0.05_0.95")));
      EXPECT_EQ(res.recall[1], want.number(r, want.index("recall_0.1_0.9")));
    }
  }
  EXPECT_EQ(recall_column_name(0.05, 0.95), "recall_0.05_0.95");
  EXPECT_EQ(recall_column_name(0.1, 1), "recall_0.1_1.0");
}

TEST(MetricsRecall, OrderStatisticsAgreeWithSortedNull) {
  // Brute force: materialise and sort the null, rank the queries with lower/upper bound, compare for many
  // thresholds, including a map with many exactly equal similarities (duplicated rows) and -0/+0.
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  // n = 1500 (null > 2^20 values) takes the one-pass banded path, n = 120 the two-pass histogram path.
  for (int cfg = 0; cfg < 4; ++cfg) {
    const int dup = cfg % 2;
    const int n = cfg < 2 ? 120 : 1500;
    RowMatrixF x(n, 6);
    for (int i = 0; i < n; ++i)
      for (int d = 0; d < 6; ++d) x(i, d) = dup ? static_cast<float>((i % 4) - 1.5f) * (d < 3 ? 1 : -1) : normal(rng);
    std::vector<std::pair<int64_t, int64_t>> pairs;
    for (int k = 0; k < 300; ++k) {
      int64_t a = rng() % n, b = rng() % n;
      if (a != b) pairs.emplace_back(std::min(a, b), std::max(a, b));
    }
    std::vector<std::pair<double, double>> thr = {{0.05, 0.95}, {0.1, 0.9}, {0.25, 0.5}, {0.0, 1.0}, {0.5, 0.5}};
    RecallResult res = relationship_recall(x, pairs, thr, 2, dup ? 16 : int64_t(1) << 24);
    RowMatrixF xn = l2_normalize_rows(x);
    std::vector<float> null;
    RowMatrixF s;
    similarity_rows(xn, 0, n, 0, s);  // the kernel the sweep uses, so values are bit-identical
    EXPECT_LT((s - xn * xn.transpose()).cwiseAbs().maxCoeff(), 1e-6);
    for (int i = 0; i < n; ++i)
      for (int j = i + 1; j < n; ++j) null.push_back(s(i, j));
    std::sort(null.begin(), null.end());
    for (size_t t = 0; t < thr.size(); ++t) {
      int64_t hits = 0;
      for (float q : res.query_similarity) {
        double left = double(std::lower_bound(null.begin(), null.end(), q) - null.begin()) / null.size();
        double right = double(std::upper_bound(null.begin(), null.end(), q) - null.begin()) / null.size();
        hits += right <= thr[t].first || left >= thr[t].second;
      }
      EXPECT_EQ(res.recall[t], double(hits) / res.query_size) << "n " << n << " dup " << dup << " thr " << t;
    }
  }
}

TEST(MetricsRecall, BadInput) {
  RowMatrixF x = RowMatrixF::Random(4, 3);
  EXPECT_THROW(relationship_pairs({"a", "b", "a"}, {{"a", "b"}}), std::runtime_error);
  EXPECT_THROW(relationship_recall(x, {}, {{0.05, 0.95}}), std::runtime_error);
}
