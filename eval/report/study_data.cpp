// The study as the report reads it: summary.csv + study.json + each model's run.json, or a plain folder of
// `tabula eval` outputs (every summary.json and cka.csv under it).
#include <algorithm>
#include <filesystem>
#include <set>
#include <stdexcept>

#include "eval/report/internal.h"
#include "util/json.h"
#include "util/table.h"

namespace tabula::report {

namespace fs = std::filesystem;

const Model* find_model(const Study& st, const std::string& shown) {
  for (const Model& m : st.models)
    if (m.shown == shown) return &m;
  return nullptr;
}

const DatasetInfo* find_dataset(const Study& st, const std::string& name) {
  for (const DatasetInfo& d : st.datasets)
    if (d.name == name) return &d;
  return nullptr;
}

std::string last_layer(const Study& st, const std::string& shown, const std::string& dataset) {
  for (const Row& r : st.rows)
    if (r.model == shown && r.dataset == dataset && r.layer_index == r.layers - 1) return r.layer;
  return "";
}

std::vector<std::pair<std::string, std::vector<const Model*>>> families(const Study& st) {
  std::vector<std::pair<std::string, std::vector<const Model*>>> out;
  for (const Model& m : st.models) {
    auto it = std::find_if(out.begin(), out.end(), [&](const auto& f) { return f.first == m.family; });
    if (it == out.end())
      out.push_back({m.family, {&m}});
    else
      it->second.push_back(&m);
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> metric_list(const Study& st) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const Row& r : st.rows)
    if (std::find(out.begin(), out.end(), std::make_pair(r.dataset, r.metric)) == out.end())
      out.push_back({r.dataset, r.metric});
  return out;
}

std::string eval_dir(const Model& m, const std::string& dataset, const std::string& layer) {
  return m.run + "/eval/" + dataset + "/" + m.label + "/" + layer;
}

std::string compound_column(const Study& st, const std::string& dataset) {
  const DatasetInfo* d = find_dataset(st, dataset);
  return d && !d->compound_col.empty() ? d->compound_col : "Metadata_JCP2022";
}

namespace {

std::string tag_of(const std::string& run) {
  const fs::path p = fs::path(run).lexically_normal();
  return p.filename().string().empty() ? p.parent_path().filename().string() : p.filename().string();
}

// study.json, or the demo's columns for a demo folder written before study.json existed.
std::vector<DatasetInfo> read_datasets(const std::string& run) {
  std::vector<DatasetInfo> out;
  const std::string file = run + "/study.json";
  if (!fs::exists(file)) {
    DatasetInfo c{"cellpainting",
                  "",
                  "Metadata_Plate",
                  "Metadata_Batch",
                  "Metadata_pert_type=negcon",
                  "Metadata_JCP2022",
                  "Metadata_phenotype",
                  "Metadata_moa",
                  "Metadata_Plate",
                  "",
                  "",
                  "",
                  run + "/data/cellpainting/compounds.csv"};
    DatasetInfo t;
    t.name = "tissue", t.fold_col = "patient";
    return {c, t};
  }
  json::Value v = json::parse_file(file);
  const json::Value* ds = v.find("datasets");
  if (!ds || !ds->is_array()) throw std::runtime_error(file + ": no 'datasets' array");
  for (const json::Value& d : ds->as_array()) {
    auto str = [&](const char* k) {
      const json::Value* x = d.find(k);
      return x && x->is_string() ? x->as_string() : std::string();
    };
    out.push_back({str("name"), str("data"), str("plate_col"), str("batch_col"), str("control"), str("compound_col"),
                   str("phenotype_col"), str("label_col"), str("group_col"), str("targets"), str("target_id"),
                   str("fold_col"), str("phenotype_csv")});
  }
  return out;
}

// Every summary.json (with a "metric") and cka.csv under a folder of `tabula eval` outputs.
void load_plain(const std::string& run, bool prefix, Study& st) {
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(run))
    if (e.is_regular_file() && (e.path().filename() == "summary.json" || e.path().filename() == "cka.csv"))
      files.push_back(e.path());
  std::sort(files.begin(), files.end());
  const std::string tag = tag_of(run);
  for (const fs::path& f : files) {
    std::string rel = fs::relative(f.parent_path(), run).generic_string();
    if (rel == ".") rel = tag;
    if (prefix) rel = tag + "/" + rel;
    if (f.filename() == "cka.csv") {
      if (auto p = rel.find("_vs_"); p != std::string::npos) rel = rel.substr(0, p) + " vs " + rel.substr(p + 4);
      st.cka.push_back({rel, f.string()});
      continue;
    }
    json::Value v = json::parse_file(f.string());
    const json::Value* metric = v.find("metric");
    if (!metric || !metric->is_string()) continue;
    const json::Value* layer = v.find("layer");
    for (const auto& [key, x] : v.as_object()) {
      if (!x.is_number() && !x.is_null()) continue;
      Row r;
      r.dataset = "eval";
      r.model = rel;
      r.layer = layer && layer->is_string() ? layer->as_string() : "";
      r.metric = metric->as_string() + ": " + key;
      r.value = x.is_null() ? NAN : x.as_double();
      r.source = fs::relative(f, run).generic_string();
      st.rows.push_back(r);
    }
  }
  if (st.rows.empty() && st.cka.empty())
    throw std::runtime_error(run +
                             ": no summary.csv (a study folder) and no summary.json or cka.csv under it "
                             "(a folder of `tabula eval` outputs)");
}

Model read_model(const std::string& run, const std::string& label, const std::string& shown,
                 const std::vector<DatasetInfo>& datasets, const std::vector<std::string>& summary_datasets) {
  Model m;
  m.run = run;
  m.label = label;
  m.shown = shown;
  m.kind = "baseline";
  m.arch = label;
  std::vector<std::string> names = summary_datasets;
  for (const DatasetInfo& d : datasets)
    if (std::find(names.begin(), names.end(), d.name) == names.end()) names.push_back(d.name);
  for (const std::string& ds : names) {
    std::string rj = run + "/embed/" + ds + "/" + label + "/run.json";
    if (!fs::exists(rj)) continue;
    m.provenance.push_back({ds, rj});
    if (m.provenance.size() > 1) continue;
    json::Value v = json::parse_file(rj);
    m.arch = v.find("arch") ? v.find("arch")->as_string() : label;
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
  return m;
}

// One hue per architecture (baselines: one each), a dash pattern per untrained seed, trained weights solid and
// thick: the same model looks the same in every figure.
void assign_styles(Study& st) {
  std::vector<std::string> groups;
  std::map<std::string, int> seeds;
  static const char* dashes[] = {"", "7,3", "2,2", "9,3,2,3"};
  for (Model& m : st.models) {
    const std::string g = m.kind == "baseline" ? "baseline:" + m.shown : m.arch;
    auto it = std::find(groups.begin(), groups.end(), g);
    if (it == groups.end()) it = groups.insert(groups.end(), g);
    m.style.colour = category_colour(static_cast<size_t>(it - groups.begin()));
    if (m.kind == "baseline")
      m.style.dash = "2,3", m.style.width = 2;
    else if (m.kind == "trained")
      m.style.width = 3;
    else
      m.style.dash = dashes[seeds[g]++ % 4], m.style.width = 1.7;
  }
}

}  // namespace

Study load_study(const ReportOptions& opt) {
  if (opt.runs.empty()) throw std::invalid_argument("tabula report: no study folder given");
  Study st;
  st.runs = opt.runs;
  const bool prefix = opt.runs.size() > 1;
  std::set<std::string> names;
  for (const std::string& run : opt.runs) {
    if (!fs::is_directory(run)) throw std::runtime_error(run + ": no such folder");
    const std::string tag = tag_of(run);
    if (prefix && !names.insert(tag).second)
      throw std::runtime_error(run + ": two study folders share the name '" + tag +
                               "' (their models would be confused)");
    const std::string summary = run + "/summary.csv";
    if (!fs::exists(summary)) {
      st.plain = true;
      load_plain(run, prefix, st);
      continue;
    }
    std::vector<DatasetInfo> datasets = read_datasets(run);
    if (st.datasets.empty()) st.datasets = datasets;
    tabula::Table t = tabula::read_csv(summary);
    const size_t c_ds = t.index("dataset"), c_m = t.index("model"), c_l = t.index("layer"),
                 c_li = t.index("layer_index"), c_n = t.index("n_layers"), c_metric = t.index("metric"),
                 c_v = t.index("value");
    std::vector<std::string> summary_datasets;
    for (size_t r = 0; r < t.rows(); ++r)
      if (std::find(summary_datasets.begin(), summary_datasets.end(), t.at(r, c_ds)) == summary_datasets.end())
        summary_datasets.push_back(t.at(r, c_ds));
    std::set<std::string> seen;
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
      if (seen.insert(label).second) st.models.push_back(read_model(run, label, row.model, datasets, summary_datasets));
    }
    // Phenotype classes: the study's phenotype table, else the phenotype column of an embedding's index.csv.
    for (const DatasetInfo& d : datasets) {
      if (d.compound_col.empty() || !st.phenotype.empty()) continue;
      const std::string pcol = d.phenotype_col.empty() ? "Metadata_phenotype" : d.phenotype_col;
      std::vector<std::string> files;
      if (!d.phenotype_csv.empty()) files.push_back(d.phenotype_csv);
      for (const Model& m : st.models)
        if (m.run == run) files.push_back(m.run + "/embed/" + d.name + "/" + m.label + "/index.csv");
      for (const std::string& f : files) {
        if (!fs::exists(f)) continue;
        tabula::Table c = tabula::read_csv(f);
        if (!c.has(d.compound_col) || !c.has(pcol)) continue;
        for (size_t r = 0; r < c.rows(); ++r) st.phenotype[c.at(r, c.index(d.compound_col))] = c.at(r, c.index(pcol));
        break;
      }
    }
    if (fs::is_directory(run + "/eval/cka")) {
      std::vector<std::string> dirs;
      for (const auto& e : fs::directory_iterator(run + "/eval/cka"))
        if (fs::exists(e.path() / "cka.csv")) dirs.push_back(e.path().filename().string());
      std::sort(dirs.begin(), dirs.end());
      for (const std::string& d : dirs) {
        std::string title = d;
        if (auto p = title.find("_vs_"); p != std::string::npos)
          title = title.substr(0, p) + " vs " + title.substr(p + 4);
        st.cka.push_back({(prefix ? tag + ": " : "") + title, run + "/eval/cka/" + d + "/cka.csv"});
      }
    }
  }
  assign_styles(st);
  return st;
}

}  // namespace tabula::report
