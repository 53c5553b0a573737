// Architectures: what `--arch` names. An ArchConfig is one family's constructor arguments (ResNetConfig mirrors
// torchvision's ResNet, ViTConfig timm's VisionTransformer / DINOv2's DinoVisionTransformer); the families and
// their named archs are listed once, in models/registry.cpp. From a config come the state_dict layout, the
// untrained weights and the model itself, all through the model's constructor (models/module_tree.h).
//
// Arch names: a family's named archs (`tabula models` lists them), a family's key=value form
// (`resnet:layers=2,2,2,2,block=basic`, `vit:dim=64,depth=2,heads=4,patch=8,img=32`; the keys are in
// models/resnet_arch.cpp and models/vit_arch.cpp), or a named arch followed by ':' and keys to override
// (`resnet50:classes=10`). Every error is a std::invalid_argument naming the arch and the key or value.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "models/init_replay.h"
#include "models/key_values.h"
#include "models/module_tree.h"

namespace tabula {

class Model;
struct ArchConfig;
struct ResNetConfig;
struct ViTConfig;
// Weights by state_dict key. Any float dtype is accepted (converted to f32 at load).
using WeightMap = std::map<std::string, Tensor>;

// One family's constructor arguments and what follows from them.
class ModelConfig {
 public:
  virtual ~ModelConfig() = default;
  virtual std::unique_ptr<ModelConfig> clone() const = 0;
  // `tabula models`' family column ("torchvision ResNet").
  virtual std::string family() const = 0;
  // Applies an arch's key=value overrides; throws KeyValueError (the message without the arch prefix).
  virtual void apply_keys(const KeyValues& keys) = 0;
  // The model's constructor: declares its module tree (no weights yet; Model::load brings them).
  virtual std::unique_ptr<Model> construct(const ArchConfig& arch) const = 0;
  // The model's init_weights() after its constructor ran (InitState ran the constructors' draws).
  virtual void init_weights(const ModuleTree& tree, InitState& state) const = 0;
  // Checkpoints reach models in tabula's canonical (timm / torchvision) names, as `tabula weights convert` writes
  // them; a family whose own names differ maps them here (identity by default). canonical_specs is the layout
  // `weights convert --arch` checks a file against.
  virtual WeightMap from_canonical(const WeightMap& weights) const { return weights; }
  virtual std::vector<ParamSpec> canonical_specs(const std::vector<ParamSpec>& specs) const { return specs; }
};

struct ArchConfig {
  std::string name;  // as given
  std::shared_ptr<const ModelConfig> config;

  template <class C>
  const C* as() const {
    return dynamic_cast<const C*>(config.get());
  }
  // The first two families by name (callers that choose a transform by family).
  bool is_resnet() const;
  const ResNetConfig& resnet() const;
  const ViTConfig& vit() const;
};

// A family of architectures, one line in models/registry.cpp: the head of its key=value form ("resnet"), its
// default config, its named archs, and aliases (names defined as a named arch with keys, "vit_small_patch8_224"
// = "vit_small_patch16_224:patch=8,classes=0").
struct Family {
  std::string head;
  std::shared_ptr<const ModelConfig> defaults;
  std::vector<std::pair<std::string, std::shared_ptr<const ModelConfig>>> named;
  std::vector<std::pair<std::string, std::string>> aliases;
};
// The registry (models/registry.cpp).
const std::vector<const Family*>& families();

// Throws std::invalid_argument naming the arch and the offending key or value.
ArchConfig parse_arch(const std::string& arch);
// The named archs (the families' own names), and every name `tabula models` lists (those and the aliases).
std::vector<std::string> named_archs();
std::vector<std::string> model_names();

// The state_dict keys, shapes and dtypes in the reference's order.
std::vector<ParamSpec> param_specs(const ArchConfig& arch);
// sum(p.numel() for p in model.parameters()) (buffers excluded), as `tabula models` reports.
int64_t param_count(const ArchConfig& arch);
int64_t param_count(const std::string& arch);

// The untrained state_dict, bit-identical to PyTorch's for the same seed, except the tensors timm draws
// through erfinv (torch uses MKL's): trunc_normal_ ones (pos_embed, Linear weights) within 2 ULP and, with
// weight_init=jax, the patch embedding (lecun_normal_) within 3 ULP; see engine/rng.h.
std::vector<NamedTensor> init_weights(const ArchConfig& arch, uint64_t seed);
std::vector<NamedTensor> init_weights(const std::string& arch, uint64_t seed);
// The same tensors handed to `sink` as each becomes final (models/init_replay.h), for the module tree of `arch`
// (a model's own tree(), or one built for the purpose): what streams a large model's init into a file or into
// Model::load_streamed without the whole fp32 state_dict in memory.
void init_weights(const ArchConfig& arch, const ModuleTree& tree, uint64_t seed, const InitSink& sink);

// The message quotes the user's bytes: control bytes (a NUL would end what() early) are shown as \xNN.
[[noreturn]] void bad_arch(const std::string& arch, const std::string& why);

}  // namespace tabula
