#include "eval/norm/normalize.h"

#include <Eigen/Eigenvalues>
#include <Eigen/SVD>
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>


namespace tabula::eval {

namespace {

// pycytominer 1.7.1 RobustMAD.fit: scipy.stats.median_abs_deviation(X, scale=1 / 1.4826), i.e. MAD / (1 / 1.4826).
constexpr double kPycytominerMadScale = 1 / 1.4826;
// scipy.stats.median_abs_deviation(scale="normal"): MAD / Phi^-1(3/4), i.e. MAD x 1.482602218505602.
constexpr double kNormalMadScale = 0.6744897501960817;

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
      throw std::runtime_error(meta.source() + ": group '" +
                               (spec.group_column.empty() ? "all" : meta.column(spec.group_column)[rows[0]]) +
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
        // scipy divides the raw MAD by its `scale` argument; RobustMAD.transform divides by (mad + epsilon).
        const double mad_scale = how == Scale::mad ? kPycytominerMadScale : how == Scale::mad_normal ? kNormalMadScale
                                                                                                       : 1.0;
        scale = median(col) / mad_scale + eps;
        if (scale == 0) throw std::runtime_error("feature " + std::to_string(d) + " has zero MAD on the controls; "
                                                 "filter it (zero-MAD feature filter) or pass an epsilon");
      }
      for (size_t r : g.rows[k]) x(r, d) = static_cast<float>((x(r, d) - center) / scale);
    }
  }
}

namespace {

// pycytominer 1.7.1 Spherize.fit on one group's control rows: X centred (PCA/ZCA) or standardised with the
// population std (the -cor variants, sklearn's StandardScaler); np.linalg.svd(X) = U S Vt; when n <= d the
// singular values past the rank r are replaced by S[r-1]; W = V diag(sqrt(n - 1) / (S + eps)) (PCA), times Vt
// (ZCA). Returns W and the centre/scale to apply before it.
struct Sphering {
  Eigen::RowVectorXd center, scale;
  Eigen::MatrixXd w;
};

Sphering fit_sphering(RowMatrixD c, Whiten how, double eps) {
  const int64_t n = c.rows(), d = c.cols();
  if (n < 2) throw std::runtime_error("spherize: a group has fewer than two control rows");
  Sphering s;
  s.center = c.colwise().mean();
  c.rowwise() -= s.center;
  s.scale = Eigen::RowVectorXd::Ones(d);
  if (how == Whiten::pca_cor || how == Whiten::zca_cor) {
    for (int64_t j = 0; j < d; ++j) {
      double sd = std::sqrt(c.col(j).squaredNorm() / static_cast<double>(n));
      if (!(sd > 0))
        throw std::runtime_error("spherize (correlation): feature " + std::to_string(j) +
                                 " has zero variance on the controls; remove low-variance features first");
      s.scale(j) = sd;
    }
    for (int64_t r = 0; r < n; ++r) c.row(r).array() /= s.scale.array();
  }
  Eigen::BDCSVD<Eigen::MatrixXd> svd(c, Eigen::ComputeFullV);
  Eigen::VectorXd sigma = Eigen::VectorXd::Zero(d);
  const Eigen::VectorXd& sv = svd.singularValues();
  sigma.head(sv.size()) = sv;
  if (n <= d) {
    // numpy.linalg.matrix_rank's tolerance: S.max() * max(n, d) * eps.
    const double tol = sv(0) * static_cast<double>(std::max(n, d)) * std::numeric_limits<double>::epsilon();
    int64_t r = 0;
    while (r < sv.size() && sv(r) > tol) ++r;
    if (r != n - 1 && r != n)
      throw std::runtime_error("spherize: the control rows of a group have rank " + std::to_string(r) +
                               " with n = " + std::to_string(n) + " <= d = " + std::to_string(d) +
                               " (pycytominer requires n - 1 or n)");
    for (int64_t k = r; k < d; ++k) sigma(k) = sv(r - 1);
  }
  Eigen::MatrixXd v = svd.matrixV();
  // Component signs are LAPACK's choice in pycytominer; here the largest-|.| loading is positive (svd_flip), which
  // changes the sign of PCA-whitened columns only (ZCA does not depend on it).
  for (int64_t k = 0; k < d; ++k) {
    Eigen::Index arg;
    v.col(k).cwiseAbs().maxCoeff(&arg);
    if (v(arg, k) < 0) v.col(k) *= -1.0;
  }
  Eigen::VectorXd inv = std::sqrt(static_cast<double>(n - 1)) * (sigma.array() + eps).inverse();
  s.w = v * inv.asDiagonal();
  if (how == Whiten::zca || how == Whiten::zca_cor) s.w = s.w * v.transpose();
  return s;
}

}  // namespace

void spherize(RowMatrixF& x, const Table& meta, const NormSpec& spec, Whiten how, double eps) {
  check_rows_match(x, meta, "features");
  FitGroups g = fit_groups(meta, spec);
  for (size_t k = 0; k < g.rows.size(); ++k) {
    Sphering s = fit_sphering(gather(x, g.controls[k]), how, eps);
    for (size_t r : g.rows[k])
      x.row(r) = (((x.row(r).cast<double>() - s.center).array() / s.scale.array()).matrix() * s.w).cast<float>();
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

RowMatrixF pca_centerscale(const RowMatrixF& x_in, const Table& meta, const std::string& batch_col,
                           int64_t n_components) {
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
