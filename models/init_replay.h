// The untrained weights of a module tree for a seed, as torch builds them after torch.manual_seed(seed):
// InitState runs the constructors (ModuleTree's CtorInit, in construction order), then the model's
// init_weights() pass writes what it re-initialises through `write`, and `finish` hands the state_dict back.
// Constructor draws of nn.Linear / nn.Conv2d are skipped over (the stream advances by exactly what
// reset_parameters() draws) and only computed, from a copy of the generator taken at that point, for the
// layers the init pass leaves as the constructor made them (torchvision's fc, timm's patch embedding).
//
// Streaming: a tensor's memory is taken when the pass first writes it (or when it is handed on), never up front,
// and with a sink every tensor is handed on as soon as it is final: when the init pass declares a module (or one
// tensor) done, or at finish. A pass that declares nothing hands everything on at finish, as before; one that
// declares its modules as it leaves them (DINOv3's) keeps one module's tensors at a time, so a 7B model's 27 GB of
// fp32 weights never exist at once. Writing a tensor after it was handed on throws std::logic_error.
#pragma once
#include <cstdint>
#include <functional>
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

// Where final tensors go, in the order they became final.
using InitSink = std::function<void(NamedTensor&&)>;

class InitState {
 public:
  // Without a sink, finish() returns every tensor; with one, each goes to the sink once final.
  InitState(const ModuleTree& tree, uint64_t seed, InitSink sink = {});

  TorchGenerator& gen() { return gen_; }
  // torch.manual_seed's argument: an init pass whose reference builds its modules in another order than the tree
  // (Hugging Face's classes) replays its own constructors from a fresh generator.
  uint64_t seed() const { return seed_; }
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  // The tensor an init pass overwrites (marks it as re-initialised); throws std::logic_error for a name the
  // tree does not have, or one already handed on.
  NamedTensor& write(const std::string& name);
  float* f32(const std::string& name) { return write(name).f32(); }
  size_t numel(const std::string& name) const;
  const Shape& shape(const std::string& name) const;
  void fill(const std::string& name, float v);
  // The init pass will not write these again: the tensors of `m` and everything under it, or one tensor. They
  // are handed to the sink now (a reset weight and its bias together); without a sink this only marks them.
  void done(const Module& m);
  void done(const std::string& name);
  // Hands on whatever is left (in torch's state_dict order, ModuleTree::state_dict_order) and returns it when
  // there is no sink (then: the whole state_dict, in that order).
  std::vector<NamedTensor> finish();

 private:
  enum class Stage : uint8_t { none, live, handed };  // none: no memory yet (its constructor value is implicit)
  size_t index_of(const std::string& name) const;
  NamedTensor& materialise(size_t i);
  void finalise(size_t i);
  void finalise_subtree(const Module& m);
  // nn.Linear / nn.Conv2d reset_parameters() values of weight `w` and its bias, for the parts the init pass kept.
  void draw_reset(size_t w);

  const ModuleTree& tree_;
  uint64_t seed_;
  TorchGenerator gen_;
  InitSink sink_;
  std::vector<NamedTensor> tensors_;  // by parameter index
  std::vector<Stage> stage_;
  std::vector<bool> written_, final_;
  std::vector<std::optional<TorchGenerator>> reset_at_;  // generator copy where a reset_parameters() drew
  std::unordered_map<std::string, size_t> index_;
};

}  // namespace tabula
