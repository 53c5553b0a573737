#include "eval/metrics/knn.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "eval/metrics/map.h"

namespace tabula::eval {

KnnProblem knn_problem(const Table& meta, const std::string& label_col, const std::string& split_col,
                       const std::string& train_value, const std::string& test_value, const std::string& group_col,
                       std::vector<std::string>* classes) {
  KnnProblem p;
  const auto& labels = meta.column(label_col);
  std::vector<size_t> labelled;
  for (size_t r = 0; r < labels.size(); ++r)
    if (!labels[r].empty()) labelled.push_back(r);
  auto groups = group_rows(meta, {label_col}, labelled);
  p.label.assign(meta.rows(), -1);
  if (classes) classes->clear();
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t r : groups[g]) p.label[r] = static_cast<int32_t>(g);
    if (classes) classes->push_back(labels[groups[g][0]]);
  }
  p.n_classes = static_cast<int32_t>(groups.size());
  if (split_col.empty()) {
    for (size_t r : labelled) p.queries.push_back(r), p.train.push_back(r);
  } else {
    const auto& split = meta.column(split_col);
    for (size_t r : labelled) {
      if (split[r] == train_value) p.train.push_back(r);
      else if (split[r] == test_value) p.queries.push_back(r);
    }
    if (p.train.empty() || p.queries.empty())
      throw std::runtime_error(meta.source() + ": column '" + split_col + "' has no '" +
                               (p.train.empty() ? train_value : test_value) + "' rows");
  }
  if (!group_col.empty()) p.group = factorize(meta.column(group_col));
  return p;
}

namespace {
struct Neighbor {
  float score;  // similarity (dinov2) or -distance (sklearn): larger is nearer
  int64_t index;
};
bool nearer(const Neighbor& a, const Neighbor& b) {
  return a.score > b.score || (a.score == b.score && a.index < b.index);
}
}  // namespace

KnnResult knn_classify(const RowMatrixF& x_in, const KnnProblem& p, const KnnOptions& opt) {
  if (opt.ks.empty()) throw std::runtime_error("kNN needs at least one k");
  if (p.n_classes < 1) throw std::runtime_error("kNN: no labelled rows");
  const int max_k = *std::max_element(opt.ks.begin(), opt.ks.end());
  if (*std::min_element(opt.ks.begin(), opt.ks.end()) < 1) throw std::runtime_error("kNN: k must be >= 1");
  const bool dino = opt.kind == KnnKind::dinov2;
  // DINOv2 normalises; sklearn works on raw features with Euclidean distance.
  RowMatrixF x = dino ? l2_normalize_rows(x_in) : x_in;
  const int64_t nt = static_cast<int64_t>(p.train.size());
  RowMatrixF train(nt, x.cols());
  for (int64_t t = 0; t < nt; ++t) train.row(t) = x.row(p.train[t]);
  std::vector<double> train_sq(nt);
  for (int64_t t = 0; t < nt; ++t) train_sq[t] = train.row(t).cast<double>().squaredNorm();

  const size_t nq = p.queries.size();
  const size_t nk = opt.ks.size();
  KnnResult res;
  res.ks = opt.ks;
  res.prediction.assign(nk, std::vector<int32_t>(nq, -1));
  std::vector<std::vector<uint8_t>> hit1(nk, std::vector<uint8_t>(nq, 0)), hit5 = hit1;
  std::vector<uint8_t> short_list(nq, 0);

  const int64_t block = 128;
  const int64_t n_blocks = static_cast<int64_t>((nq + block - 1) / block);
  parallel_for(n_blocks, opt.threads, [&](int64_t b0, int64_t b1) {
    RowMatrixF q, s;
    std::vector<Neighbor> cand;
    std::vector<double> score(p.n_classes);
    std::vector<int32_t> order(p.n_classes);
    for (int64_t b = b0; b < b1; ++b) {
      int64_t q0 = b * block, q1 = std::min<int64_t>(nq, q0 + block);
      q.resize(q1 - q0, x.cols());
      for (int64_t i = q0; i < q1; ++i) q.row(i - q0) = x.row(p.queries[i]);
      s.resize(q1 - q0, nt);
      s.noalias() = q * train.transpose();
      for (int64_t i = q0; i < q1; ++i) {
        const int64_t row = p.queries[i];
        double q_sq = dino ? 0.0 : x.row(row).cast<double>().squaredNorm();
        cand.clear();
        for (int64_t t = 0; t < nt; ++t) {
          int64_t j = p.train[t];
          if (j == row || p.label[j] < 0) continue;
          if (!p.group.empty() && p.group[j] == p.group[row]) continue;
          float sc = dino ? s(i - q0, t)
                          : static_cast<float>(-std::sqrt(std::max(0.0, q_sq + train_sq[t] - 2.0 * s(i - q0, t))));
          cand.push_back({sc, j});
        }
        size_t k_avail = std::min<size_t>(max_k, cand.size());
        if (k_avail < static_cast<size_t>(max_k)) short_list[i] = 1;
        std::partial_sort(cand.begin(), cand.begin() + k_avail, cand.end(), nearer);
        // DINOv2: softmax over the max_k neighbours' similarities / T (in float32, as torch).
        std::vector<float> w(k_avail, 1.0f);
        if (dino && k_avail) {
          float mx = cand[0].score / static_cast<float>(opt.temperature);
          float z = 0;
          for (size_t k = 0; k < k_avail; ++k)
            z += (w[k] = std::exp(cand[k].score / static_cast<float>(opt.temperature) - mx));
          for (size_t k = 0; k < k_avail; ++k) w[k] /= z;
        }
        const int32_t truth = p.label[row];
        for (size_t kk = 0; kk < nk; ++kk) {
          size_t k = std::min<size_t>(opt.ks[kk], k_avail);
          std::fill(score.begin(), score.end(), 0.0);
          for (size_t m = 0; m < k; ++m) score[p.label[cand[m].index]] += w[m];
          for (int32_t c = 0; c < p.n_classes; ++c) order[c] = c;
          if (dino) {
            // Highest score first; ties: lower class index first.
            std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t c) { return score[a] > score[c]; });
          } else {
            // sklearn: argsort(kind="mergesort")[::-1] -> ties: higher class index first; the prediction itself is
            // the mode with ties to the lowest class index.
            std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t c) { return score[a] < score[c]; });
            std::reverse(order.begin(), order.end());
          }
          int32_t pred = order[0];
          if (!dino) {
            pred = 0;
            for (int32_t c = 1; c < p.n_classes; ++c)
              if (score[c] > score[pred]) pred = c;
          }
          res.prediction[kk][i] = pred;
          hit1[kk][i] = pred == truth;
          for (int m = 0; m < std::min<int32_t>(5, p.n_classes); ++m) hit5[kk][i] |= order[m] == truth;
        }
      }
    }
  });
  for (size_t i = 0; i < nq; ++i)
    if (short_list[i] && !dino)
      throw std::runtime_error("kNN: query row " + std::to_string(p.queries[i]) + " has fewer than " +
                               std::to_string(max_k) + " eligible neighbours");
  for (size_t kk = 0; kk < nk; ++kk) {
    double a = 0, c = 0;
    for (size_t i = 0; i < nq; ++i) a += hit1[kk][i], c += hit5[kk][i];
    res.top1.push_back(nq ? a / nq : NAN);
    res.top5.push_back(nq ? c / nq : NAN);
  }
  return res;
}

}  // namespace tabula::eval
