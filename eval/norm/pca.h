// PCA as scikit-learn's sklearn.decomposition.PCA(n_components, random_state=seed).fit(fit rows), applied to every
// row: centred on the fit rows' mean, components from an SVD, signs by svd_flip(u_based_decision=False) (each
// component's largest-|.| loading positive).
//
// Solvers (scikit-learn 1.5 - 1.9, sklearn/decomposition/_pca.py):
//  - exact: the full SVD ("full"; "covariance_eigh" gives the same components to round-off);
//  - randomized: sklearn.utils.extmath._randomized_svd replayed step by step (randomized_svd below);
//  - auto: svd_solver="auto"'s rule for an n x d fit matrix and k components: "covariance_eigh" when d <= 1000 and
//    n >= 10 d; else "full" when max(n, d) <= 500; else "randomized" when 1 <= k < 0.8 min(n, d); else "full".
//    scikit-learn < 1.5 has no "covariance_eigh" branch (those shapes went to "randomized" when k < 0.8 min(n, d)):
//    pass `randomized` explicitly to replay such a version.
// Rows fitted on get sklearn's fit_transform scores (U * S, which for the randomized solver is not exactly the
// projection X V); the other rows get transform()'s X V - mean V.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "eval/profiles.h"
#include "eval/norm/numpy_random.h"

namespace tabula::eval {

enum class PcaSolver { auto_rule, exact, randomized };
// "auto" | "exact" | "randomized"; throws naming the accepted values.
PcaSolver parse_pca_solver(const std::string& name);

struct PcaOptions {
  int64_t n_components = 0;  // <= 0: min(n_fit, D)
  PcaSolver solver = PcaSolver::exact;
  uint32_t random_state = 0;  // RandomState(random_state) for the randomized solver
};

// sklearn's svd_solver="auto" choice: "covariance_eigh", "full" or "randomized".
std::string sklearn_auto_pca_solver(int64_t n_samples, int64_t n_features, int64_t n_components);

struct PcaResult {
  RowMatrixD scores;                     // [N, k]
  std::string solver;                    // the solver sklearn would run: full | covariance_eigh | randomized
  std::vector<double> explained_variance;
};
PcaResult pca_fit_transform(const RowMatrixD& x, const std::vector<size_t>& fit_rows, const PcaOptions& opt);

// Exact PCA (the full SVD). n_components <= 0 keeps min(n_fit, D). Returns [N, k].
RowMatrixF pca(const RowMatrixF& x, const std::vector<size_t>& fit_rows, int64_t n_components,
               std::vector<double>* explained_variance = nullptr);
RowMatrixD pca_f64(const RowMatrixD& x, const std::vector<size_t>& fit_rows, int64_t n_components,
                   std::vector<double>* explained_variance = nullptr);

// sklearn.utils.extmath._randomized_svd(m, n_components, n_oversamples, n_iter, power_iteration_normalizer="auto",
// transpose="auto", flip_sign=False, random_state=rng): n_iter < 0 is "auto" (7 when n_components < 0.1 min(shape),
// else 4); the range finder draws rng.normal(size=(columns, n_components + n_oversamples)) of the (transposed when
// rows < columns) matrix, normalises each power iteration by scipy.linalg.lu(permute_l=True) (none when
// n_iter <= 2), and orthonormalises last by QR; the SVD of the small projection gives U, S, Vt.
struct Svd {
  Eigen::MatrixXd u;   // [rows, k]
  Eigen::VectorXd s;   // [k]
  Eigen::MatrixXd vt;  // [k, cols]
};
Svd randomized_svd(const Eigen::MatrixXd& m, int64_t n_components, int64_t n_oversamples, int n_iter,
                   NumpyRandomState& rng);

}  // namespace tabula::eval
