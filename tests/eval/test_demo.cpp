// `tabula demo` end to end on the quick datasets with tiny networks: every model and metric lands in
// summary.csv, the report is well-formed HTML with one SVG per metric, and a rerun resumes without recomputing.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <set>
#include <vector>

#include "engine/fileio.h"
#include "eval/table.h"
#include "tests/test_util.h"

using namespace tabula;

namespace {
// Tags balance (HTML void elements and <!DOCTYPE> aside), attributes are quoted, entities are closed: what a
// browser or an XML parser needs to read the inline SVG without recovery.
std::string well_formed(const std::string& html) {
  static const std::set<std::string> void_tags = {"meta", "br", "img", "hr", "link", "input"};
  std::vector<std::string> stack;
  size_t i = 0;
  while ((i = html.find('<', i)) != std::string::npos) {
    size_t end = html.find('>', i);
    if (end == std::string::npos) return "unclosed '<' at " + std::to_string(i);
    std::string tag = html.substr(i + 1, end - i - 1);
    i = end + 1;
    if (tag.rfind("!", 0) == 0) continue;
    if (std::count(tag.begin(), tag.end(), '"') % 2) return "odd quotes in <" + tag + ">";
    bool closing = tag[0] == '/', self = tag.back() == '/';
    std::string name = tag.substr(closing ? 1 : 0);
    name = name.substr(0, name.find_first_of(" /"));
    if (closing) {
      if (stack.empty() || stack.back() != name) return "</" + name + "> closes <" + (stack.empty() ? "" : stack.back()) + ">";
      stack.pop_back();
    } else if (!self && !void_tags.count(name)) {
      stack.push_back(name);
    }
  }
  if (!stack.empty()) return "<" + stack.back() + "> never closed";
  std::regex bad_amp("&(?![a-z]+;|#[0-9]+;)");
  if (std::regex_search(html, bad_amp)) return "bare '&'";
  return "";
}
}  // namespace

TEST(Demo, QuickRunWritesEveryMetricAndAWellFormedReport) {
  auto dir = (test::scratch_dir() / "demo").string();
  const std::string args = "demo --quick --quiet --size 32 --out '" + dir +
                           "' --models 'resnet:layers=1,1,1,1,block=bottleneck,width=8@0;"
                           "resnet:layers=1,1,1,1,block=bottleneck,width=8@1;pixels;nuclei'";
  auto r = test::run_tabula(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("report: "), std::string::npos) << r.out;
  eval::Table t = eval::read_csv(dir + "/summary.csv");
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
  EXPECT_EQ(well_formed(html), "");
  size_t svgs = 0;
  for (size_t p = 0; (p = html.find("<svg", p)) != std::string::npos; ++p) ++svgs;
  EXPECT_EQ(svgs, metrics.size() + 1) << "one chart per metric plus the seed-vs-seed CKA heatmap";
  // Rerun: every step is found done (no embedding is rewritten); the numbers are the same.
  const std::string before = read_file_text(dir + "/summary.csv");
  const auto stamp = std::filesystem::last_write_time(dir + "/embed/cellpainting/pixels/pixels.npy");
  auto again = test::run_tabula(args);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(read_file_text(dir + "/summary.csv"), before);
  EXPECT_EQ(std::filesystem::last_write_time(dir + "/embed/cellpainting/pixels/pixels.npy"), stamp);
}

TEST(Demo, WellFormednessCheckerCatchesBrokenMarkup) {
  EXPECT_EQ(well_formed("<html><body><svg><rect x=\"1\"/></svg></body></html>"), "");
  EXPECT_NE(well_formed("<html><body><svg></body></html>"), "");
  EXPECT_NE(well_formed("<p a=\"1>x</p>"), "");
  EXPECT_NE(well_formed("<p>a & b</p>"), "");
}
