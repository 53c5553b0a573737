// `tabula hooks ARCH`: every tap of the arch with its output shape (no weights needed).
#include <cstdio>

#include "cli/args.h"
#include "models/registry.h"

namespace tabula::cli {

int cmd_hooks(const Args& args) {
  const std::string arch = args.positional().at(0);
  check_arch_name("hooks", arch);
  auto model = build_model_skeleton(arch);
  Shape in = model->default_input_shape(args.get_int("batch"));
  if (args.has("size")) {
    const long long s = args.get_int("size");
    if (s < 1) throw UsageError("tabula hooks: --size must be >= 1");
    in[2] = in[3] = s;
  }
  if (in[0] < 1) throw UsageError("tabula hooks: --batch must be >= 1");
  std::vector<TapInfo> taps;
  try {
    taps = model->list_taps(in);
  } catch (const std::exception& e) {  // a --size the arch does not take is how the command was typed
    if (!args.has("size")) throw;
    throw UsageError("tabula hooks: --size " + args.get("size") + ": " + e.what());
  }
  std::printf("# %s, input %s: %zu taps (name, output shape)\n", arch.c_str(), shape_str(in).c_str(), taps.size());
  for (const auto& t : taps) std::printf("%-40s %s\n", t.name.c_str(), shape_str(t.shape).c_str());
  return 0;
}

}  // namespace tabula::cli
