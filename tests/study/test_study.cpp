// `tabula study` through the binary on the three kinds of data it is for, each tiny: a synthetic Cell Painting
// set (replicate mAP, recall, kNN held out by plate, CKA between seeds), a synthetic tissue set (ridge and 1-NN
// regression by patient, prediction scatter) and a synthetic ImageFolder (kNN and linear probe on the class). Each
// writes summary.csv and a well-formed report with its figures by id, and resumes.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "engine/fileio.h"
#include "tests/eval/html_check.h"
#include "tests/test_util.h"
#include "util/table.h"

using namespace tabula;
namespace fs = std::filesystem;

namespace {

const char* kResnet = "resnet:layers=1,1,1,1,block=bottleneck,width=8";
const char* kVit = "vit:dim=32,depth=2,heads=2,patch=8,img=32";

// run_tabula() recreates the test's scratch folder on every call, so the data lives beside it.
std::string data_dir() {
  fs::path d = test::scratch_dir().string() + "-data";
  fs::create_directories(d);
  return d.string();
}

std::set<std::string> metrics(const std::string& summary) {
  tabula::Table t = tabula::read_csv(summary);
  std::set<std::string> m;
  for (size_t i = 0; i < t.rows(); ++i) m.insert(t.at(i, t.index("metric")));
  return m;
}

void expect_figures(const std::string& html, const std::vector<std::string>& ids) {
  EXPECT_EQ(test::well_formed(html), "");
  for (const std::string& id : ids) EXPECT_NE(html.find("id=\"" + id + "\""), std::string::npos) << id;
}

}  // namespace

TEST(StudyCli, CellPaintingSetEveryMetricAndResume) {
  const std::string d = data_dir(), cp = d + "/cp", out = d + "/study";
  fs::remove_all(cp), fs::remove_all(out);
  ASSERT_EQ(test::run_tabula("synth cellpainting --quick --out '" + cp + "'").exit_code, 0);
  const std::string args = "study --quiet --size 32 --null-size 200 --k 5 --data '" + cp + "/load_data.csv' --out '" +
                           out +
                           "' --name cp --plate-col Metadata_Plate --batch-col Metadata_Batch "
                           "--control Metadata_pert_type=negcon --compound-col Metadata_JCP2022 --phenotypes '" +
                           cp + "/compounds.csv' --relationships '" + cp +
                           "/relationships.csv' --label-col Metadata_moa "
                           "--group-col Metadata_Plate --models '" +
                           kResnet + "@0;" + kResnet + "@1;pixels'";
  auto r = test::run_tabula(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("report: "), std::string::npos) << r.out;
  auto m = metrics(out + "/summary.csv");
  for (const char* want : {"mAP morphology", "mAP none", "retrieved morphology", "relationship recall (0.05, 0.95)",
                           "moa kNN top-1 (Plate held out)"})
    EXPECT_TRUE(m.count(want)) << want;
  const std::string html = read_file_text(out + "/report.html");
  expect_figures(html, {"curve-cp-map-morphology", "curve-cp-moa-knn-top-1-plate-held-out", "compound-bars",
                        "cka-resnet-s0-vs-resnet-s1", "pca-cp-resnet-s0-layer1", "data-table", "examples-cp",
                        "noise-table", "numbers-table", "toc"});
  EXPECT_NE(html.find("control images (Metadata_pert_type=negcon)"), std::string::npos);
  EXPECT_NE(html.find("data:image/png;base64,"), std::string::npos);
  // Rerun: every step is found done; the numbers are the same and no embedding is rewritten.
  const std::string before = read_file_text(out + "/summary.csv");
  const auto stamp = fs::last_write_time(out + "/embed/cp/pixels/pixels.npy");
  r = test::run_tabula(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_file_text(out + "/summary.csv"), before);
  EXPECT_EQ(fs::last_write_time(out + "/embed/cp/pixels/pixels.npy"), stamp);
  // The same folder with other columns: refused (the step markers would keep stale numbers), nothing rewritten.
  std::string other = args;
  other.replace(other.find("--k 5"), 5, "--k 3");
  r = test::run_tabula(other);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("study.json: this folder holds a study with other settings (datasets[0].knn_k: 5 there, 3 now)"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(read_file_text(out + "/summary.csv"), before);
  // `tabula report` on the study folder writes the report the study wrote.
  r = test::run_tabula("report '" + out + "' --out '" + out + "/again.html'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_file_text(out + "/again.html"), html);
}

TEST(StudyCli, TissueSetRegressionByPatient) {
  const std::string d = data_dir(), tissue = d + "/tissue", out = d + "/study";
  fs::remove_all(tissue), fs::remove_all(out);
  ASSERT_EQ(test::run_tabula("synth tissue --quick --out '" + tissue + "'").exit_code, 0);
  auto r = test::run_tabula("study --quiet --size 32 --data '" + tissue + "/metadata.csv' --out '" + out +
                            "' --targets '" + tissue +
                            "/expression.csv' --target-id patch_id --fold-col patient "
                            "--log1p --pca 8 --dark-nuclei --models '" +
                            kResnet + "@0;nuclei'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto m = metrics(out + "/summary.csv");
  EXPECT_EQ(m, (std::set<std::string>{"target Pearson r (ridge)", "target Pearson r (1-NN)"}));
  EXPECT_TRUE(fs::exists(out + "/eval/data/resnet-s0/avgpool/predictions/predictions.csv"));
  const std::string html = read_file_text(out + "/report.html");
  expect_figures(html, {"curve-data-target-pearson-r-ridge", "curve-data-target-pearson-r-1-nn",
                        "scatter-resnet-s0-nuclei", "pca-data-resnet-s0-avgpool", "data-table"});
  EXPECT_NE(html.find("3 folds by patient"), std::string::npos);
  EXPECT_NE(html.find(">by patient</text>"), std::string::npos);  // the PCA coloured by fold
}

TEST(StudyCli, ImageFolderKnnAndLinearProbe) {
  const std::string d = data_dir(), nat = d + "/natural", out = d + "/study";
  fs::remove_all(nat), fs::remove_all(out);
  auto r = test::run_tabula("synth natural --quick --out '" + nat + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("48 images"), std::string::npos) << r.out;
  // Trained weights of a key=value arch (ARCH=FILE: the '=' after the arch's own): here a seed's weights from a file.
  ASSERT_EQ(test::run_tabula("init '" + std::string(kResnet) + "' --seed 7 --out '" + d + "/w.safetensors'").exit_code,
            0);
  r = test::run_tabula("study --quiet --size 32 --k 3 --data '" + nat + "' --out '" + out + "' --models '" + kResnet +
                       "@0;" + kVit + "@0;pixels;" + kResnet + "=" + d + "/w.safetensors'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(out + "/eval/cka/resnet-s0_vs_resnet-w/cka.csv"));  // the untrained twin vs the weights
  EXPECT_EQ(metrics(out + "/summary.csv"), (std::set<std::string>{"class kNN top-1", "class linear probe top-1"}));
  // The ImageFolder's label travels into index.csv; the split is stratified: 12 images a class -> 3 test, 3 val.
  tabula::Table idx = tabula::read_csv(out + "/embed/data/pixels/index.csv");
  EXPECT_EQ(idx.at(0, idx.index("label")), "disc");
  EXPECT_EQ(idx.at(47, idx.index("class_index")), "3");
  tabula::Table split = tabula::read_csv(out + "/eval/data/pixels/split.csv");
  int test_rows = 0;
  for (const std::string& s : split.column("split")) test_rows += s == "test";
  EXPECT_EQ(test_rows, 12);
  const std::string html = read_file_text(out + "/report.html");
  expect_figures(html, {"curve-data-class-knn-top-1", "curve-data-class-linear-probe-top-1",
                        "pca-data-resnet-s0-layer1", "examples-data", "data-table"});
  EXPECT_NE(html.find("chance (0.25)"), std::string::npos);  // 4 classes
  EXPECT_NE(html.find("4 classes of label (12 per class)"), std::string::npos);
  EXPECT_NE(html.find("stroke-width=\"3.0\""), std::string::npos);  // the trained model: thick solid line
}

TEST(StudyCli, InconsistentColumnsAreUsageErrors) {
  const std::string d = data_dir();
  struct Case {
    std::string flags, message;
  };
  for (const Case& c : std::vector<Case>{{"--compound-col C", "--compound-col needs --control"},
                                         {"--control Metadata_pert_type", "--control expects COLUMN=VALUE"},
                                         {"--targets t.csv", "--targets needs --fold-col"},
                                         {"--models 'resnet50@x'", "the seed after '@' must be a number"}}) {
    auto r = test::run_tabula("study --data '" + d + "' --out '" + d + "/s' " + c.flags);
    EXPECT_NE(r.exit_code, 0) << c.flags;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.flags << ": " << r.err;
  }
}
