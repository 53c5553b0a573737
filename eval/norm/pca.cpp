#include "eval/norm/pca.h"

#include <Eigen/SVD>
#include <stdexcept>

namespace tabula::eval {

namespace {

// svd_flip(u_based_decision=False): the largest-|.| entry of each row of vt positive (the first one on ties, as
// numpy's argmax); the same signs applied to u's columns.
void svd_flip_v(Eigen::MatrixXd* u, Eigen::MatrixXd& vt) {
  for (int64_t c = 0; c < vt.rows(); ++c) {
    Eigen::Index arg = 0;
    double best = -1;
    for (int64_t j = 0; j < vt.cols(); ++j)
      if (std::abs(vt(c, j)) > best) best = std::abs(vt(c, j)), arg = j;
    if (vt(c, arg) < 0) {
      vt.row(c) *= -1.0;
      if (u) u->col(c) *= -1.0;
    }
  }
}

int64_t checked_components(int64_t n_components, int64_t nf, int64_t d) {
  if (nf < 2) throw std::runtime_error("PCA needs at least two rows to fit on");
  int64_t k = n_components <= 0 ? std::min(nf, d) : n_components;
  if (k > std::min(nf, d))
    throw std::runtime_error("PCA: n_components=" + std::to_string(k) + " exceeds min(n_fit_rows=" +
                             std::to_string(nf) + ", n_features=" + std::to_string(d) + ")");
  return k;
}

}  // namespace

PcaSolver parse_pca_solver(const std::string& name) {
  if (name == "auto") return PcaSolver::auto_rule;
  if (name == "exact") return PcaSolver::exact;
  if (name == "randomized") return PcaSolver::randomized;
  throw std::runtime_error("PCA solver must be auto, exact or randomized, not '" + name + "'");
}

std::string sklearn_auto_pca_solver(int64_t n, int64_t d, int64_t k) {
  if (d <= 1000 && n >= 10 * d) return "covariance_eigh";
  if (std::max(n, d) <= 500) return "full";
  if (k >= 1 && static_cast<double>(k) < 0.8 * static_cast<double>(std::min(n, d))) return "randomized";
  return "full";
}

PcaResult pca_fit_transform(const RowMatrixD& x, const std::vector<size_t>& fit_rows, const PcaOptions& opt) {
  const int64_t nf = static_cast<int64_t>(fit_rows.size()), d = x.cols();
  const int64_t k = checked_components(opt.n_components, nf, d);
  PcaResult res;
  res.solver = opt.solver == PcaSolver::exact        ? "full"
               : opt.solver == PcaSolver::randomized ? "randomized"
                                                     : sklearn_auto_pca_solver(nf, d, k);
  if (res.solver != "randomized") {
    res.scores = pca_f64(x, fit_rows, k, &res.explained_variance);
    return res;
  }
  Eigen::MatrixXd fit(nf, d);
  for (int64_t i = 0; i < nf; ++i) fit.row(i) = x.row(fit_rows[i]);
  Eigen::RowVectorXd mean = fit.colwise().mean();
  fit.rowwise() -= mean;
  NumpyRandomState rng(opt.random_state);
  Svd svd = randomized_svd(fit, k, 10, -1, rng);  // PCA's n_oversamples=10, iterated_power="auto"
  svd_flip_v(&svd.u, svd.vt);
  res.explained_variance.resize(k);
  for (int64_t c = 0; c < k; ++c) res.explained_variance[c] = svd.s(c) * svd.s(c) / static_cast<double>(nf - 1);
  // transform(): X @ components.T - mean @ components.T; fit_transform(): U * S for the rows fitted on.
  Eigen::MatrixXd v = svd.vt.transpose();
  res.scores = x * v;
  res.scores.rowwise() -= mean * v;
  for (int64_t i = 0; i < nf; ++i) res.scores.row(fit_rows[i]) = svd.u.row(i).cwiseProduct(svd.s.transpose());
  return res;
}

RowMatrixD pca_f64(const RowMatrixD& x, const std::vector<size_t>& fit_rows, int64_t n_components,
                   std::vector<double>* explained_variance) {
  const int64_t nf = static_cast<int64_t>(fit_rows.size()), d = x.cols();
  const int64_t k = checked_components(n_components, nf, d);
  RowMatrixD fit(nf, d);
  for (int64_t i = 0; i < nf; ++i) fit.row(i) = x.row(fit_rows[i]);
  Eigen::RowVectorXd mean = fit.colwise().mean();
  fit.rowwise() -= mean;
  Eigen::BDCSVD<Eigen::MatrixXd> svd(fit, Eigen::ComputeThinV);
  Eigen::MatrixXd vt = svd.matrixV().leftCols(k).transpose();  // k x d, components as rows
  svd_flip_v(nullptr, vt);
  if (explained_variance) {
    explained_variance->resize(k);
    for (int64_t c = 0; c < k; ++c) {
      double s = svd.singularValues()(c);
      (*explained_variance)[c] = s * s / static_cast<double>(nf - 1);
    }
  }
  RowMatrixD all = x;
  all.rowwise() -= mean;
  return all * vt.transpose();
}

RowMatrixF pca(const RowMatrixF& x, const std::vector<size_t>& fit_rows, int64_t n_components,
               std::vector<double>* explained_variance) {
  return pca_f64(x.cast<double>(), fit_rows, n_components, explained_variance).cast<float>();
}

}  // namespace tabula::eval
