// The pieces `tabula study` is made of, each one resumable step on files: reading an embedding's layers, the
// held-out ridge predictions of the prediction scatter, the per-class train/val/test split of a label column, the
// example thumbnails the report shows. study.cpp strings them together.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/fileio.h"
#include "study/study.h"

namespace tabula::study {

// Runs `fn` unless `marker` exists (a finished step of an earlier run), then writes the marker.
template <class F>
void step(const std::string& marker, F fn) {
  if (std::filesystem::exists(marker)) return;
  std::filesystem::create_directories(std::filesystem::path(marker).parent_path());
  fn();
  write_file_atomic(marker, "done\n");
}

// A number of a metric's summary.json (NaN for a JSON null: the metric is undefined there).
double summary_number(const std::string& file, const std::string& key);
// The layers an embedding folder holds, in run.json's (forward) order, and one layer's width.
std::vector<std::string> run_layers(const std::string& dir);
int64_t layer_dim(const std::string& dir, const std::string& layer);

// Held-out ridge predictions (StandardScaler -> PCA -> exact ridge, each fold predicted by a model of the other
// folds), long format: id, fold, target, observed, predicted. The report's prediction scatter (Figure 1b).
void write_predictions(const std::string& features, const StudyDataset& d, const std::vector<std::string>& targets,
                       int64_t pca_components, int threads, const std::string& out_csv);

// The regression targets of a dataset: every column of the targets table but target_id.
std::vector<std::string> target_columns(const StudyDataset& d);
// The targets table in the embedding's row order. Without target_id: the table itself (one row per image in manifest
// order). With it, and index.csv holding that column: the table's rows matched to index.csv's by id (a targets
// file in another order, or with rows for images not embedded, is common), written to out_csv when the order
// differs; an id without a row, or given twice, is an error naming the file and line. Returns the path to use.
std::string aligned_targets(const StudyDataset& d, const std::string& index_csv, const std::string& out_csv);

// index.csv plus a `split` column: within each class (in row order) every 5th row from the first is test, every 5th
// from the second is val, the rest train -- deterministic, stratified, the same for every model.
void write_split(const std::string& index_csv, const std::string& label_col, const std::string& out_csv);

// Up to `per_class` example thumbnails (8-bit PNG, at most 160 px) per class of `class_col` (controls of
// `control` as their own class) into DIR/examples/<dataset>/, listed in examples.csv (class, file, caption).
void write_examples(const StudyDataset& d, const std::string& class_col, const std::string& out_dir, int per_class);

}  // namespace tabula::study
