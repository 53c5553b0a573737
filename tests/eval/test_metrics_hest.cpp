// HEST's ridge probe as HEST runs it: numpy's legacy RandomState, scikit-learn's PCA with its solver rule and its
// randomized SVD, and the whole pipeline per patient fold, against weights_tools/reference/hest_fixtures.py (HEST's
// own train_test_reg, scikit-learn's PCA and Ridge).
#include <gtest/gtest.h>

#include <map>

#include "eval/metrics/regress.h"
#include "eval/norm/numpy_random.h"
#include "eval/norm/pca.h"
#include "tests/eval/metrics_test_util.h"
#include "util/npy.h"

using namespace tabula;
using namespace tabula::eval;
using tabula::test::metrics_fixture;

namespace {
RowMatrixD load_f64(const std::string& rel) {
  NpyArray a = read_npy(metrics_fixture(rel));
  std::vector<double> v = a.to_f64();
  const int64_t rows = a.shape[0], cols = a.shape.size() > 1 ? a.shape[1] : 1;
  return Eigen::Map<RowMatrixD>(v.data(), rows, cols);
}

// Folds of `method` in expected.csv: fold -> per-target Pearson r.
std::map<std::string, std::vector<double>> expected(const Table& want, const std::string& method) {
  std::map<std::string, std::vector<double>> out;
  for (size_t r = 0; r < want.rows(); ++r) {
    if (want.column("method")[r] != method) continue;
    auto& v = out[want.column("fold")[r]];
    for (int t = 0; t < 50; ++t) {
      std::string col = "t";  // (not "t" + to_string: GCC 12's -Wrestrict false positive)
      col += std::to_string(t);
      v.push_back(want.number(r, want.index(col)));
    }
  }
  return out;
}

double max_diff(const std::vector<FoldScore>& got, const std::map<std::string, std::vector<double>>& want) {
  double worst = 0;
  EXPECT_EQ(got.size(), want.size());
  for (const auto& f : got) {
    const auto& w = want.at(f.fold);
    EXPECT_EQ(f.pearson.size(), w.size());
    for (size_t t = 0; t < w.size(); ++t) worst = std::max(worst, std::abs(f.pearson[t] - w[t]));
  }
  return worst;
}

struct HestData {
  RowMatrixF x;
  RowMatrixD y;
  Table meta, want;
};
HestData hest_data() {
  HestData h{load_features(metrics_fixture("hest/features.npy")), load_f64("hest/targets.npy"),
             read_csv(metrics_fixture("hest/meta.csv")), read_csv(metrics_fixture("hest/expected.csv"))};
  return h;
}
}  // namespace

TEST(MetricsHest, NumpyRandomStateStreamIsNumpys) {
  RowMatrixD normal = load_f64("hest/random_state_normal.npy");
  const uint32_t seeds[] = {0, 1, 12345};
  for (int s = 0; s < 3; ++s) {
    NumpyRandomState rng(seeds[s]);
    for (int64_t k = 0; k < normal.cols(); ++k) EXPECT_EQ(rng.standard_normal(), normal(s, k)) << seeds[s] << " " << k;
  }
  RowMatrixD sample = load_f64("hest/random_state_sample.npy");
  NumpyRandomState rng(1);
  for (int64_t k = 0; k < sample.rows(); ++k) EXPECT_EQ(rng.random_sample(), sample(k, 0)) << k;
}

TEST(MetricsHest, SolverRuleIsSklearns) {
  // scikit-learn 1.5+ svd_solver="auto" (HEST's PCA(256) on 1024-d embeddings: randomized below 10,240 rows).
  EXPECT_EQ(sklearn_auto_pca_solver(540, 384, 256), "randomized");
  EXPECT_EQ(sklearn_auto_pca_solver(400, 300, 256), "full");      // max(shape) <= 500
  EXPECT_EQ(sklearn_auto_pca_solver(20000, 1024, 256), "randomized");  // > 1000 features: no covariance_eigh
  EXPECT_EQ(sklearn_auto_pca_solver(12000, 1000, 256), "covariance_eigh");
  EXPECT_EQ(sklearn_auto_pca_solver(600, 300, 240), "full");      // k >= 0.8 min(shape)
}

TEST(MetricsHest, RandomizedPcaMatchesSklearn) {
  Table cases = read_csv(metrics_fixture("hest/pca_cases.csv"));
  for (size_t c = 0; c < cases.rows(); ++c) {
    const std::string name = cases.column("name")[c];
    SCOPED_TRACE(name);
    RowMatrixD x = load_f64("hest/pca_" + name + "_x.npy");
    const auto n_fit = static_cast<size_t>(cases.number(c, cases.index("n_fit")));
    std::vector<size_t> fit(n_fit);
    for (size_t i = 0; i < n_fit; ++i) fit[i] = i;
    PcaOptions opt{static_cast<int64_t>(cases.number(c, cases.index("k"))),
                   parse_pca_solver(cases.column("svd_solver")[c] == "auto" ? "auto" : "randomized"),
                   static_cast<uint32_t>(cases.number(c, cases.index("seed")))};
    PcaResult res = pca_fit_transform(x, fit, opt);
    EXPECT_EQ(res.solver, cases.column("solver")[c]);
    RowMatrixD want_fit = load_f64("hest/pca_" + name + "_fit_scores.npy");
    RowMatrixD want_test = load_f64("hest/pca_" + name + "_test_scores.npy");
    const double scale = want_fit.cwiseAbs().maxCoeff();
    EXPECT_LT((res.scores.topRows(n_fit) - want_fit).cwiseAbs().maxCoeff() / scale, 1e-10);
    EXPECT_LT((res.scores.bottomRows(x.rows() - n_fit) - want_test).cwiseAbs().maxCoeff() / scale, 1e-10);
    // The exact SVD gives other scores for the trailing components: the replay is what makes these equal. (Not in
    // the forced case: its k + n_oversamples random vectors span every column, so randomized is exact there.)
    if (cases.column("svd_solver")[c] != "auto") continue;
    opt.solver = PcaSolver::exact;
    RowMatrixD exact = pca_fit_transform(x, fit, opt).scores;
    EXPECT_GT((exact.topRows(n_fit) - want_fit).cwiseAbs().maxCoeff() / scale, 1e-6);
  }
}

// More than 500 training rows per fold: HEST's PCA(256, random_state=1) runs scikit-learn's randomized SVD.
TEST(MetricsHest, RidgeProbeEqualsHestInTheRandomizedRegime) {
  HestData h = hest_data();
  RegressOptions opt;  // HEST's defaults: PCA 256, solver auto, seed 1, ridge lsqr
  std::vector<FoldScore> got = regress_folds(h.x, h.y, h.meta.column("patient"), opt);
  for (const auto& f : got) {
    EXPECT_EQ(f.pca_solver, "randomized");
    EXPECT_EQ(f.n_train, 540);
  }
  // HEST's train_test_reg on the float64 pipeline: per-gene Pearson r within 1e-6. (LSQR is stable here: scaling
  // the scores by 1 + 1e-14 noise moves sklearn's own r by ~4e-12; see test_metrics_regress.cpp for a case where
  // it is not.)
  EXPECT_LT(max_diff(got, expected(h.want, "hest")), 1e-6);
  // HEST as published (float32 embeddings and a float32 ridge): float32 round-off only.
  EXPECT_LT(max_diff(got, expected(h.want, "hest_f32")), 1e-4);
  opt.ridge_solver = "exact";
  EXPECT_LT(max_diff(regress_folds(h.x, h.y, h.meta.column("patient"), opt), expected(h.want, "hest_cholesky")), 1e-9);
}

TEST(MetricsHest, ExactPcaSolverEqualsSklearnFull) {
  HestData h = hest_data();
  RegressOptions opt;
  opt.pca_solver = PcaSolver::exact;
  std::vector<FoldScore> got = regress_folds(h.x, h.y, h.meta.column("patient"), opt);
  EXPECT_EQ(got[0].pca_solver, "full");
  EXPECT_LT(max_diff(got, expected(h.want, "hest_exact_pca")), 1e-6);
  // ... and differs from HEST's default pipeline by far more than the parity bound (the discrepancy).
  EXPECT_GT(max_diff(got, expected(h.want, "hest")), 1e-3);
}
