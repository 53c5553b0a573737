// sklearn.utils.extmath._randomized_svd / _randomized_range_finder (scikit-learn 1.9.1), step by step. The random
// matrix is numpy's, value for value; the factorisations are LAPACK's algorithms (getrf's partial pivoting, a
// Householder QR, an SVD), so U, S and Vt equal scikit-learn's to round-off.
#include <Eigen/QR>
#include <Eigen/SVD>
#include <cmath>
#include <stdexcept>

#include "eval/norm/pca.h"

namespace tabula::eval {

namespace {

// scipy.linalg.lu(a, permute_l=True)[0]: P @ L of LAPACK getrf's partial-pivot LU (pivot = the first largest |.|
// in the column, rows swapped), L unit lower trapezoidal, rows put back in their original order.
Eigen::MatrixXd lu_permuted_l(Eigen::MatrixXd a) {
  const int64_t m = a.rows(), n = a.cols(), kmax = std::min(m, n);
  std::vector<int64_t> perm(m);
  for (int64_t i = 0; i < m; ++i) perm[i] = i;
  for (int64_t j = 0; j < kmax; ++j) {
    int64_t p = j;
    double best = std::abs(a(j, j));
    for (int64_t i = j + 1; i < m; ++i)
      if (std::abs(a(i, j)) > best) best = std::abs(a(i, j)), p = i;
    if (p != j) {
      a.row(p).swap(a.row(j));
      std::swap(perm[p], perm[j]);
    }
    const double pivot = a(j, j);
    if (pivot != 0) a.col(j).tail(m - j - 1) /= pivot;
    a.bottomRightCorner(m - j - 1, n - j - 1).noalias() -=
        a.col(j).tail(m - j - 1) * a.row(j).tail(n - j - 1);
  }
  Eigen::MatrixXd pl = Eigen::MatrixXd::Zero(m, kmax);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < std::min<int64_t>(r + 1, kmax); ++c) pl(perm[r], c) = r == c ? 1.0 : a(r, c);
  return pl;
}

// scipy.linalg.qr(a, mode="economic")[0].
Eigen::MatrixXd qr_economic_q(const Eigen::MatrixXd& a) {
  Eigen::HouseholderQR<Eigen::MatrixXd> qr(a);
  return qr.householderQ() * Eigen::MatrixXd::Identity(a.rows(), std::min(a.rows(), a.cols()));
}

}  // namespace

Svd randomized_svd(const Eigen::MatrixXd& m_in, int64_t n_components, int64_t n_oversamples, int n_iter,
                   NumpyRandomState& rng) {
  const int64_t n_samples = m_in.rows(), n_features = m_in.cols();
  const int64_t n_random = n_components + n_oversamples;
  if (n_components < 1 || n_components > std::min(n_samples, n_features))
    throw std::runtime_error("randomized SVD: n_components=" + std::to_string(n_components) +
                             " must be in [1, min(rows, columns)=" + std::to_string(std::min(n_samples, n_features)) +
                             "]");
  if (n_iter < 0)
    n_iter = static_cast<double>(n_components) < 0.1 * static_cast<double>(std::min(n_samples, n_features)) ? 7 : 4;
  const bool transpose = n_samples < n_features;
  const Eigen::MatrixXd& m = transpose ? Eigen::MatrixXd(m_in.transpose()) : m_in;
  // _randomized_range_finder: Q = random_state.normal(size=(A.shape[1], size)), filled in C order.
  Eigen::MatrixXd q(m.cols(), n_random);
  for (int64_t i = 0; i < q.rows(); ++i)
    for (int64_t j = 0; j < q.cols(); ++j) q(i, j) = rng.standard_normal();
  const bool lu = n_iter > 2;  // power_iteration_normalizer="auto"
  for (int it = 0; it < n_iter; ++it) {
    Eigen::MatrixXd aq = m * q;
    q = lu ? lu_permuted_l(std::move(aq)) : std::move(aq);
    Eigen::MatrixXd atq = m.transpose() * q;
    q = lu ? lu_permuted_l(std::move(atq)) : std::move(atq);
  }
  q = qr_economic_q(m * q);
  // B = Q^T M, its SVD, U = Q Uhat; the first n_components (transposed back when M was transposed).
  Eigen::MatrixXd b = q.transpose() * m;
  Eigen::BDCSVD<Eigen::MatrixXd> svd(b, Eigen::ComputeThinU | Eigen::ComputeThinV);
  Eigen::MatrixXd u = q * svd.matrixU();
  Svd out;
  out.s = svd.singularValues().head(n_components);
  if (transpose) {
    out.u = svd.matrixV().leftCols(n_components);
    out.vt = u.leftCols(n_components).transpose();
  } else {
    out.u = u.leftCols(n_components);
    out.vt = svd.matrixV().leftCols(n_components).transpose();
  }
  return out;
}

}  // namespace tabula::eval
