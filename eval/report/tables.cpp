// The report's tables and non-chart sections: what the data holds, example images, the model legend,
// provenance and every number (sortable and filterable).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>

#include "eval/report/internal.h"
#include "util/json.h"
#include "util/table.h"

namespace tabula::report {

namespace fs = std::filesystem;

namespace {

std::string index_of(const Study& st, const std::string& dataset) {
  for (const Model& m : st.models) {
    const std::string f = m.run + "/embed/" + dataset + "/" + m.label + "/index.csv";
    if (fs::exists(f)) return f;
  }
  return "";
}

// "n (min–max per X, median m)" of the counts of each distinct value.
std::string spread(const std::vector<int>& counts, const std::string& per) {
  if (counts.empty()) return "";
  std::vector<int> c = counts;
  std::sort(c.begin(), c.end());
  std::ostringstream s;
  s << c.front();
  if (c.back() != c.front()) s << "–" << c.back();
  s << " per " << per;
  return s.str();
}

std::map<std::string, int> count(const std::vector<std::string>& v, const std::vector<bool>* keep = nullptr) {
  std::map<std::string, int> m;
  for (size_t i = 0; i < v.size(); ++i)
    if (!keep || (*keep)[i]) ++m[v[i]];
  return m;
}

std::vector<int> values(const std::map<std::string, int>& m) {
  std::vector<int> v;
  for (const auto& [k, n] : m) v.push_back(n);
  return v;
}

}  // namespace

std::string data_description(const Study& st) {
  std::ostringstream h;
  h << "<table id=\"data-table\"><thead><tr><th>dataset</th><th>images</th><th>what it "
       "holds</th></tr></thead><tbody>\n";
  int n = 0;
  for (const DatasetInfo& d : st.datasets) {
    const std::string idx = index_of(st, d.name);
    if (idx.empty()) continue;
    tabula::Table t = tabula::read_csv(idx);
    std::vector<std::string> parts;
    auto has = [&](const std::string& c) { return !c.empty() && t.has(c); };
    if (has(d.batch_col)) {
      const size_t batches = count(t.column(d.batch_col)).size();
      parts.push_back(std::to_string(batches) + (batches == 1 ? " batch" : " batches"));
    }
    if (has(d.plate_col)) {
      auto plates = count(t.column(d.plate_col));
      parts.push_back(std::to_string(plates.size()) + " plates (" + spread(values(plates), "plate") + ")");
    }
    std::vector<bool> ctrl(t.rows(), false), treated(t.rows(), true);
    if (auto eq = d.control.find('='); eq != std::string::npos && t.has(d.control.substr(0, eq))) {
      const auto& c = t.column(d.control.substr(0, eq));
      int k = 0;
      for (size_t r = 0; r < t.rows(); ++r)
        ctrl[r] = c[r] == d.control.substr(eq + 1), treated[r] = !ctrl[r], k += ctrl[r];
      parts.push_back(std::to_string(k) + " control images (" + esc(d.control) + ")");
    }
    if (has(d.compound_col)) {
      auto comp = count(t.column(d.compound_col), &treated);
      parts.push_back(std::to_string(comp.size()) + " compounds, " + spread(values(comp), "compound") + " replicates");
    }
    if (!st.phenotype.empty() && has(d.compound_col)) {
      std::map<std::string, std::set<std::string>> by;
      for (const auto& [c, p] : st.phenotype) by[p].insert(c);
      std::string s = "phenotype classes:";
      for (const auto& [p, cs] : by) s += " " + p + " (" + std::to_string(cs.size()) + ")";
      parts.push_back(esc(s));
    }
    if (has(d.label_col)) {
      auto lab = count(t.column(d.label_col));
      parts.push_back(std::to_string(lab.size()) + " classes of " + esc(d.label_col) + " (" +
                      spread(values(lab), "class") + ")");
    }
    if (!d.targets.empty() && fs::exists(d.targets)) {
      tabula::Table tg = tabula::read_csv(d.targets);
      parts.push_back(std::to_string(tg.cols() - (d.target_id.empty() ? 0 : 1)) + " regression targets");
    }
    if (has(d.fold_col))
      parts.push_back(std::to_string(count(t.column(d.fold_col)).size()) + " folds by " + esc(d.fold_col));
    std::string what;
    for (size_t i = 0; i < parts.size(); ++i) what += (i ? "; " : "") + parts[i];
    h << "<tr><td>" << esc(d.name) << "</td><td class=\"num\">" << t.rows() << "</td><td>" << what << "</td></tr>\n";
    ++n;
  }
  h << "</tbody></table>\n";
  return n ? h.str() : "";
}

std::string example_images(const Study& st, const std::string& dataset) {
  const std::string dir = st.runs.at(0) + "/examples/" + dataset;
  if (!fs::exists(dir + "/examples.csv")) return "";
  tabula::Table t = tabula::read_csv(dir + "/examples.csv");
  // One row per class, classes in name order (controls, written "control (...)", sort among them).
  std::map<std::string, std::vector<size_t>> by;
  for (size_t r = 0; r < t.rows(); ++r) by[t.at(r, t.index("class"))].push_back(r);
  std::ostringstream h;
  for (const auto& [cls, rows] : by) {
    h << "<div class=\"exrow\"><div class=\"excls\">" << esc(cls) << "</div><div class=\"eximgs\">";
    for (size_t r : rows) {
      const std::string file = dir + "/" + t.at(r, t.index("file"));
      if (!fs::exists(file)) continue;
      std::ifstream f(file, std::ios::binary);
      const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      h << "<figure><img alt=\"" << esc(cls + ": " + t.at(r, t.index("caption"))) << "\" src=\"data:image/png;base64,"
        << base64(bytes) << "\"><figcaption>" << esc(t.at(r, t.index("caption"))) << "</figcaption></figure>";
    }
    h << "</div></div>\n";
  }
  return h.str();
}

std::string legend(const Study& st) {
  std::ostringstream h;
  h << "<div id=\"legend\" class=\"legend\">";
  for (const Model& m : st.models)
    h << "<span class=\"lg\"><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"30\" height=\"10\"><line x1=\"1\" "
         "y1=\"5\" "
      << "x2=\"29\" y2=\"5\" " << line_attrs(m.style) << "/></svg> " << esc(m.shown) << " <small>(" << esc(m.kind)
      << (m.kind == "baseline" ? "" : ", " + esc(m.arch)) << ")</small></span>";
  h << "</div>\n";
  return h.str();
}

namespace {

// The file a summary.csv number was read from, relative to its study folder.
std::string source_of(const Row& r, const Model* m) {
  if (!r.source.empty()) return r.source;
  if (!m) return "summary.csv";
  const std::string base = "eval/" + r.dataset + "/" + m->label + "/" + r.layer + "/";
  if (r.metric.rfind("mAP", 0) == 0 || r.metric.rfind("retrieved", 0) == 0)
    return base + "map/mean_average_precision.csv";
  if (r.metric.find(" recall (") != std::string::npos) return base + "recall/summary.json";
  if (r.metric.find(" kNN top-1") != std::string::npos) return base + "knn/summary.json";
  if (r.metric.find(" linear probe top-1") != std::string::npos) return base + "linear/summary.json";
  if (r.metric.find("(ridge)") != std::string::npos) return base + "ridge/summary.json";
  if (r.metric.find("(1-NN)") != std::string::npos) return base + "regress-1nn/summary.json";
  return "summary.csv";
}

// The value column: a Pearson r that is nan says why (summary.csv keeps the bare nan that pandas reads).
std::string value_cell(const Row& r) {
  if (!std::isnan(r.value) || r.metric.find("Pearson r") == std::string::npos) return fmt(r.value, 4);
  return "<span title=\"some target's Pearson r is undefined in a fold: its predictions (or its expression) are "
         "constant there; scipy.stats.pearsonr gives nan too\">nan (constant prediction)</span>";
}

}  // namespace

std::string numbers_table(const Study& st) {
  std::ostringstream h;
  h << "<details id=\"numbers\"><summary>Every number (" << st.rows.size() << " rows): click a column to sort, type to "
    << "filter</summary>\n<p><input id=\"numbers-filter\" type=\"search\" placeholder=\"filter rows (e.g. layer3 "
       "mAP)\" "
    << "oninput=\"tabulaFilter(this.value)\"></p>\n<table id=\"numbers-table\"><thead><tr>";
  int c = 0;
  for (const char* name : {"dataset", "model", "layer", "metric", "value", "from (relative to the study folder)"})
    h << "<th onclick=\"tabulaSort(" << c++ << ")\">" << name << " ↕</th>";
  h << "</tr></thead><tbody>\n";
  for (const Row& r : st.rows)
    h << "<tr><td>" << esc(r.dataset) << "</td><td>" << esc(r.model) << "</td><td>" << esc(r.layer) << "</td><td>"
      << esc(r.metric) << "</td><td class=\"num\">" << value_cell(r) << "</td><td><code>"
      << esc(source_of(r, find_model(st, r.model))) << "</code></td></tr>\n";
  h << "</tbody></table></details>\n";
  return h.str();
}

std::string provenance_table(const Study& st) {
  std::ostringstream h;
  h << "<table><tr><th>model</th><th>dataset</th><th>arch</th><th>weights</th><th>tabula</th><th>preprocessing</th>"
    << "<th>channels</th><th>pool</th><th>precision</th><th>device</th><th>threads</th><th>data (rows, "
       "sha256)</th></tr>\n";
  for (const Model& m : st.models)
    for (const auto& [ds, file] : m.provenance) {
      json::Value v = json::parse_file(file);
      auto str = [&](const json::Value* x) -> std::string {
        if (!x) return "";
        if (x->is_string()) return x->as_string();
        return json::dump(*x);
      };
      std::string weights;
      if (const json::Value* w = v.find("weights")) {
        std::string kind = str(w->find("kind"));
        if (kind == "untrained")
          weights = "seed " + str(w->find("seed")) + "; " + str(w->find("init"));
        else if (kind == "file")
          weights =
              "sha256 " + str(w->find("sha256")) + " (" + fs::path(str(w->find("path"))).filename().string() + ")";
        else
          weights = kind;
      }
      std::string tab;
      if (const json::Value* t = v.find("tabula")) tab = str(t->find("version")) + " (git " + str(t->find("git")) + ")";
      std::string data;
      if (const json::Value* d = v.find("data")) {
        std::string sha = str(d->find("sha256"));
        data = str(d->find("rows")) + " rows, " + sha.substr(0, 16);
      }
      std::string id = "prov-" + m.shown + "-" + ds;
      for (char& c : id)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') c = '_';
      h << "<tr id=\"" << esc(id) << "\"><td>" << esc(m.shown) << "</td><td>" << esc(ds) << "</td><td>"
        << esc(str(v.find("arch"))) << "</td><td>" << esc(weights) << "</td><td>" << esc(tab) << "</td><td>"
        << esc(str(v.find("preprocessing"))) << "</td><td>" << esc(str(v.find("channels"))) << "</td><td>"
        << esc(str(v.find("pool"))) << "</td><td>" << esc(str(v.find("precision"))) << "</td><td>"
        << esc(str(v.find("device"))) << "</td><td>" << esc(str(v.find("threads"))) << "</td><td>" << esc(data)
        << "</td></tr>\n";
    }
  h << "</table>\n";
  return h.str();
}

}  // namespace tabula::report
