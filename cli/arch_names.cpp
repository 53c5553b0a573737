// check_arch_name (cli/args.h): a mistyped arch gets the closest names, not the list of all of them.
#include <string>
#include <vector>

#include "cli/args.h"
#include "models/arch.h"
#include "models/cards/timm_tags.h"
#include "models/registry.h"
#include "util/suggest.h"

namespace tabula::cli {

void check_arch_name(const std::string& command, const std::string& arch, bool baselines) {
  const std::string head = arch.substr(0, arch.find(':'));
  for (const Family* f : families())
    if (head == f->head) return;  // a family's key=value form: parse_arch checks its keys
  if (head.find('.') != std::string::npos) {  // a timm name with its pretrained tag (resnet50.a1_in1k)
    try {
      if (cards::split_timm_tag(head).tag) return;
    } catch (const std::invalid_argument& e) {
      throw UsageError("tabula " + command + ": " + e.what());
    }
  }
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
