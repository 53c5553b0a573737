// `tabula weights inspect` and `tabula weights convert`: argument parsing; the work is in weights_tools/convert.h.
#include <iostream>

#include "cli/args.h"
#include "models/registry.h"
#include "weights_tools/convert.h"

namespace tabula::cli {

int cmd_weights_inspect(const Args& args) {
  weights::InspectOptions o;
  o.key = args.get("key");
  o.list_tensors = args.has("tensors");
  o.hash = !args.has("no-hash");
  std::cout << weights::inspect_weights(args.positional()[0], o);
  return 0;
}

int cmd_weights_convert(const Args& args) {
  weights::ConvertOptions o;
  o.in = args.positional()[0];
  o.out = args.get("out");
  o.arch = args.get("arch");
  // The names the model registry expects for the arch (an unknown arch is an error naming the known ones).
  const ArchConfig arch = parse_arch(o.arch);
  for (const ParamSpec& s : canonical_specs(o.arch)) o.expected.push_back({s.name, s.shape});
  o.arch_layout = arch.is_resnet() ? weights::Layout::torchvision_resnet : weights::Layout::timm_vit;
  o.key = args.get("key");
  o.allow_missing = args.has("allow-missing");
  if (args.has("dtype")) {
    std::string d = args.get("dtype");
    if (d != "f32" && d != "f16" && d != "bf16")
      throw UsageError("tabula weights convert: --dtype must be f32, f16 or bf16, got '" + d + "'");
    o.dtype = dtype_from_name(d);
  }
  if (args.has("layout")) {
    try {
      o.layout = weights::layout_from_name(args.get("layout"));
    } catch (const std::exception& e) {
      throw UsageError(std::string("tabula weights convert: --layout: ") + e.what());
    }
  }
  weights::ConvertResult r = weights::convert_weights(o);
  std::cout << r.report;
  return 0;
}

}  // namespace tabula::cli
