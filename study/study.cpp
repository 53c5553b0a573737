#include "study/study.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "embed/embed.h"
#include "eval/metrics/run.h"
#include "eval/report.h"
#include "study/steps.h"
#include "util/json.h"
#include "util/table.h"

namespace tabula {

namespace fs = std::filesystem;
using study::step;

StudyModel parse_study_model(const std::string& s) {
  StudyModel m;
  if (s.empty()) throw std::invalid_argument("study: an empty model name");
  const bool baseline = s.rfind("pixels", 0) == 0 || s.rfind("nuclei", 0) == 0;
  const auto at = s.rfind('@'), eq = s.rfind('=');  // the last: key=value archs hold '=' themselves
  if (at != std::string::npos && (eq == std::string::npos || eq < at)) {
    m.arch = s.substr(0, at);
    const std::string seed = s.substr(at + 1);
    if (seed.empty() || seed.find_first_not_of("0123456789") != std::string::npos)
      throw std::invalid_argument("study: model '" + s + "': the seed after '@' must be a number");
    m.seed = std::stoull(seed);
    m.family = m.arch;
    m.label = m.arch.substr(0, m.arch.find(':')) + "-s" + seed;  // key=value archs: "resnet-s0"
  } else if (eq != std::string::npos && !baseline) {
    m.arch = s.substr(0, eq);
    m.weights = s.substr(eq + 1);
    if (m.arch.empty() || m.weights.empty())
      throw std::invalid_argument("study: model '" + s + "': trained weights are ARCH=FILE");
    m.family = m.arch;
    m.label = m.arch.substr(0, m.arch.find(':')) + "-" + fs::path(m.weights).stem().string();
  } else {
    m.arch = s;
    m.baseline = true;
    m.family = m.label = s.substr(0, s.find(':'));
  }
  for (char& c : m.label)
    if (c == ':' || c == ',' || c == '=' || c == '/') c = '_';
  return m;
}

namespace {

// The training rows of the fold that has fewest: all rows but those of the largest fold.
int64_t smallest_training_fold(const std::string& index_csv, const std::string& fold_col) {
  std::map<std::string, int64_t> per_fold;
  const tabula::Table index = tabula::read_csv(index_csv);
  const std::vector<std::string>& fold = index.column(fold_col);
  for (const std::string& f : fold) ++per_fold[f];
  int64_t largest = 0;
  for (const auto& [f, n] : per_fold) largest = std::max(largest, n);
  return static_cast<int64_t>(fold.size()) - largest;
}

// One number of the study: tidy, as summary.csv holds it.
struct Row {
  std::string dataset, model, layer;
  int layer_index = 0, layers = 1;
  std::string metric;
  double value = NAN;
};

std::string display(const std::string& name, const std::string& col) {
  if (!name.empty()) return name;
  return col.rfind("Metadata_", 0) == 0 ? col.substr(9) : col;
}

struct Ctx {
  const StudyOptions& opt;
  std::vector<Row>& rows;
  std::function<void(const std::string&)> say;
};

// Replicate retrieval (copairs mAP, JUMP's phenotypic-activity preset: positives = the same compound, negatives =
// the controls on the same plate), summarised per phenotype class when the classes are known.
void replicate_map(const Ctx& c, const StudyDataset& d, const std::string& feats, const std::string& ev,
                   const std::map<std::string, std::string>& phenotype,
                   const std::function<void(std::string, double)>& add) {
  const std::string ctrl_col = d.control.substr(0, d.control.find('='));
  step(ev + "/map/.done", [&] {
    eval::MapJob j;
    j.in.features = feats;
    j.opt.pos_sameby = {d.compound_col, "Metadata_Reference_Index"};
    if (!d.plate_col.empty()) j.opt.neg_sameby = {d.plate_col};
    j.opt.neg_diffby = {ctrl_col, "Metadata_Reference_Index"};
    j.opt.null_size = c.opt.null_size;
    j.opt.threads = c.opt.threads;
    j.reference_index = d.control;
    j.out_dir = ev + "/map";
    eval::run_map(j);
  });
  tabula::Table t = tabula::read_csv(ev + "/map/mean_average_precision.csv");
  std::map<std::string, std::pair<double, double>> by, hit;  // class -> (sum mAP | retrieved, n)
  for (size_t r = 0; r < t.rows(); ++r) {
    if (t.at(r, t.index("Metadata_Reference_Index")) != "-1") continue;
    const std::string id = t.at(r, t.index(d.compound_col));
    std::string cls;
    if (!phenotype.empty()) {
      auto it = phenotype.find(id);
      if (it == phenotype.end()) continue;
      cls = " " + it->second;
    }
    by[cls].first += t.number(r, t.index("mean_average_precision"));
    by[cls].second += 1;
    hit[cls].first += t.at(r, t.index("below_corrected_p")) == "True";
    hit[cls].second += 1;
  }
  for (const auto& [cls, sn] : by) add("mAP" + cls, sn.first / sn.second);
  for (const auto& [cls, sn] : hit) add("retrieved" + cls, sn.first / sn.second);
}

// One model's embedding of one dataset, with what the evaluations of its layers share (read once, not per layer).
struct Embedding {
  std::string dir;
  std::map<std::string, std::string> phenotype;  // compound -> phenotype class; empty when not given
  int64_t smallest_training_fold = 0;             // rows; only when the dataset has regression targets
  std::string targets;                            // the targets table in this embedding's row order
};

// Every metric the dataset's columns support, at one layer of one model.
void eval_layer(const Ctx& c, const StudyDataset& d, const StudyModel& m, const Embedding& e,
                const std::string& layer, bool last, const std::function<void(std::string, double)>& add) {
  const std::string& dir = e.dir;
  const std::string ev = c.opt.out + "/eval/" + d.name + "/" + m.label + "/" + layer;
  std::string feats = dir + ":" + layer, meta;
  if (!d.plate_col.empty()) {
    step(ev + "/norm/.done", [&] {
      eval::NormalizeJob f;
      f.in.features = feats;
      f.method = "filter";
      f.group_col = d.plate_col;
      f.control = d.control;
      f.out_dir = ev + "/filtered";
      eval::run_normalize(f);
      eval::NormalizeJob n;
      n.in.features = ev + "/filtered:" + layer;
      n.method = "mad";
      n.group_col = d.plate_col;
      n.control = d.control;
      n.out_dir = ev + "/norm";
      eval::run_normalize(n);
    });
    feats = ev + "/norm:" + layer;
  }
  if (!d.compound_col.empty() && !d.control.empty()) replicate_map(c, d, feats, ev, e.phenotype, add);
  if (!d.relationships.empty() && !d.compound_col.empty()) {
    step(ev + "/recall/.done", [&] {
      eval::RecallJob j;
      j.in.features = feats;
      j.pert_col = d.compound_col;
      j.relationships = {d.relationships};
      j.threads = c.opt.threads;
      j.out_dir = ev + "/recall";
      eval::run_recall(j);
    });
    add(d.relationship_name + " recall (0.05, 0.95)",
        study::summary_number(ev + "/recall/summary.json", "relationships.recall_0.05_0.95"));
  }
  if (!d.label_col.empty()) {
    const std::string label = display(d.label_name, d.label_col), k = std::to_string(d.knn_k);
    std::string split = d.split_col;
    if (d.group_col.empty() && split.empty()) {
      meta = c.opt.out + "/eval/" + d.name + "/" + m.label + "/split.csv";
      if (!fs::exists(meta)) study::write_split(dir + "/index.csv", d.label_col, meta);
      split = "split";
    }
    step(ev + "/knn/.done", [&] {
      eval::KnnJob j;
      j.in = {feats, meta};
      j.label_col = d.label_col;
      j.group_col = d.group_col;
      j.split_col = d.group_col.empty() ? split : "";
      j.opt.ks = {d.knn_k};
      j.opt.threads = c.opt.threads;
      j.out_dir = ev + "/knn";
      eval::run_knn(j);
    });
    add(label + " kNN top-1" + (d.group_col.empty() ? "" : " (" + display(d.group_name, d.group_col) + " held out)"),
        study::summary_number(ev + "/knn/summary.json", "top1_k" + k));
    if (d.group_col.empty()) {
      step(ev + "/linear/.done", [&] {
        eval::LinearJob j;
        j.in = {feats, meta};
        j.label_col = d.label_col;
        j.split_col = split;
        j.out_dir = ev + "/linear";
        eval::run_linear(j);
      });
      add(label + " linear probe top-1", study::summary_number(ev + "/linear/summary.json", "test_top1"));
    }
  }
  if (!d.targets.empty()) {
    const std::vector<std::string> targets = study::target_columns(d);
    // HEST's PCA(256); a narrower representation keeps all its dimensions, and a set smaller than that all its
    // smallest training fold can hold (scikit-learn's PCA takes at most as many components as rows).
    const int64_t pca = std::min({d.pca_components, study::layer_dim(dir, layer), e.smallest_training_fold});
    for (const char* method : {"ridge", "knn"}) {
      const std::string sub = std::string(method) == "ridge" ? "ridge" : "regress-1nn";
      step(ev + "/" + sub + "/.done", [&] {
        eval::RegressJob j;
        j.in.features = feats;
        j.targets = e.targets;
        j.target_cols = targets;
        j.log1p = d.log1p;
        j.fold_col = d.fold_col;
        j.opt.method = method;
        j.opt.ridge_solver = "exact";
        j.opt.k = 1;
        j.opt.pca_components = pca;
        j.opt.threads = c.opt.threads;
        j.out_dir = ev + "/" + sub;
        eval::run_regress(j);
      });
      add(d.targets_name + (std::string(method) == "ridge" ? " Pearson r (ridge)" : " Pearson r (1-NN)"),
          study::summary_number(ev + "/" + sub + "/summary.json", "pearson_mean"));
    }
    if (last)
      step(ev + "/predictions/.done", [&] {
        StudyDataset aligned = d;
        aligned.targets = e.targets;
        study::write_predictions(feats, aligned, targets, pca, c.opt.threads,
                                 ev + "/predictions/predictions.csv");
      });
  }
}

std::string embed_model(const Ctx& c, const StudyModel& m, const StudyDataset& d) {
  const std::string dir = c.opt.out + "/embed/" + d.name + "/" + m.label;
  // A finished embedding is still handed to run_embed (--resume): it returns at once when the settings are the same
  // and refuses, naming them, when they are not -- e.g. ARCH=FILE where FILE now holds other weights.
  if (!fs::exists(dir + "/run.json") || fs::exists(dir + "/.partial")) c.say("embedding " + d.name + " with " + m.label);
  EmbedOptions e;
  e.arch = m.arch;
  if (m.baseline && m.arch == "nuclei" && d.dark_nuclei) e.arch = "nuclei:dna=0,invert=1";
  e.weights = m.weights;
  e.seed = m.seed;
  e.data = d.data;
  e.out = dir;
  if (!m.baseline) {
    e.layers = {"all"};
    e.device = c.opt.device;  // the networks; the baselines always run on the cpu
    e.precision = c.opt.precision;
    e.size = c.opt.size;  // the networks' input size; a baseline reads the whole image, as at the default size
  }
  e.threads = c.opt.threads;
  e.resume = true;
  e.quiet = c.opt.quiet;
  run_embed(e);
  return dir;
}

std::map<std::string, std::string> read_phenotypes(const StudyDataset& d) {
  std::map<std::string, std::string> out;
  if (d.phenotype_csv.empty()) return out;
  tabula::Table t = tabula::read_csv(d.phenotype_csv);
  for (size_t r = 0; r < t.rows(); ++r) out[t.at(r, t.index(d.compound_col))] = t.at(r, t.index(d.phenotype_col));
  return out;
}

void write_study_json(const StudyOptions& opt, const std::vector<StudyModel>& models) {
  using json::Value;
  Value root = Value::object();
  Value ds = Value::array();
  for (const StudyDataset& d : opt.datasets) {
    Value o = Value::object();
    const std::vector<std::pair<const char*, std::string>> fields = {
        {"name", d.name},           {"data", d.data},
        {"plate_col", d.plate_col}, {"batch_col", d.batch_col},
        {"control", d.control},     {"compound_col", d.compound_col},
        {"phenotype_csv", d.phenotype_csv}, {"phenotype_col", d.phenotype_col},
        {"relationships", d.relationships}, {"label_col", d.label_col},
        {"group_col", d.group_col}, {"split_col", d.split_col},
        {"targets", d.targets},     {"target_id", d.target_id},
        {"fold_col", d.fold_col}};
    for (const auto& [k, v] : fields)
      o.set(k, Value::string(v));
    o.set("knn_k", Value::integer(d.knn_k));
    o.set("log1p", Value::boolean(d.log1p));
    o.set("pca", Value::integer(d.pca_components));
    o.set("dark_nuclei", Value::boolean(d.dark_nuclei));
    ds.as_array().push_back(o);
  }
  root.set("datasets", ds);
  Value ms = Value::array();
  for (const StudyModel& m : models) ms.as_array().push_back(Value::string(m.label));
  root.set("models", ms);
  root.set("null_size", Value::integer(opt.null_size));
  root.set("size", Value::integer(opt.size));
  root.set("precision", Value::string(opt.precision));
  // A rerun resumes from the step markers, so it must be the same study: other columns, another null size, input
  // size or precision would keep stale numbers beside new ones. Models may be added (each has folders of its own).
  const std::string file = opt.out + "/study.json";
  if (fs::exists(file)) {
    const Value old = json::parse_file(file);
    std::string differ;  // "key: X there, Y now" per setting, a dataset's by its field
    // A setting the folder's study.json does not hold (written by an older tabula) is not compared: that folder
    // keeps resuming as it did.
    const auto compare = [&](const std::string& name, const Value* was, const Value& now) {
      if (was && json::dump(*was) != json::dump(now))
        differ += (differ.empty() ? "" : "; ") + name + ": " + json::dump(*was) + " there, " + json::dump(now) +
                  " now";
    };
    const Value* old_ds = old.find("datasets");
    if (old_ds && old_ds->is_array() && old_ds->as_array().size() == ds.as_array().size()) {
      for (size_t i = 0; i < ds.as_array().size(); ++i)
        for (const auto& [k, v] : ds.as_array()[i].as_object())
          compare("datasets[" + std::to_string(i) + "]." + k, old_ds->as_array()[i].find(k), v);
    } else {
      compare("datasets", old_ds, ds);
    }
    for (const char* key : {"null_size", "size", "precision"}) compare(key, old.find(key), *root.find(key));
    if (!differ.empty())
      throw std::runtime_error(file + ": this folder holds a study with other settings (" + differ +
                               "); use another --out or remove the folder");
  }
  write_file_atomic(file, json::dump(root) + "\n");
}

// Each model's number at its last layer (its feature output), per metric.
std::string short_table(const std::vector<Row>& rows, const std::vector<StudyModel>& models) {
  std::vector<std::pair<std::string, std::string>> metrics;
  for (const Row& r : rows)
    if (std::find(metrics.begin(), metrics.end(), std::make_pair(r.dataset, r.metric)) == metrics.end())
      metrics.push_back({r.dataset, r.metric});
  std::ostringstream tab;
  size_t width = 10;
  for (const auto& m : models) width = std::max(width, m.label.size() + 2);
  const int w = static_cast<int>(width);
  tab << std::left << std::setw(40) << "metric (last layer)";
  for (const auto& m : models) tab << std::setw(w) << m.label;
  tab << "\n";
  bool undefined_r = false;
  for (const auto& [ds, metric] : metrics) {
    tab << std::setw(40) << (ds + ": " + metric).substr(0, 39);
    for (const auto& m : models) {
      std::optional<double> v;
      for (const Row& r : rows)
        if (r.dataset == ds && r.metric == metric && r.model == m.label && r.layer_index == r.layers - 1) v = r.value;
      std::ostringstream cell;
      if (!v) {
        cell << "-";
      } else {
        cell << std::fixed << std::setprecision(3) << *v;
        // A bare "nan" reads as a failure; for a Pearson r it is the defined result of a constant prediction.
        if (std::isnan(*v) && metric.find("Pearson r") != std::string::npos) cell << "*", undefined_r = true;
      }
      tab << std::setw(w) << cell.str();
    }
    tab << "\n";
  }
  if (undefined_r)
    tab << "* nan: some target's Pearson r is undefined in a fold (constant predictions or expression there, e.g. a "
           "1-NN\n  that picks the same training patch for every test patch); scipy.stats.pearsonr gives nan too\n";
  return tab.str();
}

}  // namespace

StudyResult run_study(const StudyOptions& opt) {
  if (opt.datasets.empty()) throw std::invalid_argument("study: no dataset");
  if (opt.models.empty()) throw std::invalid_argument("study: no model");
  std::vector<StudyModel> models;
  for (const std::string& s : opt.models) models.push_back(parse_study_model(s));
  for (size_t a = 0; a < models.size(); ++a)
    for (size_t b = a + 1; b < models.size(); ++b)
      if (models[a].label == models[b].label)
        throw std::invalid_argument("study: two models named '" + models[a].label + "'");
  for (const StudyDataset& d : opt.datasets) {
    if (!d.control.empty() && d.control.find('=') == std::string::npos)
      throw std::invalid_argument("study: --control expects COLUMN=VALUE, got '" + d.control + "'");
    if (!d.targets.empty() && d.fold_col.empty()) throw std::invalid_argument("study: --targets needs --fold-col");
  }
  fs::create_directories(opt.out);
  std::vector<Row> rows;
  Ctx c{opt, rows, [&](const std::string& msg) {
          if (!opt.quiet) std::fprintf(stderr, "tabula %s: %s\n", opt.tag.c_str(), msg.c_str());
        }};
  write_study_json(opt, models);
  for (const StudyDataset& d : opt.datasets) {
    const std::string cls = !d.phenotype_csv.empty() ? d.phenotype_col : d.label_col;
    if (!cls.empty())
      step(opt.out + "/examples/" + d.name + "/.done",
           [&] { study::write_examples(d, cls, opt.out + "/examples/" + d.name, 3); });
  }
  for (const StudyModel& m : models)
    for (const StudyDataset& d : opt.datasets) {
      Embedding e;
      e.dir = embed_model(c, m, d);
      e.phenotype = read_phenotypes(d);
      if (!d.targets.empty()) {
        e.smallest_training_fold = smallest_training_fold(e.dir + "/index.csv", d.fold_col);
        e.targets = study::aligned_targets(d, e.dir + "/index.csv", opt.out + "/targets/" + d.name + ".csv");
      }
      const auto layers = study::run_layers(e.dir);
      for (size_t li = 0; li < layers.size(); ++li)
        eval_layer(c, d, m, e, layers[li], li + 1 == layers.size(), [&](std::string metric, double v) {
          rows.push_back({d.name, m.label, layers[li], int(li), int(layers.size()), std::move(metric), v});
        });
    }
  // Layer x layer CKA between the seeds (and trained weights) of one architecture.
  const std::string cka_ds = opt.cka_dataset.empty() ? opt.datasets[0].name : opt.cka_dataset;
  for (size_t a = 0; a < models.size(); ++a)
    for (size_t b = a + 1; b < models.size(); ++b) {
      if (models[a].baseline || models[b].baseline || models[a].family != models[b].family) continue;
      const std::string ev = opt.out + "/eval/cka/" + models[a].label + "_vs_" + models[b].label;
      step(ev + "/.done", [&] {
        eval::CkaJob j;
        j.run_a = opt.out + "/embed/" + cka_ds + "/" + models[a].label;
        j.run_b = opt.out + "/embed/" + cka_ds + "/" + models[b].label;
        j.layers_a = study::run_layers(j.run_a);
        j.layers_b = study::run_layers(j.run_b);
        j.out_dir = ev;
        eval::run_cka(j);
      });
    }
  tabula::Table sum({"dataset", "model", "layer", "layer_index", "n_layers", "metric", "value"});
  for (const Row& r : rows) {
    std::ostringstream v;
    v << std::setprecision(10) << r.value;
    sum.add_row(
        {r.dataset, r.model, r.layer, std::to_string(r.layer_index), std::to_string(r.layers), r.metric, v.str()});
  }
  StudyResult res;
  res.summary_csv = opt.out + "/summary.csv";
  tabula::write_csv(res.summary_csv, sum);
  res.table = short_table(rows, models);
  ReportOptions ro;
  ro.runs = {opt.out};
  ro.out = opt.out + "/report.html";
  if (!opt.title.empty()) ro.title = opt.title;
  res.report_html = write_report(ro).html_path;
  return res;
}

}  // namespace tabula
