// Linear probe: multinomial logistic regression fitted by L-BFGS, with the L2 strength chosen on a validation split.
// Objective (scikit-learn LogisticRegression(penalty="l2", C, solver="lbfgs"), multinomial, intercept unpenalised):
//   (1/n) sum_i -log softmax(W x_i + b)[y_i] + ||W||_F^2 / (2 C n)
// It is strictly convex, so any solver run to convergence reaches sklearn's optimum; the fit runs until the
// gradient's max-norm is below `tol`. The sweep fits every C on the training rows, picks the best validation top-1
// (ties: the smaller C, i.e. stronger regularisation), refits on train + validation and scores the test rows.
#pragma once
#include <string>
#include <vector>

#include "eval/metrics/features.h"
#include "util/table.h"

namespace tabula::eval {

struct LogisticModel {
  RowMatrixD w;       // [K, D]
  Eigen::VectorXd b;  // [K]
  int iterations = 0;
  bool converged = false;
};

LogisticModel fit_logistic(const RowMatrixF& x, const std::vector<int32_t>& y, int32_t n_classes, double c,
                           int max_iter = 1000, double tol = 1e-8);
RowMatrixD predict_proba(const LogisticModel& m, const RowMatrixF& x);

struct LinearProbeOptions {
  std::vector<double> cs = {1e-4, 1e-3, 1e-2, 1e-1, 1, 10, 100, 1000, 10000};
  int max_iter = 1000;
  double tol = 1e-8;
  bool standardize = true;  // z-score features with the training rows' mean/std first (probe on any scale)
};

struct LinearProbeResult {
  std::vector<double> cs, val_top1;  // the sweep
  double best_c = 0;
  double test_top1 = 0, test_top5 = 0;
  std::vector<int32_t> test_prediction;
};

// train/val/test are row indices into x; labels are class codes (-1 rows must not appear).
LinearProbeResult linear_probe(const RowMatrixF& x, const std::vector<int32_t>& label, int32_t n_classes,
                               const std::vector<int64_t>& train, const std::vector<int64_t>& val,
                               const std::vector<int64_t>& test, const LinearProbeOptions& opt);

}  // namespace tabula::eval
