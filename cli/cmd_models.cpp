// `tabula models`: every named arch with its parameter count, GFLOPs at the default size and default taps.
#include <cstdio>
#include <iostream>

#include "cli/args.h"
#include "models/registry.h"

namespace tabula::cli {

int cmd_models(const Args& args) {
  std::vector<std::string> archs = args.positional();
  if (archs.empty()) archs = model_names();
  std::printf("%-32s %-19s %10s %9s  %-14s %s\n", "arch", "family", "params(M)", "GFLOPs", "input", "default taps");
  for (const auto& a : archs) {
    const ModelInfo m = model_info(a);
    std::string taps;
    for (const auto& t : m.default_taps) taps += (taps.empty() ? "" : ",") + t;
    const std::string input = std::to_string(m.input[1]) + "x" + std::to_string(m.input[2]) + "x" + std::to_string(m.input[3]);
    std::printf("%-32s %-19s %10.2f %9.2f  %-14s %s\n", a.c_str(), m.family.c_str(), static_cast<double>(m.params) / 1e6,
                m.gmacs, input.c_str(), taps.c_str());
  }
  std::printf("\nGFLOPs: multiply-adds of one image's forward at the default input size, as torchvision's docs count "
              "them.\nAny size: resnet:layers=2,2,2,2,block=basic,... or vit:dim=64,depth=2,heads=4,patch=8,img=32,... "
              "(see `tabula hooks --help`).\n");
  return 0;
}

}  // namespace tabula::cli
