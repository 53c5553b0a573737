// `tabula eval ...` end to end: output files, copairs column names, and one-line errors naming the problem.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "util/npy.h"
#include "util/table.h"
#include "tests/eval/metrics_test_util.h"

using namespace tabula;
using namespace tabula::eval;
using tabula::test::metrics_fixture;
using tabula::test::run_tabula;
using tabula::test::scratch_dir;
namespace fs = std::filesystem;

// run_tabula() empties scratch_dir() on every call, so inputs and outputs live in a sibling folder.
static fs::path work_dir() {
  fs::path d = scratch_dir().string() + "-data";
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

TEST(MetricsCli, MapWritesCopairsColumnsAndMatches) {
  fs::path dir = work_dir();
  // The fixture's metadata without copairs' reference column: --reference-index must rebuild it.
  Table meta = read_csv(metrics_fixture("map_jump/meta.csv"));
  std::vector<std::string> cols = meta.columns();
  cols.erase(std::find(cols.begin(), cols.end(), "Metadata_Reference_Index"));
  write_csv((dir / "index.csv").string(), meta.select_columns(cols));
  fs::copy_file(metrics_fixture("map_jump/features.npy"), dir / "layer4.npy");
  auto r = run_tabula("eval map --features " + dir.string() + ":layer4 --pos-sameby Metadata_JCP2022,Metadata_Reference_Index "
                      "--neg-sameby Metadata_Plate --neg-diffby Metadata_negcon,Metadata_Reference_Index "
                      "--reference-index Metadata_negcon=True --null-size 500 --out " + (dir / "out").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Table ap = read_csv((dir / "out/average_precision.csv").string());
  Table want = read_csv(metrics_fixture("map_jump/ap.csv"));
  for (const char* c : {"n_pos_pairs", "n_total_pairs", "average_precision", "normalized_average_precision"})
    EXPECT_TRUE(ap.has(c)) << c;
  ASSERT_EQ(ap.rows(), want.rows());
  for (size_t i = 0; i < ap.rows(); ++i) {
    EXPECT_EQ(ap.column("n_total_pairs")[i], want.column("n_total_pairs")[i]);
    if (!want.column("average_precision")[i].empty()) {
      EXPECT_NEAR(ap.number(i, ap.index("average_precision")), want.number(i, want.index("average_precision")), 1e-6);
    }
  }
  Table m = read_csv((dir / "out/mean_average_precision.csv").string());
  for (const char* c : {"Metadata_JCP2022", "mean_average_precision", "p_value", "corrected_p_value", "below_p",
                        "below_corrected_p"})
    EXPECT_TRUE(m.has(c)) << c;
  EXPECT_TRUE(fs::exists(dir / "out/summary.json"));
}

TEST(MetricsCli, MapPortableKernelMatchesCopairsToo) {
  // TABULA_CPU=generic caps dispatch to the portable dot product (the AVX-512 one runs by default on such CPUs).
  fs::path dir = work_dir();
  ::setenv("TABULA_CPU", "generic", 1);
  auto r = run_tabula("eval map --features " + metrics_fixture("map_ties/features.npy") + " --meta " +
                      metrics_fixture("map_ties/meta.csv") + " --pos-sameby Metadata_JCP2022,Metadata_Reference_Index "
                      "--neg-sameby Metadata_Plate --neg-diffby Metadata_negcon,Metadata_Reference_Index --out " +
                      (dir / "g").string());
  auto rr = run_tabula("eval recall --features " + metrics_fixture("recall/features.npy") + " --meta " +
                       metrics_fixture("recall/meta.csv") + " --pert-col gene --relationships " +
                       metrics_fixture("recall/relationships.csv") + " --out " + (dir / "recall").string());
  ::unsetenv("TABULA_CPU");
  ASSERT_EQ(rr.exit_code, 0) << rr.err;
  Table rec = read_csv((dir / "recall/recall.csv").string());
  Table want_rec = read_csv(metrics_fixture("recall/expected.csv"));
  EXPECT_EQ(rec.number(0, rec.index("recall_0.1_0.9")), want_rec.number(0, want_rec.index("recall_0.1_0.9")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Table ap = read_csv((dir / "g/average_precision.csv").string());
  Table want = read_csv(metrics_fixture("map_ties/ap.csv"));
  ASSERT_EQ(ap.rows(), want.rows());
  for (size_t i = 0; i < ap.rows(); ++i) {
    ASSERT_EQ(ap.column("average_precision")[i].empty(), want.column("average_precision")[i].empty()) << i;
    if (!want.column("average_precision")[i].empty()) {
      EXPECT_NEAR(ap.number(i, ap.index("average_precision")), want.number(i, want.index("average_precision")), 1e-6);
    }
  }
}

TEST(MetricsCli, MapErrorsNameColumnAndRow) {
  fs::path dir = work_dir();
  auto r = run_tabula("eval map --features " + metrics_fixture("map_jump/features.npy") + " --meta " +
                      metrics_fixture("map_jump/meta.csv") + " --pos-sameby Metadata_Nope --neg-diffby Metadata_JCP2022 "
                      "--out " + (dir / "o").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no column 'Metadata_Nope'"), std::string::npos) << r.err;
  // NaN in the features: named by row and column.
  NpyArray a = read_npy(metrics_fixture("map_jump/features.npy"));
  a.as<float>()[3 * a.shape[1] + 2] = NAN;
  write_npy((dir / "bad.npy").string(), a.shape, a.as<float>());
  r = run_tabula("eval map --features " + (dir / "bad.npy").string() + " --meta " + metrics_fixture("map_jump/meta.csv") +
                 " --pos-sameby Metadata_JCP2022 --neg-diffby Metadata_JCP2022x --out " + (dir / "o").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("row 3, column 2 is NaN"), std::string::npos) << r.err;
  // Mismatched rows.
  r = run_tabula("eval map --features " + metrics_fixture("knn/features.npy") + " --meta " +
                 metrics_fixture("map_jump/meta.csv") + " --pos-sameby Metadata_JCP2022 --neg-diffby Metadata_Plate --out " +
                 (dir / "o").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("rows"), std::string::npos) << r.err;
  r = run_tabula("eval map --features x.npy --pos-sameby a --out o --null-size abc");
  EXPECT_EQ(r.exit_code, 2);
}

TEST(MetricsCli, RecallKnnRegressCkaCorrRun) {
  fs::path dir = work_dir();
  auto r = run_tabula("eval recall --features " + metrics_fixture("recall/features.npy") + " --meta " +
                      metrics_fixture("recall/meta.csv") + " --pert-col gene --relationships " +
                      metrics_fixture("recall/relationships.csv") + " --out " + (dir / "recall").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Table rec = read_csv((dir / "recall/recall.csv").string());
  Table want = read_csv(metrics_fixture("recall/expected.csv"));
  EXPECT_EQ(rec.column("recall_0.05_0.95")[0], format_number(want.number(0, want.index("recall_0.05_0.95"))));

  r = run_tabula("eval knn --features " + metrics_fixture("knn/features.npy") + " --meta " + metrics_fixture("knn/meta.csv") +
                 " --label-col label --split-col split --k 10,20 --out " + (dir / "knn").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Table knn = read_csv((dir / "knn/knn.csv").string());
  EXPECT_EQ(knn.rows(), 2u);
  EXPECT_TRUE(read_csv((dir / "knn/predictions.csv").string()).has("prediction_k20"));

  r = run_tabula("eval regress --features " + metrics_fixture("regress/features.npy") + " --meta " +
                 metrics_fixture("regress/meta.csv") + " --targets " + metrics_fixture("regress/targets.npy") +
                 " --fold-col patient --method knn --k 5 --out " + (dir / "reg").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_csv((dir / "reg/folds.csv").string()).rows(), 4u);

  fs::create_directories(dir / "a");
  fs::copy_file(metrics_fixture("cka/x.npy"), dir / "a/x.npy");
  fs::copy_file(metrics_fixture("cka/y.npy"), dir / "a/y.npy");
  r = run_tabula("eval cka --features " + (dir / "a").string() + " --other " + (dir / "a").string() + " --out " +
                 (dir / "cka").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Table cka = read_csv((dir / "cka/cka.csv").string());
  ASSERT_EQ(cka.rows(), 4u);
  EXPECT_NEAR(cka.number(0, cka.index("cka")), 1.0, 1e-12);

  r = run_tabula("eval corr --a " + metrics_fixture("cka/scores.csv") + ":a --b " + metrics_fixture("cka/scores.csv") +
                 ":b --out " + (dir / "corr").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

TEST(MetricsCli, NormalizeThenMapAndLinear) {
  fs::path dir = work_dir();
  fs::copy_file(metrics_fixture("norm/features.npy"), dir / "emb.npy");
  fs::copy_file(metrics_fixture("norm/meta.csv"), dir / "index.csv");
  auto r = run_tabula("eval normalize --features " + (dir / "emb.npy").string() +
                      " --method mad --group-col plate --control pert=DMSO --out " + (dir / "mad").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  RowMatrixF y = load_features((dir / "mad/emb.npy").string());
  RowMatrixF want = load_features(metrics_fixture("norm/mad.npy"));
  EXPECT_LT((y - want).cwiseAbs().maxCoeff(), 1e-4);
  r = run_tabula("eval normalize --features " + (dir / "mad").string() + ":emb --method aggregate --by pert --out " +
                 (dir / "agg").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_csv((dir / "agg/index.csv").string()).columns(), (std::vector<std::string>{"pert"}));
  r = run_tabula("eval normalize --features " + (dir / "emb.npy").string() + " --method tvn --out " + (dir / "t").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("needs --control"), std::string::npos) << r.err;
  r = run_tabula("eval normalize --features " + (dir / "emb.npy").string() +
                 " --method standardize --control nope=1 --out " + (dir / "t").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no column 'nope'"), std::string::npos) << r.err;

  r = run_tabula("eval linear --features " + metrics_fixture("linear/features.npy") + " --meta " +
                 metrics_fixture("linear/meta.csv") + " --label-col label --split-col split --out " + (dir / "lin").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Table lin = read_csv((dir / "lin/linear.csv").string());
  Table probe = read_csv(metrics_fixture("linear/probe.csv"));
  EXPECT_DOUBLE_EQ(lin.number(0, lin.index("test_top1")), probe.number(0, probe.index("test_top1")));
}
