#include "eval/metrics/regress.h"

#include <Eigen/Cholesky>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <stdexcept>

#include "eval/metrics/cka.h"
#include "eval/norm/pca.h"

namespace tabula::eval {

namespace {

double sign(double v) { return v > 0 ? 1.0 : (v < 0 ? -1.0 : 0.0); }

// scipy's _sym_ortho: a stable Givens rotation.
void sym_ortho(double a, double b, double& c, double& s, double& r) {
  if (b == 0) {
    c = sign(a), s = 0, r = std::abs(a);
  } else if (a == 0) {
    c = 0, s = sign(b), r = std::abs(b);
  } else if (std::abs(b) > std::abs(a)) {
    double tau = a / b;
    s = sign(b) / std::sqrt(1 + tau * tau);
    c = s * tau;
    r = b / s;
  } else {
    double tau = b / a;
    c = sign(a) / std::sqrt(1 + tau * tau);
    s = c * tau;
    r = a / c;
  }
}

}  // namespace

Eigen::VectorXd lsqr(const RowMatrixD& a, const Eigen::VectorXd& b, double damp, double atol, double btol,
                     int iter_lim, int* iterations) {
  const double eps = std::numeric_limits<double>::epsilon();
  const double conlim = 1e8, ctol = 1.0 / conlim;
  const int64_t n = a.cols();
  int itn = 0, istop = 0;
  double anorm = 0, acond = 0, dampsq = damp * damp, ddnorm = 0, res2 = 0, xnorm = 0, xxnorm = 0, z = 0;
  double cs2 = -1, sn2 = 0;
  Eigen::VectorXd u = b, x = Eigen::VectorXd::Zero(n), v, w;
  double bnorm = b.norm(), beta = bnorm, alfa = 0;
  if (beta > 0) {
    u = (1 / beta) * u;
    v = a.transpose() * u;
    alfa = v.norm();
  } else {
    v = x;
  }
  if (alfa > 0) v = (1 / alfa) * v;
  w = v;
  double rhobar = alfa, phibar = beta;
  if (alfa * beta == 0) {
    if (iterations) *iterations = 0;
    return x;
  }
  while (itn < iter_lim) {
    ++itn;
    u = a * v - alfa * u;
    beta = u.norm();
    if (beta > 0) {
      u = (1 / beta) * u;
      anorm = std::sqrt(anorm * anorm + alfa * alfa + beta * beta + dampsq);
      v = a.transpose() * u - beta * v;
      alfa = v.norm();
      if (alfa > 0) v = (1 / alfa) * v;
    }
    double rhobar1, psi;
    if (damp > 0) {
      rhobar1 = std::sqrt(rhobar * rhobar + dampsq);
      double cs1 = rhobar / rhobar1, sn1 = damp / rhobar1;
      psi = sn1 * phibar;
      phibar = cs1 * phibar;
    } else {
      rhobar1 = rhobar;
      psi = 0;
    }
    double cs, sn, rho;
    sym_ortho(rhobar1, beta, cs, sn, rho);
    double theta = sn * alfa;
    rhobar = -cs * alfa;
    double phi = cs * phibar;
    phibar = sn * phibar;
    double tau = sn * phi;
    double t1 = phi / rho, t2 = -theta / rho;
    Eigen::VectorXd dk = (1 / rho) * w;
    x = x + t1 * w;
    w = v + t2 * w;
    ddnorm = ddnorm + dk.squaredNorm();
    double delta = sn2 * rho, gambar = -cs2 * rho, rhs = phi - delta * z, zbar = rhs / gambar;
    xnorm = std::sqrt(xxnorm + zbar * zbar);
    double gamma = std::sqrt(gambar * gambar + theta * theta);
    cs2 = gambar / gamma;
    sn2 = theta / gamma;
    z = rhs / gamma;
    xxnorm = xxnorm + z * z;
    acond = anorm * std::sqrt(ddnorm);
    double res1 = phibar * phibar;
    res2 = res2 + psi * psi;
    double rnorm = std::sqrt(res1 + res2);
    double arnorm = alfa * std::abs(tau);
    double test1 = rnorm / bnorm, test2 = arnorm / (anorm * rnorm + eps), test3 = 1 / (acond + eps);
    double t1b = test1 / (1 + anorm * xnorm / bnorm);
    double rtol = btol + atol * anorm * xnorm / bnorm;
    if (itn >= iter_lim) istop = 7;
    if (1 + test3 <= 1) istop = 6;
    if (1 + test2 <= 1) istop = 5;
    if (1 + t1b <= 1) istop = 4;
    if (test3 <= ctol) istop = 3;
    if (test2 <= atol) istop = 2;
    if (test1 <= rtol) istop = 1;
    if (istop != 0) break;
  }
  if (iterations) *iterations = itn;
  return x;
}

RowMatrixD regress_predict(const RowMatrixF& x_train, const RowMatrixD& y_train, const RowMatrixF& x_test,
                           const RegressOptions& opt, std::string* pca_solver) {
  if (x_train.rows() != y_train.rows()) throw std::runtime_error("regression: features and targets differ in rows");
  if (x_train.rows() < 2) throw std::runtime_error("regression: fewer than two training rows");
  const int64_t ntr = x_train.rows(), nte = x_test.rows(), g = y_train.cols();
  RowMatrixD pred(nte, g);
  if (opt.method == "knn") {
    if (opt.k < 1 || opt.k > ntr) throw std::runtime_error("kNN regression: k must be in [1, n_train]");
    Eigen::VectorXd tr_sq = x_train.cast<double>().rowwise().squaredNorm();
    RowMatrixF dots = x_test * x_train.transpose();
    parallel_for(nte, opt.threads, [&](int64_t b, int64_t e) {
      std::vector<std::pair<double, int64_t>> d(ntr);
      for (int64_t i = b; i < e; ++i) {
        double q = x_test.row(i).cast<double>().squaredNorm();
        for (int64_t t = 0; t < ntr; ++t) d[t] = {std::max(0.0, q + tr_sq(t) - 2.0 * dots(i, t)), t};
        std::partial_sort(d.begin(), d.begin() + opt.k, d.end());
        pred.row(i).setZero();
        for (int m = 0; m < opt.k; ++m) pred.row(i) += y_train.row(d[m].second);
        pred.row(i) /= static_cast<double>(opt.k);
      }
    });
    return pred;
  }
  if (opt.method != "ridge")
    throw std::runtime_error("regression method must be ridge or knn, not '" + opt.method + "'");
  // StandardScaler fitted on the training rows (population std; a constant feature keeps scale 1, as sklearn).
  const int64_t d = x_train.cols();
  Eigen::RowVectorXd mean = x_train.cast<double>().colwise().mean();
  Eigen::RowVectorXd scale(d);
  for (int64_t c = 0; c < d; ++c) {
    double var = (x_train.col(c).cast<double>().array() - mean(c)).square().mean();
    scale(c) = var > 0 ? std::sqrt(var) : 1.0;
  }
  auto standardize = [&](const RowMatrixF& m) {
    RowMatrixD out(m.rows(), d);
    for (int64_t r = 0; r < m.rows(); ++r) out.row(r) = (m.row(r).cast<double>() - mean).array() / scale.array();
    return out;
  };
  RowMatrixD both(ntr + nte, d);
  both.topRows(ntr) = standardize(x_train);
  both.bottomRows(nte) = standardize(x_test);
  RowMatrixD z;
  if (opt.pca_components > 0) {
    std::vector<size_t> fit(ntr);
    for (int64_t i = 0; i < ntr; ++i) fit[i] = i;
    PcaResult p = pca_fit_transform(both, fit, PcaOptions{opt.pca_components, opt.pca_solver, opt.seed});
    z = std::move(p.scores);
    if (pca_solver) *pca_solver = p.solver;
  } else {
    z = both;
  }
  RowMatrixD ztr = z.topRows(ntr), zte = z.bottomRows(nte);
  const double alpha = 100.0 / (static_cast<double>(z.cols()) * static_cast<double>(g));
  RowMatrixD coef(g, z.cols());
  if (opt.ridge_solver == "exact") {
    Eigen::MatrixXd gram = ztr.transpose() * ztr;
    gram.diagonal().array() += alpha;
    Eigen::LLT<Eigen::MatrixXd> llt(gram);
    if (llt.info() != Eigen::Success) throw std::runtime_error("ridge: Z^T Z + alpha I is not positive definite");
    coef = llt.solve(ztr.transpose() * y_train).transpose();
    return zte * coef.transpose();
  }
  if (opt.ridge_solver != "lsqr")
    throw std::runtime_error("ridge solver must be lsqr or exact, not '" + opt.ridge_solver + "'");
  parallel_for(g, opt.threads, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t)
      coef.row(t) = lsqr(ztr, y_train.col(t), std::sqrt(alpha), opt.tol, opt.tol, opt.max_iter).transpose();
  });
  return zte * coef.transpose();
}

std::vector<FoldScore> regress_folds(const RowMatrixF& x, const RowMatrixD& y,
                                     const std::vector<std::string>& fold_of_row, const RegressOptions& opt) {
  if (x.rows() != y.rows())
    throw std::runtime_error("regression: " + std::to_string(x.rows()) + " feature rows but " +
                             std::to_string(y.rows()) + " target rows");
  std::map<std::string, std::vector<int64_t>> folds;
  for (int64_t r = 0; r < x.rows(); ++r)
    if (!fold_of_row.empty() && !fold_of_row[r].empty()) folds[fold_of_row[r]].push_back(r);
  if (fold_of_row.empty() || folds.size() < 2)
    throw std::runtime_error("regression needs a fold column with at least two distinct values (e.g. patient)");
  std::vector<FoldScore> out;
  for (const auto& [name, test] : folds) {
    std::vector<uint8_t> is_test(x.rows(), 0);
    for (int64_t r : test) is_test[r] = 1;
    std::vector<int64_t> train;
    for (int64_t r = 0; r < x.rows(); ++r)
      if (!is_test[r]) train.push_back(r);
    RowMatrixF xtr(train.size(), x.cols()), xte(test.size(), x.cols());
    RowMatrixD ytr(train.size(), y.cols());
    for (size_t i = 0; i < train.size(); ++i) xtr.row(i) = x.row(train[i]), ytr.row(i) = y.row(train[i]);
    for (size_t i = 0; i < test.size(); ++i) xte.row(i) = x.row(test[i]);
    FoldScore f;
    RowMatrixD pred = regress_predict(xtr, ytr, xte, opt, &f.pca_solver);
    f.fold = name;
    f.n_train = static_cast<int64_t>(train.size());
    f.n_test = static_cast<int64_t>(test.size());
    double sum = 0;
    for (int64_t t = 0; t < y.cols(); ++t) {
      std::vector<double> a(test.size()), p(test.size());
      for (size_t i = 0; i < test.size(); ++i) a[i] = y(test[i], t), p[i] = pred(i, t);
      f.pearson.push_back(pearson(a, p));
      sum += f.pearson.back();
    }
    f.pearson_mean = sum / static_cast<double>(y.cols());
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace tabula::eval
