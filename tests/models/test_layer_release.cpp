// Layer::release (models/layers.h), what Model::unload calls for the streamed reference's blocks once they ran: a
// released layer holds no tensors, running it throws naming it, and load() brings it back with the same bits. A toy
// model with one of each layer: Conv2d -> flatten -> LayerNorm -> Linear (packed) -> Linear (torch layout) * gamma.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>

#include "engine/validate.h"
#include "models/arch.h"
#include "models/layers.h"
#include "models/model.h"
#include "tests/models/model_fixtures.h"

namespace tabula {
namespace {

// A layer that keeps the default release (no model releases it).
class Keeper final : public Layer {
 public:
  explicit Keeper(ModuleTree&) {}
  void load(const ParamStore&) override {}
  void prepare(int) override {}
};

class Toy final : public Model {
 public:
  explicit Toy(const ArchConfig& arch) : Model(arch) {
    ModuleTree& t = module_tree();
    conv_ = &t.layer<Conv2d>(t.root(), "conv", 2, 4, 4, Conv2dOptions{});
    norm_ = &t.layer<LayerNorm>(t.root(), "norm", 4, 1e-6);
    fc_ = &t.layer<Linear>(t.root(), "fc", 4, 3);
    head_ = &t.layer<Linear>(t.root(), "head", 3, 3, true, /*pack=*/false);
    gamma_ = &t.layer<Parameter>(t.root(), "gamma", Shape{3});
    keeper_ = &t.layer<Keeper>();
  }
  Shape default_input_shape(int64_t batch) const override { return {batch, 2, 4, 4}; }
  Tensor forward(const Tensor& x, TapSet&) override {
    const Tensor h = (*norm_)((*conv_)(x).reshape({x.size(0), 4}));
    return ops::mul((*head_)((*fc_)(h, Activation::gelu)), **gamma_);
  }
  std::vector<std::string> default_taps() const override { return {}; }
  void check_input(const Shape&) const override {}
  std::vector<Layer*> released_kinds() const { return {conv_, norm_, fc_, head_, gamma_}; }
  Layer& keeper() const { return *keeper_; }
  using Model::unload;

 private:
  Conv2d* conv_ = nullptr;
  LayerNorm* norm_ = nullptr;
  Linear *fc_ = nullptr, *head_ = nullptr;
  Parameter* gamma_ = nullptr;
  Keeper* keeper_ = nullptr;
};

struct ToyConfig final : test::ToyModelConfig<ToyConfig, Toy> {};

TEST(LayerRelease, ReleasedLayerThrowsNamingItAndLoadBringsItBack) {
  auto cfg = std::make_shared<ToyConfig>();
  const ArchConfig arch{"toy", cfg};
  std::unique_ptr<Model> m = cfg->construct(arch);
  Toy& toy = dynamic_cast<Toy&>(*m);
  std::mt19937_64 g(3);
  WeightMap w;
  for (const ParamSpec& sp : m->tree().specs()) w[sp.name] = validate::random_tensor(sp.shape, g);
  const ParamStore params("toy", m->tree().specs(), w, true);
  m->load(params);
  const Tensor x = validate::random_tensor({2, 2, 4, 4}, g);
  const Tensor want = m->forward(x);
  const char* names[] = {"conv", "norm", "fc", "head", "gamma"};
  const std::vector<Layer*> layers = toy.released_kinds();
  for (size_t i = 0; i < layers.size(); ++i) {
    toy.unload(*layers[i]);
    const std::string e = test::error_of([&] { (void)m->forward(x); });
    EXPECT_NE(e.find(std::string("layer '") + names[i] + "' run without its weights"), std::string::npos)
        << names[i] << ": " << e;
    m->load(params);
    const Tensor again = m->forward(x);
    EXPECT_EQ(std::memcmp(again.raw(), want.raw(), want.nbytes()), 0) << names[i] << " reloaded";
  }
  EXPECT_NE(test::error_of([&] { toy.unload(toy.keeper()); }).find("keeps its tensors"), std::string::npos);
  const std::unique_ptr<Model> other = cfg->construct(arch);
  const std::string foreign = test::error_of([&] { toy.unload(dynamic_cast<Toy&>(*other).keeper()); });
  EXPECT_NE(foreign.find("arch 'toy': unload: not one of this model's layers"), std::string::npos) << foreign;
}

}  // namespace
}  // namespace tabula
