// k-nearest-neighbour classification of embeddings, two conventions:
//  - DINOv2 (dinov2/eval/knn.py KnnModule): L2-normalised features, cosine similarity, the max(k) most similar
//    training samples (ties: lower index first), weights softmax(sim / T) over those max(k) neighbours, class
//    scores for each k = sum of the first k weights per class; accuracy = micro top-1 / top-5 (torchmetrics
//    MulticlassAccuracy; tied class scores: lower class index first);
//  - scikit-learn KNeighborsClassifier() defaults: k = 5, Euclidean distance, uniform votes; prediction = the
//    most voted class, ties to the lowest class index (scipy mode); top-5 as top_k_accuracy_score on
//    predict_proba (stable argsort reversed: among tied scores the higher class index ranks first).
// DINOv2 with fewer eligible neighbours than max(k) (small sets, held-out groups) uses those it has (torch.topk
// would fail); sklearn mode refuses, naming the query row, as KNeighborsClassifier does.
// Classes are the sorted distinct labels (sklearn's LabelEncoder order). Queries never see themselves, and with a
// group column never see a training sample of their own group (plate/batch held out), so replicates on the same
// plate cannot leak into the neighbour set.
#pragma once
#include <string>
#include <vector>

#include "eval/metrics/features.h"
#include "util/table.h"

namespace tabula::eval {

enum class KnnKind { dinov2, sklearn };

struct KnnOptions {
  KnnKind kind = KnnKind::dinov2;
  std::vector<int> ks = {10, 20, 100, 200};  // DINOv2 defaults; sklearn uses {5}
  double temperature = 0.07;
  int threads = 0;
};

struct KnnProblem {
  std::vector<int32_t> label;   // class code per row, -1 = unlabelled (never a neighbour, never scored)
  int32_t n_classes = 0;
  std::vector<int64_t> queries; // rows to classify
  std::vector<int64_t> train;   // candidate neighbours
  std::vector<int32_t> group;   // optional: a query ignores train rows with the same group code
};

struct KnnResult {
  std::vector<int> ks;
  std::vector<double> top1, top5;               // per k
  std::vector<std::vector<int32_t>> prediction; // [k][query] predicted class code
};

KnnResult knn_classify(const RowMatrixF& x, const KnnProblem& p, const KnnOptions& opt);

// Builds a problem from metadata: labels from `label_col` (class order = sorted distinct labels, returned in
// *classes); with `split_col`, rows whose value is `train_value` are neighbours and those equal to `test_value`
// are queries; without it every row is both (leave-one-out); `group_col` holds out each query's group.
KnnProblem knn_problem(const Table& meta, const std::string& label_col, const std::string& split_col,
                       const std::string& train_value, const std::string& test_value, const std::string& group_col,
                       std::vector<std::string>* classes);

}  // namespace tabula::eval
