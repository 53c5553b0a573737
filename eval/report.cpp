#include "eval/report.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>
#include <filesystem>
#include <iomanip>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>

#include "engine/fileio.h"
#include "util/table.h"
#include "util/json.h"

namespace tabula {

namespace fs = std::filesystem;

std::pair<double, double> bootstrap_mean_ci95(const std::vector<double>& values, int resamples, uint64_t seed) {
  const size_t n = values.size();
  double mean = 0;
  for (double v : values) mean += v;
  mean /= std::max<size_t>(n, 1);
  if (n < 2 || resamples < 2) return {mean, mean};
  std::mt19937_64 rng(seed);
  std::vector<double> means(static_cast<size_t>(resamples));
  for (double& m : means) {
    double s = 0;
    for (size_t i = 0; i < n; ++i) s += values[rng() % n];
    m = s / static_cast<double>(n);
  }
  std::sort(means.begin(), means.end());
  // numpy.percentile's default (linear interpolation between order statistics).
  auto pct = [&](double q) {
    double pos = q * static_cast<double>(means.size() - 1);
    size_t lo = static_cast<size_t>(std::floor(pos));
    size_t hi = std::min(lo + 1, means.size() - 1);
    return means[lo] + (pos - static_cast<double>(lo)) * (means[hi] - means[lo]);
  };
  return {pct(0.025), pct(0.975)};
}

namespace {

// One number of the study, as summary.csv holds it.
struct Row {
  std::string dataset, model, layer;
  int layer_index = 0, layers = 1;
  std::string metric;
  double value = NAN;
};

// A model of the study: where its files are and what it is (from its run.json).
struct Model {
  std::string run;    // study folder
  std::string label;  // folder name under embed/<dataset>/
  std::string shown;  // legend name (label, or "run/label" with several runs)
  std::string kind;   // untrained | trained | baseline
  std::string family; // seeds of one untrained arch share a family; others are their own
  std::vector<std::pair<std::string, std::string>> provenance;  // dataset -> run.json path
};

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
}

std::string fmt(double v, int digits = 3) {
  if (!std::isfinite(v)) return "n/a";
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

const char* kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                         "#bcbd22", "#17becf"};

// SVG opening with a <title> (what screen readers and tooltips show) and a visible bold title.
std::string svg_open(double w, double h, const std::string& title, double title_x) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << w << "\" height=\"" << h
    << "\" viewBox=\"0 0 " << w << " " << h << "\" role=\"img\"><title>" << esc(title) << "</title><text x=\"" << title_x
    << "\" y=\"18\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">" << esc(title) << "</text>";
  return s.str();
}

// Horizontal grid lines with tick labels at 5 levels of [lo, hi] on the y axis, plus both axes.
void axes(std::ostringstream& s, double L, double T, double right, double bottom, double lo, double hi,
          const std::function<double(double)>& Y) {
  for (int k = 0; k <= 4; ++k) {
    double v = lo + (hi - lo) * k / 4;
    s << "<text x=\"" << L - 6 << "\" y=\"" << Y(v) + 4 << "\" text-anchor=\"end\" font-size=\"10\">" << fmt(v, 2)
      << "</text><line x1=\"" << L << "\" y1=\"" << Y(v) << "\" x2=\"" << right << "\" y2=\"" << Y(v)
      << "\" stroke=\"#ddd\"/>";
  }
  s << "<line x1=\"" << L << "\" y1=\"" << bottom << "\" x2=\"" << right << "\" y2=\"" << bottom << "\" stroke=\"#333\"/>"
    << "<line x1=\"" << L << "\" y1=\"" << T << "\" x2=\"" << L << "\" y2=\"" << bottom << "\" stroke=\"#333\"/>";
}

void ylabel(std::ostringstream& s, double x, double y, const std::string& text) {
  s << "<text transform=\"translate(" << x << "," << y << ") rotate(-90)\" text-anchor=\"middle\" font-size=\"11\">"
    << esc(text) << "</text>";
}

// Per-layer curve per model (x = relative depth), baselines (one number) as dashed horizontal lines.
std::string line_chart(const std::string& title, const std::string& yl, const std::vector<Row>& rows,
                       const std::vector<std::string>& models) {
  const double W = 460, H = 280, L = 56, R = 150, T = 30, B = 44;
  double lo = INFINITY, hi = -INFINITY;
  for (const Row& r : rows)
    if (std::isfinite(r.value)) lo = std::min(lo, r.value), hi = std::max(hi, r.value);
  if (!std::isfinite(lo)) return "";
  if (hi - lo < 1e-9) hi = lo + 1;
  double pad = 0.05 * (hi - lo);
  lo -= pad, hi += pad;
  auto X = [&](double t) { return L + t * (W - L - R); };
  auto Y = [&](double v) { return T + (1 - (v - lo) / (hi - lo)) * (H - T - B); };
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << svg_open(W, H, title, (W - R) / 2 + 20);
  axes(s, L, T, W - R, H - B, lo, hi, Y);
  s << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 10 << "\" text-anchor=\"middle\" font-size=\"11\">"
    << "relative depth (first layer = 0, last = 1)</text>";
  ylabel(s, 14, (T + H - B) / 2, yl);
  int legend = 0;
  for (size_t m = 0; m < models.size(); ++m) {
    std::vector<const Row*> pts;
    for (const Row& r : rows)
      if (r.model == models[m] && std::isfinite(r.value)) pts.push_back(&r);
    if (pts.empty()) continue;
    const char* color = kColors[m % 10];
    const bool flat = pts.size() == 1 && pts[0]->layers == 1;
    auto px = [&](const Row* r) { return X(r->layers > 1 ? double(r->layer_index) / (r->layers - 1) : 0); };
    if (flat) {
      s << "<line x1=\"" << L << "\" y1=\"" << Y(pts[0]->value) << "\" x2=\"" << W - R << "\" y2=\"" << Y(pts[0]->value)
        << "\" stroke=\"" << color << "\" stroke-width=\"2\" stroke-dasharray=\"6,4\"><title>" << esc(models[m]) << ": "
        << fmt(pts[0]->value, 4) << "</title></line>";
    } else {
      s << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"2\" points=\"";
      for (const Row* r : pts) s << px(r) << "," << Y(r->value) << " ";
      s << "\"/>";
      for (const Row* r : pts)
        s << "<circle cx=\"" << px(r) << "\" cy=\"" << Y(r->value) << "\" r=\"2.5\" fill=\"" << color << "\"><title>"
          << esc(r->model + " " + r->layer) << ": " << fmt(r->value, 4) << "</title></circle>";
    }
    double ly = T + 8 + 16 * legend++;
    s << "<line x1=\"" << W - R + 10 << "\" y1=\"" << ly << "\" x2=\"" << W - R + 30 << "\" y2=\"" << ly << "\" stroke=\""
      << color << "\" stroke-width=\"2\"" << (flat ? " stroke-dasharray=\"6,4\"" : "") << "/><text x=\"" << W - R + 34
      << "\" y=\"" << ly + 4 << "\" font-size=\"10\">" << esc(models[m]) << "</text>";
  }
  s << "</svg>";
  return s.str();
}

std::string cka_heatmap(const std::string& title, const tabula::Table& t) {
  std::vector<std::string> la, lb;
  for (size_t r = 0; r < t.rows(); ++r) {
    if (std::find(la.begin(), la.end(), t.at(r, 0)) == la.end()) la.push_back(t.at(r, 0));
    if (std::find(lb.begin(), lb.end(), t.at(r, 1)) == lb.end()) lb.push_back(t.at(r, 1));
  }
  const double cell = std::max(8.0, std::min(28.0, 300.0 / std::max<size_t>({la.size(), lb.size(), 1})));
  const double L = 110, T = 40;
  const double gw = cell * static_cast<double>(lb.size()), gh = cell * static_cast<double>(la.size());
  const double W = std::max(L + gw + 90, 380.0), H = T + gh + 95;
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << svg_open(W, H, title, W / 2);
  auto a_name = t.columns()[0], b_name = t.columns()[1];
  for (size_t r = 0; r < t.rows(); ++r) {
    size_t i = std::find(la.begin(), la.end(), t.at(r, 0)) - la.begin();
    size_t j = std::find(lb.begin(), lb.end(), t.at(r, 1)) - lb.begin();
    double v = std::clamp(t.number(r, 2), 0.0, 1.0);
    int shade = static_cast<int>(255 - 200 * v);
    s << "<rect x=\"" << L + cell * j << "\" y=\"" << T + cell * i << "\" width=\"" << cell << "\" height=\"" << cell
      << "\" fill=\"rgb(" << shade << "," << shade << ",255)\"><title>" << esc(la[i] + " vs " + lb[j]) << ": "
      << fmt(v, 3) << "</title></rect>";
  }
  for (size_t i = 0; i < la.size(); ++i)
    s << "<text x=\"" << L - 4 << "\" y=\"" << T + cell * (i + 0.7) << "\" text-anchor=\"end\" font-size=\"9\">"
      << esc(la[i]) << "</text>";
  for (size_t j = 0; j < lb.size(); ++j)
    s << "<text transform=\"translate(" << L + cell * (j + 0.4) << "," << T + gh + 6 << ") rotate(60)\" font-size=\"9\">"
      << esc(lb[j]) << "</text>";
  // Colour scale legend: 0 (white) to 1 (blue).
  const double lx = L + gw + 20;
  for (int k = 0; k <= 10; ++k) {
    int shade = static_cast<int>(255 - 200 * (k / 10.0));
    s << "<rect x=\"" << lx << "\" y=\"" << T + 10 * (10 - k) << "\" width=\"14\" height=\"10\" fill=\"rgb(" << shade << ","
      << shade << ",255)\"/>";
  }
  s << "<text x=\"" << lx + 18 << "\" y=\"" << T + 8 << "\" font-size=\"9\">1</text><text x=\"" << lx + 18 << "\" y=\""
    << T + 110 << "\" font-size=\"9\">0</text><text x=\"" << lx << "\" y=\"" << T + 124 << "\" font-size=\"9\">CKA</text>";
  s << "<text x=\"" << L + gw / 2 << "\" y=\"" << H - 6 << "\" text-anchor=\"middle\" font-size=\"11\">layer of "
    << esc(b_name.rfind("layer_", 0) == 0 ? "the second model" : b_name) << "</text>";
  ylabel(s, 12, T + gh / 2, "layer of the first model");
  s << "</svg>";
  return s.str();
}

// ---- inputs -------------------------------------------------------------------------------------------------------

struct Study {
  std::vector<Row> rows;
  std::vector<Model> models;  // in order of first appearance in summary.csv
  std::map<std::string, std::string> phenotype;  // compound -> phenotype class (from compounds.csv)
  std::vector<std::pair<std::string, std::string>> cka;  // (title, cka.csv)
};

const Model* find_model(const Study& st, const std::string& shown) {
  for (const Model& m : st.models)
    if (m.shown == shown) return &m;
  return nullptr;
}

// The layer a model's numbers on `dataset` end at (its feature output), from summary.csv.
std::string last_layer(const Study& st, const std::string& shown, const std::string& dataset) {
  for (const Row& r : st.rows)
    if (r.model == shown && r.dataset == dataset && r.layer_index == r.layers - 1) return r.layer;
  return "";
}

Study load_study(const ReportOptions& opt) {
  if (opt.runs.empty()) throw std::invalid_argument("tabula report: no study folder given");
  Study st;
  const bool prefix = opt.runs.size() > 1;
  std::set<std::string> names;
  for (const std::string& run : opt.runs) {
    const std::string summary = run + "/summary.csv";
    if (!fs::exists(summary))
      throw std::runtime_error(run + ": no summary.csv (a study folder as `tabula demo --out DIR` writes it)");
    tabula::Table t = tabula::read_csv(summary);
    const std::string tag = fs::path(run).lexically_normal().filename().string().empty()
                                ? fs::path(run).lexically_normal().parent_path().filename().string()
                                : fs::path(run).lexically_normal().filename().string();
    if (prefix && !names.insert(tag).second)
      throw std::runtime_error(run + ": two study folders share the name '" + tag + "' (their models would be confused)");
    const size_t c_ds = t.index("dataset"), c_m = t.index("model"), c_l = t.index("layer"), c_li = t.index("layer_index"),
                 c_n = t.index("n_layers"), c_metric = t.index("metric"), c_v = t.index("value");
    std::map<std::string, size_t> seen;
    for (size_t r = 0; r < t.rows(); ++r) {
      Row row;
      row.dataset = t.at(r, c_ds);
      const std::string label = t.at(r, c_m);
      row.model = prefix ? tag + "/" + label : label;
      row.layer = t.at(r, c_l);
      row.layer_index = static_cast<int>(t.number(r, c_li));
      row.layers = static_cast<int>(t.number(r, c_n));
      row.metric = t.at(r, c_metric);
      row.value = t.number(r, c_v);  // "nan" is a gap (an undefined metric), not an error
      if (row.layer_index < 0 || row.layers < 1 || row.layer_index >= row.layers)
        throw std::runtime_error(t.where(r, c_li) + ": layer_index must be in [0, n_layers)");
      st.rows.push_back(row);
      if (seen.count(label)) continue;
      seen[label] = st.models.size();
      Model m;
      m.run = run;
      m.label = label;
      m.shown = row.model;
      m.kind = "baseline";
      std::string arch = label;
      for (const char* ds : {"cellpainting", "tissue"}) {
        std::string rj = run + "/embed/" + ds + "/" + label + "/run.json";
        if (!fs::exists(rj)) continue;
        m.provenance.push_back({ds, rj});
        if (m.provenance.size() > 1) continue;
        json::Value v = json::parse_file(rj);
        arch = v.find("arch") ? v.find("arch")->as_string() : label;
        const json::Value* w = v.find("weights");
        const std::string kind = w && w->find("kind") ? w->find("kind")->as_string() : "";
        m.kind = kind == "untrained" ? "untrained" : kind == "file" ? "trained" : "baseline";
      }
      if (m.kind == "untrained") {
        // The seeds of one untrained arch are replicates of one family: resnet50-s0, resnet50-s1 -> resnet50.
        std::string base = m.shown;
        auto dash = base.rfind("-s");
        if (dash != std::string::npos && dash + 2 < base.size() &&
            base.find_first_not_of("0123456789", dash + 2) == std::string::npos)
          base = base.substr(0, dash);
        m.family = base + " (untrained)";
      } else {
        m.family = m.shown;
      }
      st.models.push_back(m);
    }
    if (st.phenotype.empty() && fs::exists(run + "/data/cellpainting/compounds.csv")) {
      tabula::Table c = tabula::read_csv(run + "/data/cellpainting/compounds.csv");
      if (c.has("Metadata_JCP2022") && c.has("Metadata_phenotype"))
        for (size_t r = 0; r < c.rows(); ++r)
          st.phenotype[c.at(r, c.index("Metadata_JCP2022"))] = c.at(r, c.index("Metadata_phenotype"));
    }
    if (fs::is_directory(run + "/eval/cka")) {
      std::vector<std::string> dirs;
      for (const auto& e : fs::directory_iterator(run + "/eval/cka"))
        if (fs::exists(e.path() / "cka.csv")) dirs.push_back(e.path().filename().string());
      std::sort(dirs.begin(), dirs.end());
      for (const std::string& d : dirs) {
        std::string title = d;
        if (auto p = title.find("_vs_"); p != std::string::npos) title = title.substr(0, p) + " vs " + title.substr(p + 4);
        st.cka.push_back({(prefix ? tag + ": " : "") + title, run + "/eval/cka/" + d + "/cka.csv"});
      }
    }
  }
  return st;
}

// Families in model order, with their members.
std::vector<std::pair<std::string, std::vector<const Model*>>> families(const Study& st) {
  std::vector<std::pair<std::string, std::vector<const Model*>>> out;
  for (const Model& m : st.models) {
    auto it = std::find_if(out.begin(), out.end(), [&](const auto& f) { return f.first == m.family; });
    if (it == out.end()) out.push_back({m.family, {&m}});
    else it->second.push_back(&m);
  }
  return out;
}

// ---- per-compound mAP bars (the paper's Figure 3) ----------------------------------------------------------------

struct CompoundStat {
  double map = NAN, lo = NAN, hi = NAN;
  int significant = 0, members = 0;  // seeds with BH-corrected p < 0.05
};

struct MapFiles {
  std::map<std::string, double> map;                // compound -> mAP
  std::map<std::string, bool> significant;          // compound -> below_corrected_p
  std::map<std::string, std::vector<double>> aps;   // compound -> replicate APs
};

std::optional<MapFiles> read_map(const std::string& dir) {
  if (!fs::exists(dir + "/mean_average_precision.csv") || !fs::exists(dir + "/average_precision.csv")) return std::nullopt;
  MapFiles f;
  tabula::Table m = tabula::read_csv(dir + "/mean_average_precision.csv");
  const bool ref = m.has("Metadata_Reference_Index");
  const size_t id = m.index("Metadata_JCP2022"), v = m.index("mean_average_precision"), sig = m.index("below_corrected_p");
  for (size_t r = 0; r < m.rows(); ++r) {
    if (ref && m.at(r, m.index("Metadata_Reference_Index")) != "-1") continue;  // controls are their own references
    f.map[m.at(r, id)] = m.number(r, v);
    f.significant[m.at(r, id)] = m.at(r, sig) == "True";
  }
  tabula::Table a = tabula::read_csv(dir + "/average_precision.csv");
  const size_t aid = a.index("Metadata_JCP2022"), ap = a.index("average_precision");
  for (size_t r = 0; r < a.rows(); ++r)
    if (f.map.count(a.at(r, aid)) && a.at(r, ap) != "nan" && !a.at(r, ap).empty())
      f.aps[a.at(r, aid)].push_back(a.number(r, ap));
  return f;
}

std::string compound_bars(const Study& st, const ReportOptions& opt, std::string* caption) {
  auto fams = families(st);
  std::vector<std::string> fam_names;
  std::map<std::string, std::map<std::string, CompoundStat>> stat;  // family -> compound -> stat
  std::set<std::string> compounds;
  std::map<std::string, std::string> fam_layer;
  for (const auto& [fam, members] : fams) {
    std::map<std::string, std::vector<double>> maps, aps;
    std::map<std::string, std::pair<int, int>> sig;
    std::string layers;
    for (const Model* m : members) {
      std::string layer = last_layer(st, m->shown, "cellpainting");
      if (layer.empty()) continue;
      auto f = read_map(m->run + "/eval/cellpainting/" + m->label + "/" + layer + "/map");
      if (!f) continue;
      if (layers.find(layer) == std::string::npos) layers += (layers.empty() ? "" : ", ") + layer;
      for (const auto& [c, v] : f->map) {
        maps[c].push_back(v);
        auto& a = aps[c];
        a.insert(a.end(), f->aps[c].begin(), f->aps[c].end());
        sig[c].first += f->significant[c];
        sig[c].second += 1;
        compounds.insert(c);
      }
    }
    if (maps.empty()) continue;
    fam_names.push_back(fam);
    fam_layer[fam] = layers;
    for (const auto& [c, v] : maps) {
      CompoundStat s;
      s.map = 0;
      for (double x : v) s.map += x;
      s.map /= static_cast<double>(v.size());
      // The interval resamples the compound's replicate APs pooled over seeds: replicate and seed noise together.
      auto ci = bootstrap_mean_ci95(aps[c], opt.bootstrap, opt.seed);
      s.lo = ci.first, s.hi = ci.second;
      s.significant = sig[c].first;
      s.members = sig[c].second;
      stat[fam][c] = s;
    }
  }
  if (fam_names.empty() || compounds.empty()) return "";
  // Compounds grouped by phenotype class (when known), in ID order within a class.
  std::vector<std::string> order(compounds.begin(), compounds.end());
  auto cls = [&](const std::string& c) { auto it = st.phenotype.find(c); return it == st.phenotype.end() ? std::string("") : it->second; };
  std::stable_sort(order.begin(), order.end(), [&](const std::string& a, const std::string& b) { return cls(a) < cls(b); });

  const double bw = std::clamp(26.0 / static_cast<double>(fam_names.size()), 3.0, 9.0);
  const double group = bw * static_cast<double>(fam_names.size()) + 8;
  const double L = 56, T = 54, B = 96, R = 20;
  const double W = std::max(L + group * static_cast<double>(order.size()) + R, 560.0), H = 360;
  auto Y = [&](double v) { return T + (1 - v) * (H - T - B); };
  std::ostringstream s;
  s << std::fixed << std::setprecision(1)
    << svg_open(W, H, "Per-compound replicate mAP against DMSO (each model's feature output)", W / 2);
  axes(s, L, T, W - R, H - B, 0, 1, Y);
  ylabel(s, 14, (T + H - B) / 2, "mAP (bar: mean over seeds; whisker: 95 % CI)");
  // Legend on one row under the title.
  double lx = L;
  for (size_t f = 0; f < fam_names.size(); ++f) {
    s << "<rect x=\"" << lx << "\" y=\"28\" width=\"10\" height=\"10\" fill=\"" << kColors[f % 10] << "\"/><text x=\""
      << lx + 13 << "\" y=\"37\" font-size=\"10\">" << esc(fam_names[f]) << "</text>";
    lx += 20 + 6.0 * static_cast<double>(fam_names[f].size());
  }
  s << "<text x=\"" << lx + 6 << "\" y=\"37\" font-size=\"10\">* BH p &lt; 0.05 in every seed, + in some</text>";
  std::string last_cls;
  double cls_start = L;
  auto close_class = [&](double end) {
    if (last_cls.empty()) return;
    s << "<line x1=\"" << cls_start + 2 << "\" y1=\"" << H - 22 << "\" x2=\"" << end - 2 << "\" y2=\"" << H - 22
      << "\" stroke=\"#555\"/><text x=\"" << (cls_start + end) / 2 << "\" y=\"" << H - 8
      << "\" text-anchor=\"middle\" font-size=\"11\">" << esc(last_cls) << "</text>";
  };
  for (size_t c = 0; c < order.size(); ++c) {
    const double x0 = L + 4 + group * static_cast<double>(c);
    if (cls(order[c]) != last_cls) {
      close_class(x0 - 4);
      last_cls = cls(order[c]);
      cls_start = x0 - 4;
      if (c > 0)
        s << "<line x1=\"" << x0 - 4 << "\" y1=\"" << T << "\" x2=\"" << x0 - 4 << "\" y2=\"" << H - B
          << "\" stroke=\"#bbb\" stroke-dasharray=\"2,2\"/>";
    }
    for (size_t f = 0; f < fam_names.size(); ++f) {
      auto it = stat[fam_names[f]].find(order[c]);
      if (it == stat[fam_names[f]].end() || !std::isfinite(it->second.map)) continue;
      const CompoundStat& cs = it->second;
      const double x = x0 + bw * static_cast<double>(f);
      const double v = std::clamp(cs.map, 0.0, 1.0);
      s << "<rect x=\"" << x << "\" y=\"" << Y(v) << "\" width=\"" << bw - 0.5 << "\" height=\"" << Y(0) - Y(v)
        << "\" fill=\"" << kColors[f % 10] << "\"><title>" << esc(order[c] + " " + fam_names[f]) << ": mAP "
        << fmt(cs.map) << " [" << fmt(cs.lo) << ", " << fmt(cs.hi) << "], significant in " << cs.significant << "/"
        << cs.members << "</title></rect>";
      const double cx = x + bw / 2;
      s << "<line x1=\"" << cx << "\" y1=\"" << Y(std::clamp(cs.lo, 0.0, 1.0)) << "\" x2=\"" << cx << "\" y2=\""
        << Y(std::clamp(cs.hi, 0.0, 1.0)) << "\" stroke=\"#222\"/>";
      if (cs.significant > 0)
        s << "<text x=\"" << cx << "\" y=\"" << Y(std::clamp(cs.hi, 0.0, 1.0)) - 2
          << "\" text-anchor=\"middle\" font-size=\"9\">" << (cs.significant == cs.members ? "*" : "+") << "</text>";
    }
    std::string name = order[c];
    if (name.rfind("JCP2022_", 0) == 0) name = name.substr(8);
    s << "<text transform=\"translate(" << x0 + group / 2 - 6 << "," << H - B + 8 << ") rotate(60)\" font-size=\"9\">"
      << esc(name) << "</text>";
  }
  close_class(L + 4 + group * static_cast<double>(order.size()) - 4);
  s << "</svg>";
  std::ostringstream cap;
  cap << "Bars: each compound's mAP at the model's feature output (";
  for (size_t f = 0; f < fam_names.size(); ++f) cap << (f ? "; " : "") << esc(fam_names[f]) << ": " << esc(fam_layer[fam_names[f]]);
  cap << "), averaged over the seeds of an untrained family. Whiskers: 95 % percentile-bootstrap interval ("
      << opt.bootstrap << " resamples) of the mean over the compound's replicate APs, pooled over seeds. "
      << "* = Benjamini–Hochberg corrected p &lt; 0.05 in every seed, + = in some seeds.";
  *caption = cap.str();
  return s.str();
}

// ---- held-out prediction scatter (the paper's Figure 1b) ---------------------------------------------------------

struct Predictions {
  std::vector<std::string> key;     // patch|gene, in file order
  std::vector<std::string> gene;
  std::vector<double> predicted;
};

std::optional<Predictions> read_predictions(const Study& st, const Model& m, std::string* layer_out) {
  std::string layer = last_layer(st, m.shown, "tissue");
  std::string file = m.run + "/eval/tissue/" + m.label + "/" + layer + "/predictions/predictions.csv";
  if (layer.empty() || !fs::exists(file)) return std::nullopt;
  tabula::Table t = tabula::read_csv(file);
  Predictions p;
  const size_t id = t.index("patch_id"), g = t.index("target"), v = t.index("predicted");
  for (size_t r = 0; r < t.rows(); ++r) {
    p.key.push_back(t.at(r, id) + "|" + t.at(r, g));
    p.gene.push_back(t.at(r, g));
    p.predicted.push_back(t.number(r, v));
  }
  *layer_out = layer;
  return p;
}

// Each gene's predictions as z-scores across patches, so the scatter is not dominated by genes' mean levels and the
// pooled correlation of z-scores equals the mean over genes of the per-gene Pearson r.
std::vector<double> zscore_by_gene(const Predictions& p) {
  std::map<std::string, std::pair<double, double>> mom;  // gene -> (sum, count)
  for (size_t i = 0; i < p.gene.size(); ++i) mom[p.gene[i]].first += p.predicted[i], mom[p.gene[i]].second += 1;
  std::map<std::string, double> var;
  for (size_t i = 0; i < p.gene.size(); ++i) {
    double mu = mom[p.gene[i]].first / mom[p.gene[i]].second;
    var[p.gene[i]] += (p.predicted[i] - mu) * (p.predicted[i] - mu);
  }
  std::vector<double> z(p.predicted.size());
  for (size_t i = 0; i < z.size(); ++i) {
    const auto& [sum, n] = mom[p.gene[i]];
    double sd = std::sqrt(var[p.gene[i]] / n);
    z[i] = sd > 0 ? (p.predicted[i] - sum / n) / sd : NAN;
  }
  return z;
}

double pearson(const std::vector<double>& a, const std::vector<double>& b) {
  double ma = 0, mb = 0;
  size_t n = 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::isfinite(a[i]) && std::isfinite(b[i])) ma += a[i], mb += b[i], ++n;
  if (n < 2) return NAN;
  ma /= static_cast<double>(n), mb /= static_cast<double>(n);
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::isfinite(a[i]) && std::isfinite(b[i]))
      sab += (a[i] - ma) * (b[i] - mb), saa += (a[i] - ma) * (a[i] - ma), sbb += (b[i] - mb) * (b[i] - mb);
  return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : NAN;
}

// Mean over genes of the Pearson r between two models' predictions of that gene.
double mean_gene_r(const Predictions& a, const std::vector<double>& pb_by_a_order) {
  std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> by;
  for (size_t i = 0; i < a.gene.size(); ++i) by[a.gene[i]].first.push_back(a.predicted[i]), by[a.gene[i]].second.push_back(pb_by_a_order[i]);
  double s = 0;
  int n = 0;
  for (const auto& [g, ab] : by) {
    double r = pearson(ab.first, ab.second);
    if (std::isfinite(r)) s += r, ++n;
  }
  return n ? s / n : NAN;
}

std::string scatter(const std::string& title, const std::string& xl, const std::string& yl, const std::vector<double>& x,
                    const std::vector<double>& y, double r) {
  const double W = 380, H = 330, L = 52, T = 30, B = 44, R = 14;
  double lo = -3.5, hi = 3.5;
  auto X = [&](double v) { return L + (std::clamp(v, lo, hi) - lo) / (hi - lo) * (W - L - R); };
  auto Y = [&](double v) { return T + (1 - (std::clamp(v, lo, hi) - lo) / (hi - lo)) * (H - T - B); };
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << svg_open(W, H, title, W / 2);
  axes(s, L, T, W - R, H - B, lo, hi, Y);
  s << "<line x1=\"" << X(lo) << "\" y1=\"" << Y(lo) << "\" x2=\"" << X(hi) << "\" y2=\"" << Y(hi)
    << "\" stroke=\"#999\" stroke-dasharray=\"4,3\"/>";
  // At most ~1500 points drawn (every k-th, deterministic); r uses all of them.
  size_t step = std::max<size_t>(1, x.size() / 1500);
  for (size_t i = 0; i < x.size(); i += step)
    if (std::isfinite(x[i]) && std::isfinite(y[i]))
      s << "<circle cx=\"" << X(x[i]) << "\" cy=\"" << Y(y[i]) << "\" r=\"1.3\" fill=\"#1f77b4\" fill-opacity=\"0.35\"/>";
  s << "<text x=\"" << L + 8 << "\" y=\"" << T + 14 << "\" font-size=\"12\">r = " << fmt(r, 3) << "</text>"
    << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 10 << "\" text-anchor=\"middle\" font-size=\"11\">" << esc(xl)
    << "</text>";
  ylabel(s, 14, (T + H - B) / 2, yl);
  s << "</svg>";
  return s.str();
}

std::string prediction_panels(const Study& st, std::string* caption) {
  std::vector<std::pair<const Model*, const Model*>> pairs;
  bool trained = false;
  for (const Model& t : st.models)
    if (t.kind == "trained")
      for (const Model& u : st.models)
        if (u.kind == "untrained") {
          // Same architecture: the untrained twin of the trained model.
          json::Value a = json::parse_file(t.provenance.at(0).second), b = json::parse_file(u.provenance.at(0).second);
          if (a.find("arch")->as_string() == b.find("arch")->as_string()) {
            pairs.push_back({&t, &u}), trained = true;
            break;
          }
        }
  if (!trained) {
    // No trained weights in the study: each untrained family's first seed against the structure-only baseline.
    const Model* nuclei = nullptr;
    for (const Model& m : st.models)
      if (m.kind == "baseline" && m.label.rfind("nuclei", 0) == 0) nuclei = &m;
    std::set<std::string> done;
    for (const Model& m : st.models)
      if (m.kind == "untrained" && nuclei && done.insert(m.family).second) pairs.push_back({&m, nuclei});
  }
  std::ostringstream out;
  int panels = 0;
  for (const auto& [a, b] : pairs) {
    std::string la, lb;
    auto pa = read_predictions(st, *a, &la), pb = read_predictions(st, *b, &lb);
    if (!pa || !pb) continue;
    std::map<std::string, double> bmap;
    for (size_t i = 0; i < pb->key.size(); ++i) bmap[pb->key[i]] = pb->predicted[i];
    std::vector<double> b_in_a(pa->key.size(), NAN);
    for (size_t i = 0; i < pa->key.size(); ++i)
      if (auto it = bmap.find(pa->key[i]); it != bmap.end()) b_in_a[i] = it->second;
    Predictions pb_aligned = *pa;
    pb_aligned.predicted = b_in_a;
    std::vector<double> za = zscore_by_gene(*pa), zb = zscore_by_gene(pb_aligned);
    double r = mean_gene_r(*pa, b_in_a);
    out << scatter("Predictions: " + b->shown + " vs " + a->shown, a->shown + " (" + la + "), z per gene",
                   b->shown + " (" + lb + "), z per gene", za, zb, r)
        << "\n";
    ++panels;
  }
  if (!panels) return "";
  *caption = std::string(trained ? "Trained vs untrained: " : "No trained weights in this study, so each untrained network is paired with the structure-only nuclei baseline: ") +
             "each point is one tissue patch and gene; x and y are the two models' held-out (patient-level fold) ridge "
             "predictions of log1p expression, z-scored per gene. r is the mean over genes of the Pearson correlation "
             "between the two models' predictions: near 1, the models predict the same thing whatever their features.";
  return out.str();
}

// ---- "within noise" notes -------------------------------------------------------------------------------------------

// Per-unit values of a metric for one model at one layer: compounds' mAP for "mAP <class>", genes' mean-over-folds
// Pearson r for the ridge probe. Empty when the metric has no per-unit file.
std::vector<double> units(const Study& st, const Model& m, const std::string& dataset, const std::string& metric,
                          const std::string& layer) {
  std::vector<double> v;
  if (dataset == "cellpainting" && metric.rfind("mAP ", 0) == 0) {
    const std::string cls = metric.substr(4);
    auto f = read_map(m.run + "/eval/cellpainting/" + m.label + "/" + layer + "/map");
    if (!f) return v;
    for (const auto& [c, x] : f->map) {
      auto it = st.phenotype.find(c);
      if (it != st.phenotype.end() && it->second == cls) v.push_back(x);
    }
  } else if (dataset == "tissue" && metric == "expression Pearson r (ridge)") {
    std::string file = m.run + "/eval/tissue/" + m.label + "/" + layer + "/ridge/regress.csv";
    if (!fs::exists(file)) return v;
    tabula::Table t = tabula::read_csv(file);
    std::map<std::string, std::pair<double, int>> g;
    for (size_t r = 0; r < t.rows(); ++r) {
      double x = t.number(r, t.index("pearson"));
      if (std::isfinite(x)) g[t.at(r, t.index("target"))].first += x, g[t.at(r, t.index("target"))].second += 1;
    }
    for (const auto& [name, sn] : g) v.push_back(sn.first / sn.second);
  }
  return v;
}

std::vector<NoiseNote> noise_notes(const Study& st, const ReportOptions& opt) {
  std::vector<NoiseNote> notes;
  std::vector<std::pair<std::string, std::string>> metrics;
  for (const Row& r : st.rows)
    if (std::find(metrics.begin(), metrics.end(), std::make_pair(r.dataset, r.metric)) == metrics.end())
      metrics.push_back({r.dataset, r.metric});
  auto fams = families(st);
  for (const auto& [ds, metric] : metrics) {
    for (const Model& b : st.models) {
      if (b.kind != "baseline") continue;
      std::string bl = last_layer(st, b.shown, ds);
      std::vector<double> bu = units(st, b, ds, metric, bl);
      if (bu.size() < 2) continue;
      auto bci = bootstrap_mean_ci95(bu, opt.bootstrap, opt.seed);
      double bv = 0;
      for (double x : bu) bv += x;
      bv /= static_cast<double>(bu.size());
      for (const auto& [fam, members] : fams) {
        if (members[0]->kind == "baseline") continue;
        // The family's best layer: highest mean over its seeds (the comparison most favourable to the network).
        std::map<std::string, std::pair<double, int>> by_layer;
        std::vector<std::string> layer_order;
        for (const Row& r : st.rows)
          for (const Model* m : members)
            if (r.model == m->shown && r.dataset == ds && r.metric == metric && std::isfinite(r.value)) {
              if (!by_layer.count(r.layer)) layer_order.push_back(r.layer);
              by_layer[r.layer].first += r.value, by_layer[r.layer].second += 1;
            }
        std::string best;
        double best_v = -INFINITY;
        for (const std::string& l : layer_order) {
          double v = by_layer[l].first / by_layer[l].second;
          if (v > best_v) best_v = v, best = l;
        }
        if (best.empty()) continue;
        double lo = INFINITY, hi = -INFINITY, sum = 0;
        int n = 0;
        for (const Model* m : members) {
          std::vector<double> u = units(st, *m, ds, metric, best);
          if (u.size() < 2) continue;
          auto ci = bootstrap_mean_ci95(u, opt.bootstrap, opt.seed);
          lo = std::min(lo, ci.first), hi = std::max(hi, ci.second);
          for (double x : u) sum += x / static_cast<double>(u.size());
          ++n;
        }
        if (!n) continue;
        NoiseNote note;
        note.metric = ds + ": " + metric;
        note.baseline = b.shown;
        note.family = fam;
        note.family_layer = best;
        note.baseline_value = bv, note.baseline_lo = bci.first, note.baseline_hi = bci.second;
        note.family_value = sum / n, note.family_lo = lo, note.family_hi = hi;
        note.verdict = bci.second < lo ? "below" : bci.first > hi ? "exceeds" : "matches";
        std::ostringstream t;
        t << "<b>" << esc(b.shown) << "</b> " << (note.verdict == "matches" ? "matches" : note.verdict == "exceeds" ? "beats" : "falls below")
          << " <b>" << esc(fam) << "</b> on <i>" << esc(note.metric) << "</i>"
          << (note.verdict == "matches" ? " within noise" : "") << ": " << fmt(bv) << " [" << fmt(bci.first) << ", "
          << fmt(bci.second) << "] vs " << fmt(note.family_value) << " [" << fmt(lo) << ", " << fmt(hi) << "] at its best layer ("
          << esc(best) << ")" << (note.verdict == "matches" ? " — the intervals overlap." : " — the intervals do not overlap.");
        note.text = t.str();
        notes.push_back(note);
      }
    }
  }
  return notes;
}

// The file a summary.csv number was read from, relative to its study folder.
std::string source_of(const Row& r, const Model& m) {
  const std::string base = "eval/" + r.dataset + "/" + m.label + "/" + r.layer + "/";
  if (r.metric.rfind("mAP ", 0) == 0 || r.metric.rfind("retrieved ", 0) == 0) return base + "map/mean_average_precision.csv";
  if (r.metric.rfind("MoA recall", 0) == 0) return base + "recall/summary.json";
  if (r.metric.rfind("MoA kNN", 0) == 0) return base + "knn/summary.json";
  if (r.metric.find("(ridge)") != std::string::npos) return base + "ridge/summary.json";
  if (r.metric.find("(1-NN)") != std::string::npos) return base + "knn/summary.json";
  return "summary.csv";
}

std::string provenance_table(const Study& st) {
  std::ostringstream h;
  h << "<table><tr><th>model</th><th>dataset</th><th>arch</th><th>weights</th><th>tabula</th><th>preprocessing</th>"
    << "<th>channels</th><th>pool</th><th>precision</th><th>device</th><th>threads</th><th>data (rows, sha256)</th></tr>\n";
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
        if (kind == "untrained") weights = "seed " + str(w->find("seed")) + "; " + str(w->find("init"));
        else if (kind == "file") weights = "sha256 " + str(w->find("sha256")) + " (" + fs::path(str(w->find("path"))).filename().string() + ")";
        else weights = kind;
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
      h << "<tr id=\"" << esc(id) << "\"><td>" << esc(m.shown) << "</td><td>" << esc(ds) << "</td><td>" << esc(str(v.find("arch")))
        << "</td><td>" << esc(weights) << "</td><td>" << esc(tab) << "</td><td>" << esc(str(v.find("preprocessing")))
        << "</td><td>" << esc(str(v.find("channels"))) << "</td><td>" << esc(str(v.find("pool"))) << "</td><td>"
        << esc(str(v.find("precision"))) << "</td><td>" << esc(str(v.find("device"))) << "</td><td>"
        << esc(str(v.find("threads"))) << "</td><td>" << esc(data) << "</td></tr>\n";
    }
  h << "</table>\n";
  return h.str();
}

}  // namespace

ReportResult write_report(const ReportOptions& opt) {
  if (opt.out.empty()) throw std::invalid_argument("tabula report: no output file (--out report.html)");
  Study st = load_study(opt);
  ReportResult res;
  std::vector<std::string> labels;
  for (const Model& m : st.models) labels.push_back(m.shown);
  std::vector<std::pair<std::string, std::string>> metrics;  // (dataset, metric) in first-seen order
  for (const Row& r : st.rows)
    if (std::find(metrics.begin(), metrics.end(), std::make_pair(r.dataset, r.metric)) == metrics.end())
      metrics.push_back({r.dataset, r.metric});
  auto count_svg = [&](const std::string& s) {
    for (size_t p = 0; (p = s.find("<svg", p)) != std::string::npos; ++p) ++res.panels;
  };

  std::ostringstream html;
  html << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>tabula report</title>"
       << "<style>body{font-family:sans-serif;max-width:1240px;margin:20px auto;color:#222}"
       << ".grid{display:flex;flex-wrap:wrap;gap:12px}table{border-collapse:collapse;font-size:12px}"
       << "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}th{background:#f3f3f3}"
       << "td{max-width:280px;overflow-wrap:anywhere}td.num{text-align:right}"
       << ".cap{font-size:13px;color:#444;max-width:1100px}"
       << ".note{margin:4px 0}</style></head><body>\n"
       << "<h1>" << esc(opt.title) << "</h1>\n<p>Study folder" << (opt.runs.size() > 1 ? "s" : "") << ": ";
  for (size_t i = 0; i < opt.runs.size(); ++i) html << (i ? ", " : "") << "<code>" << esc(opt.runs[i]) << "</code>";
  html << ". Networks marked <i>untrained</i> use the random initialisation PyTorch builds for their seed; "
       << "<code>pixels</code> and <code>nuclei</code> are non-learned baselines (dashed lines). Each curve shows a "
       << "metric at every layer, from the first stage (left) to the feature output (right).</p>\n";

  // 1. Per-layer curves (Figure 2).
  std::string last_ds;
  for (const auto& [ds, metric] : metrics) {
    if (ds != last_ds) {
      html << (last_ds.empty() ? "" : "</div>\n") << "<h2>"
           << (ds == "tissue" ? "Tissue: expression prediction by layer"
               : ds == "cellpainting" ? "Cell Painting: replicate retrieval, MoA recall and classification by layer"
                                      : esc(ds) + ": metrics by layer")
           << "</h2><div class=\"grid\">\n";
      last_ds = ds;
    }
    std::vector<Row> sel;
    for (const Row& r : st.rows)
      if (r.dataset == ds && r.metric == metric) sel.push_back(r);
    std::string chart =
        line_chart(metric, metric.rfind("retrieved", 0) == 0 ? "fraction of compounds (BH p < 0.05)" : metric, sel, labels);
    count_svg(chart);
    html << chart << "\n";
  }
  if (!last_ds.empty()) html << "</div>\n";

  // 2. Per-compound bars (Figure 3).
  std::string caption;
  std::string bars = compound_bars(st, opt, &caption);
  if (!bars.empty()) {
    count_svg(bars);
    html << "<h2>Which compounds are retrieved?</h2>\n" << bars << "\n<p class=\"cap\">" << caption << "</p>\n";
  }

  // 3. Prediction scatter (Figure 1b).
  std::string scap;
  std::string scatters = prediction_panels(st, &scap);
  if (!scatters.empty()) {
    count_svg(scatters);
    html << "<h2>Do different representations predict the same thing?</h2><div class=\"grid\">\n" << scatters
         << "</div><p class=\"cap\">" << scap << "</p>\n";
  }

  // 4. CKA.
  if (!st.cka.empty()) {
    html << "<h2>Layer × layer CKA between models</h2><div class=\"grid\">\n";
    for (const auto& [title, file] : st.cka) {
      std::string h = cka_heatmap("linear CKA: " + title, tabula::read_csv(file));
      count_svg(h);
      html << h << "\n";
    }
    html << "</div><p class=\"cap\">Linear CKA between every layer of one model (rows) and every layer of the other "
         << "(columns) on the same images: 1 = the same representation up to rotation and scale.</p>\n";
  }

  // 5. Within-noise notes.
  res.notes = noise_notes(st, opt);
  html << "<h2>Where a baseline matches a network within noise</h2>\n<p class=\"cap\"><b>Within noise</b> means the "
       << "two 95 % intervals overlap. A baseline's interval is the percentile bootstrap (" << opt.bootstrap
       << " resamples, seed " << opt.seed << ") of its score's mean over the evaluation units: compounds of the "
       << "phenotype class for mAP, genes (each averaged over the patient folds) for the ridge Pearson r. A network "
       << "family is compared at its best layer (the highest mean over its seeds — the comparison most favourable to "
       << "the network), and its interval is the union of its seeds' bootstrap intervals, so it covers seed-to-seed "
       << "variation too. Overlapping intervals are a conservative test: they say the data cannot tell the two apart, "
       << "not that they are equal.</p>\n";
  // One sentence per (metric, baseline) naming every network family it matches.
  int matches = 0;
  std::vector<std::pair<std::string, std::string>> keys;
  for (const NoiseNote& n : res.notes)
    if (n.verdict == "matches" && std::find(keys.begin(), keys.end(), std::make_pair(n.metric, n.baseline)) == keys.end())
      keys.push_back({n.metric, n.baseline});
  for (const auto& [metric, baseline] : keys) {
    std::ostringstream p;
    int k = 0;
    for (const NoiseNote& n : res.notes) {
      if (n.verdict != "matches" || n.metric != metric || n.baseline != baseline) continue;
      if (!k) p << "<i>" << esc(metric) << "</i>: <b>" << esc(baseline) << "</b> (" << fmt(n.baseline_value) << " ["
                << fmt(n.baseline_lo) << ", " << fmt(n.baseline_hi) << "]) is within noise of ";
      p << (k ? "; " : "") << "<b>" << esc(n.family) << "</b> (" << fmt(n.family_value) << " [" << fmt(n.family_lo) << ", "
        << fmt(n.family_hi) << "] at " << esc(n.family_layer) << ")";
      ++k, ++matches;
    }
    html << "<p class=\"note\">" << p.str() << ".</p>\n";
  }
  if (!matches) html << "<p class=\"note\">No baseline matches a network within noise on the metrics with per-unit values.</p>\n";
  bool other = false;
  for (const NoiseNote& n : res.notes)
    if (n.verdict != "matches") {
      if (!other) html << "<details><summary>Comparisons that are not within noise</summary>\n", other = true;
      html << "<p class=\"note\">" << n.text << "</p>\n";
    }
  if (other) html << "</details>\n";

  // 6. How to read it.
  html << "<h2>How to read it</h2><ul>"
       << "<li><b>mAP &lt;class&gt;</b>: mean over the compounds of a phenotype class of their replicate mAP against "
       << "DMSO (copairs semantics). <b>retrieved &lt;class&gt;</b>: fraction of those compounds with Benjamini–Hochberg "
       << "corrected p &lt; 0.05. Density-only compounds change only the cell count, so the <code>nuclei</code> baseline "
       << "retrieves them too; intensity-only compounds are a shortcut any representation sees; <b>none</b> are inactive "
       << "compounds, so anything above 0 retrieved is a false positive.</li>"
       << "<li><b>MoA recall</b>: EFAAR known-relationship recall at the (0.05, 0.95) similarity quantiles. "
       << "<b>MoA kNN top-1</b>: DINOv2-style kNN classification of the mechanism, one plate held out at a time.</li>"
       << "<li><b>expression Pearson r</b>: HEST-style ridge probe (StandardScaler → PCA → ridge) and 1-NN regression of "
       << "log1p expression, folds by patient; the mean over genes and folds.</li>"
       << "<li>A baseline line at or above a network's curve means the network's score can be explained without "
       << "learned features.</li></ul>\n";

  // 7. Provenance and every number.
  html << "<h2>Provenance</h2><p class=\"cap\">Every embedding's <code>run.json</code>: architecture, the weights "
       << "(seed and initialisation scheme, or the file's SHA-256), the tabula version and git hash that computed it, "
       << "preprocessing, channel strategy, pooling, precision, device and threads.</p>\n"
       << provenance_table(st);
  html << "<h2>Every number</h2><table><tr><th>dataset</th><th>model</th><th>layer</th><th>metric</th><th>value</th>"
       << "<th>from (relative to the study folder)</th></tr>\n";
  for (const Row& r : st.rows) {
    const Model* m = find_model(st, r.model);
    html << "<tr><td>" << esc(r.dataset) << "</td><td>" << esc(r.model) << "</td><td>" << esc(r.layer) << "</td><td>"
         << esc(r.metric) << "</td><td class=\"num\">" << fmt(r.value, 4) << "</td><td><code>"
         << esc(m ? source_of(r, *m) : "summary.csv") << "</code></td></tr>\n";
  }
  html << "</table>\n</body></html>\n";
  res.html_path = opt.out;
  if (fs::path(opt.out).has_parent_path()) fs::create_directories(fs::path(opt.out).parent_path());
  write_file_atomic(opt.out, html.str());
  return res;
}

}  // namespace tabula
