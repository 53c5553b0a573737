// Regression of per-sample targets (HEST gene expression) from embeddings.
//  - HEST's ridge probe (mahmoodlab/HEST src/hest/bench/benchmark.py + trainer.py train_test_reg): StandardScaler
//    -> PCA(n_components, 256 in HEST) fitted on the training split, then sklearn Ridge(solver="lsqr",
//    alpha = 100 / (D * G), fit_intercept=False, max_iter=1000, tol=1e-4) where D is the reduced dimension and G the
//    number of targets; LSQR is scipy's (Paige & Saunders) with damp = sqrt(alpha), atol = btol = tol, run in
//    float64 here (HEST runs it on float32 tensors, so results agree to float32 rounding);
//  - k-NN regression (sklearn KNeighborsRegressor: Euclidean, uniform mean of the k nearest training targets);
//  - scores: Pearson r per target on the test split, mean over targets; with folds (e.g. one per patient), each
//    fold is scored and the summary is mean +- population std over folds (HEST's merge_fold_results).
#pragma once
#include <string>
#include <vector>

#include "eval/metrics/features.h"
#include "util/table.h"

namespace tabula::eval {

struct RegressOptions {
  std::string method = "ridge";  // ridge | knn
  // lsqr: HEST's early-stopped LSQR (tol 1e-4). Its iterate is chaotic in round-off: a 1e-15 relative change of the
  // input moves the stopping iteration, and Pearson r by up to ~1e-3, so no two BLAS builds agree beyond that.
  // exact: the converged ridge solution (ZᵀZ + alpha I)^-1 Zᵀy by Cholesky, reproducible to round-off.
  std::string ridge_solver = "lsqr";
  int64_t pca_components = 256;  // <= 0: no PCA (StandardScaler only)
  int k = 1;                     // knn
  int max_iter = 1000;
  double tol = 1e-4;
  int threads = 0;
};

struct FoldScore {
  std::string fold;                  // the held-out value of the fold column ("all" without folds)
  std::vector<double> pearson;       // per target
  double pearson_mean = 0;
  int64_t n_train = 0, n_test = 0;
};

// Predictions for x_test given a model fitted on (x_train, y_train); y is [N, G] row-major.
RowMatrixD regress_predict(const RowMatrixF& x_train, const RowMatrixD& y_train, const RowMatrixF& x_test,
                           const RegressOptions& opt);

// One score per fold. `fold_of_row` gives each row's fold label; every distinct label is held out once (HEST's
// patient-level splits). Rows with an empty label are always in training.
std::vector<FoldScore> regress_folds(const RowMatrixF& x, const RowMatrixD& y,
                                     const std::vector<std::string>& fold_of_row, const RegressOptions& opt);

// scipy.sparse.linalg.lsqr for min ||A x - b||^2 + damp^2 ||x||^2, returning x (and the iteration count).
Eigen::VectorXd lsqr(const RowMatrixD& a, const Eigen::VectorXd& b, double damp, double atol, double btol,
                     int iter_lim, int* iterations = nullptr);

}  // namespace tabula::eval
