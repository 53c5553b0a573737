// `tabula eval ...`: argument parsing only; the work is in eval/metrics/run.h.
#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include "cli/args.h"
#include "util/mpi.h"
#include "eval/metrics/run.h"
#include "util/suggest.h"

namespace tabula::cli {

namespace {
eval::Inputs inputs(const Args& a) { return {a.get("features"), a.get("meta")}; }
int threads(const Args& a) { return static_cast<int>(a.get_int("threads")); }
void done(const Args& a) { std::cerr << "tabula " << a.command() << ": wrote " << a.get("out") << "\n"; }
}  // namespace

int cmd_eval_map(const Args& a) {
  eval::MapJob job;
  job.in = inputs(a);
  job.opt.pos_sameby = split_list(a.get("pos-sameby"));
  job.opt.pos_diffby = split_list(a.get("pos-diffby"));
  job.opt.neg_sameby = split_list(a.get("neg-sameby"));
  job.opt.neg_diffby = split_list(a.get("neg-diffby"));
  job.opt.map_groupby = split_list(a.get("groupby"));
  job.opt.null_size = a.get_int("null-size");
  long long seed = a.get_int("seed");
  if (seed < 0) throw UsageError("tabula eval map: --seed must be >= 0");
  job.opt.seed = static_cast<uint64_t>(seed);
  const std::string rng = a.get("null-rng");
  if (rng != "copairs" && rng != "floyd")
    throw UsageError("tabula eval map: --null-rng must be copairs or floyd, got '" + rng + "'");
  job.opt.null_rng = rng == "copairs" ? eval::NullRng::copairs : eval::NullRng::floyd;
  job.opt.threshold = a.get_double("threshold");
  job.opt.threads = threads(a);
  job.opt.timings = a.has("timings");
  job.reference_index = a.get("reference-index");
  job.out_dir = a.get("out");
  job.use_mpi = true;  // under mpirun/srun the ranks split the queries; rank 0 writes
  eval::run_map(job);
  if (mpi::world().rank == 0) done(a);
  return 0;
}

int cmd_eval_recall(const Args& a) {
  eval::RecallJob job;
  job.in = inputs(a);
  job.pert_col = a.get("pert-col");
  job.relationships = split_list(a.get("relationships"));
  job.aggregate = a.get("aggregate");
  job.drop = split_list(a.get("drop"));
  job.thresholds.clear();
  for (const auto& t : split_list(a.get("thresholds"))) {
    auto lohi = split_list(t, ':');
    if (lohi.size() != 2) throw UsageError("tabula eval recall: --thresholds expects LO:HI pairs, got '" + t + "'");
    try {
      job.thresholds.emplace_back(std::stod(lohi[0]), std::stod(lohi[1]));
    } catch (const std::exception&) {
      throw UsageError("tabula eval recall: --thresholds expects numbers, got '" + t + "'");
    }
  }
  job.threads = threads(a);
  job.out_dir = a.get("out");
  job.use_mpi = true;  // under mpirun/srun the ranks split the similarity sweep; rank 0 writes
  eval::run_recall(job);
  if (mpi::world().rank == 0) done(a);
  return 0;
}

int cmd_eval_knn(const Args& a) {
  eval::KnnJob job;
  job.in = inputs(a);
  job.label_col = a.get("label-col");
  job.split_col = a.get("split-col");
  job.train_value = a.get("train-value");
  job.test_value = a.get("test-value");
  job.group_col = a.get("group-col");
  std::string kind = a.get("kind");
  if (kind != "dinov2" && kind != "sklearn") throw UsageError("tabula eval knn: --kind must be dinov2 or sklearn");
  job.opt.kind = kind == "dinov2" ? eval::KnnKind::dinov2 : eval::KnnKind::sklearn;
  job.opt.ks.clear();
  std::string ks = a.has("k") ? a.get("k") : (kind == "dinov2" ? "10,20,100,200" : "5");
  for (const auto& k : split_list(ks)) {
    try {
      job.opt.ks.push_back(std::stoi(k));
    } catch (const std::exception&) {
      throw UsageError("tabula eval knn: --k expects integers, got '" + k + "'");
    }
  }
  job.opt.temperature = a.get_double("temperature");
  job.opt.threads = threads(a);
  job.out_dir = a.get("out");
  eval::run_knn(job);
  done(a);
  return 0;
}

int cmd_eval_regress(const Args& a) {
  eval::RegressJob job;
  job.in = inputs(a);
  job.targets = a.get("targets");
  job.target_cols = split_list(a.get("target-cols"));
  job.target_id = a.get("target-id");
  job.log1p = a.has("log1p");
  job.top_variable = a.get_int("top-variable");
  job.fold_col = a.get("fold-col");
  job.opt.method = a.get("method");
  job.opt.ridge_solver = a.get("solver");
  job.opt.pca_components = a.get_int("pca");
  try {
    job.opt.pca_solver = eval::parse_pca_solver(a.get("pca-solver"));
  } catch (const std::exception& e) {
    throw UsageError(std::string("tabula eval regress: --pca-solver: ") + e.what());
  }
  long long seed = a.get_int("seed");
  if (seed < 0 || seed > 0xffffffffLL) throw UsageError("tabula eval regress: --seed must be in [0, 2^32 - 1]");
  job.opt.seed = static_cast<uint32_t>(seed);
  job.opt.k = static_cast<int>(a.get_int("k"));
  job.opt.threads = threads(a);
  job.out_dir = a.get("out");
  eval::run_regress(job);
  done(a);
  return 0;
}

int cmd_eval_cka(const Args& a) {
  eval::CkaJob job;
  job.run_a = a.get("features");
  job.run_b = a.get("other");
  job.layers_a = split_list(a.get("layers"));
  job.layers_b = split_list(a.get("other-layers"));
  job.kind = a.get("kind");
  job.batch_size = a.get_int("batch");
  job.out_dir = a.get("out");
  eval::run_cka(job);
  done(a);
  return 0;
}

int cmd_eval_corr(const Args& a) {
  eval::CorrJob job;
  job.a = a.get("a");
  job.b = a.get("b");
  job.out_dir = a.get("out");
  eval::run_corr(job);
  done(a);
  return 0;
}

int cmd_eval_linear(const Args& a) {
  eval::LinearJob job;
  job.in = inputs(a);
  job.label_col = a.get("label-col");
  job.split_col = a.get("split-col");
  job.train_value = a.get("train-value");
  job.val_value = a.get("val-value");
  job.test_value = a.get("test-value");
  for (const auto& c : split_list(a.get("C"))) {
    try {
      job.cs.push_back(std::stod(c));
    } catch (const std::exception&) {
      throw UsageError("tabula eval linear: --C expects numbers, got '" + c + "'");
    }
  }
  job.out_dir = a.get("out");
  eval::run_linear(job);
  done(a);
  return 0;
}

int cmd_eval_normalize(const Args& a) {
  eval::NormalizeJob job;
  job.in = inputs(a);
  job.method = a.get("method");
  static const std::vector<std::string> methods = {"standardize",      "mad",          "mad-normal",       "mad-raw",
                                                    "spherize-pca",     "spherize-zca", "spherize-pca-cor",
                                                    "spherize-zca-cor", "pca",          "tvn",
                                                    "centerscale",      "pca-centerscale", "aggregate", "filter"};
  if (std::find(methods.begin(), methods.end(), job.method) == methods.end()) {
    std::string all;
    for (const std::string& m : methods) all += (all.empty() ? "" : "|") + m;
    throw UsageError("tabula eval normalize: unknown --method '" + job.method + "'" +
                     did_you_mean(job.method, methods) + " (" + all + ")");
  }
  job.group_col = a.get("group-col");
  job.control = a.get("control");
  job.eps = a.has("eps") ? a.get_double("eps") : -1.0;
  job.n_components = a.get_int("n-components");
  job.by = split_list(a.get("by"));
  job.agg = a.get("agg");
  job.min_variance = a.get_double("min-variance");
  job.zero_mad = !a.has("keep-zero-mad");
  job.out_dir = a.get("out");
  eval::run_normalize(job);
  done(a);
  return 0;
}

}  // namespace tabula::cli
