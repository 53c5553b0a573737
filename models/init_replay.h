// The untrained weights of a module tree for a seed, as torch builds them after torch.manual_seed(seed):
// InitState runs the constructors (ModuleTree's CtorInit, in construction order), then the model's
// init_weights() pass writes what it re-initialises through `write`, and `finish` hands the state_dict back.
// Constructor draws of nn.Linear / nn.Conv2d are skipped over (the stream advances by exactly what
// reset_parameters() draws) and only computed, from a copy of the generator taken at that point, for the
// layers the init pass leaves as the constructor made them (torchvision's fc, timm's patch embedding).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/rng.h"
#include "models/module_tree.h"

namespace tabula {

struct NamedTensor {
  std::string name;
  Shape shape;
  DType dtype = DType::f32;
  std::vector<uint8_t> bytes;  // little-endian, C order

  int64_t numel() const { return shape_numel(shape); }
  float* f32() { return reinterpret_cast<float*>(bytes.data()); }
  const float* f32() const { return reinterpret_cast<const float*>(bytes.data()); }
};

class InitState {
 public:
  InitState(const ModuleTree& tree, uint64_t seed);

  TorchGenerator& gen() { return gen_; }
  // torch.manual_seed's argument: an init pass whose reference builds its modules in another order than the tree
  // (Hugging Face's classes) replays its own constructors from a fresh generator.
  uint64_t seed() const { return seed_; }
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  // The tensor an init pass overwrites (marks it as re-initialised); throws std::logic_error for a name the
  // tree does not have.
  NamedTensor& write(const std::string& name);
  float* f32(const std::string& name) { return write(name).f32(); }
  size_t numel(const std::string& name) const;
  const Shape& shape(const std::string& name) const;
  void fill(const std::string& name, float v);
  // The state_dict in torch's order (ModuleTree::state_dict_order).
  std::vector<NamedTensor> finish();

 private:
  const ModuleTree& tree_;
  uint64_t seed_;
  TorchGenerator gen_;
  std::vector<NamedTensor> tensors_;  // by parameter index
  std::vector<bool> written_;
  std::vector<std::optional<TorchGenerator>> reset_at_;  // generator copy where a reset_parameters() drew
  std::unordered_map<std::string, size_t> index_;
};

}  // namespace tabula
