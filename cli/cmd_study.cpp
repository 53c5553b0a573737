// `tabula study`: the whole comparison on the user's data (study/study.h); flags -> StudyOptions only.
#include <iostream>

#include "cli/args.h"
#include "data/manifest.h"
#include "engine/threads.h"
#include "models/device.h"
#include "study/study.h"

namespace tabula::cli {

int cmd_study(const Args& a) {
  StudyOptions o;
  o.out = a.get("out");
  o.models = split_list(a.get("models"), ';');
  if (a.has("weights"))
    for (const std::string& w : split_list(a.get("weights"), ';')) {
      if (w.find('=') == std::string::npos) throw UsageError("study: --weights expects ARCH=FILE, got '" + w + "'");
      o.models.push_back(w);
    }
  for (const std::string& m : o.models) parse_study_model(m);  // a typo fails before any work
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
  // An ImageFolder's class is its label: kNN and the linear probe need no flag.
  if (d.label_col.empty() && data::read_manifest(d.data).kind == "imagefolder")
    d.label_col = "label", d.label_name = "class";
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
