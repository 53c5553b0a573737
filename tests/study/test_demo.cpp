// `tabula demo` end to end on the quick datasets with tiny networks: every model and metric lands in
// summary.csv, the report is well-formed HTML with one SVG per metric, and a rerun resumes without recomputing.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <vector>

#include "engine/fileio.h"
#include "util/table.h"
#include "tests/eval/html_check.h"
#include "tests/test_util.h"

using namespace tabula;


TEST(Demo, QuickRunWritesEveryMetricAndAWellFormedReport) {
  auto dir = (test::scratch_dir() / "demo").string();
  const std::string args = "demo --quick --quiet --size 32 --out '" + dir +
                           "' --models 'resnet:layers=1,1,1,1,block=bottleneck,width=8@0;"
                           "resnet:layers=1,1,1,1,block=bottleneck,width=8@1;pixels;nuclei'";
  auto r = test::run_tabula(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("report: "), std::string::npos) << r.out;
  tabula::Table t = tabula::read_csv(dir + "/summary.csv");
  std::set<std::string> models, metrics;
  for (size_t i = 0; i < t.rows(); ++i) {
    models.insert(t.at(i, t.index("model")));
    metrics.insert(t.at(i, t.index("metric")));
  }
  EXPECT_EQ(models, (std::set<std::string>{"resnet-s0", "resnet-s1", "pixels", "nuclei"}));
  for (const char* m : {"mAP morphology", "mAP density", "mAP intensity", "mAP none", "retrieved morphology",
                        "MoA recall (0.05, 0.95)", "MoA kNN top-1 (plate held out)", "expression Pearson r (ridge)",
                        "expression Pearson r (1-NN)"})
    EXPECT_TRUE(metrics.count(m)) << m;
  std::string html = read_file_text(dir + "/report.html");
  EXPECT_EQ(test::well_formed(html), "");
  size_t svgs = 0;
  for (size_t p = 0; (p = html.find("<svg", p)) != std::string::npos; ++p) ++svgs;
  // One chart per metric, the per-compound bars, one prediction scatter (the untrained family vs nuclei: no trained
  // weights in this run) and the seed-vs-seed CKA heatmap.
  EXPECT_EQ(svgs, metrics.size() + 3);
  EXPECT_NE(html.find("Per-compound replicate mAP"), std::string::npos);
  EXPECT_NE(html.find("Predictions: nuclei vs resnet-s0"), std::string::npos);
  EXPECT_NE(html.find("<b>Within noise</b> means"), std::string::npos);
  EXPECT_NE(html.find("<h2>Provenance</h2>"), std::string::npos);
  {
    // The scatter's held-out predictions are the ridge step's: their per-fold, per-gene Pearson r is regress.csv's.
    const std::string ev = dir + "/eval/tissue/resnet-s0/avgpool";
    tabula::Table pred = tabula::read_csv(ev + "/predictions/predictions.csv");
    tabula::Table reg = tabula::read_csv(ev + "/ridge/regress.csv");
    std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> by;
    for (size_t i = 0; i < pred.rows(); ++i) {
      auto& [o, p] = by[pred.at(i, pred.index("fold")) + "|" + pred.at(i, pred.index("target"))];
      o.push_back(pred.number(i, pred.index("observed")));
      p.push_back(pred.number(i, pred.index("predicted")));
    }
    ASSERT_EQ(by.size(), reg.rows());
    for (size_t i = 0; i < reg.rows(); ++i) {
      const auto& [o, p] = by.at(reg.at(i, reg.index("fold")) + "|" + reg.at(i, reg.index("target")));
      double mo = 0, mp = 0;
      for (size_t k = 0; k < o.size(); ++k) mo += o[k] / o.size(), mp += p[k] / p.size();
      double sop = 0, soo = 0, spp = 0;
      for (size_t k = 0; k < o.size(); ++k)
        sop += (o[k] - mo) * (p[k] - mp), soo += (o[k] - mo) * (o[k] - mo), spp += (p[k] - mp) * (p[k] - mp);
      const double want = reg.number(i, reg.index("pearson"));
      if (std::isfinite(want)) {
        EXPECT_NEAR(sop / std::sqrt(soo * spp), want, 1e-9) << reg.at(i, 0) << " " << reg.at(i, 1);
      }
    }
  }
  // `tabula report` on the demo's folder writes the same report the demo wrote.
  auto rep = test::run_tabula("report '" + dir + "' --out '" + dir + "/again.html'");
  ASSERT_EQ(rep.exit_code, 0) << rep.err;
  EXPECT_EQ(read_file_text(dir + "/again.html"), html);
  // Rerun: every step is found done (no embedding is rewritten); the numbers are the same.
  const std::string before = read_file_text(dir + "/summary.csv");
  const auto stamp = std::filesystem::last_write_time(dir + "/embed/cellpainting/pixels/pixels.npy");
  auto again = test::run_tabula(args);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(read_file_text(dir + "/summary.csv"), before);
  EXPECT_EQ(std::filesystem::last_write_time(dir + "/embed/cellpainting/pixels/pixels.npy"), stamp);
}

TEST(Demo, WellFormednessCheckerCatchesBrokenMarkup) {
  EXPECT_EQ(test::well_formed("<html><body><svg><rect x=\"1\"/></svg></body></html>"), "");
  EXPECT_NE(test::well_formed("<html><body><svg></body></html>"), "");
  EXPECT_NE(test::well_formed("<p a=\"1>x</p>"), "");
  EXPECT_NE(test::well_formed("<p>a & b</p>"), "");
}
