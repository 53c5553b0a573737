// `tabula demo`: the furthest real pipeline that exists, on the embedded synthetic data.
#include <iostream>

#include "cli/args.h"
#include "engine/system.h"

namespace tabula::cli {

int cmd_demo(const Args& args) {
  std::cout << build_summary();
  std::cerr << "tabula demo: the synthetic datasets, models and evaluator have not landed yet; "
               "this build only reports what it was built with.\n";
  return 0;
}

}  // namespace tabula::cli
