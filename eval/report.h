// `tabula report`: one self-contained HTML file (inline SVG, a few lines of inline script for the sortable table,
// no network) from the folders a study wrote (`tabula study` / `tabula demo`, study/study.h lists the layout), or
// from a plain folder of `tabula eval` outputs (every summary.json and cka.csv under it).
//
// Sections: the data (plates, compounds, replicates, controls, classes; example images per class); per-layer
// curves (one panel per architecture with its layer names, shared y-range, one hue per architecture and a line
// style per seed, 95 % bootstrap bands, chance level); per-compound mAP bars; held-out prediction scatters; CKA
// heatmaps (viridis, values in cells); per-layer PCA coloured by label, plate, batch and fold; the "within noise"
// table; provenance; every number (sortable, filterable). A table of contents links them. A section whose inputs
// are absent is left out. The pieces live in eval/report/.
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
