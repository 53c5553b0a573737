// `tabula report` on a small hand-made study folder (the layout `tabula demo` writes), so every panel's inputs and
// expected outcome are known: per-layer curves, per-compound bars with intervals and significance marks, the
// trained-vs-untrained prediction scatter, CKA, within-noise notes, provenance. Also: headless Chromium renders
// the report without a console error (skipped where chromium is not installed).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/fileio.h"
#include "eval/report.h"
#include "util/table.h"
#include "tests/eval/html_check.h"
#include "tests/test_util.h"

using namespace tabula;
namespace fs = std::filesystem;

namespace {

void put(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

std::string num(double v) {
  std::ostringstream s;
  s.precision(10);
  s << v;
  return s.str();
}

// Models: two untrained seeds of "resnet" (layers layer1, avgpool), one trained "resnet-trained", baselines pixels
// and nuclei. Compounds C1..C6: C1-C3 "morphology", C4-C6 "none". Built so that nuclei's morphology mAP equals the
// resnet family's (a match within noise) and pixels' is far below (not a match).
std::string make_study(const std::string& name) {
  const fs::path d = test::scratch_dir() / name;
  fs::remove_all(d);
  struct M {
    std::string label, kind;
    std::vector<std::string> layers;
    double level;  // morphology mAP at the last layer
  };
  const std::vector<M> models = {{"resnet-s0", "untrained", {"layer1", "avgpool"}, 0.80},
                                 {"resnet-s1", "untrained", {"layer1", "avgpool"}, 0.78},
                                 {"resnet-trained", "file", {"layer1", "avgpool"}, 0.90},
                                 {"pixels", "baseline", {"pixels"}, 0.10},
                                 {"nuclei", "baseline", {"nuclei"}, 0.79}};
  put(d / "data/cellpainting/compounds.csv",
      "Metadata_JCP2022,Metadata_phenotype\nC1,morphology\nC2,morphology\nC3,morphology\nC4,none\nC5,none\nC6,none\n");
  std::string summary = "dataset,model,layer,layer_index,n_layers,metric,value\n";
  for (const M& m : models) {
    for (const char* ds : {"cellpainting", "tissue"}) {
      std::string w = m.kind == "untrained" ? R"J({"kind":"untrained","seed":)J" + std::string(1, m.label.back()) +
                                                  R"J(,"init":"torch.manual_seed(seed)"})J"
                      : m.kind == "file" ? R"J({"kind":"file","path":"/w/resnet.safetensors","sha256":"ab12cd34"})J"
                                         : R"J({"kind":"none (baseline)"})J";
      std::string layers;
      for (const auto& l : m.layers) layers += std::string(layers.empty() ? "" : ",") + R"J({"name":")J" + l + R"J(","dim":8})J";
      put(d / "embed" / ds / m.label / "run.json",
          R"J({"tabula":{"version":"0.1.0","git":"deadbeef"},"arch":")J" + std::string(m.kind == "baseline" ? m.label : "resnet18") +
              R"J(","weights":)J" + w + R"J(,"data":{"rows":12,"sha256":"00ff"},"preprocessing":"resize=256 crop=224",)J" +
              R"J("channels":"per-channel","pool":"avg","precision":"fp32","device":"cpu","threads":2,"layers":[)J" + layers + "]}\n");
    }
    for (size_t li = 0; li < m.layers.size(); ++li) {
      const std::string& layer = m.layers[li];
      const double level = li + 1 == m.layers.size() ? m.level : m.level * 0.5;
      // Per compound: mAP (morphology near `level`, inactive near 0.2), 4 replicate APs around it, significance.
      std::string mean = "Metadata_JCP2022,Metadata_Reference_Index,mean_average_precision,p_value,corrected_p_value,below_p,below_corrected_p\n";
      std::string ap = "Metadata_JCP2022,Metadata_Reference_Index,n_pos_pairs,n_total_pairs,average_precision\n";
      double morph = 0;
      for (int c = 1; c <= 6; ++c) {
        const double v = c <= 3 ? level + 0.01 * (c - 2) : 0.2 + 0.01 * c;
        if (c <= 3) morph += v / 3;
        const bool sig = c <= 3 && v > 0.5;
        mean += std::string("C") + std::to_string(c) + ",-1," + num(v) + ",0.01," + (sig ? "0.02" : "0.5") + ",True," + (sig ? "True" : "False") + "\n";
        for (int r = 0; r < 4; ++r) ap += std::string("C") + std::to_string(c) + ",-1,3,20," + num(v + 0.03 * (r - 1.5)) + "\n";
      }
      put(d / "eval/cellpainting" / m.label / layer / "map/mean_average_precision.csv", mean);
      put(d / "eval/cellpainting" / m.label / layer / "map/average_precision.csv", ap);
      summary += "cellpainting," + m.label + "," + layer + "," + std::to_string(li) + "," + std::to_string(m.layers.size()) +
                 ",mAP morphology," + num(morph) + "\n";
      summary += "cellpainting," + m.label + "," + layer + "," + std::to_string(li) + "," + std::to_string(m.layers.size()) +
                 ",retrieved morphology," + (level > 0.5 ? "1" : "0") + "\n";
      // Tissue: per-gene Pearson r over two folds, and held-out predictions that track the truth.
      std::string reg = "fold,target,pearson\n";
      for (const char* fold : {"P1", "P2"})
        for (int g = 0; g < 5; ++g) reg += std::string(fold) + ",G" + std::to_string(g) + "," + num(level * 0.5 + 0.02 * g) + "\n";
      put(d / "eval/tissue" / m.label / layer / "ridge/regress.csv", reg);
      summary += "tissue," + m.label + "," + layer + "," + std::to_string(li) + "," + std::to_string(m.layers.size()) +
                 ",expression Pearson r (ridge)," + num(level * 0.5 + 0.04) + "\n";
      if (li + 1 == m.layers.size()) {
        std::string pred = "patch_id,fold,target,observed,predicted\n";
        for (int p = 0; p < 20; ++p)
          for (int g = 0; g < 5; ++g) {
            const double truth = std::sin(p * 1.3 + g);
            pred += std::string("p") + std::to_string(p) + "," + (p < 10 ? "P1" : "P2") + ",G" + std::to_string(g) + "," + num(truth) + "," +
                    num(truth * m.level + 0.1 * std::cos(p * 7.1 + g * m.level * 10)) + "\n";
          }
        put(d / "eval/tissue" / m.label / layer / "predictions/predictions.csv", pred);
      }
    }
  }
  put(d / "summary.csv", summary);
  put(d / "eval/cka/resnet-s0_vs_resnet-s1/cka.csv",
      "layer_a,layer_b,cka\nlayer1,layer1,0.95\nlayer1,avgpool,0.6\navgpool,layer1,0.62\navgpool,avgpool,0.9\n");
  return d.string();
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = 0; (p = s.find(what, p)) != std::string::npos; ++p) ++n;
  return n;
}

}  // namespace

TEST(Report, EveryPanelFromAStudyFolder) {
  const std::string study = make_study("study");
  ReportOptions o;
  o.runs = {study};
  o.out = study + "/report.html";
  ReportResult r = write_report(o);
  const std::string html = read_file_text(o.out);
  EXPECT_EQ(test::well_formed(html), "");
  // 3 metric curves + per-compound bars + 1 trained-vs-untrained scatter + 1 CKA heatmap.
  EXPECT_EQ(r.panels, 6);
  EXPECT_EQ(count(html, "<svg"), 6u);
  // Every figure has a visible title and its axes are labelled.
  EXPECT_EQ(count(html, "font-weight=\"bold\""), 6u);
  EXPECT_NE(html.find("relative depth (first layer = 0, last = 1)"), std::string::npos);
  EXPECT_NE(html.find("mAP (bar: mean over seeds; whisker: 95 % CI)"), std::string::npos);
  EXPECT_NE(html.find("layer of the first model"), std::string::npos);
  // Bars: the resnet family's C1 is significant in both seeds (*), the inactive compounds in none.
  EXPECT_NE(html.find("C1 resnet (untrained): mAP 0.780"), std::string::npos);  // mean of 0.79 and 0.77
  EXPECT_NE(html.find("significant in 2/2"), std::string::npos);
  EXPECT_NE(html.find("C4 resnet (untrained): mAP"), std::string::npos);
  EXPECT_NE(html.find(">morphology</text>"), std::string::npos);  // the phenotype-class label under its compounds
  // Scatter: trained vs its untrained twin (same arch), with r.
  EXPECT_NE(html.find("Predictions: resnet-s0 vs resnet-trained"), std::string::npos);
  EXPECT_NE(html.find("Trained vs untrained:"), std::string::npos);
  EXPECT_NE(html.find(">r = 0."), std::string::npos);
  // Within noise: nuclei matches the resnet family on morphology mAP; pixels does not.
  bool nuclei_matches = false, pixels_matches = false;
  for (const NoiseNote& n : r.notes) {
    if (n.metric == "cellpainting: mAP morphology" && n.family == "resnet (untrained)") {
      if (n.baseline == "nuclei") nuclei_matches = n.verdict == "matches";
      if (n.baseline == "pixels") pixels_matches = n.verdict == "matches";
      EXPECT_EQ(n.family_layer, "avgpool");
      EXPECT_LE(n.family_lo, n.family_value);
      EXPECT_GE(n.family_hi, n.family_value);
    }
  }
  EXPECT_TRUE(nuclei_matches);
  EXPECT_FALSE(pixels_matches);
  EXPECT_NE(html.find("<i>cellpainting: mAP morphology</i>: <b>nuclei</b> (0.790 [0.780, 0.800]) is within noise of "
                      "<b>resnet (untrained)</b> (0.790 [0.770, 0.810] at avgpool)"),
            std::string::npos);
  EXPECT_NE(html.find("<b>pixels</b> falls below <b>resnet (untrained)</b> on <i>cellpainting: mAP morphology</i>"),
            std::string::npos);
  EXPECT_NE(html.find("<b>Within noise</b> means the two 95 % intervals overlap"), std::string::npos);
  // Provenance: seed + init, weights sha256, version + git hash, every run.json field asked for.
  EXPECT_NE(html.find("seed 0; torch.manual_seed(seed)"), std::string::npos);
  EXPECT_NE(html.find("sha256 ab12cd34 (resnet.safetensors)"), std::string::npos);
  EXPECT_NE(html.find("0.1.0 (git deadbeef)"), std::string::npos);
  EXPECT_NE(html.find("<th>precision</th><th>device</th><th>threads</th>"), std::string::npos);
  // Every number names the file it came from.
  EXPECT_NE(html.find("eval/cellpainting/nuclei/nuclei/map/mean_average_precision.csv"), std::string::npos);
  EXPECT_NE(html.find("eval/tissue/resnet-s1/layer1/ridge/summary.json"), std::string::npos);
  // Same inputs, same bytes.
  o.out = study + "/again.html";
  write_report(o);
  EXPECT_EQ(read_file_text(o.out), html);
}

TEST(Report, CliSeveralStudiesAndErrors) {
  const std::string a = make_study("a"), b = make_study("b");
  auto r = test::run_tabula("report '" + a + "' '" + b + "' --out '" + a + "/both.html'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("figures"), std::string::npos) << r.out;
  const std::string html = read_file_text(a + "/both.html");
  EXPECT_EQ(test::well_formed(html), "");
  EXPECT_NE(html.find("a/resnet-s0"), std::string::npos);  // models carry their study's name
  EXPECT_NE(html.find("b/nuclei"), std::string::npos);
  // A folder without summary.csv: one line naming it, no file written.
  r = test::run_tabula("report '" + a + "/eval' --out '" + a + "/bad.html'");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("summary.csv"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(a + "/bad.html"));
  // A malformed number: the file, line and column are named.
  std::string s = read_file_text(a + "/summary.csv");
  s.replace(s.find("avgpool,1,2"), 11, "avgpool,x,2");
  put(fs::path(a) / "summary.csv", s);
  r = test::run_tabula("report '" + a + "' --out '" + a + "/bad.html'");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("summary.csv:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("layer_index"), std::string::npos) << r.err;
}

TEST(Report, BootstrapIntervalIsDeterministicAndBracketsTheMean) {
  std::vector<double> v = {0.1, 0.4, 0.35, 0.8, 0.5, 0.55, 0.2, 0.9};
  auto a = bootstrap_mean_ci95(v, 2000, 0), b = bootstrap_mean_ci95(v, 2000, 0);
  EXPECT_EQ(a, b);
  double mean = 0;
  for (double x : v) mean += x / v.size();
  EXPECT_LT(a.first, mean);
  EXPECT_GT(a.second, mean);
  // The interval of the mean shrinks like 1/sqrt(n): 16 copies of the data give a ~4x narrower one.
  std::vector<double> many;
  for (int k = 0; k < 16; ++k) many.insert(many.end(), v.begin(), v.end());
  auto c = bootstrap_mean_ci95(many, 2000, 0);
  EXPECT_NEAR((a.second - a.first) / (c.second - c.first), 4.0, 0.8);
  EXPECT_EQ(bootstrap_mean_ci95({0.3, 0.3, 0.3}, 100, 0), std::make_pair(0.3, 0.3));
  EXPECT_EQ(bootstrap_mean_ci95({0.7}, 100, 0), std::make_pair(0.7, 0.7));
}

// Headless Chromium loads the report with an error hook injected before anything else: any script error, failed
// resource load or console message other than our own fails the test, and the number of SVG elements the browser
// built (in the SVG namespace, with a non-empty layout box) must equal the number of <svg> tags written.
TEST(Report, RendersInHeadlessChromiumWithoutConsoleErrors) {
  std::string browser;
  for (const char* b : {"chromium", "chromium-browser", "google-chrome"})
    if (std::system(("command -v " + std::string(b) + " >/dev/null 2>&1").c_str()) == 0) {
      browser = b;
      break;
    }
  if (browser.empty()) GTEST_SKIP() << "no chromium on this machine (Debian package `chromium`)";
  const std::string study = make_study("chromium");
  ReportOptions o;
  o.runs = {study};
  o.out = study + "/report.html";
  ReportResult r = write_report(o);
  std::string html = read_file_text(o.out);
  const std::string hook =
      "<script>window.addEventListener('error',function(e){console.log('TABULA-ERROR '+(e.message||"
      "(e.target&&e.target.outerHTML)||'?'))},true);window.addEventListener('load',function(){var n=0;"
      "document.querySelectorAll('svg').forEach(function(s){var b=s.getBoundingClientRect();"
      "if(s.namespaceURI==='http://www.w3.org/2000/svg'&&b.width>0&&b.height>0)n++});"
      "console.log('TABULA-SVG '+n)});</script>";
  html.insert(html.find("<head>") + 6, hook);
  const std::string page = study + "/hooked.html", err = study + "/chromium.err", dom = study + "/chromium.dom";
  put(page, html);
  const std::string cmd = "timeout 120 " + browser + " --headless --no-sandbox --disable-gpu --user-data-dir='" + study +
                          "/profile' --enable-logging=stderr --v=0 --dump-dom 'file://" + page + "' >'" + dom + "' 2>'" + err + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd << "\n" << read_file_text(err);
  std::istringstream lines(read_file_text(err));
  std::string line;
  int svg_seen = -1;
  while (std::getline(lines, line)) {
    if (line.find("CONSOLE") == std::string::npos) continue;  // chromium's own (dbus, gpu) chatter is not the page's
    auto p = line.find("\"TABULA-SVG ");
    if (p != std::string::npos) {
      svg_seen = std::atoi(line.c_str() + p + 12);
      continue;
    }
    ADD_FAILURE() << "console: " << line;
  }
  EXPECT_EQ(svg_seen, r.panels) << read_file_text(err);
  EXPECT_NE(read_file_text(dom).find("Per-compound replicate mAP"), std::string::npos);
}

// Optional inputs missing (no phenotype classes, no predictions, no CKA, no per-compound files for one model): the
// panels that need them are left out, the rest is still written and well-formed; a broken run.json names its file.
TEST(Report, MissingOptionalInputsDropTheirPanels) {
  const std::string study = make_study("sparse");
  fs::remove(fs::path(study) / "data/cellpainting/compounds.csv");
  fs::remove_all(fs::path(study) / "eval/cka");
  for (const char* m : {"resnet-s0", "resnet-s1", "resnet-trained", "pixels", "nuclei"})
    for (const char* l : {"avgpool", "pixels", "nuclei"}) fs::remove_all(fs::path(study) / "eval/tissue" / m / l / "predictions");
  fs::remove_all(fs::path(study) / "eval/cellpainting/pixels");
  ReportOptions o;
  o.runs = {study};
  o.out = study + "/report.html";
  ReportResult r = write_report(o);
  const std::string html = read_file_text(o.out);
  EXPECT_EQ(test::well_formed(html), "");
  EXPECT_EQ(r.panels, 4);  // 3 metric curves + the bars (without class labels); no scatter, no CKA
  EXPECT_EQ(html.find("Do different representations"), std::string::npos);
  EXPECT_EQ(html.find("Layer × layer CKA"), std::string::npos);
  EXPECT_EQ(html.find("C1 pixels:"), std::string::npos);  // no map files for pixels: no bar
  // mAP notes need the phenotype classes; the tissue ridge notes remain.
  for (const NoiseNote& n : r.notes) EXPECT_EQ(n.metric, "tissue: expression Pearson r (ridge)");
  EXPECT_FALSE(r.notes.empty());
  // A run.json that is not JSON: the error names it.
  std::ofstream(study + "/embed/cellpainting/nuclei/run.json") << "{not json";
  try {
    write_report(o);
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("nuclei/run.json"), std::string::npos) << e.what();
  }
}
