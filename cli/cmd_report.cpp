// `tabula report`: the HTML report of one or more study folders (eval/report.h).
#include <iostream>

#include "cli/args.h"
#include "eval/report.h"

namespace tabula::cli {

int cmd_report(const Args& a) {
  ReportOptions o;
  o.runs = a.positional();
  o.out = a.get("out");
  if (a.has("title")) o.title = a.get("title");
  o.bootstrap = static_cast<int>(a.get_int("bootstrap"));
  if (o.bootstrap < 2) throw UsageError("tabula report: --bootstrap needs at least 2 resamples");
  o.seed = static_cast<uint64_t>(a.get_int("seed"));
  ReportResult r = write_report(o);
  int matches = 0;
  for (const NoiseNote& n : r.notes) matches += n.verdict == "matches";
  std::cout << r.html_path << ": " << r.panels << " figures, " << matches << " baseline/network pairs within noise\n";
  return 0;
}

}  // namespace tabula::cli
