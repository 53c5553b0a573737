// Which compounds are retrieved (the paper's Figure 3) and do two representations predict the same thing (Figure
// 1b): per-compound mAP bars with bootstrap whiskers, held-out prediction scatters.
#include <algorithm>
#include <filesystem>
#include <iomanip>
#include <set>

#include "eval/report/internal.h"
#include "util/json.h"
#include "util/table.h"

namespace tabula::report {

namespace fs = std::filesystem;

namespace {

struct CompoundStat {
  double map = NAN, lo = NAN, hi = NAN;
  int significant = 0, members = 0;  // seeds with BH-corrected p < 0.05
};

}  // namespace

std::string compound_bars(const Study& st, const ReportOptions& opt, std::string* caption) {
  auto fams = families(st);
  // The first dataset with replicate mAP.
  std::string ds;
  for (const DatasetInfo& d : st.datasets)
    if (!d.compound_col.empty() && ds.empty()) ds = d.name;
  if (ds.empty()) return "";
  std::vector<std::string> fam_names;
  std::map<std::string, std::string> fam_colour;
  std::map<std::string, std::map<std::string, CompoundStat>> stat;  // family -> compound -> stat
  std::set<std::string> compounds;
  std::map<std::string, std::string> fam_layer;
  for (const auto& [fam, members] : fams) {
    std::map<std::string, std::vector<double>> maps, aps;
    std::map<std::string, std::pair<int, int>> sig;
    std::string layers;
    for (const Model* m : members) {
      std::string layer = last_layer(st, m->shown, ds);
      if (layer.empty()) continue;
      auto f = read_map(eval_dir(*m, ds, layer) + "/map", compound_column(st, ds));
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
    fam_colour[fam] = members[0]->style.colour;
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
  auto cls = [&](const std::string& c) {
    auto it = st.phenotype.find(c);
    return it == st.phenotype.end() ? std::string("") : it->second;
  };
  std::stable_sort(order.begin(), order.end(),
                   [&](const std::string& a, const std::string& b) { return cls(a) < cls(b); });

  const double bw = std::clamp(26.0 / static_cast<double>(fam_names.size()), 3.0, 9.0);
  const double group = bw * static_cast<double>(fam_names.size()) + 8;
  const double L = 56, T = 54, B = 96, R = 20;
  double legend_w = L + 240;  // the legend row: one swatch and name per family, then the significance key
  for (const std::string& f : fam_names) legend_w += 20 + 6.0 * static_cast<double>(f.size());
  const double W = std::max({L + group * static_cast<double>(order.size()) + R, 560.0, legend_w}), H = 360;
  auto Y = [&](double v) { return T + (1 - v) * (H - T - B); };
  std::ostringstream s;
  s << std::fixed << std::setprecision(1)
    << svg_open("compound-bars", W, H, "Per-compound replicate mAP against the controls (each model's feature output)",
                W / 2);
  axes(s, L, T, W - R, H - B, 0, 1, Y);
  ylabel(s, 14, (T + H - B) / 2, "mAP (bar: mean over seeds; whisker: 95 % CI)");
  // Legend on one row under the title.
  double lx = L;
  for (size_t f = 0; f < fam_names.size(); ++f) {
    s << "<rect x=\"" << lx << "\" y=\"28\" width=\"10\" height=\"10\" fill=\"" << fam_colour[fam_names[f]]
      << "\"/><text x=\"" << lx + 13 << "\" y=\"37\" font-size=\"10\">" << esc(fam_names[f]) << "</text>";
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
        << "\" fill=\"" << fam_colour[fam_names[f]] << "\"><title>" << esc(order[c] + " " + fam_names[f]) << ": mAP "
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
  for (size_t f = 0; f < fam_names.size(); ++f)
    cap << (f ? "; " : "") << esc(fam_names[f]) << ": " << esc(fam_layer[fam_names[f]]);
  cap << "), averaged over the seeds of an untrained family. Whiskers: 95 % percentile-bootstrap interval ("
      << opt.bootstrap << " resamples) of the mean over the compound's replicate APs, pooled over seeds. "
      << "* = Benjamini–Hochberg corrected p &lt; 0.05 in every seed, + = in some seeds.";
  *caption = cap.str();
  return s.str();
}

namespace {

// ---- held-out prediction scatter (the paper's Figure 1b) ---------------------------------------------------------

struct Predictions {
  std::vector<std::string> key;  // patch|gene, in file order
  std::vector<std::string> gene;
  std::vector<double> predicted;
};

std::optional<Predictions> read_predictions(const Study& st, const Model& m, std::string* layer_out) {
  std::string layer, file;
  for (const DatasetInfo& d : st.datasets) {
    if (d.targets.empty() && d.name != "tissue") continue;
    layer = last_layer(st, m.shown, d.name);
    file = eval_dir(m, d.name, layer) + "/predictions/predictions.csv";
    break;
  }
  if (layer.empty() || !fs::exists(file)) return std::nullopt;
  tabula::Table t = tabula::read_csv(file);
  Predictions p;
  const size_t id = 0, g = t.index("target"), v = t.index("predicted");
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
  for (size_t i = 0; i < a.gene.size(); ++i)
    by[a.gene[i]].first.push_back(a.predicted[i]), by[a.gene[i]].second.push_back(pb_by_a_order[i]);
  double s = 0;
  int n = 0;
  for (const auto& [g, ab] : by) {
    double r = pearson(ab.first, ab.second);
    if (std::isfinite(r)) s += r, ++n;
  }
  return n ? s / n : NAN;
}

std::string scatter(const std::string& id, const std::string& title, const std::string& xl, const std::string& yl,
                    const std::vector<double>& x, const std::vector<double>& y, double r) {
  const double W = 380, H = 330, L = 52, T = 30, B = 44, R = 14;
  double lo = -3.5, hi = 3.5;
  auto X = [&](double v) { return L + (std::clamp(v, lo, hi) - lo) / (hi - lo) * (W - L - R); };
  auto Y = [&](double v) { return T + (1 - (std::clamp(v, lo, hi) - lo) / (hi - lo)) * (H - T - B); };
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << svg_open(id, W, H, title, W / 2);
  axes(s, L, T, W - R, H - B, lo, hi, Y);
  s << "<line x1=\"" << X(lo) << "\" y1=\"" << Y(lo) << "\" x2=\"" << X(hi) << "\" y2=\"" << Y(hi)
    << "\" stroke=\"#999\" stroke-dasharray=\"4,3\"/>";
  // At most ~1500 points drawn (every k-th, deterministic); r uses all of them.
  size_t step = std::max<size_t>(1, x.size() / 1500);
  for (size_t i = 0; i < x.size(); i += step)
    if (std::isfinite(x[i]) && std::isfinite(y[i]))
      s << "<circle cx=\"" << X(x[i]) << "\" cy=\"" << Y(y[i])
        << "\" r=\"1.3\" fill=\"#1f77b4\" fill-opacity=\"0.35\"/>";
  s << "<text x=\"" << L + 8 << "\" y=\"" << T + 14 << "\" font-size=\"12\">r = " << fmt(r, 3) << "</text>"
    << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 10 << "\" text-anchor=\"middle\" font-size=\"11\">"
    << esc(xl) << "</text>";
  ylabel(s, 14, (T + H - B) / 2, yl);
  s << "</svg>";
  return s.str();
}

}  // namespace

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
    out << scatter("scatter-" + slug(a->shown + "-" + b->shown), "Predictions: " + b->shown + " vs " + a->shown,
                   a->shown + " (" + la + "), z per gene", b->shown + " (" + lb + "), z per gene", za, zb, r)
        << "\n";
    ++panels;
  }
  if (!panels) return "";
  *caption = std::string(trained ? "Trained vs untrained: "
                                 : "No trained weights in this study, so each untrained network is paired with the "
                                   "structure-only nuclei baseline: ") +
             "each point is one tissue patch and gene; x and y are the two models' held-out (patient-level fold) ridge "
             "predictions of log1p expression, z-scored per gene. r is the mean over genes of the Pearson correlation "
             "between the two models' predictions: near 1, the models predict the same thing whatever their features.";
  return out.str();
}

}  // namespace tabula::report
