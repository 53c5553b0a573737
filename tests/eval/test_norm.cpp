// Normalisation against sklearn / scipy / EFAAR's efaar.py (reimplemented line by line in the fixture script).
#include <gtest/gtest.h>

#include <random>

#include "eval/norm/normalize.h"
#include "tests/eval/metrics_test_util.h"

using namespace tabula;
using namespace tabula::eval;
using tabula::test::metrics_fixture;

namespace {
void expect_close(const RowMatrixF& got, const std::string& name, double tol) {
  RowMatrixF want = load_features(metrics_fixture("norm/" + name + ".npy"));
  ASSERT_EQ(got.rows(), want.rows()) << name;
  ASSERT_EQ(got.cols(), want.cols()) << name;
  double err = (got - want).cwiseAbs().maxCoeff();
  double scale = std::max(1.0f, want.cwiseAbs().maxCoeff());
  EXPECT_LE(err / scale, tol) << name;
}
}  // namespace

TEST(Norm, ScalingAndWhiteningMatchReferences) {
  RowMatrixF x = load_features(metrics_fixture("norm/features.npy"));
  Table meta = read_csv(metrics_fixture("norm/meta.csv"));
  NormSpec spec{"plate", "pert", "DMSO"};
  for (auto [how, name] : {std::pair{Scale::standard, "standardize"}, {Scale::mad, "mad"}, {Scale::mad_raw, "mad_raw"}}) {
    RowMatrixF y = x;
    scale_on_controls(y, meta, spec, how, how == Scale::standard ? 0.0 : 1e-18);
    expect_close(y, name, 2e-6);
  }
  for (auto [how, name] : {std::pair{Whiten::pca, "spherize_pca"}, {Whiten::zca, "spherize_zca"},
                           {Whiten::pca_cor, "spherize_pca-cor"}, {Whiten::zca_cor, "spherize_zca-cor"}}) {
    RowMatrixF y = x;
    spherize(y, meta, spec, how, 1e-6);
    expect_close(y, name, 2e-5);
  }
  expect_close(tvn_on_controls(x, meta, "pert", "DMSO", "plate"), "tvn", 1e-4);
  expect_close(pca_centerscale(x, meta, "plate", 4), "pca_centerscale", 1e-4);
  FitGroups g = fit_groups(meta, NormSpec{"", "pert", "DMSO"});
  expect_close(pca(x, g.controls[0], 3), "pca_controls", 1e-4);
}

TEST(Norm, WhitenedControlsHaveIdentityCovariance) {
  std::mt19937 rng(2);
  std::normal_distribution<float> n;
  RowMatrixF x(200, 5);
  for (int i = 0; i < 200; ++i)
    for (int d = 0; d < 5; ++d) x(i, d) = n(rng) * (d + 1) + (d ? x(i, d - 1) : 0.0f);
  Table meta({"ctrl"});
  for (int i = 0; i < 200; ++i) meta.add_row({i % 2 ? "y" : "n"});
  for (Whiten w : {Whiten::pca, Whiten::zca, Whiten::pca_cor, Whiten::zca_cor}) {
    RowMatrixF y = x;
    spherize(y, meta, NormSpec{"", "ctrl", "y"}, w, 0.0);
    RowMatrixD c(100, 5);
    for (int i = 0; i < 100; ++i) c.row(i) = y.row(2 * i + 1).cast<double>();
    c.rowwise() -= c.colwise().mean();
    Eigen::MatrixXd cov = c.transpose() * c / 99.0;
    EXPECT_LT((cov - Eigen::MatrixXd::Identity(5, 5)).cwiseAbs().maxCoeff(), 1e-4);
  }
}

TEST(Norm, AggregateFilterAndErrors) {
  RowMatrixF x(4, 3);
  x << 1, 5, 2, 3, 5, 2, 10, 5, 4, 20, 5, 6;
  Table meta({"g", "plate"});
  meta.add_row({"b", "p"});
  meta.add_row({"b", "p"});
  meta.add_row({"a", "p"});
  meta.add_row({"a", "q"});
  Table out;
  RowMatrixF m = aggregate(x, meta, {"g"}, "median", &out);
  EXPECT_EQ(out.column("g"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(m(0, 0), 15.0f);
  EXPECT_EQ(m(1, 0), 2.0f);
  EXPECT_EQ(filter_features(x, true, 0.0), (std::vector<int64_t>{0, 2}));  // column 1 is constant
  RowMatrixF y = x;
  EXPECT_THROW(scale_on_controls(y, meta, NormSpec{"plate", "g", "b"}, Scale::standard), std::runtime_error);
  EXPECT_THROW(aggregate(x, meta, {"g"}, "mode", nullptr), std::runtime_error);
}
