#include <Eigen/SVD>
#include <stdexcept>

#include "eval/norm/normalize.h"

namespace tabula::eval {

RowMatrixD pca_f64(const RowMatrixD& x, const std::vector<size_t>& fit_rows, int64_t n_components,
                   std::vector<double>* explained_variance) {
  const int64_t nf = static_cast<int64_t>(fit_rows.size()), d = x.cols();
  if (nf < 2) throw std::runtime_error("PCA needs at least two rows to fit on");
  int64_t k = n_components <= 0 ? std::min(nf, d) : n_components;
  if (k > std::min(nf, d))
    throw std::runtime_error("PCA: n_components=" + std::to_string(k) + " exceeds min(n_fit_rows=" +
                             std::to_string(nf) + ", n_features=" + std::to_string(d) + ")");
  RowMatrixD fit(nf, d);
  for (int64_t i = 0; i < nf; ++i) fit.row(i) = x.row(fit_rows[i]);
  Eigen::RowVectorXd mean = fit.colwise().mean();
  fit.rowwise() -= mean;
  Eigen::BDCSVD<Eigen::MatrixXd> svd(fit, Eigen::ComputeThinV);
  Eigen::MatrixXd v = svd.matrixV().leftCols(k);  // d x k, components as columns
  // sklearn's svd_flip(u_based_decision=False): the largest-|.| loading of each component is positive.
  for (int64_t c = 0; c < k; ++c) {
    Eigen::Index arg;
    v.col(c).cwiseAbs().maxCoeff(&arg);
    if (v(arg, c) < 0) v.col(c) *= -1.0;
  }
  if (explained_variance) {
    explained_variance->resize(k);
    for (int64_t c = 0; c < k; ++c) {
      double s = svd.singularValues()(c);
      (*explained_variance)[c] = s * s / static_cast<double>(nf - 1);
    }
  }
  RowMatrixD all = x;
  all.rowwise() -= mean;
  return all * v;
}

RowMatrixF pca(const RowMatrixF& x, const std::vector<size_t>& fit_rows, int64_t n_components,
               std::vector<double>* explained_variance) {
  return pca_f64(x.cast<double>(), fit_rows, n_components, explained_variance).cast<float>();
}

}  // namespace tabula::eval
