// The Layer rule (models/layers.h): Model::load prepares each layer right after loading it, so a layer's prepare()
// may read only the tensors its own load() took. A toy model whose layer breaks the rule must fail loudly at load,
// whether the parameter it reads comes after it (not loaded yet) or before it (loaded and prepared already).
#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "models/arch.h"
#include "models/layers.h"
#include "models/model.h"
#include "tests/models/model_fixtures.h"

namespace tabula {
namespace {

// A layer whose prepare() reads another layer's Parameter, as ConvNeXt's fc2 once read its block's gamma.
class Peeker final : public Layer {
 public:
  Peeker(ModuleTree& t, Module& parent, const Parameter* const* other) : other_(other) {
    t.param(t.child(parent, "peeker", "Peeker"), "weight", {2});
  }
  void load(const ParamStore&) override {}
  void prepare(int) override { seen_ = *other_ ? **(*other_) : Tensor(); }

 private:
  const Parameter* const* other_;
  Tensor seen_;
};

class Toy;
struct ToyConfig final : test::ToyModelConfig<ToyConfig, Toy> {
  bool peeker_first = true;  // the peeker declared before the parameter it reads, else after
  bool peek = true;          // false: a model that keeps the rule
};

class Toy final : public Model {
 public:
  explicit Toy(const ArchConfig& arch) : Model(arch) {
    const auto& c = *arch.as<ToyConfig>();
    ModuleTree& t = module_tree();
    if (c.peek && c.peeker_first) t.layer<Peeker>(t.root(), &gamma_);
    gamma_ = &t.layer<Parameter>(t.root(), "gamma", Shape{2});
    if (c.peek && !c.peeker_first) t.layer<Peeker>(t.root(), &gamma_);
  }
  Shape default_input_shape(int64_t batch) const override { return {batch, 2}; }
  Tensor forward(const Tensor& x, TapSet&) override { return ops::mul(x, **gamma_); }
  std::vector<std::string> default_taps() const override { return {}; }
  void check_input(const Shape&) const override {}

 private:
  Parameter* gamma_ = nullptr;
};

std::string load_error(bool peek, bool peeker_first) {
  auto cfg = std::make_shared<ToyConfig>();
  cfg->peek = peek;
  cfg->peeker_first = peeker_first;
  const ArchConfig arch{"toy", cfg};
  auto model = cfg->construct(arch);
  WeightMap w;
  w["gamma"] = Tensor::from_vector({2}, {2.0f, 3.0f});
  w["peeker.weight"] = Tensor::zeros({2});
  try {
    model->load(ParamStore("toy", model->tree().specs(), w, false));
  } catch (const std::logic_error& e) {
    return e.what();
  }
  // the forward reads the parameter outside any prepare()
  const Tensor y = model->forward(Tensor::from_vector({1, 2}, {1.0f, 1.0f}));
  EXPECT_EQ(y.data<float>()[1], 3.0f);
  return "";
}

TEST(LayerRule, PrepareReadingAnotherLayersParameterThrows) {
  for (bool first : {true, false}) {
    const std::string e = load_error(true, first);
    EXPECT_NE(e.find("parameter 'gamma' read by another layer's prepare()"), std::string::npos) << first << ": " << e;
    EXPECT_NE(e.find("the Layer rule"), std::string::npos) << e;
  }
  EXPECT_EQ(load_error(false, true), "");
}

}  // namespace
}  // namespace tabula
