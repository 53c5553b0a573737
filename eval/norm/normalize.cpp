#include "eval/norm/normalize.h"

#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "eval/metrics/map.h"

namespace tabula::eval {

namespace {

// scipy.stats.median_abs_deviation(scale="normal") factor: 1 / Phi^-1(3/4).
constexpr double kMadNormal = 1.482602218505602;

double median(std::vector<double>& v) {
  size_t m = v.size();
  std::sort(v.begin(), v.end());
  return m % 2 ? v[m / 2] : (v[m / 2 - 1] + v[m / 2]) / 2.0;
}

// Eigen-decomposition of a symmetric matrix, eigenvalues descending, each eigenvector's largest-|.| entry positive
// (the sign convention sklearn's svd_flip uses, so PCA outputs are reproducible).
void sorted_eigh(const Eigen::MatrixXd& a, Eigen::VectorXd& values, Eigen::MatrixXd& vectors) {
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(a);
  if (es.info() != Eigen::Success) throw std::runtime_error("eigendecomposition failed (non-finite covariance?)");
  const int64_t d = a.rows();
  values.resize(d);
  vectors.resize(d, d);
  for (int64_t k = 0; k < d; ++k) {
    values(k) = es.eigenvalues()(d - 1 - k);
    vectors.col(k) = es.eigenvectors().col(d - 1 - k);
    Eigen::Index arg;
    vectors.col(k).cwiseAbs().maxCoeff(&arg);
    if (vectors(arg, k) < 0) vectors.col(k) *= -1.0;
  }
}

RowMatrixD gather(const RowMatrixF& x, const std::vector<size_t>& rows) {
  RowMatrixD m(static_cast<int64_t>(rows.size()), x.cols());
  for (size_t i = 0; i < rows.size(); ++i) m.row(i) = x.row(rows[i]).cast<double>();
  return m;
}

}  // namespace

FitGroups fit_groups(const Table& meta, const NormSpec& spec) {
  FitGroups g;
  std::vector<size_t> all(meta.rows());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  if (spec.group_column.empty()) g.rows = {all};
  else g.rows = group_rows(meta, {spec.group_column}, all);
  const std::vector<std::string>* ctrl = spec.control_column.empty() ? nullptr : &meta.column(spec.control_column);
  for (const auto& rows : g.rows) {
    std::vector<size_t> c;
    for (size_t r : rows)
      if (!ctrl || (*ctrl)[r] == spec.control_value) c.push_back(r);
    if (c.empty())
      throw std::runtime_error(meta.source() + ": group '" + (spec.group_column.empty() ? "all" : meta.column(spec.group_column)[rows[0]]) +
                               "' has no control rows (" + spec.control_column + " == " + spec.control_value + ")");
    g.controls.push_back(std::move(c));
  }
  return g;
}

void scale_on_controls(RowMatrixF& x, const Table& meta, const NormSpec& spec, Scale how, double eps) {
  check_rows_match(x, meta, "features");
  FitGroups g = fit_groups(meta, spec);
  std::vector<double> col;
  for (size_t k = 0; k < g.rows.size(); ++k) {
    const auto& ctrl = g.controls[k];
    for (int64_t d = 0; d < x.cols(); ++d) {
      double center, scale;
      col.clear();
      for (size_t r : ctrl) col.push_back(x(r, d));
      if (how == Scale::standard) {
        double s = 0;
        for (double v : col) s += v;
        center = s / static_cast<double>(col.size());
        double ss = 0;
        for (double v : col) ss += (v - center) * (v - center);
        scale = std::sqrt(ss / static_cast<double>(col.size()));
        if (scale == 0) scale = 1;  // sklearn StandardScaler
        scale += eps;
      } else {
        center = median(col);
        for (double& v : col) v = std::abs(v - center);
        scale = median(col) * (how == Scale::mad ? kMadNormal : 1.0) + eps;  // pycytominer RobustMAD: / (mad + eps)
        if (scale == 0) throw std::runtime_error("feature " + std::to_string(d) + " has zero MAD on the controls; "
                                                 "filter it (zero-MAD feature filter) or pass an epsilon");
      }
      for (size_t r : g.rows[k]) x(r, d) = static_cast<float>((x(r, d) - center) / scale);
    }
  }
}

void spherize(RowMatrixF& x, const Table& meta, const NormSpec& spec, Whiten how, double eps) {
  check_rows_match(x, meta, "features");
  FitGroups g = fit_groups(meta, spec);
  const int64_t d = x.cols();
  for (size_t k = 0; k < g.rows.size(); ++k) {
    RowMatrixD c = gather(x, g.controls[k]);
    if (c.rows() < 2) throw std::runtime_error("spherize: a group has fewer than two control rows");
    Eigen::RowVectorXd mu = c.colwise().mean();
    c.rowwise() -= mu;
    Eigen::MatrixXd cov = (c.transpose() * c) / static_cast<double>(c.rows() - 1);
    Eigen::MatrixXd w;  // applied as z = (x - mu) * w
    Eigen::VectorXd lam;
    Eigen::MatrixXd u;
    if (how == Whiten::pca || how == Whiten::zca) {
      sorted_eigh(cov, lam, u);
      Eigen::VectorXd inv = (lam.array().max(0.0) + eps).rsqrt();
      w = u * inv.asDiagonal();
      if (how == Whiten::zca) w = w * u.transpose();
    } else {
      Eigen::VectorXd sd = cov.diagonal().array().sqrt();
      for (int64_t j = 0; j < d; ++j)
        if (!(sd(j) > 0)) throw std::runtime_error("spherize (correlation): feature " + std::to_string(j) +
                                                   " is constant on the controls");
      Eigen::MatrixXd corr = sd.cwiseInverse().asDiagonal() * cov * sd.cwiseInverse().asDiagonal();
      sorted_eigh(corr, lam, u);
      Eigen::VectorXd inv = (lam.array().max(0.0) + eps).rsqrt();
      w = sd.cwiseInverse().asDiagonal() * u * inv.asDiagonal();
      if (how == Whiten::zca_cor) w = w * u.transpose();
    }
    for (size_t r : g.rows[k]) x.row(r) = ((x.row(r).cast<double>() - mu) * w).cast<float>();
  }
}

void centerscale_on_controls(RowMatrixF& x, const Table& meta, const std::string& pert_col,
                             const std::string& control_key, const std::string& batch_col) {
  scale_on_controls(x, meta, NormSpec{batch_col, pert_col, control_key}, Scale::standard, 0.0);
}

RowMatrixF tvn_on_controls(const RowMatrixF& x_in, const Table& meta, const std::string& pert_col,
                           const std::string& control_key, const std::string& batch_col) {
  RowMatrixF x = x_in;
  centerscale_on_controls(x, meta, pert_col, control_key, "");
  FitGroups all = fit_groups(meta, NormSpec{"", pert_col, control_key});
  x = pca(x, all.controls[0], 0);  // PCA() on the controls, all components
  centerscale_on_controls(x, meta, pert_col, control_key, "");
  if (!batch_col.empty()) {
    FitGroups g = fit_groups(meta, NormSpec{batch_col, pert_col, control_key});
    const int64_t d = x.cols();
    for (size_t k = 0; k < g.rows.size(); ++k) {
      RowMatrixD c = gather(x, g.controls[k]);
      if (c.rows() < 2) throw std::runtime_error("TVN: a batch has fewer than two control rows");
      c.rowwise() -= c.colwise().mean();
      Eigen::MatrixXd cov = (c.transpose() * c) / static_cast<double>(c.rows() - 1);
      cov.diagonal().array() += 0.5;
      Eigen::VectorXd lam;
      Eigen::MatrixXd u;
      sorted_eigh(cov, lam, u);
      Eigen::MatrixXd m = u * lam.array().rsqrt().matrix().asDiagonal() * u.transpose();  // (Cov + 0.5 I)^(-1/2)
      (void)d;
      for (size_t r : g.rows[k]) x.row(r) = (x.row(r).cast<double>() * m).cast<float>();
    }
  }
  return x;
}

RowMatrixF pca_centerscale(const RowMatrixF& x_in, const Table& meta, const std::string& batch_col, int64_t n_components) {
  RowMatrixF x = x_in;
  scale_on_controls(x, meta, NormSpec{batch_col, "", ""}, Scale::standard, 0.0);
  std::vector<size_t> all(x.rows());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  return pca(x, all, n_components);
}

std::vector<int64_t> filter_features(const RowMatrixF& x, bool drop_zero_mad, double min_variance) {
  std::vector<int64_t> keep;
  std::vector<double> col(x.rows());
  for (int64_t d = 0; d < x.cols(); ++d) {
    for (int64_t r = 0; r < x.rows(); ++r) col[r] = x(r, d);
    double mean = 0;
    for (double v : col) mean += v;
    mean /= static_cast<double>(col.size());
    double var = 0;
    for (double v : col) var += (v - mean) * (v - mean);
    var /= static_cast<double>(col.size());
    bool drop = min_variance >= 0 && var <= min_variance;
    if (drop_zero_mad && !drop) {
      double med = median(col);
      for (double& v : col) v = std::abs(v - med);
      drop = median(col) == 0;
    }
    if (!drop) keep.push_back(d);
  }
  return keep;
}

}  // namespace tabula::eval
