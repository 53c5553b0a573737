// Normalisation against pycytominer, scipy, scikit-learn and EFAAR's efaar.py, each called by the fixture script
// (weights_tools/reference/metrics_fixtures.py).
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "eval/norm/normalize.h"
#include "tests/eval/metrics_test_util.h"

using namespace tabula;
using namespace tabula::eval;
using tabula::test::metrics_fixture;

namespace {
// Element-wise |got - want| <= rtol |want| + atol against a fixture written by the tool itself. sign_groups (one
// label per row): the sign of each column may differ within each group, as PCA-whitened columns do (pycytominer
// keeps LAPACK's sign of each component, fitted per plate).
void expect_close(const RowMatrixF& got, const std::string& fixture, double rtol, double atol,
                  const std::vector<std::string>* sign_groups = nullptr) {
  RowMatrixF want = load_features(metrics_fixture(fixture + ".npy"));
  ASSERT_EQ(got.rows(), want.rows()) << fixture;
  ASSERT_EQ(got.cols(), want.cols()) << fixture;
  int bad = 0;
  for (int64_t c = 0; c < got.cols(); ++c) {
    std::map<std::string, double> dot;
    if (sign_groups)
      for (int64_t r = 0; r < got.rows(); ++r) dot[(*sign_groups)[r]] += double(got(r, c)) * want(r, c);
    for (int64_t r = 0; r < got.rows(); ++r) {
      double sign = sign_groups && dot[(*sign_groups)[r]] < 0 ? -1.0 : 1.0;
      double g = sign * got(r, c), w = want(r, c);
      if (std::abs(g - w) > rtol * std::abs(w) + atol && bad++ < 5)
        ADD_FAILURE() << fixture << " [" << r << ", " << c << "]: " << g << " vs " << w;
    }
  }
  EXPECT_EQ(bad, 0) << fixture;
}
}  // namespace

// pycytominer 1.7.1's normalize (per plate, samples = DMSO) and scipy's median_abs_deviation.
TEST(Norm, ScalingMatchesPycytominerAndScipy) {
  RowMatrixF x = load_features(metrics_fixture("norm/features.npy"));
  Table meta = read_csv(metrics_fixture("norm/meta.csv"));
  NormSpec spec{"plate", "pert", "DMSO"};
  for (auto [how, name] : {std::pair{Scale::standard, "standardize"}, {Scale::mad, "mad"},
                           {Scale::mad_normal, "mad_normal"}, {Scale::mad_raw, "mad_raw"}}) {
    RowMatrixF y = x;
    scale_on_controls(y, meta, spec, how, how == Scale::standard ? 0.0 : 1e-18);
    // Both sides round the same float64 value to float32: at most one float32 ulp apart (the MAD factors differ
    // by 1.5e-6 relative, 12 ulps).
    expect_close(y, std::string("norm/") + name, 1.2e-7, 1e-30);
  }
}

TEST(Norm, SpherizeMatchesPycytominer) {
  for (std::string dir : {"norm", "norm_wide"}) {
    RowMatrixF x = load_features(metrics_fixture(dir + "/features.npy"));
    Table meta = read_csv(metrics_fixture(dir + "/meta.csv"));
    for (auto [how, name] : {std::pair{Whiten::pca, "spherize_pca"}, {Whiten::zca, "spherize_zca"},
                             {Whiten::pca_cor, "spherize_pca-cor"}, {Whiten::zca_cor, "spherize_zca-cor"}}) {
      bool pca = how == Whiten::pca || how == Whiten::pca_cor;
      // With fewer controls than features, PCA-whitened null-space columns are LAPACK's arbitrary basis.
      if (dir == "norm_wide" && pca) continue;
      RowMatrixF y = x;
      spherize(y, meta, NormSpec{"plate", "pert", "DMSO"}, how, 1e-6);
      expect_close(y, dir + "/" + name, 1e-5, 1e-5, pca ? &meta.column("plate") : nullptr);
    }
  }
}

TEST(Norm, EfaarAndSklearnMatch) {
  RowMatrixF x = load_features(metrics_fixture("norm/features.npy"));
  Table meta = read_csv(metrics_fixture("norm/meta.csv"));
  expect_close(tvn_on_controls(x, meta, "pert", "DMSO", "plate"), "norm/tvn", 1e-5, 1e-5);
  RowMatrixF y = x;
  centerscale_on_controls(y, meta, "pert", "DMSO", "plate");
  expect_close(y, "norm/centerscale", 1e-6, 1e-6);
  expect_close(pca_centerscale(x, meta, "plate", 4), "norm/pca_centerscale", 1e-5, 1e-5);
  FitGroups g = fit_groups(meta, NormSpec{"", "pert", "DMSO"});
  expect_close(pca(x, g.controls[0], 3), "norm/pca_controls", 1e-5, 1e-5);
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
