// `tabula study`: the paper's study on any data, in one command. Models (untrained twins by seed, trained weights,
// the pixels and nuclei baselines) x datasets x every layer; per-plate normalisation on controls; the metrics the
// metadata supports (replicate mAP with compound + control columns, relationship recall with a relationships file,
// kNN and a linear probe with a label column, ridge / 1-NN regression with a targets table, layer x layer CKA
// between the seeds of one architecture); summary.csv (every number, tidy), study.json (what was run on which
// columns, for the report) and report.html. Every step leaves a marker: rerunning the command continues.
//
// Layout of DIR (what `tabula report` reads):
//   study.json                                   the datasets and their columns, the models
//   summary.csv                                  dataset, model, layer, layer_index, n_layers, metric, value
//   embed/<dataset>/<model>/                     embedding folders (run.json, LAYER.npy, index.csv)
//   eval/<dataset>/<model>/<layer>/{norm,map,recall,knn,linear,ridge,knn1}/   each metric's own outputs
//   eval/cka/<a>_vs_<b>/cka.csv                  layer x layer CKA on the first dataset
//   examples/<dataset>/*.png + examples.csv      a few example images per class / phenotype
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tabula {

// One model: "ARCH@SEED" (untrained), "ARCH=FILE" (trained weights), "pixels", "nuclei" (baselines).
struct StudyModel {
  std::string label;  // folder and legend name: resnet50-s0, pixels, resnet50-<weights stem>
  std::string arch, weights;
  std::optional<uint64_t> seed;
  bool baseline = false;
  std::string family;  // the arch (CKA pairs the seeds of a family)
};
StudyModel parse_study_model(const std::string& spec);

// One dataset and the columns that say which metrics it supports. An empty column turns its metrics off.
struct StudyDataset {
  std::string name = "data";  // folder under embed/ and eval/
  std::string data;           // what `tabula embed --data` takes (manifest, folder, ImageFolder, .h5)
  std::string plate_col;      // per-plate normalisation (MAD on the controls; on all rows without --control)
  std::string batch_col;      // shown in the report's PCA (batch effects)
  std::string control;        // COL=VALUE: negative controls (normalisation reference, mAP negatives)
  std::string compound_col;   // replicate mAP (copairs, JUMP phenotypic-activity preset) against the controls
  std::string phenotype_csv;  // optional: compound_col -> phenotype_col; mAP and retrieval per class
  std::string phenotype_col = "Metadata_phenotype";
  std::string relationships;  // relationship recall (EFAAR) of compound_col pairs
  std::string relationship_name = "relationship";
  std::string label_col;      // kNN (DINOv2 protocol) and, with a split, a linear probe
  std::string label_name;     // shown in metric names (default: label_col without "Metadata_")
  std::string group_col;      // kNN: a query ignores neighbours of its own group (e.g. plate); no linear probe
  std::string group_name;     // shown in metric names (default: group_col without "Metadata_")
  std::string split_col;      // train/val/test; empty with a label and no group: assigned per class (1/5 val,
                              // 1/5 test, by position)
  int knn_k = 10;
  std::string targets;        // regression targets (CSV, one row per image in manifest order)
  std::string target_id;      // a column of the targets table that is an identifier, not a target
  std::string targets_name = "target";
  std::string fold_col;       // regression folds (e.g. patient)
  bool log1p = false;
  int64_t pca_components = 256;  // HEST's PCA before the ridge (clipped to the feature width)
  bool dark_nuclei = false;   // the nuclei baseline on brightfield/H&E (dark nuclei, first channel)
};

struct StudyOptions {
  std::string out = "tabula-study";
  std::vector<std::string> models;  // StudyModel specs
  std::vector<StudyDataset> datasets;
  std::string cka_dataset;          // where the seeds' CKA is computed (default: the first dataset)
  int64_t null_size = 10000;        // mAP null samples
  int size = 0;                     // model input size (0: each arch's default)
  int threads = 0;
  bool quiet = false;
  std::string device = "cpu", precision = "fp32";
  std::string title;                // report heading (empty: the report's default)
  std::string tag = "study";        // progress messages: "tabula <tag>: ..."
};

struct StudyResult {
  std::string summary_csv, report_html;
  std::string table;  // each model's feature-output number per metric, as text
};

StudyResult run_study(const StudyOptions& opt);

}  // namespace tabula
