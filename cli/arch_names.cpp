// check_arch_name (cli/args.h): a mistyped arch gets the closest names, not the list of all of them.
#include <string>
#include <vector>

#include "cli/args.h"
#include "models/registry.h"
#include "util/suggest.h"

namespace tabula::cli {

void check_arch_name(const std::string& command, const std::string& arch, bool baselines) {
  const std::string head = arch.substr(0, arch.find(':'));
  if (head == "resnet" || head == "vit") return;  // the key=value forms: parse_arch checks their keys
  if (baselines && (head == "pixels" || head == "nuclei")) return;
  std::vector<std::string> names = model_names();
  for (const std::string& n : names)
    if (n == head) return;
  if (baselines) names.insert(names.end(), {"pixels", "nuclei"});
  std::string near = did_you_mean(head, names);
  throw UsageError("tabula " + command + ": unknown arch '" + head + "'" + (near.empty() ? " (" : near + "; ") +
                   "`tabula models` lists every name" + (near.empty() ? ")" : ""));
}

}  // namespace tabula::cli
