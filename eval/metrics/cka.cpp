#include "eval/metrics/cka.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace tabula::eval {

namespace {

void check_pair(const RowMatrixF& x, const RowMatrixF& y) {
  if (x.rows() != y.rows())
    throw std::runtime_error("CKA: the two representations have " + std::to_string(x.rows()) + " and " +
                             std::to_string(y.rows()) + " rows (they must describe the same samples in order)");
  if (x.rows() < 2) throw std::runtime_error("CKA needs at least two samples");
}

RowMatrixD centred(const RowMatrixF& x) {
  RowMatrixD d = x.cast<double>();
  d.rowwise() -= d.colwise().mean();
  return d;
}

double hsic1(const RowMatrixD& k, const RowMatrixD& l) {
  const double n = static_cast<double>(k.rows());
  Eigen::VectorXd k1 = k.rowwise().sum(), l1 = l.rowwise().sum();
  double tr = k.cwiseProduct(l).sum();
  double s = tr + k1.sum() * l1.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * k1.dot(l1);
  return s / (n * (n - 3));
}

}  // namespace

double linear_cka(const RowMatrixF& x, const RowMatrixF& y) {
  check_pair(x, y);
  RowMatrixD xc = centred(x), yc = centred(y);
  double yx = (yc.transpose() * xc).squaredNorm();
  double xx = (xc.transpose() * xc).norm();
  double yy = (yc.transpose() * yc).norm();
  return yx / (xx * yy);
}

double unbiased_cka(const RowMatrixF& x, const RowMatrixF& y, int64_t batch_size) {
  check_pair(x, y);
  const int64_t n = x.rows();
  if (batch_size <= 0) batch_size = n;
  double kl = 0, kk = 0, ll = 0;
  int64_t used = 0;
  for (int64_t b0 = 0; b0 < n; b0 += batch_size) {
    int64_t m = std::min(batch_size, n - b0);
    if (m < 4) break;
    RowMatrixD xb = x.middleRows(b0, m).cast<double>(), yb = y.middleRows(b0, m).cast<double>();
    RowMatrixD k = xb * xb.transpose(), l = yb * yb.transpose();
    k.diagonal().setZero();
    l.diagonal().setZero();
    kl += hsic1(k, l);
    kk += hsic1(k, k);
    ll += hsic1(l, l);
    ++used;
  }
  if (!used) throw std::runtime_error("unbiased CKA needs batches of at least 4 samples");
  return kl / std::sqrt(kk * ll);
}

double pearson(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) throw std::runtime_error("correlation: the two score vectors differ in length");
  const double n = static_cast<double>(a.size());
  double ma = std::accumulate(a.begin(), a.end(), 0.0) / n, mb = std::accumulate(b.begin(), b.end(), 0.0) / n;
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return sab / std::sqrt(saa * sbb);
}

std::vector<double> average_ranks(const std::vector<double>& v) {
  std::vector<size_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]]) ++j;
    double avg = (static_cast<double>(i) + static_cast<double>(j)) / 2.0 + 1.0;
    for (size_t k = i; k <= j; ++k) r[idx[k]] = avg;
    i = j + 1;
  }
  return r;
}

double spearman(const std::vector<double>& a, const std::vector<double>& b) {
  return pearson(average_ranks(a), average_ranks(b));
}

}  // namespace tabula::eval
