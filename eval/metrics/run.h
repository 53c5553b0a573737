// The `tabula eval ...` commands as library functions: each loads its inputs (features + metadata), computes
// one metric, and writes a tidy CSV (one row per group / fold / layer pair) plus summary.json into `out_dir`.
// The CLI only fills these structs from flags.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "eval/metrics/knn.h"
#include "eval/metrics/map.h"
#include "eval/metrics/regress.h"

namespace tabula::eval {

struct Inputs {
  std::string features;  // DIR[:LAYER] | X.npy
  std::string meta;      // index.csv (default: DIR/index.csv)
};
// Loads features and metadata, checking that their row counts agree.
void load_inputs(const Inputs& in, RowMatrixF* x, Table* meta, std::string* layer = nullptr);

struct MapJob {
  Inputs in;
  MapOptions opt;
  std::string reference_index;  // "COL=VALUE": add Metadata_Reference_Index as copairs.assign_reference_index
  std::string out_dir;
  // Under mpirun/srun: the ranks split the queries and the nulls (MapOptions::part/parts) and rank 0 writes the
  // files, identical to one process's. `tabula eval map` sets it; library callers keep one process.
  bool use_mpi = false;
};
void run_map(const MapJob& job);
// copairs.matching.assign_reference_index: the column is -1 except on rows matching col == value, which get their
// own row index (so each control is its own "reference" and never a positive of another control).
void assign_reference_index(Table& meta, const std::string& condition, const std::string& column);

struct RecallJob {
  Inputs in;
  std::string pert_col;
  std::vector<std::string> relationships;  // files
  std::string aggregate = "mean";          // mean | median | none
  std::vector<std::string> drop;           // perturbations removed before aggregation (EFAAR keys_to_remove)
  std::vector<std::pair<double, double>> thresholds = {{0.05, 0.95}, {0.1, 0.9}};
  int threads = 0;
  std::string out_dir;
  // Under mpirun/srun: the ranks split the similarity sweep (RecallParts) and rank 0 writes. `tabula eval recall`
  // sets it.
  bool use_mpi = false;
};
void run_recall(const RecallJob& job);

struct KnnJob {
  Inputs in;
  std::string label_col, split_col, train_value = "train", test_value = "test", group_col;
  KnnOptions opt;
  std::string out_dir;
};
void run_knn(const KnnJob& job);

struct RegressJob {
  Inputs in;
  std::string targets;  // .npy [N, G] or .csv (columns = targets)
  std::vector<std::string> target_cols;  // CSV: which columns (default all but target_id)
  std::string target_id;  // CSV: rows matched to the metadata rows by this column (default: row order)
  bool log1p = false;
  int64_t top_variable = 0;  // keep the G most variable targets (HEST: 50); 0 = all
  std::string fold_col;
  RegressOptions opt;
  std::string out_dir;
};
void run_regress(const RegressJob& job);

struct CkaJob {
  std::string run_a, run_b;                    // embedding folders (or single .npy files)
  std::vector<std::string> layers_a, layers_b; // default: every .npy in the folder
  std::string kind = "linear";                 // linear | unbiased
  int64_t batch_size = 0;
  std::string out_dir;
};
void run_cka(const CkaJob& job);

struct CorrJob {
  std::string a, b;  // CSV:COLUMN or .npy (1-D)
  std::string out_dir;
};
void run_corr(const CorrJob& job);

struct LinearJob {
  Inputs in;
  std::string label_col, split_col, train_value = "train", val_value = "val", test_value = "test";
  std::vector<double> cs;  // empty: LinearProbeOptions' default sweep
  std::string out_dir;
};
void run_linear(const LinearJob& job);

// One normalisation step on an embedding; writes OUT/LAYER.npy and OUT/index.csv, so every other `eval` command
// can read the result with --features OUT:LAYER.
struct NormalizeJob {
  Inputs in;
  // standardize | mad | mad-normal | mad-raw | spherize-pca | spherize-zca | spherize-pca-cor | spherize-zca-cor |
  // pca | tvn | centerscale | pca-centerscale | aggregate | filter
  std::string method;
  std::string group_col;  // plate / batch
  std::string control;    // COL=VALUE selecting negative controls (empty: all rows)
  double eps = -1;        // < 0: the method's default (1e-6 spherize, 1e-18 MAD, 0 standardize)
  int64_t n_components = 0;
  std::vector<std::string> by;    // aggregate
  std::string agg = "mean";       // aggregate
  double min_variance = 0;        // filter: drop features with variance <= this (< 0: off)
  bool zero_mad = true;           // filter: drop zero-MAD features
  std::string out_dir;
};
void run_normalize(const NormalizeJob& job);

// Minimal JSON writing for summary.json.
std::string json_escape(const std::string& s);

}  // namespace tabula::eval
