#include "models/arch.h"

#include <cstdio>
#include <stdexcept>

#include "models/model.h"
#include "models/resnet.h"
#include "models/vit.h"

namespace tabula {

bool ArchConfig::is_resnet() const { return as<ResNetConfig>() != nullptr; }

const ResNetConfig& ArchConfig::resnet() const {
  if (const auto* c = as<ResNetConfig>()) return *c;
  throw std::invalid_argument("arch '" + name + "' is not a ResNet");
}

const ViTConfig& ArchConfig::vit() const {
  if (const auto* c = as<ViTConfig>()) return *c;
  throw std::invalid_argument("arch '" + name + "' is not a ViT");
}

void bad_arch(const std::string& arch, const std::string& why) {
  std::string msg;
  for (const char ch : "arch '" + arch + "': " + why) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c != 0x7f) {
      msg += ch;
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      msg += hex;
    }
  }
  throw std::invalid_argument(msg);
}

std::vector<ParamSpec> param_specs(const ArchConfig& arch) { return arch.config->construct(arch)->tree().specs(); }

int64_t param_count(const ArchConfig& arch) {
  int64_t n = 0;
  for (const auto& s : param_specs(arch))
    if (!s.is_buffer) n += shape_numel(s.shape);
  return n;
}
int64_t param_count(const std::string& arch) { return param_count(parse_arch(arch)); }

std::vector<NamedTensor> init_weights(const ArchConfig& arch, uint64_t seed) {
  const std::unique_ptr<Model> model = arch.config->construct(arch);
  InitState state(model->tree(), seed);
  arch.config->init_weights(model->tree(), state);
  return state.finish();
}
void init_weights(const ArchConfig& arch, const ModuleTree& tree, uint64_t seed, const InitSink& sink) {
  InitState state(tree, seed, sink);
  arch.config->init_weights(tree, state);
  state.finish();
}
std::vector<NamedTensor> init_weights(const std::string& arch, uint64_t seed) {
  return init_weights(parse_arch(arch), seed);
}

}  // namespace tabula
