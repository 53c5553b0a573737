// The report's pieces (eval/report.cpp assembles them): the study as the report reads it, the SVG toolkit, and
// one function per figure or table. Shared by the files of eval/report/ only.
#pragma once
#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "eval/report.h"

namespace tabula::report {

// ---- the study -------------------------------------------------------------------------------------------------

// One number of the study, as summary.csv holds it.
struct Row {
  std::string dataset, model, layer;
  int layer_index = 0, layers = 1;
  std::string metric;
  double value = NAN;
  std::string source;  // file it came from, relative to the study folder (plain eval folders)
};

// How a model is drawn in every figure: one hue per architecture, a dash pattern per seed (solid for trained).
struct Style {
  std::string colour, dash;
  double width = 2;
};

// A model of the study: where its files are and what it is (from its run.json).
struct Model {
  std::string run;     // study folder
  std::string label;   // folder name under embed/<dataset>/
  std::string shown;   // legend name (label, or "run/label" with several runs)
  std::string kind;    // untrained | trained | baseline
  std::string arch;    // run.json's arch (baselines: their name)
  std::string family;  // seeds of one untrained arch share a family; others are their own
  std::vector<std::pair<std::string, std::string>> provenance;  // dataset -> run.json path
  Style style;
};

// What study.json says about a dataset (empty fields: not given; a demo folder written before study.json existed
// gets the demo's columns).
struct DatasetInfo {
  std::string name, data, plate_col, batch_col, control, compound_col, phenotype_col, label_col, group_col, targets,
      target_id, fold_col, phenotype_csv;
};

struct Study {
  std::vector<Row> rows;
  std::vector<Model> models;                             // in order of first appearance in summary.csv
  std::map<std::string, std::string> phenotype;          // compound -> phenotype class
  std::vector<std::pair<std::string, std::string>> cka;  // (title, cka.csv)
  std::vector<DatasetInfo> datasets;                     // from study.json (first run), in its order
  std::vector<std::string> runs;
  bool plain = false;  // a folder of eval outputs, not a study
};

Study load_study(const ReportOptions& opt);
const Model* find_model(const Study& st, const std::string& shown);
const DatasetInfo* find_dataset(const Study& st, const std::string& name);
// The layer a model's numbers on `dataset` end at (its feature output).
std::string last_layer(const Study& st, const std::string& shown, const std::string& dataset);
// Families in model order, with their members.
std::vector<std::pair<std::string, std::vector<const Model*>>> families(const Study& st);
// (dataset, metric) pairs in first-seen order.
std::vector<std::pair<std::string, std::string>> metric_list(const Study& st);
// The folder of one model's outputs for one layer: RUN/eval/<dataset>/<label>/<layer>.
std::string eval_dir(const Model& m, const std::string& dataset, const std::string& layer);

// ---- per-unit values (what the intervals resample) ---------------------------------------------------------------

// Per-unit values of a metric for one model at one layer: compounds' mAP (or 0/1 retrieved) for mAP / retrieved,
// genes' mean-over-folds Pearson r for regression, queries' 0/1 correctness for kNN. Empty when no file has them.
std::vector<double> units(const Study& st, const Model& m, const std::string& dataset, const std::string& metric,
                          const std::string& layer);
// The score a random representation gets on a metric (chance level), NaN when not known.
double chance_level(const Study& st, const std::string& dataset, const std::string& metric);

struct MapFiles {
  std::map<std::string, double> map;               // compound -> mAP
  std::map<std::string, bool> significant;         // compound -> below_corrected_p
  std::map<std::string, std::vector<double>> aps;  // compound -> replicate APs
};
std::optional<MapFiles> read_map(const std::string& dir, const std::string& compound_col);
std::string compound_column(const Study& st, const std::string& dataset);

// ---- SVG ---------------------------------------------------------------------------------------------------------

std::string esc(const std::string& s);
std::string fmt(double v, int digits = 3);
std::string slug(const std::string& s);  // an id: letters, digits and '-'
// <svg id=...> with a <title> (what screen readers and tooltips show) and a visible bold title.
std::string svg_open(const std::string& id, double w, double h, const std::string& title, double title_x);
// Round tick values (steps of 1, 2, 2.5 or 5 x 10^k, about 4 of them) inside [lo, hi].
std::vector<double> nice_ticks(double lo, double hi);
// Horizontal grid lines with tick labels at nice_ticks(lo, hi) on the y axis, plus both axes.
void axes(std::ostringstream& s, double L, double T, double right, double bottom, double lo, double hi,
          const std::function<double(double)>& Y);
void ylabel(std::ostringstream& s, double x, double y, const std::string& text);
std::string viridis(double t);            // t in [0, 1] -> "#rrggbb"
const char* category_colour(size_t i);    // 12 distinguishable colours, then grey
std::string line_attrs(const Style& st);  // stroke, stroke-width, stroke-dasharray
std::string base64(const std::string& bytes);

// ---- figures and tables ----------------------------------------------------------------------------------------

// Per-layer curves of one metric: one panel per architecture (x = its layer names), a shared y-range, baselines as
// horizontal lines, 95 % bootstrap bands where per-unit values exist, the chance level.
// `range`: the y-range to use (shared by the charts compared side by side, e.g. mAP of every phenotype class);
// NaNs: the chart's own. `range_out`: the range the chart's values and intervals need.
std::string layer_curves(const Study& st, const ReportOptions& opt, const std::string& dataset,
                         const std::string& metric, std::pair<double, double> range = {NAN, NAN},
                         std::pair<double, double>* range_out = nullptr);
std::string cka_heatmap(const std::string& id, const std::string& title, const std::string& csv_path);
std::string compound_bars(const Study& st, const ReportOptions& opt, std::string* caption);
std::string prediction_panels(const Study& st, std::string* caption);
std::vector<NoiseNote> noise_notes(const Study& st, const ReportOptions& opt);
std::string noise_table(const std::vector<NoiseNote>& notes);
std::string pca_panels(const Study& st, const std::string& dataset, std::string* caption);
std::string data_description(const Study& st);
std::string example_images(const Study& st, const std::string& dataset);
std::string provenance_table(const Study& st);
std::string numbers_table(const Study& st);
std::string legend(const Study& st);

}  // namespace tabula::report
