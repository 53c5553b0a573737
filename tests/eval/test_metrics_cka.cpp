// CKA and prediction correlation against numpy/scipy (weights_tools/reference/metrics_fixtures.py).
#include <gtest/gtest.h>

#include "eval/metrics/cka.h"
#include "tests/eval/metrics_test_util.h"

using namespace tabula;
using namespace tabula::eval;
using tabula::test::metrics_fixture;

TEST(MetricsCka, LinearAndUnbiasedMatchNumpy) {
  RowMatrixF m[3] = {load_features(metrics_fixture("cka/x.npy")), load_features(metrics_fixture("cka/y.npy")),
                     load_features(metrics_fixture("cka/z.npy"))};
  Table want = read_csv(metrics_fixture("cka/expected.csv"));
  auto pick = [&](char c) -> const RowMatrixF& { return m[c - 'x']; };
  for (size_t r = 0; r < want.rows(); ++r) {
    std::string pair = want.column("pair")[r];
    SCOPED_TRACE(pair);
    const RowMatrixF& a = pick(pair[0]);
    const RowMatrixF& b = pick(pair[2]);
    EXPECT_NEAR(linear_cka(a, b), want.number(r, want.index("linear")), 1e-6);
    EXPECT_NEAR(unbiased_cka(a, b, 0), want.number(r, want.index("unbiased")), 1e-6);
    EXPECT_NEAR(unbiased_cka(a, b, 32), want.number(r, want.index("minibatch_32")), 1e-6);
  }
  EXPECT_NEAR(linear_cka(m[0], m[0]), 1.0, 1e-12);
  EXPECT_THROW(linear_cka(m[0], m[0].topRows(10)), std::runtime_error);
}

TEST(MetricsCka, CorrelationsMatchScipy) {
  Table s = read_csv(metrics_fixture("cka/scores.csv"));
  Table want = read_csv(metrics_fixture("cka/corr.csv"));
  std::vector<double> a = s.numbers("a"), b = s.numbers("b");
  EXPECT_NEAR(pearson(a, b), want.number(0, want.index("pearson")), 1e-12);
  EXPECT_NEAR(spearman(a, b), want.number(0, want.index("spearman")), 1e-12);
  EXPECT_EQ(average_ranks({3, 1, 3, 2}), (std::vector<double>{3.5, 1, 3.5, 2}));
}
