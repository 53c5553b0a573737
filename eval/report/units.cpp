// Per-unit values of the study's metrics (what the bootstrap intervals resample) and chance levels.
#include <algorithm>
#include <filesystem>
#include <set>

#include "eval/report/internal.h"
#include "util/table.h"

namespace tabula::report {

namespace fs = std::filesystem;

std::optional<MapFiles> read_map(const std::string& dir, const std::string& compound_col) {
  if (!fs::exists(dir + "/mean_average_precision.csv") || !fs::exists(dir + "/average_precision.csv"))
    return std::nullopt;
  MapFiles f;
  tabula::Table m = tabula::read_csv(dir + "/mean_average_precision.csv");
  const bool ref = m.has("Metadata_Reference_Index");
  const size_t id = m.index(compound_col), v = m.index("mean_average_precision"), sig = m.index("below_corrected_p");
  for (size_t r = 0; r < m.rows(); ++r) {
    if (ref && m.at(r, m.index("Metadata_Reference_Index")) != "-1") continue;  // controls are their own references
    f.map[m.at(r, id)] = m.number(r, v);
    f.significant[m.at(r, id)] = m.at(r, sig) == "True";
  }
  tabula::Table a = tabula::read_csv(dir + "/average_precision.csv");
  const size_t aid = a.index(compound_col), ap = a.index("average_precision");
  for (size_t r = 0; r < a.rows(); ++r)
    if (f.map.count(a.at(r, aid)) && a.at(r, ap) != "nan" && !a.at(r, ap).empty())
      f.aps[a.at(r, aid)].push_back(a.number(r, ap));
  return f;
}

namespace {

// Mean over folds of each target's Pearson r in a regress.csv (fold, target, pearson, ...).
std::vector<double> target_means(const std::string& file) {
  std::vector<double> v;
  if (!fs::exists(file)) return v;
  tabula::Table t = tabula::read_csv(file);
  std::map<std::string, std::pair<double, int>> g;
  for (size_t r = 0; r < t.rows(); ++r) {
    double x = t.number(r, t.index("pearson"));
    if (std::isfinite(x)) g[t.at(r, t.index("target"))].first += x, g[t.at(r, t.index("target"))].second += 1;
  }
  for (const auto& [name, sn] : g) v.push_back(sn.first / sn.second);
  return v;
}

}  // namespace

std::vector<double> units(const Study& st, const Model& m, const std::string& dataset, const std::string& metric,
                          const std::string& layer) {
  std::vector<double> v;
  const std::string ev = eval_dir(m, dataset, layer);
  const bool map = metric == "mAP" || metric.rfind("mAP ", 0) == 0;
  const bool retrieved = metric == "retrieved" || metric.rfind("retrieved ", 0) == 0;
  if (map || retrieved) {
    const std::string cls = metric.find(' ') == std::string::npos ? "" : metric.substr(metric.find(' ') + 1);
    auto f = read_map(ev + "/map", compound_column(st, dataset));
    if (!f) return v;
    for (const auto& [c, x] : f->map) {
      if (!cls.empty()) {
        auto it = st.phenotype.find(c);
        if (it == st.phenotype.end() || it->second != cls) continue;
      }
      v.push_back(map ? x : f->significant.at(c) ? 1.0 : 0.0);
    }
  } else if (metric.find("Pearson r (ridge)") != std::string::npos) {
    v = target_means(ev + "/ridge/regress.csv");
  } else if (metric.find("Pearson r (1-NN)") != std::string::npos) {
    v = target_means(ev + "/regress-1nn/regress.csv");
  } else if (metric.find(" kNN top-1") != std::string::npos && fs::exists(ev + "/knn/predictions.csv")) {
    tabula::Table t = tabula::read_csv(ev + "/knn/predictions.csv");
    if (t.cols() < 3) return v;
    for (size_t r = 0; r < t.rows(); ++r) v.push_back(t.at(r, 1) == t.at(r, t.cols() - 1) ? 1.0 : 0.0);
  }
  return v;
}

double chance_level(const Study& st, const std::string& dataset, const std::string& metric) {
  if (metric.find("Pearson r") != std::string::npos) return 0;
  if (metric.find("recall (0.05, 0.95)") != std::string::npos) return 0.1;       // 5 % + 5 % of random pairs
  if (metric == "retrieved" || metric.rfind("retrieved ", 0) == 0) return 0.05;  // the significance level
  for (const Model& m : st.models) {
    const std::string layer = last_layer(st, m.shown, dataset);
    if (layer.empty()) continue;
    const std::string ev = eval_dir(m, dataset, layer);
    if ((metric == "mAP" || metric.rfind("mAP ", 0) == 0) && fs::exists(ev + "/map/average_precision.csv")) {
      // A random ranking's expected precision: the fraction of positives among the ranked pairs.
      tabula::Table a = tabula::read_csv(ev + "/map/average_precision.csv");
      double s = 0;
      int n = 0;
      for (size_t r = 0; r < a.rows(); ++r) {
        const double pos = a.number(r, a.index("n_pos_pairs")), tot = a.number(r, a.index("n_total_pairs"));
        if (pos > 0 && tot > 0) s += pos / tot, ++n;
      }
      return n ? s / n : NAN;
    }
    const bool knn = metric.find(" kNN top-1") != std::string::npos;
    if ((knn || metric.find(" linear probe top-1") != std::string::npos) && fs::exists(ev + "/knn/predictions.csv")) {
      tabula::Table t = tabula::read_csv(ev + "/knn/predictions.csv");
      if (t.cols() < 2) return NAN;
      std::set<std::string> classes(t.column(1).begin(), t.column(1).end());
      return classes.empty() ? NAN : 1.0 / static_cast<double>(classes.size());
    }
  }
  return NAN;
}

}  // namespace tabula::report
