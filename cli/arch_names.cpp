// check_arch_name / check_card_name (cli/args.h): a mistyped arch or model card gets the closest names, not the list
// of all of them.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli/args.h"
#include "engine/cuda/device_name.h"
#include "models/arch.h"
#include "models/cards/cards.h"
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
  if (const cards::ModelCard* card = cards::find_card(head))  // a card where an arch goes: say what it stands for
    throw UsageError("tabula " + command + ": '" + head + "' is a model card, not an arch: its arch is '" + card->arch +
                     "' (embed and preprocess take the card itself: --model " + card->name + ")");
  if (baselines) names.insert(names.end(), {"pixels", "nuclei"});
  std::string near = did_you_mean(head, names);
  throw UsageError("tabula " + command + ": unknown arch '" + head + "'" + (near.empty() ? " (" : near + "; ") +
                   "`tabula models` lists every name" + (near.empty() ? ")" : ""));
}

void check_card_name(const std::string& command, const std::string& spec) {
  const std::string name = spec.substr(0, spec.find(':'));  // NAME:k=v overrides; hub ids hold '/', never ':'
  if (cards::find_card(name)) return;
  std::vector<std::string> names, card_of;  // every spelling, and the card name it stands for
  for (const cards::ModelCard& c : cards::model_cards())
    for (const std::string& n : c.aliases) names.push_back(n), card_of.push_back(c.name);
  for (const cards::ModelCard& c : cards::model_cards()) names.push_back(c.name), card_of.push_back(c.name);
  std::vector<std::string> near;  // an alias close to the typo suggests its card's name, once
  for (const std::string& n : closest(name, names, names.size())) {
    const std::string& card = card_of[static_cast<size_t>(std::find(names.begin(), names.end(), n) - names.begin())];
    if (std::find(near.begin(), near.end(), card) == near.end() && near.size() < 2) near.push_back(card);
  }
  if (!near.empty())
    throw UsageError("tabula " + command + ": unknown model card '" + name + "' (did you mean " + near[0] +
                     (near.size() > 1 ? " or " + near[1] : "") + "?); `tabula models --trained` lists every card");
  std::string all;  // nothing close: the card names (a few dozen) say more than a pointer to them
  for (const cards::ModelCard& c : cards::model_cards()) all += (all.empty() ? "" : ", ") + c.name;
  throw UsageError("tabula " + command + ": unknown model card '" + name + "' (cards: " + all +
                   "; `tabula models --trained` describes them)");
}

void check_device_name(const std::string& command, const std::string& device) {
  try {
    cuda::parse_device(device);
  } catch (const std::invalid_argument& e) {
    throw UsageError("tabula " + command + ": " + e.what());
  }
}

void check_precision_name(const std::string& command, const std::string& precision) {
  const std::vector<std::string> known = {"fp32", "tf32", "bf16", "fp16"};
  if (std::find(known.begin(), known.end(), precision) == known.end())
    throw UsageError("tabula " + command + ": --precision: expected fp32, tf32, bf16 or fp16, got '" + precision +
                     "'" + did_you_mean(precision, known));
}

}  // namespace tabula::cli
