// `tabula study`: the whole comparison on the user's data (study/study.h); flags -> StudyOptions only.
#include <algorithm>
#include <iostream>
#include <utility>
#include <vector>

#include "cli/args.h"
#include "data/manifest.h"
#include "engine/threads.h"
#include "models/device.h"
#include "study/study.h"
#include "util/suggest.h"

namespace tabula::cli {

namespace {

// Every column flag names a metadata column of the manifest (those index.csv will hold), and --control's value
// occurs in its column: checked before any work, with the closest column names.
void check_columns(const StudyDataset& d, const data::Manifest& m) {
  const auto column = [&](const std::string& flag, const std::string& col) -> size_t {
    const auto it = std::find(m.meta_columns.begin(), m.meta_columns.end(), col);
    if (it != m.meta_columns.end()) return static_cast<size_t>(it - m.meta_columns.begin());
    std::string near = did_you_mean(col, m.meta_columns);
    if (near.empty()) {
      near = " (its columns:";
      for (const std::string& c : m.meta_columns) near += " " + c;
      near += ")";
    }
    throw UsageError("tabula study: " + flag + ": " + m.source + " has no column '" + col + "'" + near);
  };
  for (const auto& [flag, col] : {std::pair{"--plate-col", d.plate_col}, {"--batch-col", d.batch_col},
                                  {"--compound-col", d.compound_col}, {"--label-col", d.label_col},
                                  {"--group-col", d.group_col}, {"--split-col", d.split_col},
                                  {"--fold-col", d.fold_col}})
    if (!col.empty()) column(flag, col);
  if (d.control.empty()) return;
  const size_t eq = d.control.find('=');
  const std::string value = d.control.substr(eq + 1);
  const size_t c = column("--control", d.control.substr(0, eq));
  std::vector<std::string> values;
  for (const data::Sample& s : m.samples) {
    if (s.meta.at(c) == value) return;
    if (std::find(values.begin(), values.end(), s.meta[c]) == values.end()) values.push_back(s.meta[c]);
  }
  throw UsageError("tabula study: --control " + d.control + ": no row of " + m.source + " has " +
                   d.control.substr(0, eq) + " = '" + value + "'" + did_you_mean(value, values));
}

}  // namespace

int cmd_study(const Args& a) {
  StudyOptions o;
  o.out = a.get("out");
  o.models = split_list(a.get("models"), ';');
  if (a.has("weights"))
    for (const std::string& w : split_list(a.get("weights"), ';')) {
      if (w.find('=') == std::string::npos) throw UsageError("study: --weights expects ARCH=FILE, got '" + w + "'");
      o.models.push_back(w);
    }
  for (const std::string& m : o.models)  // a typo fails before any work, with the closest names
    check_arch_name("study", parse_study_model(m).arch, /*baselines=*/true);
  StudyDataset d;
  d.data = a.get("data");
  d.name = a.get("name");
  if (d.name.empty() || d.name.find('/') != std::string::npos || d.name == "cka")
    throw UsageError("study: --name must be a plain folder name (not 'cka'), got '" + d.name + "'");
  d.plate_col = a.get("plate-col");
  d.batch_col = a.get("batch-col");
  d.control = a.get("control");
  if (!d.control.empty() && d.control.find('=') == std::string::npos)
    throw UsageError("study: --control expects COLUMN=VALUE, got '" + d.control + "'");
  d.compound_col = a.get("compound-col");
  if (d.compound_col.empty() != d.control.empty() && !d.compound_col.empty())
    throw UsageError("study: --compound-col needs --control COLUMN=VALUE (the negatives of replicate mAP)");
  d.phenotype_csv = a.get("phenotypes");
  d.phenotype_col = a.get("phenotype-col");
  d.relationships = a.get("relationships");
  if (!d.relationships.empty() && d.compound_col.empty())
    throw UsageError("study: --relationships needs --compound-col (the column its pairs name)");
  d.label_col = a.get("label-col");
  d.group_col = a.get("group-col");
  d.split_col = a.get("split-col");
  d.knn_k = static_cast<int>(a.get_int("k"));
  if (d.knn_k < 1) throw UsageError("study: --k must be >= 1");
  d.targets = a.get("targets");
  d.target_id = a.get("target-id");
  d.fold_col = a.get("fold-col");
  if (!d.targets.empty() && d.fold_col.empty()) throw UsageError("study: --targets needs --fold-col (e.g. patient)");
  d.log1p = a.has("log1p");
  d.pca_components = a.get_int("pca");
  d.dark_nuclei = a.has("dark-nuclei");
  const data::Manifest manifest = data::read_manifest(d.data);
  check_columns(d, manifest);  // a mistyped column fails now, not after every model has been embedded
  // An ImageFolder's class is its label: kNN and the linear probe need no flag.
  if (d.label_col.empty() && manifest.kind == "imagefolder") d.label_col = "label", d.label_name = "class";
  o.datasets = {d};
  o.null_size = a.get_int("null-size");
  o.size = static_cast<int>(a.get_int("size"));
  o.threads = static_cast<int>(a.get_int("threads"));
  o.quiet = a.has("quiet");
  o.device = a.get("device");
  o.precision = a.get("precision");
  if (a.has("title")) o.title = a.get("title");
  select_device(o.device, o.precision);  // a bad --device fails before any work
  if (o.threads > 0) set_num_threads(o.threads);
  StudyResult r = run_study(o);
  std::cout << r.table << "\nevery number: " << r.summary_csv << "\nreport: " << r.report_html << "\n";
  return 0;
}

}  // namespace tabula::cli
