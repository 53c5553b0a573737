#include "study/demo.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

#include "engine/fileio.h"
#include "data/synth.h"
#include "embed/embed.h"
#include "eval/metrics/run.h"
#include "eval/report.h"
#include "util/table.h"
#include "util/json.h"

namespace tabula {

namespace fs = std::filesystem;

namespace {

struct ModelSpec {
  std::string label;  // folder and legend name: resnet50-s0, pixels, resnet50-trained
  std::string arch, weights;
  std::optional<uint64_t> seed;
  bool baseline = false;
  std::string family;  // arch without seed: resnet50 (CKA pairs the seeds of a family)
};

ModelSpec parse_model(const std::string& s) {
  ModelSpec m;
  if (auto at = s.rfind('@'); at != std::string::npos) {
    m.arch = s.substr(0, at);
    m.seed = std::stoull(s.substr(at + 1));
    m.family = m.arch;
    m.label = m.arch.substr(0, m.arch.find(':')) + "-s" + s.substr(at + 1);  // key=value archs: "resnet-s0"
  } else if (auto eq = s.find('='); eq != std::string::npos && s.rfind("pixels", 0) != 0 && s.rfind("nuclei", 0) != 0) {
    m.arch = s.substr(0, eq);
    m.weights = s.substr(eq + 1);
    m.family = m.arch;
    m.label = m.arch + "-" + fs::path(m.weights).stem().string();
  } else {
    m.arch = s;
    m.baseline = true;
    m.family = m.label = s.substr(0, s.find(':'));
  }
  for (char& c : m.label)
    if (c == ':' || c == ',' || c == '=' || c == '/') c = '_';
  return m;
}

// One number of the study: tidy, as summary.csv holds it.
struct Row {
  std::string dataset, model, layer;
  int layer_index = 0, layers = 1;
  std::string metric;
  double value = NAN;
};

double summary_number(const std::string& file, const std::string& key) {
  json::Value v = json::parse_file(file);
  const json::Value* x = v.find(key);
  if (!x) throw std::runtime_error(file + ": no '" + key + "'");
  // null: the metric is undefined there (e.g. Pearson r of a constant prediction in some fold), shown as a gap.
  return x->is_null() ? NAN : x->as_double();
}

std::vector<std::string> run_layers(const std::string& dir) {
  json::Value run = json::parse_file(dir + "/run.json");
  std::vector<std::string> out;
  for (const json::Value& l : run.find("layers")->as_array()) out.push_back(l.find("name")->as_string());
  return out;
}

int64_t layer_dim(const std::string& dir, const std::string& layer) {
  json::Value run = json::parse_file(dir + "/run.json");
  for (const json::Value& l : run.find("layers")->as_array())
    if (l.find("name")->as_string() == layer) return l.find("dim")->as_int64();
  throw std::runtime_error(dir + "/run.json: no layer " + layer);
}

// Runs `fn` unless `marker` exists (a finished step of an earlier run), then writes the marker.
template <class F>
void step(const std::string& marker, F fn) {
  if (fs::exists(marker)) return;
  fs::create_directories(fs::path(marker).parent_path());
  fn();
  write_file_atomic(marker, "done\n");
}

// Held-out ridge predictions of log1p expression, fitted as the demo's ridge step fits them (StandardScaler -> PCA
// -> exact ridge), each fold (patient) predicted by the model of the other folds. The report's prediction scatter
// compares two models' predictions patch by patch (the paper's Figure 1b). Long format: patch_id, fold, target,
// observed, predicted.
void write_predictions(const std::string& features, const std::string& expression_csv, const std::string& fold_col,
                       int64_t pca_components, int threads, const std::string& out_csv) {
  eval::RowMatrixF x;
  tabula::Table meta;
  eval::load_inputs({features, ""}, &x, &meta);
  tabula::Table ex = tabula::read_csv(expression_csv);
  std::vector<std::string> genes;
  for (const auto& c : ex.columns())
    if (c != "patch_id") genes.push_back(c);
  if (static_cast<int64_t>(ex.rows()) != x.rows())
    throw std::runtime_error(expression_csv + ": " + std::to_string(ex.rows()) + " rows, the features have " +
                             std::to_string(x.rows()));
  eval::RowMatrixD y(x.rows(), static_cast<int64_t>(genes.size()));
  for (size_t g = 0; g < genes.size(); ++g) {
    std::vector<double> col = ex.numbers(genes[g]);
    for (size_t r = 0; r < col.size(); ++r) y(static_cast<int64_t>(r), static_cast<int64_t>(g)) = std::log1p(col[r]);
  }
  const std::vector<std::string>& fold = meta.column(fold_col);
  std::vector<std::string> folds;
  for (const std::string& f : fold)
    if (!f.empty() && std::find(folds.begin(), folds.end(), f) == folds.end()) folds.push_back(f);
  eval::RegressOptions ro;
  ro.method = "ridge";
  ro.ridge_solver = "exact";
  ro.pca_components = pca_components;
  ro.threads = threads;
  tabula::Table t({"patch_id", "fold", "target", "observed", "predicted"});
  for (const std::string& f : folds) {
    std::vector<int64_t> train, test;
    for (int64_t r = 0; r < x.rows(); ++r) (fold[static_cast<size_t>(r)] == f ? test : train).push_back(r);
    eval::RowMatrixF xtr(static_cast<int64_t>(train.size()), x.cols()), xte(static_cast<int64_t>(test.size()), x.cols());
    eval::RowMatrixD ytr(static_cast<int64_t>(train.size()), y.cols());
    for (size_t i = 0; i < train.size(); ++i) xtr.row(static_cast<int64_t>(i)) = x.row(train[i]), ytr.row(static_cast<int64_t>(i)) = y.row(train[i]);
    for (size_t i = 0; i < test.size(); ++i) xte.row(static_cast<int64_t>(i)) = x.row(test[i]);
    eval::RowMatrixD pred = eval::regress_predict(xtr, ytr, xte, ro);
    for (size_t i = 0; i < test.size(); ++i)
      for (size_t g = 0; g < genes.size(); ++g)
        t.add_row({ex.at(static_cast<size_t>(test[i]), ex.index("patch_id")), f, genes[g],
                   tabula::format_number(y(test[i], static_cast<int64_t>(g))),
                   tabula::format_number(pred(static_cast<int64_t>(i), static_cast<int64_t>(g)))});
  }
  tabula::write_csv(out_csv, t);
}

}  // namespace

DemoResult run_demo(const DemoOptions& opt) {
  const std::string out = opt.out;
  fs::create_directories(out);
  auto say = [&](const std::string& m) {
    if (!opt.quiet) std::fprintf(stderr, "tabula demo: %s\n", m.c_str());
  };

  // 1. Data.
  const std::string cp = out + "/data/cellpainting", tissue = out + "/data/tissue";
  step(out + "/data/.cellpainting.done", [&] {
    say("writing the synthetic Cell Painting dataset");
    fs::remove_all(cp);
    data::CellPaintingConfig c;
    c.seed = opt.data_seed;
    c.quick = opt.quick;
    c.sites = 1;  // 192 fields x 5 channels per network: the whole study stays within minutes on 2 cores
    data::synth_cellpainting(cp, c);
  });
  step(out + "/data/.tissue.done", [&] {
    say("writing the synthetic tissue dataset");
    fs::remove_all(tissue);
    data::TissueConfig c;
    c.seed = opt.data_seed;
    c.quick = opt.quick;
    data::synth_tissue(tissue, c);
  });

  // 2. Models.
  std::vector<std::string> specs = opt.models;
  if (specs.empty()) {
    if (opt.quick) specs = {"resnet18@0", "resnet18@1", "vit_tiny_patch16_224@0", "vit_tiny_patch16_224@1", "pixels", "nuclei"};
    else specs = {"resnet50@0", "resnet50@1", "vit_small_patch16_224@0", "vit_small_patch16_224@1", "pixels", "nuclei"};
  }
  for (const std::string& w : opt.weights) specs.push_back(w);
  std::vector<ModelSpec> models;
  for (const std::string& s : specs) models.push_back(parse_model(s));

  // 3. Embeddings (resumable), every layer.
  auto embed = [&](const ModelSpec& m, const std::string& dataset, const std::string& manifest, bool tissue_data) {
    std::string dir = out + "/embed/" + dataset + "/" + m.label;
    if (fs::exists(dir + "/run.json") && !fs::exists(dir + "/.partial")) return dir;
    say("embedding " + dataset + " with " + m.label);
    EmbedOptions e;
    e.arch = m.arch;
    if (m.baseline && m.arch == "nuclei" && tissue_data) e.arch = "nuclei:dna=0,invert=1";  // dark nuclei on H&E
    e.weights = m.weights;
    e.seed = m.seed;
    e.data = manifest;
    e.out = dir;
    if (!m.baseline) {
      e.layers = {"all"};
      e.device = opt.device;  // the networks; the baselines always run on the cpu
      e.precision = opt.precision;
    }
    e.size = opt.size;
    e.threads = opt.threads;
    e.resume = true;
    e.quiet = opt.quiet;
    run_embed(e);
    return dir;
  };

  std::vector<Row> rows;
  const std::string negcon = "Metadata_pert_type=negcon";
  tabula::Table compounds = tabula::read_csv(cp + "/compounds.csv");
  std::map<std::string, std::string> phenotype;
  for (size_t r = 0; r < compounds.rows(); ++r)
    phenotype[compounds.at(r, compounds.index("Metadata_JCP2022"))] = compounds.at(r, compounds.index("Metadata_phenotype"));
  const int64_t null_size = opt.quick ? 1000 : 10000;

  for (const ModelSpec& m : models) {
    // Cell Painting: normalise on DMSO per plate, then mAP / recall / kNN per layer.
    std::string dir = embed(m, "cellpainting", cp + "/load_data.csv", false);
    auto layers = run_layers(dir);
    for (size_t li = 0; li < layers.size(); ++li) {
      const std::string& layer = layers[li];
      std::string ev = out + "/eval/cellpainting/" + m.label + "/" + layer;
      auto add = [&](const std::string& metric, double v) {
        rows.push_back({"cellpainting", m.label, layer, static_cast<int>(li), static_cast<int>(layers.size()), metric, v});
      };
      step(ev + "/norm/.done", [&] {
        eval::NormalizeJob f;
        f.in.features = dir + ":" + layer;
        f.method = "filter";
        f.group_col = "Metadata_Plate";
        f.control = negcon;
        f.out_dir = ev + "/filtered";
        eval::run_normalize(f);
        eval::NormalizeJob n;
        n.in.features = ev + "/filtered:" + layer;
        n.method = "mad";
        n.group_col = "Metadata_Plate";
        n.control = negcon;
        n.out_dir = ev + "/norm";
        eval::run_normalize(n);
      });
      const std::string feats = ev + "/norm:" + layer;
      step(ev + "/map/.done", [&] {
        eval::MapJob j;
        j.in.features = feats;
        j.opt.pos_sameby = {"Metadata_JCP2022", "Metadata_Reference_Index"};
        j.opt.neg_sameby = {"Metadata_Plate"};
        j.opt.neg_diffby = {"Metadata_pert_type", "Metadata_Reference_Index"};
        j.opt.null_size = null_size;
        j.opt.threads = opt.threads;
        j.reference_index = negcon;
        j.out_dir = ev + "/map";
        eval::run_map(j);
      });
      {
        tabula::Table t = tabula::read_csv(ev + "/map/mean_average_precision.csv");
        std::map<std::string, std::pair<double, double>> by;  // phenotype -> (sum mAP, n)
        std::map<std::string, std::pair<double, double>> hit; // phenotype -> (retrieved, n)
        for (size_t r = 0; r < t.rows(); ++r) {
          std::string id = t.at(r, t.index("Metadata_JCP2022"));
          if (t.at(r, t.index("Metadata_Reference_Index")) != "-1" || !phenotype.count(id)) continue;
          std::string ph = phenotype[id];
          by[ph].first += t.number(r, t.index("mean_average_precision"));
          by[ph].second += 1;
          hit[ph].first += t.at(r, t.index("below_corrected_p")) == "True";
          hit[ph].second += 1;
        }
        for (const auto& [ph, sn] : by) add("mAP " + ph, sn.first / sn.second);
        for (const auto& [ph, sn] : hit) add("retrieved " + ph, sn.first / sn.second);
      }
      step(ev + "/recall/.done", [&] {
        eval::RecallJob j;
        j.in.features = feats;
        j.pert_col = "Metadata_JCP2022";
        j.relationships = {cp + "/relationships.csv"};
        j.drop = {};
        j.threads = opt.threads;
        j.out_dir = ev + "/recall";
        eval::run_recall(j);
      });
      add("MoA recall (0.05, 0.95)", summary_number(ev + "/recall/summary.json", "relationships.recall_0.05_0.95"));
      step(ev + "/knn/.done", [&] {
        eval::KnnJob j;
        j.in.features = feats;
        j.label_col = "Metadata_moa";
        j.group_col = "Metadata_Plate";
        j.opt.ks = {opt.quick ? 5 : 10};
        j.opt.threads = opt.threads;
        j.out_dir = ev + "/knn";
        eval::run_knn(j);
      });
      add("MoA kNN top-1 (plate held out)",
          summary_number(ev + "/knn/summary.json", "top1_k" + std::to_string(opt.quick ? 5 : 10)));
    }
    // Tissue: ridge probe and 1-NN regression of expression, folds by patient.
    std::string tdir = embed(m, "tissue", tissue + "/metadata.csv", true);
    auto tlayers = run_layers(tdir);
    for (size_t li = 0; li < tlayers.size(); ++li) {
      const std::string& layer = tlayers[li];
      std::string ev = out + "/eval/tissue/" + m.label + "/" + layer;
      for (const char* method : {"ridge", "knn"}) {
        step(ev + "/" + method + "/.done", [&] {
          eval::RegressJob j;
          j.in.features = tdir + ":" + layer;
          j.targets = tissue + "/expression.csv";
          tabula::Table ex = tabula::read_csv(j.targets);
          for (const auto& c : ex.columns())
            if (c != "patch_id") j.target_cols.push_back(c);
          j.log1p = true;
          j.fold_col = "patient";
          j.opt.method = method;
          j.opt.ridge_solver = "exact";
          j.opt.k = 1;
          // HEST's PCA(256); a narrower representation (the baselines) keeps all its dimensions.
          j.opt.pca_components = std::min<int64_t>(opt.quick ? 16 : 256, layer_dim(tdir, layer));
          j.opt.threads = opt.threads;
          j.out_dir = ev + "/" + method;
          eval::run_regress(j);
        });
        rows.push_back({"tissue", m.label, layer, static_cast<int>(li), static_cast<int>(tlayers.size()),
                        std::string(method) == "ridge" ? "expression Pearson r (ridge)" : "expression Pearson r (1-NN)",
                        summary_number(ev + "/" + method + "/summary.json", "pearson_mean")});
      }
      if (li + 1 == tlayers.size())
        step(ev + "/predictions/.done", [&] {
          write_predictions(tdir + ":" + layer, tissue + "/expression.csv", "patient",
                            std::min<int64_t>(opt.quick ? 16 : 256, layer_dim(tdir, layer)), opt.threads,
                            ev + "/predictions/predictions.csv");
        });
    }
  }

  // 4. CKA between the two seeds of each untrained family (layer x layer).
  for (size_t a = 0; a < models.size(); ++a)
    for (size_t b = a + 1; b < models.size(); ++b) {
      if (models[a].baseline || models[b].baseline || models[a].family != models[b].family) continue;
      std::string ev = out + "/eval/cka/" + models[a].label + "_vs_" + models[b].label;
      step(ev + "/.done", [&] {
        eval::CkaJob j;
        j.run_a = out + "/embed/cellpainting/" + models[a].label;
        j.run_b = out + "/embed/cellpainting/" + models[b].label;
        j.layers_a = run_layers(j.run_a);
        j.layers_b = run_layers(j.run_b);
        j.out_dir = ev;
        eval::run_cka(j);
      });
    }

  // 5. summary.csv and the report.
  tabula::Table sum({"dataset", "model", "layer", "layer_index", "n_layers", "metric", "value"});
  for (const Row& r : rows) {
    std::ostringstream v;
    v << std::setprecision(10) << r.value;
    sum.add_row({r.dataset, r.model, r.layer, std::to_string(r.layer_index), std::to_string(r.layers), r.metric, v.str()});
  }
  DemoResult res;
  res.summary_csv = out + "/summary.csv";
  tabula::write_csv(res.summary_csv, sum);

  std::vector<std::string> labels;
  for (const ModelSpec& m : models) labels.push_back(m.label);
  std::vector<std::pair<std::string, std::string>> metrics;  // (dataset, metric) in first-seen order
  for (const Row& r : rows)
    if (std::find(metrics.begin(), metrics.end(), std::make_pair(r.dataset, r.metric)) == metrics.end())
      metrics.push_back({r.dataset, r.metric});

  // The short table: for each model and metric, the value at the model's last layer (its feature output).
  std::ostringstream tab;
  size_t width = 10;
  for (const auto& l : labels) width = std::max(width, l.size() + 2);
  const int w = static_cast<int>(width);
  tab << std::left << std::setw(40) << "metric (last layer)";
  for (const auto& l : labels) tab << std::setw(w) << l;
  tab << "\n";
  for (const auto& [ds, metric] : metrics) {
    tab << std::setw(40) << (ds + ": " + metric).substr(0, 39);
    for (const auto& l : labels) {
      double v = NAN;
      for (const Row& r : rows)
        if (r.dataset == ds && r.metric == metric && r.model == l && r.layer_index == r.layers - 1) v = r.value;
      std::ostringstream c;
      c << std::fixed << std::setprecision(3) << v;
      tab << std::setw(w) << c.str();
    }
    tab << "\n";
  }
  res.table = tab.str();

  ReportOptions ro;
  ro.runs = {out};
  ro.out = out + "/report.html";
  res.report_html = write_report(ro).html_path;
  return res;
}

}  // namespace tabula
