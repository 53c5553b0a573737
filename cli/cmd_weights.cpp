// `tabula weights inspect` and `tabula weights convert`: argument parsing; the work is in weights_tools/convert.h.
#include <iostream>

#include "cli/args.h"
#include "models/registry.h"
#include "weights_tools/convert.h"
#include "weights_tools/safetensors.h"

namespace tabula::cli {

namespace {

// The arch's ModelConfig::from_canonical over a state dict: zero-copy views in, the mapped tensors (views, or what
// the mapping computed) out, each keeping its storage alive.
weights::StateDict map_by_model(const ArchConfig& arch, const weights::StateDict& sd) {
  WeightMap in;
  for (const weights::WeightTensor& t : sd.tensors)
    in[t.name] = Tensor::from_external(const_cast<uint8_t*>(t.data), Shape(t.shape.begin(), t.shape.end()), t.dtype,
                                       std::const_pointer_cast<void>(t.storage));
  weights::StateDict out;
  out.metadata = sd.metadata;
  for (const auto& [name, mapped] : arch.config->from_canonical(in)) {
    auto kept = std::make_shared<const Tensor>(mapped.contiguous());
    weights::WeightTensor t;
    t.name = name;
    t.dtype = kept->dtype();
    t.shape.assign(kept->shape().begin(), kept->shape().end());
    static const uint8_t kNoBytes = 0;  // WeightTensor::data is never null, also for empty tensors
    t.data = kept->numel() ? static_cast<const uint8_t*>(kept->raw()) : &kNoBytes;
    t.storage = kept;
    out.tensors.push_back(std::move(t));
  }
  return out;
}

}  // namespace

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
  if (const std::string why = weights::safetensors_out_name_problem(o.out); !why.empty())
    throw UsageError("tabula weights convert: --out " + why);
  o.arch = args.get("arch");
  check_arch_name("weights convert", o.arch);
  // The names the model registry expects for the arch (an unknown arch is an error naming the known ones).
  const ArchConfig arch = parse_arch(o.arch);
  for (const ParamSpec& s : canonical_specs(o.arch)) o.expected.push_back({s.name, s.shape});
  o.arch_layout = arch.is_resnet() ? weights::Layout::torchvision_resnet : weights::Layout::timm_vit;
  o.arch_names = [&arch](const weights::StateDict& sd) { return map_by_model(arch, sd); };
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
