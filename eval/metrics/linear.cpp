#include "eval/metrics/linear.h"

#include <cmath>
#include <deque>
#include <limits>
#include <stdexcept>

namespace tabula::eval {

namespace {

// Loss and gradient of the sklearn objective at theta = [vec(W) row-major, b].
double loss_grad(const RowMatrixD& x, const std::vector<int32_t>& y, int32_t k, double c, const Eigen::VectorXd& theta,
                 Eigen::VectorXd& grad) {
  const int64_t n = x.rows(), d = x.cols();
  Eigen::Map<const RowMatrixD> w(theta.data(), k, d);
  Eigen::Map<const Eigen::VectorXd> b(theta.data() + k * d, k);
  RowMatrixD z = x * w.transpose();
  z.rowwise() += b.transpose();
  double loss = 0;
  for (int64_t i = 0; i < n; ++i) {
    double mx = z.row(i).maxCoeff();
    double s = (z.row(i).array() - mx).exp().sum();
    double lse = mx + std::log(s);
    loss += lse - z(i, y[i]);
    z.row(i) = (z.row(i).array() - lse).exp();  // probabilities
    z(i, y[i]) -= 1.0;                           // P - Y
  }
  grad.resize(theta.size());
  Eigen::Map<RowMatrixD> gw(grad.data(), k, d);
  gw = z.transpose() * x / static_cast<double>(n) + w / (c * static_cast<double>(n));
  grad.tail(k) = z.colwise().sum().transpose() / static_cast<double>(n);
  return loss / static_cast<double>(n) + w.squaredNorm() / (2.0 * c * static_cast<double>(n));
}

}  // namespace

LogisticModel fit_logistic(const RowMatrixF& xf, const std::vector<int32_t>& y, int32_t k, double c, int max_iter,
                           double tol) {
  if (xf.rows() != static_cast<int64_t>(y.size())) throw std::runtime_error("logistic: rows and labels differ");
  if (k < 2) throw std::runtime_error("logistic regression needs at least two classes");
  if (!(c > 0)) throw std::runtime_error("logistic regression: C must be > 0");
  RowMatrixD x = xf.cast<double>();
  const int64_t d = x.cols(), p = k * d + k;
  Eigen::VectorXd theta = Eigen::VectorXd::Zero(p), g, g_new, theta_new;
  double f = loss_grad(x, y, k, c, theta, g);
  // L-BFGS (memory 10) with a backtracking Armijo line search.
  std::deque<Eigen::VectorXd> s_hist, y_hist;
  std::deque<double> rho_hist;
  LogisticModel m;
  for (int it = 0; it < max_iter; ++it) {
    if (g.cwiseAbs().maxCoeff() < tol) {
      m.converged = true;
      break;
    }
    Eigen::VectorXd q = g;
    std::vector<double> alpha(s_hist.size());
    for (int j = static_cast<int>(s_hist.size()) - 1; j >= 0; --j) {
      alpha[j] = rho_hist[j] * s_hist[j].dot(q);
      q -= alpha[j] * y_hist[j];
    }
    double gamma =
        s_hist.empty() ? 1.0 / std::max(1.0, g.norm()) : s_hist.back().dot(y_hist.back()) / y_hist.back().squaredNorm();
    Eigen::VectorXd r = gamma * q;
    for (size_t j = 0; j < s_hist.size(); ++j) {
      double beta = rho_hist[j] * y_hist[j].dot(r);
      r += s_hist[j] * (alpha[j] - beta);
    }
    Eigen::VectorXd dir = -r;
    double slope = g.dot(dir);
    if (slope >= 0) {  // not a descent direction: restart from steepest descent
      s_hist.clear(), y_hist.clear(), rho_hist.clear();
      dir = -g;
      slope = -g.squaredNorm();
    }
    double step = 1.0, f_new = 0;
    bool accepted = false;
    for (int ls = 0; ls < 60; ++ls) {
      theta_new = theta + step * dir;
      f_new = loss_grad(x, y, k, c, theta_new, g_new);
      // Armijo; near the optimum f stops resolving the decrease (|slope| ~ |g|^2 falls below f's round-off), so a
      // step that keeps f within round-off and shrinks the gradient is accepted too.
      if (f_new <= f + 1e-4 * step * slope ||
          (f_new <= f + 1e-14 * std::abs(f) && g_new.cwiseAbs().maxCoeff() < g.cwiseAbs().maxCoeff())) {
        accepted = true;
        break;
      }
      step *= 0.5;
    }
    m.iterations = it + 1;
    if (!accepted) break;  // no decrease possible at double precision: at the optimum to round-off
    Eigen::VectorXd s = theta_new - theta, yv = g_new - g;
    double sy = s.dot(yv);
    if (sy > 1e-300) {
      s_hist.push_back(s), y_hist.push_back(yv), rho_hist.push_back(1.0 / sy);
      if (s_hist.size() > 10) s_hist.pop_front(), y_hist.pop_front(), rho_hist.pop_front();
    }
    theta = theta_new, g = g_new, f = f_new;
  }
  if (!m.converged && g.cwiseAbs().maxCoeff() < tol) m.converged = true;
  m.w = Eigen::Map<RowMatrixD>(theta.data(), k, d);
  m.b = theta.tail(k);
  return m;
}

RowMatrixD predict_proba(const LogisticModel& m, const RowMatrixF& x) {
  RowMatrixD z = x.cast<double>() * m.w.transpose();
  z.rowwise() += m.b.transpose();
  for (int64_t i = 0; i < z.rows(); ++i) {
    double mx = z.row(i).maxCoeff();
    z.row(i) = (z.row(i).array() - mx).exp();
    z.row(i) /= z.row(i).sum();
  }
  return z;
}

LinearProbeResult linear_probe(const RowMatrixF& x, const std::vector<int32_t>& label, int32_t k,
                               const std::vector<int64_t>& train, const std::vector<int64_t>& val,
                               const std::vector<int64_t>& test, const LinearProbeOptions& opt) {
  if (train.empty() || val.empty() || test.empty())
    throw std::runtime_error("linear probe needs non-empty train, validation and test rows");
  auto take = [&](const std::vector<int64_t>& rows, RowMatrixF* xs, std::vector<int32_t>* ys) {
    xs->resize(static_cast<int64_t>(rows.size()), x.cols());
    ys->resize(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      xs->row(i) = x.row(rows[i]);
      (*ys)[i] = label[rows[i]];
      if ((*ys)[i] < 0) throw std::runtime_error("linear probe: row " + std::to_string(rows[i]) + " has no label");
    }
  };
  RowMatrixF xtr, xva, xte;
  std::vector<int32_t> ytr, yva, yte;
  take(train, &xtr, &ytr);
  take(val, &xva, &yva);
  take(test, &xte, &yte);
  auto zscore = [&](const RowMatrixF& fit, std::vector<RowMatrixF*> apply) {
    if (!opt.standardize) return;
    Eigen::RowVectorXd mean = fit.cast<double>().colwise().mean();
    Eigen::RowVectorXd sd = ((fit.cast<double>().rowwise() - mean).array().square().colwise().mean()).sqrt();
    for (int64_t j = 0; j < sd.size(); ++j)
      if (!(sd(j) > 0)) sd(j) = 1.0;
    for (RowMatrixF* m : apply)
      for (int64_t r = 0; r < m->rows(); ++r)
        m->row(r) = ((m->row(r).cast<double>() - mean).array() / sd.array()).matrix().cast<float>();
  };
  auto accuracy = [](const RowMatrixD& p, const std::vector<int32_t>& y, int top, std::vector<int32_t>* pred) {
    double hits = 0;
    for (int64_t i = 0; i < p.rows(); ++i) {
      int64_t better = 0;  // classes strictly more probable than the truth, ties to the lower index
      for (int64_t c = 0; c < p.cols(); ++c)
        better += p(i, c) > p(i, y[i]) || (p(i, c) == p(i, y[i]) && c < y[i]);
      hits += better < top;
      if (pred) {
        Eigen::Index arg;
        p.row(i).maxCoeff(&arg);
        pred->push_back(static_cast<int32_t>(arg));
      }
    }
    return hits / static_cast<double>(p.rows());
  };
  LinearProbeResult res;
  {
    RowMatrixF a = xtr, v = xva;
    zscore(xtr, {&a, &v});
    for (double c : opt.cs) {
      LogisticModel m = fit_logistic(a, ytr, k, c, opt.max_iter, opt.tol);
      res.cs.push_back(c);
      res.val_top1.push_back(accuracy(predict_proba(m, v), yva, 1, nullptr));
    }
  }
  size_t best = 0;
  for (size_t i = 1; i < res.cs.size(); ++i)
    if (res.val_top1[i] > res.val_top1[best]) best = i;
  res.best_c = res.cs[best];
  RowMatrixF all(xtr.rows() + xva.rows(), x.cols());
  all << xtr, xva;
  std::vector<int32_t> yall = ytr;
  yall.insert(yall.end(), yva.begin(), yva.end());
  RowMatrixF t = xte, a2 = all;
  zscore(all, {&a2, &t});
  LogisticModel m = fit_logistic(a2, yall, k, res.best_c, opt.max_iter, opt.tol);
  RowMatrixD p = predict_proba(m, t);
  res.test_top1 = accuracy(p, yte, 1, &res.test_prediction);
  res.test_top5 = accuracy(p, yte, 5, nullptr);
  return res;
}

}  // namespace tabula::eval
