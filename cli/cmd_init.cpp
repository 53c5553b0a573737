// `tabula init ARCH --seed N --out W.safetensors`: the untrained weights PyTorch builds for the seed.
#include <iostream>
#include <memory>
#include <utility>

#include "cli/args.h"
#include "models/model.h"
#include "models/registry.h"
#include "weights_tools/safetensors.h"

namespace tabula::cli {

int cmd_init(const Args& a) {
  // ARCH as a word or, as `embed` and `weights convert` take it, as --arch; one of the two.
  if (a.positional().empty() == !a.has("arch"))
    throw UsageError(a.positional().empty() ? "tabula init: which arch? tabula init ARCH --seed N --out FILE"
                                            : "tabula init: the arch is given twice (ARCH and --arch): give one");
  const std::string arch = a.has("arch") ? a.get("arch") : a.positional()[0];
  check_arch_name("init", arch);
  if (const std::string why = weights::safetensors_out_name_problem(a.get("out")); !why.empty())
    throw UsageError("tabula init: --out " + why);
  const long long seed = a.get_int("seed");
  if (seed < 0) throw UsageError("tabula init: --seed must be >= 0");
  // Every arch `tabula models` lists (named archs, aliases, key=value forms) can be initialised.
  const ArchConfig config = parse_arch(arch);
  const std::unique_ptr<Model> model = config.config->construct(config);
  // The layout is known from the module tree, so each tensor goes to its place in the file as soon as the init
  // pass hands it on (a 7B model's 27 GB are never in memory at once); the file appears only once complete.
  weights::StateDict layout;
  for (const ParamSpec& sp : model->tree().specs()) {
    weights::WeightTensor w;
    w.name = sp.name;
    w.dtype = sp.dtype;
    w.shape.assign(sp.shape.begin(), sp.shape.end());
    layout.tensors.push_back(std::move(w));
  }
  layout.metadata["format"] = "pt";
  layout.metadata["tabula_arch"] = arch;
  layout.metadata["tabula_seed"] = std::to_string(seed);
  layout.metadata["tabula_init"] = "torch.manual_seed(seed) + the reference constructor (torch 2.15, torchvision 0.29, timm 1.0.31)";
  weights::SafetensorsWriter out(a.get("out"), layout);
  init_weights(config, model->tree(), static_cast<uint64_t>(seed),
               [&](NamedTensor&& t) { out.write(t.name, std::move(t.bytes)); });
  out.commit();
  std::cout << a.get("out") << ": " << layout.tensors.size() << " tensors of " << arch << " (seed " << seed << ")\n";
  return 0;
}

}  // namespace tabula::cli
