// Linear probe against sklearn's LogisticRegression (lbfgs, multinomial, L2) and the C sweep protocol.
#include <gtest/gtest.h>

#include "util/npy.h"
#include "eval/metrics/knn.h"
#include "eval/metrics/linear.h"
#include "tests/eval/metrics_test_util.h"

using namespace tabula;
using namespace tabula::eval;
using tabula::test::metrics_fixture;

TEST(MetricsLinear, MatchesSklearnLogisticRegressionAndSweep) {
  RowMatrixF x = load_features(metrics_fixture("linear/features.npy"));
  Table meta = read_csv(metrics_fixture("linear/meta.csv"));
  KnnProblem p = knn_problem(meta, "label", "", "", "", "", nullptr);  // label codes in sorted order
  std::vector<int64_t> train, val, test;
  for (size_t r = 0; r < meta.rows(); ++r) {
    const std::string& s = meta.column("split")[r];
    (s == "train" ? train : s == "val" ? val : test).push_back(static_cast<int64_t>(r));
  }
  RowMatrixF xtr(train.size(), x.cols()), xte(test.size(), x.cols());
  std::vector<int32_t> ytr;
  for (size_t i = 0; i < train.size(); ++i) xtr.row(i) = x.row(train[i]), ytr.push_back(p.label[train[i]]);
  for (size_t i = 0; i < test.size(); ++i) xte.row(i) = x.row(test[i]);
  LogisticModel m = fit_logistic(xtr, ytr, p.n_classes, 0.5, 5000, 1e-10);
  EXPECT_TRUE(m.converged);
  RowMatrixD proba = predict_proba(m, xte);
  NpyArray want = read_npy(metrics_fixture("linear/proba_c05.npy"));
  std::vector<double> wv = want.to_f64();
  double err = 0;
  for (int64_t i = 0; i < proba.rows(); ++i)
    for (int64_t c = 0; c < proba.cols(); ++c) err = std::max(err, std::abs(proba(i, c) - wv[i * proba.cols() + c]));
  EXPECT_LT(err, 1e-5);

  LinearProbeResult res = linear_probe(x, p.label, p.n_classes, train, val, test, LinearProbeOptions{});
  Table sweep = read_csv(metrics_fixture("linear/sweep.csv"));
  ASSERT_EQ(res.val_top1.size(), sweep.rows());
  for (size_t i = 0; i < sweep.rows(); ++i)
    EXPECT_DOUBLE_EQ(res.val_top1[i], sweep.number(i, sweep.index("val_top1"))) << "C=" << res.cs[i];
  Table probe = read_csv(metrics_fixture("linear/probe.csv"));
  EXPECT_DOUBLE_EQ(res.best_c, probe.number(0, probe.index("best_c")));
  EXPECT_DOUBLE_EQ(res.test_top1, probe.number(0, probe.index("test_top1")));
  NpyArray pred = read_npy(metrics_fixture("linear/test_pred.npy"));
  ASSERT_EQ(static_cast<size_t>(pred.numel()), res.test_prediction.size());
  for (size_t i = 0; i < res.test_prediction.size(); ++i) EXPECT_EQ(res.test_prediction[i], pred.as<int64_t>()[i]) << i;
}

TEST(MetricsLinear, BadInput) {
  RowMatrixF x = RowMatrixF::Random(6, 2);
  EXPECT_THROW(fit_logistic(x, {0, 0, 0, 0, 0, 0}, 1, 1.0), std::runtime_error);
  EXPECT_THROW(fit_logistic(x, {0, 1, 0, 1, 0, 1}, 2, 0.0), std::runtime_error);
  EXPECT_THROW(linear_probe(x, {0, 1, 0, 1, 0, 1}, 2, {0, 1}, {}, {4}, LinearProbeOptions{}), std::runtime_error);
}
