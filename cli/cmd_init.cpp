// `tabula init ARCH --seed N --out W.safetensors`: the untrained weights PyTorch builds for the seed.
#include <iostream>
#include <memory>

#include "cli/args.h"
#include "models/registry.h"
#include "models/registry.h"
#include "weights_tools/safetensors.h"

namespace tabula::cli {

int cmd_init(const Args& a) {
  const std::string arch = a.positional().at(0);
  const long long seed = a.get_int("seed");
  if (seed < 0) throw UsageError("tabula init: --seed must be >= 0");
  // Every arch `tabula models` lists (named archs, aliases, key=value forms) can be initialised.
  std::vector<NamedTensor> tensors = init_weights(parse_arch(arch), static_cast<uint64_t>(seed));
  weights::StateDict sd;
  int64_t params = 0;
  for (NamedTensor& t : tensors) {
    auto bytes = std::make_shared<std::vector<uint8_t>>(std::move(t.bytes));
    weights::WeightTensor w;
    w.name = t.name;
    w.dtype = t.dtype;
    w.shape.assign(t.shape.begin(), t.shape.end());
    w.data = bytes->data();
    w.storage = bytes;
    if (t.dtype == DType::f32) params += t.numel();
    sd.tensors.push_back(std::move(w));
  }
  sd.metadata["format"] = "pt";
  sd.metadata["tabula_arch"] = arch;
  sd.metadata["tabula_seed"] = std::to_string(seed);
  sd.metadata["tabula_init"] = "torch.manual_seed(seed) + the reference constructor (torch 2.15, torchvision 0.29, timm 1.0.31)";
  weights::write_safetensors(a.get("out"), sd);
  std::cout << a.get("out") << ": " << sd.tensors.size() << " tensors of " << arch << " (seed " << seed << ")\n";
  return 0;
}

}  // namespace tabula::cli
