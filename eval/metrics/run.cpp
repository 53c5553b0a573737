#include "eval/metrics/run.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <numeric>
#include <sstream>
#include <stdexcept>

#include "engine/fileio.h"
#include "util/json.h"
#include "util/mpi.h"
#include "util/npy.h"
#include "util/suggest.h"
#include "eval/metrics/cka.h"
#include "eval/metrics/linear.h"
#include "eval/metrics/recall.h"
#include "eval/norm/normalize.h"

namespace tabula::eval {

namespace fs = std::filesystem;

std::string json_escape(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\t': o += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          o += buf;
        } else {
          o += c;
        }
    }
  }
  return o + "\"";
}

namespace {

// summary.json as an ordered list of key -> already-encoded JSON value.
struct Json {
  std::vector<std::pair<std::string, std::string>> kv;
  void str(const std::string& k, const std::string& v) { kv.emplace_back(k, json_escape(v)); }
  void num(const std::string& k, double v) { kv.emplace_back(k, std::isfinite(v) ? format_number(v) : "null"); }
  void list(const std::string& k, const std::vector<std::string>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + json_escape(v[i]);
    kv.emplace_back(k, s + "]");
  }
  void write(const std::string& path) const {
    std::string s = "{\n";
    for (size_t i = 0; i < kv.size(); ++i)
      s += "  " + json_escape(kv[i].first) + ": " + kv[i].second + (i + 1 < kv.size() ? ",\n" : "\n");
    write_file_atomic(path, s + "}\n");
  }
};

std::string out_path(const std::string& dir, const std::string& name) {
  fs::create_directories(dir);
  return (fs::path(dir) / name).string();
}

}  // namespace

void load_inputs(const Inputs& in, RowMatrixF* x, Table* meta, std::string* layer) {
  FeatureSource src = resolve_features(in.features, in.meta);
  if (src.meta_path.empty())
    throw std::runtime_error("no metadata: pass --meta index.csv (none found beside " + src.npy_path + ")");
  *x = load_features(src.npy_path);
  *meta = read_csv(src.meta_path);
  check_rows_match(*x, *meta, src.npy_path);
  if (layer) *layer = src.layer;
}

namespace {

// A control or dropped value that no row has is a typo (negcn, dmso for DMSO): the metric would run without the
// controls it was asked to use and print a number that looks fine. Names the flag, the file and the closest value.
void check_value_present(const Table& meta, const std::string& column, const std::string& value,
                         const std::string& flag) {
  const auto& col = meta.column(column);
  if (std::find(col.begin(), col.end(), value) != col.end()) return;
  std::vector<std::string> values;
  for (const std::string& v : col)
    if (std::find(values.begin(), values.end(), v) == values.end()) values.push_back(v);
  std::string hint = did_you_mean(value, values);
  if (hint.empty() && values.size() <= 10) {
    hint = " (its values:";
    for (const std::string& v : values) hint += " " + v;
    hint += ")";
  }
  throw std::runtime_error(flag + ": no row of " + meta.source() + " has " + column + " = '" + value + "'" + hint);
}

// The rows of a targets table in the metadata's row order, matched by an id column both hold: an expression table
// sorted otherwise than the embedding (or with rows for spots not embedded) is common.
Table rows_by_id(const Table& t, const Table& meta, const std::string& id) {
  const size_t tc = t.index(id);
  std::map<std::string, size_t> row_of;
  for (size_t r = 0; r < t.rows(); ++r)
    if (auto [it, fresh] = row_of.emplace(t.at(r, tc), r); !fresh)
      throw std::runtime_error(t.source() + ":" + std::to_string(t.line(r)) + ": " + id + " '" + t.at(r, tc) +
                               "' is given twice (also on line " + std::to_string(t.line(it->second)) + ")");
  const std::vector<std::string>& ids = meta.column(id);
  std::vector<size_t> order(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    auto it = row_of.find(ids[i]);
    if (it == row_of.end())
      throw std::runtime_error(t.source() + ": no row with " + id + " '" + ids[i] + "' (" + meta.source() + ":" +
                               std::to_string(meta.line(i)) + ")");
    order[i] = it->second;
  }
  return t.select_rows(order);
}

}  // namespace

void assign_reference_index(Table& meta, const std::string& condition, const std::string& column) {
  size_t eq = condition.find('=');
  if (eq == std::string::npos || eq == 0)
    throw std::runtime_error("--reference-index expects COLUMN=VALUE, got '" + condition + "'");
  const auto& col = meta.column(condition.substr(0, eq));
  std::string value = condition.substr(eq + 1);
  check_value_present(meta, condition.substr(0, eq), value, "--reference-index " + condition);
  std::vector<std::string> ref(meta.rows(), "-1");
  for (size_t r = 0; r < meta.rows(); ++r)
    if (col[r] == value) ref[r] = std::to_string(r);
  meta.add_column(column, std::move(ref));
}


void run_map(const MapJob& job) {
  StageTimer timer(job.opt.timings);
  FeatureSource src = resolve_features(job.in.features, job.in.meta);
  if (src.meta_path.empty())
    throw std::runtime_error("no metadata: pass --meta index.csv (none found beside " + src.npy_path + ")");
  const std::string& layer = src.layer;
  // The features are read from the file as the metric visits them (FeatureRows), not loaded.
  FeatureRows x = FeatureRows::open_npy(src.npy_path);
  Table meta = read_csv(src.meta_path);
  if (!job.reference_index.empty()) assign_reference_index(meta, job.reference_index, "Metadata_Reference_Index");
  timer.stage("open .npy + read metadata");
  const int64_t n_profiles = x.rows();
  MapOptions opt = job.opt;
  if (job.use_mpi && mpi::distributed()) {
    // Every rank reads the features (each query needs all candidates); the queries and nulls are split.
    opt.part = mpi::world().rank;
    opt.parts = mpi::world().size;
    opt.allgather = [](const std::string& mine) { return mpi::allgather(mine); };
  }
  AveragePrecision ap = average_precision(x, meta, opt);
  timer.stage("average precision (total)");
  MeanAveragePrecision m = mean_average_precision(meta, ap, opt);
  timer.stage("mAP + null + p-values + BH");
  if (opt.part != 0) return;  // rank 0 writes
  write_csv(out_path(job.out_dir, "mean_average_precision.csv"), m.table);
  write_average_precision_csv(out_path(job.out_dir, "average_precision.csv"), meta, ap);
  timer.stage("write CSVs");
  Json j;
  j.str("metric", "map");
  j.str("features", job.in.features);
  j.str("layer", layer);
  j.list("pos_sameby", job.opt.pos_sameby);
  j.list("pos_diffby", job.opt.pos_diffby);
  j.list("neg_sameby", job.opt.neg_sameby);
  j.list("neg_diffby", job.opt.neg_diffby);
  j.num("n_profiles", static_cast<double>(n_profiles));
  j.num("n_groups", static_cast<double>(m.map.size()));
  double mean = 0, below = 0, below_c = 0;
  for (size_t g = 0; g < m.map.size(); ++g) {
    mean += m.map[g];
    below += m.p_value[g] < job.opt.threshold;
    below_c += m.corrected_p_value[g] < job.opt.threshold;
  }
  double n = static_cast<double>(std::max<size_t>(1, m.map.size()));
  j.num("mean_map", mean / n);
  j.num("fraction_below_p", below / n);
  j.num("fraction_below_corrected_p", below_c / n);
  j.num("null_size", static_cast<double>(job.opt.null_size));
  j.num("seed", static_cast<double>(job.opt.seed));
  j.str("null_rng", job.opt.null_rng == NullRng::copairs ? "copairs" : "floyd");
  j.num("threshold", job.opt.threshold);
  j.write(out_path(job.out_dir, "summary.json"));
}

void run_recall(const RecallJob& job) {
  RowMatrixF x;
  Table meta;
  std::string layer;
  load_inputs(job.in, &x, &meta, &layer);
  if (!job.drop.empty()) {
    const auto& pert = meta.column(job.pert_col);
    for (const std::string& v : job.drop) check_value_present(meta, job.pert_col, v, "--drop " + v);
    std::vector<size_t> keep;
    for (size_t r = 0; r < meta.rows(); ++r)
      if (std::find(job.drop.begin(), job.drop.end(), pert[r]) == job.drop.end()) keep.push_back(r);
    RowMatrixF k(static_cast<int64_t>(keep.size()), x.cols());
    for (size_t i = 0; i < keep.size(); ++i) k.row(i) = x.row(keep[i]);
    x = std::move(k);
    meta = meta.select_rows(keep);
  }
  RowMatrixF map;
  std::vector<std::string> labels;
  if (job.aggregate == "none") {
    map = x;
    labels = meta.column(job.pert_col);
  } else {
    Table agg_meta;
    map = aggregate(x, meta, {job.pert_col}, job.aggregate, &agg_meta);
    labels = agg_meta.column(job.pert_col);
  }
  std::vector<std::string> cols = {"source", "null_distribution_size", "query_distribution_size"};
  // EFAAR names a pair by its sorted values (compute_recall: np.min, np.max), whatever order it was given in.
  for (auto [a, b] : job.thresholds) cols.push_back(recall_column_name(std::min(a, b), std::max(a, b)));
  Table out(cols);
  Json j;
  j.str("metric", "recall");
  j.str("features", job.in.features);
  j.str("layer", layer);
  j.num("n_perturbations", static_cast<double>(map.rows()));
  for (const auto& file : job.relationships) {
    auto pairs = relationship_pairs(labels, read_relationships(file));
    RecallParts parts;
    if (job.use_mpi && mpi::distributed()) {
      parts.part = mpi::world().rank;
      parts.parts = mpi::world().size;
      parts.allgather = [](const std::string& mine) { return mpi::allgather(mine); };
    }
    RecallResult r = relationship_recall(map, pairs, job.thresholds, job.threads, int64_t(1) << 24, parts);
    std::vector<std::string> row = {fs::path(file).stem().string(), std::to_string(r.null_size),
                                    std::to_string(r.query_size)};
    for (size_t t = 0; t < r.recall.size(); ++t) {
      row.push_back(format_number(r.recall[t]));
      j.num(fs::path(file).stem().string() + "." + cols[3 + t], r.recall[t]);
    }
    out.add_row(row);
  }
  if (job.use_mpi && mpi::world().rank != 0) return;  // rank 0 writes
  write_csv(out_path(job.out_dir, "recall.csv"), out);
  j.write(out_path(job.out_dir, "summary.json"));
}

void run_knn(const KnnJob& job) {
  RowMatrixF x;
  Table meta;
  std::string layer;
  load_inputs(job.in, &x, &meta, &layer);
  std::vector<std::string> classes;
  KnnProblem p =
      knn_problem(meta, job.label_col, job.split_col, job.train_value, job.test_value, job.group_col, &classes);
  KnnResult r = knn_classify(x, p, job.opt);
  const char* kind = job.opt.kind == KnnKind::dinov2 ? "dinov2" : "sklearn";
  Table out({"kind", "k", "top1", "top5", "n_queries"});
  Json j;
  j.str("metric", "knn");
  j.str("kind", kind);
  j.str("features", job.in.features);
  j.str("layer", layer);
  j.str("held_out_by", job.group_col);
  for (size_t k = 0; k < r.ks.size(); ++k) {
    out.add_row({kind, std::to_string(r.ks[k]), format_number(r.top1[k]), format_number(r.top5[k]),
                 std::to_string(p.queries.size())});
    j.num("top1_k" + std::to_string(r.ks[k]), r.top1[k]);
    j.num("top5_k" + std::to_string(r.ks[k]), r.top5[k]);
  }
  write_csv(out_path(job.out_dir, "knn.csv"), out);
  std::vector<std::string> pcols = {"row", job.label_col};
  for (int k : r.ks) pcols.push_back("prediction_k" + std::to_string(k));
  Table preds(pcols);
  for (size_t i = 0; i < p.queries.size(); ++i) {
    std::vector<std::string> row = {std::to_string(p.queries[i]), classes[p.label[p.queries[i]]]};
    for (size_t k = 0; k < r.ks.size(); ++k) row.push_back(classes[r.prediction[k][i]]);
    preds.add_row(row);
  }
  write_csv(out_path(job.out_dir, "predictions.csv"), preds);
  j.write(out_path(job.out_dir, "summary.json"));
}

void run_regress(const RegressJob& job) {
  RowMatrixF x;
  Table meta;
  std::string layer;
  load_inputs(job.in, &x, &meta, &layer);
  RowMatrixD y;
  std::vector<std::string> names;
  if (job.targets.size() > 4 && job.targets.substr(job.targets.size() - 4) == ".npy") {
    NpyArray a = read_npy(job.targets);
    if (a.shape.size() != 2) throw std::runtime_error(job.targets + ": targets must be a 2-D array [N, G]");
    y.resize(a.shape[0], a.shape[1]);
    std::vector<double> v = a.to_f64();
    std::copy(v.begin(), v.end(), y.data());
    for (int64_t g = 0; g < y.cols(); ++g) names.push_back("target_" + std::to_string(g));
  } else {
    Table t = read_csv(job.targets);
    if (!job.target_id.empty()) t = rows_by_id(t, meta, job.target_id);
    names = job.target_cols;
    if (names.empty())
      for (const std::string& c : t.columns())
        if (c != job.target_id) names.push_back(c);
    y.resize(static_cast<int64_t>(t.rows()), static_cast<int64_t>(names.size()));
    for (size_t g = 0; g < names.size(); ++g) {
      std::vector<double> col = t.numbers(names[g]);
      for (size_t r = 0; r < col.size(); ++r) y(r, g) = col[r];
    }
  }
  if (y.rows() != x.rows())
    throw std::runtime_error(job.targets + " has " + std::to_string(y.rows()) + " rows but the features have " +
                             std::to_string(x.rows()));
  for (int64_t r = 0; r < y.rows(); ++r)
    for (int64_t g = 0; g < y.cols(); ++g)
      if (!std::isfinite(y(r, g)))
        throw std::runtime_error(job.targets + ": row " + std::to_string(r) + ", target '" + names[g] +
                                 "' is not finite");
  if (job.log1p) y = y.array().log1p().matrix();
  if (job.top_variable > 0 && job.top_variable < y.cols()) {
    std::vector<double> var(y.cols());
    for (int64_t g = 0; g < y.cols(); ++g) var[g] = (y.col(g).array() - y.col(g).mean()).square().mean();
    std::vector<int64_t> idx(y.cols());
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return var[a] > var[b]; });
    idx.resize(job.top_variable);
    std::sort(idx.begin(), idx.end());
    RowMatrixD ys(y.rows(), job.top_variable);
    std::vector<std::string> ns;
    for (size_t k = 0; k < idx.size(); ++k) ys.col(k) = y.col(idx[k]), ns.push_back(names[idx[k]]);
    y = std::move(ys);
    names = std::move(ns);
  }
  std::vector<FoldScore> folds = regress_folds(x, y, meta.column(job.fold_col), job.opt);
  Table per({"fold", "target", "pearson"});
  Table fold_t({"fold", "n_train", "n_test", "pearson_mean", "pca_solver"});
  double mean = 0;
  for (const auto& f : folds) {
    for (size_t g = 0; g < f.pearson.size(); ++g) per.add_row({f.fold, names[g], format_number(f.pearson[g])});
    fold_t.add_row({f.fold, std::to_string(f.n_train), std::to_string(f.n_test), format_number(f.pearson_mean),
                    f.pca_solver});
    mean += f.pearson_mean;
  }
  mean /= static_cast<double>(folds.size());
  double var = 0;
  for (const auto& f : folds) var += (f.pearson_mean - mean) * (f.pearson_mean - mean);
  write_csv(out_path(job.out_dir, "regress.csv"), per);
  write_csv(out_path(job.out_dir, "folds.csv"), fold_t);
  Json j;
  j.str("metric", "regress");
  j.str("method", job.opt.method == "knn" ? "knn" + std::to_string(job.opt.k) : "ridge-" + job.opt.ridge_solver);
  j.str("features", job.in.features);
  j.str("layer", layer);
  j.num("n_targets", static_cast<double>(y.cols()));
  j.num("n_folds", static_cast<double>(folds.size()));
  j.num("pearson_mean", mean);
  j.num("pearson_std", std::sqrt(var / static_cast<double>(folds.size())));  // np.std over folds (ddof 0)
  if (job.opt.method == "ridge" && job.opt.pca_components > 0) {
    std::vector<std::string> solvers;
    for (const auto& f : folds) solvers.push_back(f.pca_solver);
    j.list("pca_solver", solvers);  // per fold, the solver scikit-learn runs (or the one forced)
    j.num("seed", job.opt.seed);
  }
  j.write(out_path(job.out_dir, "summary.json"));
}

namespace {
std::vector<std::pair<std::string, std::string>> layer_files(const std::string& run,
                                                             const std::vector<std::string>& layers) {
  std::vector<std::pair<std::string, std::string>> out;
  if (fs::is_regular_file(run)) return {{fs::path(run).stem().string(), run}};
  if (!fs::is_directory(run)) throw std::runtime_error(run + ": not an embedding folder or .npy file");
  if (!layers.empty()) {
    for (const auto& l : layers) out.emplace_back(l, (fs::path(run) / (l + ".npy")).string());
    return out;
  }
  for (const auto& e : fs::directory_iterator(run))
    if (e.path().extension() == ".npy") out.emplace_back(e.path().stem().string(), e.path().string());
  std::sort(out.begin(), out.end());
  if (out.empty()) throw std::runtime_error(run + ": no .npy layers");
  return out;
}
}  // namespace

void run_cka(const CkaJob& job) {
  auto a = layer_files(job.run_a, job.layers_a), b = layer_files(job.run_b, job.layers_b);
  if (job.kind != "linear" && job.kind != "unbiased")
    throw std::runtime_error("--kind must be linear or unbiased, not '" + job.kind + "'");
  std::vector<RowMatrixF> fb;
  for (const auto& [name, path] : b) fb.push_back(load_features(path));
  Table out({"layer_a", "layer_b", "cka"});
  for (const auto& [na, pa] : a) {
    RowMatrixF xa = load_features(pa);
    for (size_t k = 0; k < b.size(); ++k) {
      double v = job.kind == "linear" ? linear_cka(xa, fb[k]) : unbiased_cka(xa, fb[k], job.batch_size);
      out.add_row({na, b[k].first, format_number(v)});
    }
  }
  write_csv(out_path(job.out_dir, "cka.csv"), out);
  Json j;
  j.str("metric", "cka");
  j.str("kind", job.kind);
  j.str("run_a", job.run_a);
  j.str("run_b", job.run_b);
  j.num("n_pairs", static_cast<double>(out.rows()));
  j.write(out_path(job.out_dir, "summary.json"));
}

namespace {
std::vector<double> read_scores(const std::string& spec) {
  if (spec.size() > 4 && spec.substr(spec.size() - 4) == ".npy") {
    NpyArray a = read_npy(spec);
    if (a.shape.size() != 1 && !(a.shape.size() == 2 && a.shape[1] == 1))
      throw std::runtime_error(spec + ": scores must be a 1-D array");
    return a.to_f64();
  }
  size_t colon = spec.rfind(':');
  if (colon == std::string::npos)
    throw std::runtime_error("scores '" + spec + "': expected FILE.csv:COLUMN or FILE.npy");
  return read_csv(spec.substr(0, colon)).numbers(spec.substr(colon + 1));
}
}  // namespace

void run_corr(const CorrJob& job) {
  std::vector<double> a = read_scores(job.a), b = read_scores(job.b);
  if (a.size() != b.size())
    throw std::runtime_error("score vectors differ in length: " + std::to_string(a.size()) + " (" + job.a + ") vs " +
                             std::to_string(b.size()) + " (" + job.b + ")");
  Table out({"a", "b", "n", "pearson", "spearman"});
  double p = pearson(a, b), s = spearman(a, b);
  out.add_row({job.a, job.b, std::to_string(a.size()), format_number(p), format_number(s)});
  write_csv(out_path(job.out_dir, "correlation.csv"), out);
  Json j;
  j.str("metric", "correlation");
  j.num("pearson", p);
  j.num("spearman", s);
  j.write(out_path(job.out_dir, "summary.json"));
}

void run_linear(const LinearJob& job) {
  RowMatrixF x;
  Table meta;
  std::string layer;
  load_inputs(job.in, &x, &meta, &layer);
  std::vector<std::string> classes;
  KnnProblem p = knn_problem(meta, job.label_col, "", "", "", "", &classes);
  const auto& split = meta.column(job.split_col);
  std::vector<int64_t> train, val, test;
  for (size_t r = 0; r < meta.rows(); ++r) {
    if (p.label[r] < 0) continue;
    if (split[r] == job.train_value) train.push_back(static_cast<int64_t>(r));
    else if (split[r] == job.val_value) val.push_back(static_cast<int64_t>(r));
    else if (split[r] == job.test_value) test.push_back(static_cast<int64_t>(r));
  }
  LinearProbeOptions opt;
  if (!job.cs.empty()) opt.cs = job.cs;
  LinearProbeResult r = linear_probe(x, p.label, p.n_classes, train, val, test, opt);
  Table sweep({"C", "val_top1"});
  for (size_t i = 0; i < r.cs.size(); ++i) sweep.add_row({format_number(r.cs[i]), format_number(r.val_top1[i])});
  write_csv(out_path(job.out_dir, "linear_sweep.csv"), sweep);
  Table out({"best_C", "test_top1", "test_top5", "n_train", "n_val", "n_test"});
  out.add_row({format_number(r.best_c), format_number(r.test_top1), format_number(r.test_top5),
               std::to_string(train.size()), std::to_string(val.size()), std::to_string(test.size())});
  write_csv(out_path(job.out_dir, "linear.csv"), out);
  Json j;
  j.str("metric", "linear");
  j.str("features", job.in.features);
  j.str("layer", layer);
  j.num("best_C", r.best_c);
  j.num("test_top1", r.test_top1);
  j.num("test_top5", r.test_top5);
  j.write(out_path(job.out_dir, "summary.json"));
}

void run_normalize(const NormalizeJob& job) {
  RowMatrixF x;
  Table meta;
  std::string layer;
  load_inputs(job.in, &x, &meta, &layer);
  NormSpec spec;
  spec.group_column = job.group_col;
  if (!job.control.empty()) {
    size_t eq = job.control.find('=');
    if (eq == std::string::npos || eq == 0)
      throw std::runtime_error("--control expects COLUMN=VALUE, got '" + job.control + "'");
    spec.control_column = job.control.substr(0, eq);
    spec.control_value = job.control.substr(eq + 1);
    check_value_present(meta, spec.control_column, spec.control_value, "--control " + job.control);
  }
  auto need_control = [&] {
    if (spec.control_column.empty()) throw std::runtime_error(job.method + " needs --control COLUMN=VALUE");
  };
  const std::string& m = job.method;
  if (m == "standardize" || m == "mad" || m == "mad-normal" || m == "mad-raw") {
    Scale how = m == "standardize" ? Scale::standard : m == "mad" ? Scale::mad : m == "mad-normal" ? Scale::mad_normal
                                                                                                     : Scale::mad_raw;
    scale_on_controls(x, meta, spec, how, job.eps >= 0 ? job.eps : (how == Scale::standard ? 0.0 : 1e-18));
  } else if (m.rfind("spherize-", 0) == 0) {
    std::string w = m.substr(9);
    Whiten how = w == "pca" ? Whiten::pca : w == "zca" ? Whiten::zca : w == "pca-cor" ? Whiten::pca_cor
               : w == "zca-cor" ? Whiten::zca_cor : throw std::runtime_error("unknown spherize variant '" + w + "'");
    spherize(x, meta, spec, how, job.eps >= 0 ? job.eps : 1e-6);
  } else if (m == "pca") {
    std::vector<size_t> fit = fit_groups(meta, NormSpec{"", spec.control_column, spec.control_value}).controls[0];
    x = pca(x, fit, job.n_components);
  } else if (m == "tvn") {
    need_control();
    x = tvn_on_controls(x, meta, spec.control_column, spec.control_value, job.group_col);
  } else if (m == "centerscale") {
    need_control();
    centerscale_on_controls(x, meta, spec.control_column, spec.control_value, job.group_col);
  } else if (m == "pca-centerscale") {
    x = pca_centerscale(x, meta, job.group_col, job.n_components > 0 ? job.n_components : 128);
  } else if (m == "aggregate") {
    Table agg_meta;
    x = aggregate(x, meta, job.by, job.agg, &agg_meta);
    meta = agg_meta;
  } else if (m == "filter") {
    std::vector<int64_t> keep = filter_features(x, job.zero_mad, job.min_variance);
    RowMatrixF k(x.rows(), static_cast<int64_t>(keep.size()));
    for (size_t c = 0; c < keep.size(); ++c) k.col(c) = x.col(keep[c]);
    x = std::move(k);
  } else {
    throw std::runtime_error("unknown normalisation method '" + m + "'");
  }
  std::string name = layer.empty() ? "features" : layer;
  // Several layers may be normalised into one folder: they share index.csv (refused if their rows differ) and
  // normalize.json holds one record per layer.
  const std::string index_path = out_path(job.out_dir, "index.csv"), record_path = out_path(job.out_dir, "normalize.json");
  json::Value records = json::Value::object();
  if (fs::exists(record_path)) {
    json::Value old = json::parse_file(record_path);
    if (const json::Value* l = old.find("layers"); l && l->is_object()) records = *l;
  }
  if (!records.as_object().empty() && !records.find(name) && fs::exists(index_path) &&
      read_csv(index_path).rows() != meta.rows())
    throw std::runtime_error(job.out_dir + ": holds layers with " + std::to_string(read_csv(index_path).rows()) +
                             " rows in index.csv, this one has " + std::to_string(meta.rows()) + "; use another --out");
  write_npy(out_path(job.out_dir, name + ".npy"), {x.rows(), x.cols()}, x.data());
  write_csv(index_path, meta);
  json::Value r = json::Value::object();
  r.set("method", json::Value::string(m));
  r.set("features", json::Value::string(job.in.features));
  r.set("group_col", json::Value::string(job.group_col));
  r.set("control", json::Value::string(job.control));
  r.set("rows", json::Value::integer(static_cast<int64_t>(x.rows())));
  r.set("cols", json::Value::integer(static_cast<int64_t>(x.cols())));
  records.set(name, r);
  json::Value doc = json::Value::object();
  doc.set("step", json::Value::string("normalize"));
  doc.set("layers", records);
  write_file_atomic(record_path, json::dump(doc) + "\n");
}

}  // namespace tabula::eval
