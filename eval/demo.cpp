#include "eval/demo.h"

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
#include "eval/data/synth.h"
#include "eval/embed/embed.h"
#include "eval/metrics/run.h"
#include "eval/table.h"
#include "weights_tools/json.h"

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

std::string svg_escape(const std::string& s) {
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

const char* kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                         "#bcbd22", "#17becf"};

// A per-layer curve per model (x = relative depth), baselines as dashed horizontal lines.
std::string line_chart(const std::string& title, const std::string& ylabel, const std::vector<Row>& rows,
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
  s << std::fixed << std::setprecision(1);
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" role=\"img\">"
    << "<title>" << svg_escape(title) << "</title>"
    << "<text x=\"" << W / 2 - R / 2 << "\" y=\"18\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">"
    << svg_escape(title) << "</text>"
    << "<line x1=\"" << L << "\" y1=\"" << H - B << "\" x2=\"" << W - R << "\" y2=\"" << H - B << "\" stroke=\"#333\"/>"
    << "<line x1=\"" << L << "\" y1=\"" << T << "\" x2=\"" << L << "\" y2=\"" << H - B << "\" stroke=\"#333\"/>";
  for (int k = 0; k <= 4; ++k) {
    double v = lo + (hi - lo) * k / 4;
    s << "<text x=\"" << L - 6 << "\" y=\"" << Y(v) + 4 << "\" text-anchor=\"end\" font-size=\"10\">"
      << std::setprecision(2) << v << std::setprecision(1) << "</text>"
      << "<line x1=\"" << L << "\" y1=\"" << Y(v) << "\" x2=\"" << W - R << "\" y2=\"" << Y(v)
      << "\" stroke=\"#ddd\"/>";
  }
  s << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 10 << "\" text-anchor=\"middle\" font-size=\"11\">"
    << "relative depth (first layer = 0, last = 1)</text>"
    << "<text transform=\"translate(14," << (T + H - B) / 2 << ") rotate(-90)\" text-anchor=\"middle\" font-size=\"11\">"
    << svg_escape(ylabel) << "</text>";
  int legend = 0;
  for (size_t m = 0; m < models.size(); ++m) {
    std::vector<const Row*> pts;
    for (const Row& r : rows)
      if (r.model == models[m] && std::isfinite(r.value)) pts.push_back(&r);
    if (pts.empty()) continue;
    const char* color = kColors[m % 10];
    bool flat = pts.size() == 1 && pts[0]->layers == 1;
    if (flat) {  // a baseline: one number
      s << "<line x1=\"" << L << "\" y1=\"" << Y(pts[0]->value) << "\" x2=\"" << W - R << "\" y2=\"" << Y(pts[0]->value)
        << "\" stroke=\"" << color << "\" stroke-width=\"2\" stroke-dasharray=\"6,4\"/>";
    } else {
      s << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"2\" points=\"";
      for (const Row* r : pts)
        s << X(r->layers > 1 ? double(r->layer_index) / (r->layers - 1) : 0) << "," << Y(r->value) << " ";
      s << "\"/>";
      for (const Row* r : pts)
        s << "<circle cx=\"" << X(r->layers > 1 ? double(r->layer_index) / (r->layers - 1) : 0) << "\" cy=\""
          << Y(r->value) << "\" r=\"2.5\" fill=\"" << color << "\"><title>" << svg_escape(r->model + " " + r->layer)
          << ": " << r->value << "</title></circle>";
    }
    double ly = T + 8 + 16 * legend++;
    s << "<line x1=\"" << W - R + 10 << "\" y1=\"" << ly << "\" x2=\"" << W - R + 30 << "\" y2=\"" << ly << "\" stroke=\""
      << color << "\" stroke-width=\"2\"" << (flat ? " stroke-dasharray=\"6,4\"" : "") << "/>"
      << "<text x=\"" << W - R + 34 << "\" y=\"" << ly + 4 << "\" font-size=\"10\">" << svg_escape(models[m]) << "</text>";
  }
  s << "</svg>";
  return s.str();
}

std::string cka_heatmap(const std::string& title, const eval::Table& t) {
  std::vector<std::string> la, lb;
  for (size_t r = 0; r < t.rows(); ++r) {
    if (std::find(la.begin(), la.end(), t.at(r, 0)) == la.end()) la.push_back(t.at(r, 0));
    if (std::find(lb.begin(), lb.end(), t.at(r, 1)) == lb.end()) lb.push_back(t.at(r, 1));
  }
  const double cell = std::max(8.0, std::min(28.0, 300.0 / std::max<size_t>(la.size(), lb.size())));
  const double L = 110, T = 30;
  const double W = L + cell * lb.size() + 20, H = T + cell * la.size() + 100;
  std::ostringstream s;
  s << std::fixed << std::setprecision(1);
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" role=\"img\"><title>"
    << svg_escape(title) << "</title><text x=\"" << 4 << "\" y=\"18\" font-size=\"14\" font-weight=\"bold\">"
    << svg_escape(title) << "</text>";
  for (size_t r = 0; r < t.rows(); ++r) {
    size_t i = std::find(la.begin(), la.end(), t.at(r, 0)) - la.begin();
    size_t j = std::find(lb.begin(), lb.end(), t.at(r, 1)) - lb.begin();
    double v = std::clamp(t.number(r, 2), 0.0, 1.0);
    int shade = static_cast<int>(255 - 200 * v);
    s << "<rect x=\"" << L + cell * j << "\" y=\"" << T + cell * i << "\" width=\"" << cell << "\" height=\"" << cell
      << "\" fill=\"rgb(" << shade << "," << shade << ",255)\"><title>" << svg_escape(la[i] + " vs " + lb[j]) << ": "
      << std::setprecision(3) << v << std::setprecision(1) << "</title></rect>";
  }
  for (size_t i = 0; i < la.size(); ++i)
    s << "<text x=\"" << L - 4 << "\" y=\"" << T + cell * (i + 0.7) << "\" text-anchor=\"end\" font-size=\"9\">"
      << svg_escape(la[i]) << "</text>";
  for (size_t j = 0; j < lb.size(); ++j)
    s << "<text transform=\"translate(" << L + cell * (j + 0.6) << "," << T + cell * la.size() + 6
      << ") rotate(60)\" font-size=\"9\">" << svg_escape(lb[j]) << "</text>";
  s << "</svg>";
  return s.str();
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
  eval::Table compounds = eval::read_csv(cp + "/compounds.csv");
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
        eval::Table t = eval::read_csv(ev + "/map/mean_average_precision.csv");
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
          eval::Table ex = eval::read_csv(j.targets);
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
    }
  }

  // 4. CKA between the two seeds of each untrained family (layer x layer).
  std::vector<std::pair<std::string, std::string>> cka_files;
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
      cka_files.push_back({models[a].label + " vs " + models[b].label, ev + "/cka.csv"});
    }

  // 5. summary.csv and the report.
  eval::Table sum({"dataset", "model", "layer", "layer_index", "n_layers", "metric", "value"});
  for (const Row& r : rows) {
    std::ostringstream v;
    v << std::setprecision(10) << r.value;
    sum.add_row({r.dataset, r.model, r.layer, std::to_string(r.layer_index), std::to_string(r.layers), r.metric, v.str()});
  }
  DemoResult res;
  res.summary_csv = out + "/summary.csv";
  eval::write_csv(res.summary_csv, sum);

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

  std::ostringstream html;
  html << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>tabula demo report</title>"
       << "<style>body{font-family:sans-serif;max-width:1200px;margin:20px auto;color:#222}"
       << ".grid{display:flex;flex-wrap:wrap;gap:12px}table{border-collapse:collapse;font-size:12px}"
       << "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f3f3f3}"
       << "td:first-child,td:nth-child(2),td:nth-child(3){text-align:left}</style></head><body>\n"
       << "<h1>What do untrained networks and simple baselines retrieve?</h1>\n"
       << "<p>Synthetic Cell Painting fields (5 channels, DMSO on every plate, compounds with morphological, "
       << "density-only and intensity-only phenotypes, and inactive ones) and H&amp;E-like tissue patches with "
       << "structure-driven expression. Networks are <b>untrained</b> (random init identical to PyTorch's for the "
       << "seed); <code>pixels</code> and <code>nuclei</code> are non-learned baselines (dashed lines). Each curve "
       << "shows a metric at every layer, from the first stage (left) to the feature output (right).</p>\n";
  std::string last_ds;
  for (const auto& [ds, metric] : metrics) {
    if (ds != last_ds) {
      html << (last_ds.empty() ? "" : "</div>\n") << "<h2>" << (ds == "tissue" ? "Tissue: expression prediction" : "Cell Painting: replicate retrieval, MoA recall and classification")
           << "</h2><div class=\"grid\">\n";
      last_ds = ds;
    }
    std::vector<Row> sel;
    for (const Row& r : rows)
      if (r.dataset == ds && r.metric == metric) sel.push_back(r);
    html << line_chart(metric, metric.rfind("retrieved", 0) == 0 ? "fraction of compounds (BH p < 0.05)" : metric, sel, labels)
         << "\n";
  }
  if (!last_ds.empty()) html << "</div>\n";
  if (!cka_files.empty()) {
    html << "<h2>Layer × layer CKA between two random seeds</h2><div class=\"grid\">\n";
    for (const auto& [title, file] : cka_files) html << cka_heatmap("linear CKA: " + title, eval::read_csv(file)) << "\n";
    html << "</div>\n";
  }
  html << "<h2>How to read it</h2><ul>"
       << "<li><b>retrieved morphology / density / intensity</b>: fraction of compounds of that phenotype whose "
       << "replicates are retrieved against DMSO (copairs mAP, Benjamini–Hochberg p &lt; 0.05). Density-only compounds "
       << "change only the cell count, so the <code>nuclei</code> baseline retrieves them too; intensity-only compounds "
       << "are a shortcut any representation sees.</li>"
       << "<li><b>retrieved none</b>: inactive compounds; anything above 0 is a false positive.</li>"
       << "<li>A baseline line at or above a network's curve means the network's score can be explained without "
       << "learned features.</li></ul>\n";
  html << "<h2>Every number</h2><table><tr><th>dataset</th><th>model</th><th>layer</th><th>metric</th><th>value</th></tr>\n";
  for (const Row& r : rows)
    html << "<tr><td>" << r.dataset << "</td><td>" << svg_escape(r.model) << "</td><td>" << svg_escape(r.layer)
         << "</td><td>" << svg_escape(r.metric) << "</td><td>" << std::fixed << std::setprecision(4) << r.value
         << "</td></tr>\n";
  html << "</table>\n<p>Provenance: each embedding folder under <code>embed/</code> holds its <code>run.json</code> "
       << "(arch, seed or weights sha256, preprocessing, tabula version); each metric folder under <code>eval/</code> "
       << "holds its tidy CSV and <code>summary.json</code>.</p>\n</body></html>\n";
  res.report_html = out + "/report.html";
  write_file_atomic(res.report_html, html.str());
  return res;
}

}  // namespace tabula
