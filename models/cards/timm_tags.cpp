#include "models/cards/timm_tags.h"

#include <iterator>
#include <stdexcept>

namespace tabula::cards {

namespace {
const TimmTag kTags[] = {
#include "models/cards/timm_tags_table.inc"
};
}  // namespace

TaggedArch split_timm_tag(const std::string& arch) {
  const size_t colon = arch.find(':');
  const std::string name = arch.substr(0, colon), keys = colon == std::string::npos ? "" : arch.substr(colon);
  const size_t dot = name.find('.');
  if (dot == std::string::npos || name.find('=') != std::string::npos) return {arch, nullptr};
  const std::string base = name.substr(0, dot);
  std::string known;
  for (const TimmTag& t : kTags) {
    if (name == t.name) return {base + keys, &t};
    if (std::string(t.name).rfind(base + ".", 0) == 0) known += (known.empty() ? "" : ", ") + std::string(t.name);
  }
  if (known.empty())
    throw std::invalid_argument("arch " + name + ": no pretrained tags known for '" + base +
                                "' (tags come from timm's pretrained_cfg for the archs tabula has)");
  throw std::invalid_argument("arch " + name + ": timm lists no tag '" + name.substr(dot + 1) + "' for " + base +
                              " (known: " + known + ")");
}

}  // namespace tabula::cards
