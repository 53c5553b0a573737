// `tabula demo`: the whole study on the embedded synthetic datasets (study/demo.h).
#include <iostream>

#include "cli/args.h"
#include "engine/threads.h"
#include "study/demo.h"
#include "models/device.h"

namespace tabula::cli {

int cmd_demo(const Args& args) {
  DemoOptions o;
  o.out = args.get("out");
  o.quick = args.has("quick");
  if (args.has("models")) o.models = split_list(args.get("models"), ';');
  if (args.has("weights")) o.weights = split_list(args.get("weights"), ';');
  o.size = static_cast<int>(args.get_int("size"));
  o.threads = static_cast<int>(args.get_int("threads"));
  o.quiet = args.has("quiet");
  o.device = args.get("device");
  o.precision = args.get("precision");
  select_device(o.device, o.precision);  // a bad --device fails before any data is generated
  if (o.threads > 0) set_num_threads(o.threads);
  DemoResult r = run_demo(o);
  std::cout << r.table << "\nevery number: " << r.summary_csv << "\nreport: " << r.report_html << "\n";
  return 0;
}

}  // namespace tabula::cli
