// Representation comparison.
//  - linear CKA (Kornblith et al. 2019): X, Y column-centred, ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F), computed
//    in float64 from feature-space Gram products (O(N D^2), never N x N);
//  - unbiased / minibatch CKA (Nguyen et al. 2021): the unbiased HSIC estimator (Song et al. 2012) on linear
//    kernels with zeroed diagonals, HSIC_1(K, L) = [tr(K L) + 1'K1 1'L1 / ((n-1)(n-2)) - 2/(n-2) 1'K L1] /
//    (n(n-3)), summed over consecutive minibatches of `batch_size` rows (a final batch of fewer than 4 rows is
//    dropped; batch_size <= 0 uses all rows as one batch), CKA = sum HSIC(K,L) / sqrt(sum HSIC(K,K) sum HSIC(L,L));
//  - prediction agreement between two runs: Pearson r and Spearman rho (average ranks for ties, as scipy).
#pragma once
#include <vector>

#include "eval/metrics/features.h"

namespace tabula::eval {

double linear_cka(const RowMatrixF& x, const RowMatrixF& y);
double unbiased_cka(const RowMatrixF& x, const RowMatrixF& y, int64_t batch_size = 0);

double pearson(const std::vector<double>& a, const std::vector<double>& b);
double spearman(const std::vector<double>& a, const std::vector<double>& b);
std::vector<double> average_ranks(const std::vector<double>& v);  // scipy.stats.rankdata(method="average")

}  // namespace tabula::eval
