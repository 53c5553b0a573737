// kNN parity: DINOv2's KnnModule (run in torch by the fixture script) and sklearn's KNeighborsClassifier().
#include <gtest/gtest.h>

#include "eval/metrics/knn.h"
#include "tests/eval/metrics_test_util.h"

using namespace tabula;
using namespace tabula::eval;
using tabula::test::metrics_fixture;

TEST(MetricsKnn, PredictionsIdenticalToDinov2AndSklearn) {
  RowMatrixF x = load_features(metrics_fixture("knn/features.npy"));
  Table meta = read_csv(metrics_fixture("knn/meta.csv"));
  Table want = read_csv(metrics_fixture("knn/expected.csv"));
  Table preds = read_csv(metrics_fixture("knn/predictions.csv"));
  std::vector<std::string> classes;
  KnnProblem p = knn_problem(meta, "label", "split", "train", "test", "", &classes);
  ASSERT_EQ(classes.size(), 7u);
  EXPECT_EQ(classes[0], "c0");
  KnnOptions dino;
  dino.ks = {10, 20, 50};
  KnnResult rd = knn_classify(x, p, dino);
  KnnOptions sk;
  sk.kind = KnnKind::sklearn;
  sk.ks = {5};
  sk.threads = 1;
  KnnResult rs = knn_classify(x, p, sk);
  for (size_t r = 0; r < want.rows(); ++r) {
    std::string method = want.column("method")[r];
    int k = static_cast<int>(want.number(r, want.index("k")));
    const KnnResult& res = method == "dinov2" ? rd : rs;
    size_t kk = std::find(res.ks.begin(), res.ks.end(), k) - res.ks.begin();
    ASSERT_LT(kk, res.ks.size());
    SCOPED_TRACE(method + " k=" + std::to_string(k));
    EXPECT_DOUBLE_EQ(res.top1[kk], want.number(r, want.index("top1")));
    EXPECT_DOUBLE_EQ(res.top5[kk], want.number(r, want.index("top5")));
    std::vector<double> col = preds.numbers(method + "_k" + std::to_string(k));
    ASSERT_EQ(col.size(), res.prediction[kk].size());
    for (size_t i = 0; i < col.size(); ++i) EXPECT_EQ(res.prediction[kk][i], static_cast<int32_t>(col[i])) << i;
  }
}

TEST(MetricsKnn, GroupHeldOutNeverUsesSamePlate) {
  // Two plates; each class's replicates sit on one plate with a plate-specific offset, so leave-one-out finds
  // same-plate replicates while plate-held-out must use the other plate only.
  RowMatrixF x(8, 2);
  x << 1, 0, 1, 0.1f, 0, 1, 0.1f, 1,  // plate A: class a, a, b, b
      1, 0.05f, 0.9f, 0, 0, 0.9f, 0.05f, 1;  // plate B: class a, a, b, b
  Table meta({"label", "plate"});
  for (const char* r : {"a,A", "a,A", "b,A", "b,A", "a,B", "a,B", "b,B", "b,B"}) {
    std::string s(r);
    meta.add_row({s.substr(0, 1), s.substr(2)});
  }
  KnnOptions sk;
  sk.kind = KnnKind::sklearn;
  sk.ks = {1};
  KnnProblem loo = knn_problem(meta, "label", "", "", "", "", nullptr);
  KnnProblem held = knn_problem(meta, "label", "", "", "", "plate", nullptr);
  EXPECT_EQ(knn_classify(x, loo, sk).top1[0], 1.0);
  EXPECT_EQ(knn_classify(x, held, sk).top1[0], 1.0);
  // Make plate B's profiles look like the other class on plate A: held-out now fails, leave-one-out does not.
  x.row(4) << 0, 1.2f;
  x.row(5) << 0.1f, 1.2f;
  x.row(6) << 1.2f, 0;
  x.row(7) << 1.2f, 0.1f;
  EXPECT_EQ(knn_classify(x, loo, sk).top1[0], 1.0);
  EXPECT_EQ(knn_classify(x, held, sk).top1[0], 0.0);
}

TEST(MetricsKnn, TooFewNeighboursIsAnError) {
  RowMatrixF x = RowMatrixF::Random(4, 3);
  Table meta({"label"});
  for (const char* l : {"a", "b", "a", "b"}) meta.add_row({l});
  KnnOptions sk;
  sk.kind = KnnKind::sklearn;
  sk.ks = {5};
  KnnProblem p = knn_problem(meta, "label", "", "", "", "", nullptr);
  EXPECT_THROW(knn_classify(x, p, sk), std::runtime_error);
  EXPECT_THROW(knn_problem(meta, "nope", "", "", "", "", nullptr), std::runtime_error);
}
