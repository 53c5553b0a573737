// `tabula report`: one self-contained HTML file (inline SVG, no script, no network) from the folders a study wrote
// (`tabula demo --out DIR`, or the same layout written by hand):
//
//   DIR/summary.csv                                  every number, tidy: dataset, model, layer, layer_index,
//                                                    n_layers, metric, value
//   DIR/embed/<dataset>/<model>/run.json             provenance of each embedding (arch, weights sha256 or seed +
//                                                    init, tabula version + git hash, preprocessing, ...)
//   DIR/eval/cellpainting/<model>/<layer>/map/       copairs-style average_precision.csv + mean_average_precision.csv
//   DIR/eval/tissue/<model>/<layer>/ridge/regress.csv   per-fold, per-gene Pearson r
//   DIR/eval/tissue/<model>/<layer>/predictions/predictions.csv   held-out ridge predictions (patch, gene)
//   DIR/eval/cka/<a>_vs_<b>/cka.csv                  layer x layer CKA
//   DIR/data/cellpainting/compounds.csv              optional: each compound's phenotype class (groups the bars)
//
// Panels: per-layer metric curves (every model; baselines dashed), per-compound mAP bars with 95 % error bars and
// significance marks, held-out prediction scatter between model pairs with their correlation, CKA heatmaps,
// plain-language "within noise" notes, a provenance table and a table of every number with the file it came from.
// Everything but summary.csv is optional: a panel whose inputs are absent is left out (and says so).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tabula {

struct ReportOptions {
  std::vector<std::string> runs;  // study folders; with several, model names get the folder's name as prefix
  std::string out;                // report.html (written atomically)
  std::string title = "What do untrained networks and simple baselines retrieve?";
  int bootstrap = 2000;           // resamples for the 95 % intervals
  uint64_t seed = 0;              // bootstrap RNG seed (the report is byte-identical for the same inputs)
};

// One "within noise" comparison: a baseline against a network family at the family's best layer.
struct NoiseNote {
  std::string metric, baseline, family, family_layer;
  double baseline_value = 0, baseline_lo = 0, baseline_hi = 0;
  double family_value = 0, family_lo = 0, family_hi = 0;
  std::string verdict;  // "matches" (intervals overlap), "exceeds" or "below"
  std::string text;     // the sentence shown in the report
};

struct ReportResult {
  std::string html_path;
  std::vector<NoiseNote> notes;
  int panels = 0;  // number of <svg> figures written
};

ReportResult write_report(const ReportOptions& opt);

// The percentile-bootstrap 95 % interval of the mean of `values` (resampling values with replacement, `resamples`
// times, std::mt19937_64(seed)); {mean, mean} for fewer than two values.
std::pair<double, double> bootstrap_mean_ci95(const std::vector<double>& values, int resamples, uint64_t seed);

}  // namespace tabula
