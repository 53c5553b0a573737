// `tabula report`: assembles the sections of eval/report/ into one self-contained HTML file.
#include "eval/report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>

#include "engine/fileio.h"
#include "eval/report/internal.h"

namespace tabula {

namespace fs = std::filesystem;
using namespace report;

std::pair<double, double> bootstrap_mean_ci95(const std::vector<double>& values, int resamples, uint64_t seed) {
  const size_t n = values.size();
  double mean = 0;
  for (double v : values) mean += v;
  mean /= std::max<size_t>(n, 1);
  if (n < 2 || resamples < 2) return {mean, mean};
  std::mt19937_64 rng(seed);
  std::vector<double> means(static_cast<size_t>(resamples));
  for (double& m : means) {
    double s = 0;
    for (size_t i = 0; i < n; ++i) s += values[rng() % n];
    m = s / static_cast<double>(n);
  }
  std::sort(means.begin(), means.end());
  // numpy.percentile's default (linear interpolation between order statistics).
  auto pct = [&](double q) {
    double pos = q * static_cast<double>(means.size() - 1);
    size_t lo = static_cast<size_t>(std::floor(pos));
    size_t hi = std::min(lo + 1, means.size() - 1);
    return means[lo] + (pos - static_cast<double>(lo)) * (means[hi] - means[lo]);
  };
  return {pct(0.025), pct(0.975)};
}

namespace {

const char* kStyle =
    "body{font-family:sans-serif;max-width:1320px;margin:20px auto;padding:0 12px;color:#222;line-height:1.4}"
    "h2{border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:34px}h3{margin:18px 0 6px}"
    ".grid{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}svg{max-width:100%;height:auto}"
    "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;"
    "vertical-align:top}th{background:#f3f3f3}td{max-width:300px;overflow-wrap:anywhere}td.num{text-align:right}"
    "#numbers-table th{cursor:pointer}.cap{font-size:13px;color:#444;max-width:1100px}.note{margin:4px 0}"
    "nav#toc{background:#f7f7f7;border:1px solid #e3e3e3;padding:6px 14px;font-size:13px;columns:2;max-width:900px}"
    "nav#toc a{display:block}.legend{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:12px;margin:6px 0}"
    ".lg svg{vertical-align:middle}tr.matches td{background:#fff6f6}"
    ".exrow{display:flex;align-items:center;gap:10px;margin:4px 0}.excls{width:120px;font-size:12px;font-weight:bold}"
    ".eximgs{display:flex;gap:6px}figure{margin:0;font-size:10px;color:#555;text-align:center}"
    "figure img{display:block;width:104px;height:auto;image-rendering:pixelated}";

// Sorting (numbers as numbers, text as text, n/a last) and filtering of the every-number table (inline: the report
// stays one offline file). Written without '<' and '&' so the page stays well-formed XML as well as HTML.
const char* kScript =
    "function tabulaSort(col){var t=document.getElementById('numbers-table');var b=t.tBodies[0];"
    "var rows=Array.prototype.slice.call(b.rows);"
    "var dir=t.getAttribute('data-col')===String(col)?-Number(t.getAttribute('data-dir')):1;"
    "rows.sort(function(a,c){var x=a.cells[col].textContent,y=c.cells[col].textContent;"
    "var nx=parseFloat(x),ny=parseFloat(y);if(isNaN(nx)!==isNaN(ny))return isNaN(nx)?1:-1;"
    "return dir*(isNaN(nx)?x.localeCompare(y):nx-ny);});"
    "rows.forEach(function(r){b.appendChild(r);});t.setAttribute('data-col',String(col));"
    "t.setAttribute('data-dir',String(dir));}"
    "function tabulaFilter(q){q=q.toLowerCase();var rows=document.getElementById('numbers-table').tBodies[0].rows;"
    "for(var i=0;i!==rows.length;i++){rows[i].style.display="
    "rows[i].textContent.toLowerCase().indexOf(q)+1?'':'none';}}";

std::string dataset_heading(const std::string& ds) {
  if (ds == "cellpainting") return "Cell Painting: replicate retrieval, MoA recall and classification by layer";
  if (ds == "tissue") return "Tissue: expression prediction by layer";
  if (ds == "natural") return "Natural-image-like classes: kNN and linear probe by layer";
  return esc(ds) + ": metrics by layer";
}

// The sections in order, each (id, heading, html); the table of contents is built from them.
struct Section {
  std::string id, heading, html;
};

// Charts read side by side share their y-range: every "mAP <class>" of a dataset, every "retrieved <class>", the
// kNN and linear-probe accuracies, the ridge and 1-NN correlations.
std::string range_group(const std::string& metric) {
  for (const char* g : {"mAP", "retrieved"})
    if (metric == g || metric.rfind(std::string(g) + " ", 0) == 0) return g;
  for (const char* g : {"top-1", "Pearson r"})
    if (metric.find(g) != std::string::npos) return g;
  return metric;
}

void add_curves(const Study& st, const ReportOptions& opt, std::vector<Section>& out) {
  std::vector<std::string> datasets;
  for (const auto& [ds, metric] : metric_list(st))
    if (std::find(datasets.begin(), datasets.end(), ds) == datasets.end()) datasets.push_back(ds);
  for (const std::string& ds : datasets) {
    std::map<std::string, std::pair<double, double>> ranges;
    for (const auto& [d, metric] : metric_list(st)) {
      if (d != ds) continue;
      std::pair<double, double> r{NAN, NAN};
      layer_curves(st, opt, ds, metric, {NAN, NAN}, &r);
      auto& g = ranges.try_emplace(range_group(metric), r).first->second;
      if (std::isfinite(r.first)) g = {std::fmin(g.first, r.first), std::fmax(g.second, r.second)};
    }
    std::ostringstream h;
    h << legend(st) << "<div class=\"grid\">\n";
    for (const auto& [d, metric] : metric_list(st))
      if (d == ds) h << layer_curves(st, opt, ds, metric, ranges[range_group(metric)]) << "\n";
    h << "</div>\n";
    out.push_back({"curves-" + slug(ds), dataset_heading(ds), h.str()});
  }
}

}  // namespace

ReportResult write_report(const ReportOptions& opt) {
  if (opt.out.empty()) throw std::invalid_argument("tabula report: no output file (--out report.html)");
  Study st = load_study(opt);
  ReportResult res;
  std::vector<Section> sec;
  auto count_svg = [&](const std::string& s) {
    for (size_t p = 0; (p = s.find("<svg id=", p)) != std::string::npos; ++p) ++res.panels;
  };
  if (std::string d = data_description(st); !d.empty()) {
    std::ostringstream h;
    h << d;
    h << "<div class=\"grid\">";
    for (const DatasetInfo& ds : st.datasets)
      if (std::string ex = example_images(st, ds.name); !ex.empty())
        h << "<div><h3 id=\"examples-" << slug(ds.name) << "\">Example images: " << esc(ds.name) << "</h3>\n"
          << ex << "</div>";
    h << "</div>\n";
    sec.push_back({"data", "The data", h.str()});
  }
  if (!st.plain) add_curves(st, opt, sec);
  std::string caption;
  if (std::string bars = compound_bars(st, opt, &caption); !bars.empty())
    sec.push_back({"compounds", "Which compounds are retrieved?", bars + "\n<p class=\"cap\">" + caption + "</p>\n"});
  if (std::string sc = prediction_panels(st, &caption); !sc.empty())
    sec.push_back({"predictions", "Do different representations predict the same thing?",
                   "<div class=\"grid\">\n" + sc + "</div><p class=\"cap\">" + caption + "</p>\n"});
  if (!st.cka.empty()) {
    std::ostringstream h;
    h << "<div class=\"grid\">\n";
    for (const auto& [title, file] : st.cka)
      h << cka_heatmap("cka-" + slug(title), "linear CKA: " + title, file) << "\n";
    h << "</div><p class=\"cap\">Linear CKA between every layer of one model (rows) and every layer of the other "
      << "(columns) on the same images: 1 = the same representation up to rotation and scale; the diagonal compares "
      << "the same layer of the two.</p>\n";
    sec.push_back({"cka", "Layer × layer CKA between models", h.str()});
  }
  for (const DatasetInfo& ds : st.datasets)
    if (std::string p = pca_panels(st, ds.name, &caption); !p.empty())
      sec.push_back({"pca-" + slug(ds.name), "Plate and batch effects: PCA of " + esc(ds.name),
                     "<div class=\"grid\">\n" + p + "</div><p class=\"cap\">" + caption + "</p>\n"});
  if (!st.plain) {
    res.notes = noise_notes(st, opt);
    std::ostringstream h;
    h << "<p class=\"cap\"><b>Within noise</b> means the two 95 % intervals overlap. A baseline's interval is the "
      << "percentile bootstrap (" << opt.bootstrap << " resamples, seed " << opt.seed << ") of its score's mean over "
      << "the evaluation units: compounds for mAP and retrieval, targets (each averaged over the folds) for Pearson r, "
      << "queries for kNN accuracy. A network family is compared at its best layer (the highest mean over its seeds — "
      << "the comparison most favourable to the network), and its interval is the union of its seeds' bootstrap "
      << "intervals, so it covers seed-to-seed variation too. Overlap is a conservative test: the data cannot tell "
      << "the two apart, which is not the same as equal.</p>\n"
      << noise_table(res.notes);
    sec.push_back({"noise", "Where a baseline matches a network within noise", h.str()});
    sec.push_back({"reading", "How to read it",
                   "<ul><li><b>mAP &lt;class&gt;</b>: mean over the compounds of a phenotype class of their replicate "
                   "mAP against the controls (copairs semantics). <b>retrieved &lt;class&gt;</b>: fraction of those "
                   "compounds with Benjamini–Hochberg corrected p &lt; 0.05. Density-only compounds change only the "
                   "cell count, so the <code>nuclei</code> baseline retrieves them too; intensity-only compounds are a "
                   "shortcut any representation sees; <b>none</b> are inactive compounds, so anything above 0 "
                   "retrieved is a false positive.</li><li><b>recall</b>: EFAAR known-relationship recall at the "
                   "(0.05, 0.95) similarity quantiles. <b>kNN top-1</b>: DINOv2-style kNN classification (held out by "
                   "plate on Cell Painting, a per-class train/test split elsewhere); <b>linear probe</b>: logistic "
                   "regression on the train split, C chosen on val, accuracy on test.</li><li><b>Pearson r</b>: "
                   "HEST-style ridge probe (StandardScaler → PCA → ridge) and 1-NN regression, folds by patient; the "
                   "mean over targets and folds.</li><li>The dotted grey line is chance; a baseline line at or above "
                   "a network's curve means the network's score can be explained without learned features. On "
                   "natural-image-like data, trained networks should rise with depth; untrained ones usually do "
                   "not.</li></ul>\n"});
  }
  if (!st.models.empty())
    sec.push_back(
        {"provenance", "Provenance",
         "<details><summary>Every embedding's <code>run.json</code>: architecture, weights (seed and "
         "initialisation scheme, or the file's SHA-256), tabula version and git hash, preprocessing, channels, "
         "pooling, precision, device, threads</summary>\n" +
             provenance_table(st) + "</details>\n"});
  sec.push_back({"every-number", "Every number", numbers_table(st)});

  std::ostringstream html;
  html << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" << esc(opt.title)
       << "</title><style>" << kStyle << "</style></head><body>\n<h1>" << esc(opt.title) << "</h1>\n<p>Study folder"
       << (opt.runs.size() > 1 ? "s" : "") << ": ";
  for (size_t i = 0; i < opt.runs.size(); ++i) html << (i ? ", " : "") << "<code>" << esc(opt.runs[i]) << "</code>";
  html << ". Networks marked <i>untrained</i> use the random initialisation PyTorch builds for their seed; "
       << "<code>pixels</code> and <code>nuclei</code> are non-learned baselines. Each architecture has one colour in "
       << "every figure, each seed a line style (trained weights: thick solid), baselines dotted.</p>\n"
       << legend(st) << "<nav id=\"toc\"><b>Contents</b>";
  for (const Section& s : sec) html << "<a href=\"#" << s.id << "\">" << s.heading << "</a>";
  html << "</nav>\n";
  for (const Section& s : sec) html << "<h2 id=\"" << s.id << "\">" << s.heading << "</h2>\n" << s.html;
  html << "<script>" << kScript << "</script>\n</body></html>\n";
  const std::string text = html.str();
  count_svg(text);
  res.html_path = opt.out;
  if (fs::path(opt.out).has_parent_path()) fs::create_directories(fs::path(opt.out).parent_path());
  write_file_atomic(opt.out, text);
  return res;
}

}  // namespace tabula
