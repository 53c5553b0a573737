// The pieces every model is declared with: the key=value parser, the module tree's two orders (state_dict and
// construction) and the init replay of constructor draws.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "engine/init.h"
#include "models/init_replay.h"
#include "models/key_values.h"
#include "models/module_tree.h"

namespace tabula {
namespace {

std::string error_of(const std::string& text, bool lists = true) {
  try {
    parse_key_values(text, lists);
  } catch (const KeyValueError& e) {
    return e.message;
  }
  return "(no error)";
}

TEST(KeyValues, ListsOrderAndErrors) {
  const KeyValues kv = parse_key_values("layers=2,2,2,2,block=basic");
  ASSERT_EQ(kv.size(), 2u);
  EXPECT_EQ(kv[0], (std::pair<std::string, std::string>{"layers", "2,2,2,2"}));
  EXPECT_EQ(kv[1], (std::pair<std::string, std::string>{"block", "basic"}));
  EXPECT_TRUE(parse_key_values("").empty());
  EXPECT_EQ(parse_key_values("a=,b=x=y")[1].second, "x=y");  // the first '=' splits
  EXPECT_EQ(error_of("hist=8,2", false), "expected key=value, got '2'");
  EXPECT_EQ(error_of("2,a=1"), "expected key=value, got '2'");
  EXPECT_EQ(error_of("a=1,"), "expected key=value, got ''");
  EXPECT_EQ(error_of("=1"), "empty key in '=1'");
  EXPECT_EQ(error_of("a=1,a=2"), "key 'a' given twice");
  // The message keeps every byte (what() would stop at the NUL).
  EXPECT_EQ(error_of(std::string("a=1,\0", 5), false), std::string("expected key=value, got '\0'", 27));
}

TEST(KeyValues, TypedValues) {
  EXPECT_EQ(parse_int_value("depth", "12", 0, 1024), 12);
  EXPECT_THROW(parse_int_value("depth", "1025", 0, 1024), KeyValueError);
  EXPECT_THROW(parse_int_value("depth", "12x", 0), KeyValueError);
  EXPECT_THROW(parse_int_value("depth", "", 0), KeyValueError);
  EXPECT_DOUBLE_EQ(parse_number_value("mlp_ratio", "2.5"), 2.5);
  EXPECT_THROW(parse_number_value("mlp_ratio", "inf"), KeyValueError);
  EXPECT_TRUE(parse_bool_value("qkv_bias", "True"));
  EXPECT_FALSE(parse_bool_value("qkv_bias", "0"));
  EXPECT_THROW(parse_bool_value("qkv_bias", "yes"), KeyValueError);
}

// torchvision's pattern: a module built before it is registered (the downsample, made by _make_layer and given
// to the block) draws first and comes last in the state_dict.
TEST(ModuleTree, StateDictOrderIsRegistrationConstructionOrderIsDeclaration) {
  ModuleTree t;
  Module& root = t.root();
  Module& down = t.make("Sequential");
  t.reset_weight_bias(t.child(down, "0", "Conv2d"), {4, 2, 1, 1}, false);
  Module& block = t.child(root, "block", "Block");
  t.reset_weight_bias(t.child(block, "conv1", "Conv2d"), {4, 2, 3, 3}, false);
  t.add(block, "downsample", down);
  t.param(root, "cls_token", {1, 1, 4});  // the root's own parameter: first in the state_dict
  std::vector<std::string> names;
  for (const ParamSpec& s : t.specs()) names.push_back(s.name);
  EXPECT_EQ(names, (std::vector<std::string>{"cls_token", "block.conv1.weight", "block.downsample.0.weight"}));
  std::vector<std::string> built;
  for (size_t i : t.construction_order()) built.push_back(t.at(i).name());
  EXPECT_EQ(built, (std::vector<std::string>{"block.downsample.0.weight", "block.conv1.weight", "cls_token"}));
  std::vector<std::string> pre, post;
  for (const Module* m : t.modules()) pre.push_back(m->name());
  for (const Module* m : t.modules_post_order()) post.push_back(m->name());
  EXPECT_EQ(pre, (std::vector<std::string>{"", "block", "block.conv1", "block.downsample", "block.downsample.0"}));
  EXPECT_EQ(post, (std::vector<std::string>{"block.conv1", "block.downsample.0", "block.downsample", "block", ""}));
  EXPECT_THROW(t.add(root, "again", down), std::logic_error);
  t.param(t.make("Linear"), "weight", {1});  // made, never registered: its key would be lost
  EXPECT_THROW(t.specs(), std::logic_error);
}

// Constructor draws: kept where the init pass leaves them (equal to reset_parameters() from the generator at
// that point), skipped over where it overwrites them (the stream still advances by exactly those draws).
TEST(InitReplay, ConstructorDrawsKeptOrSkipped) {
  ModuleTree t;
  Module& a = t.child(t.root(), "a", "Linear");
  t.reset_weight_bias(a, {3, 5}, true);
  Module& b = t.child(t.root(), "b", "Linear");
  t.reset_weight_bias(b, {2, 3}, true);
  t.param(t.root(), "ones", {4}, {CtorInit::constant, 1.0});

  InitState s(t, 7);
  s.fill("a.weight", 0.5f);  // the init pass overwrites a's weight, keeps a's bias and all of b
  float after = 0;
  normal_(&after, 1, 0.0, 1.0, s.gen());  // the next draw after the constructors
  const std::vector<NamedTensor> sd = s.finish();

  TorchGenerator g(7);
  std::vector<float> aw(15), ab(3), bw(6), bb(2);
  default_reset_parameters(aw.data(), {3, 5}, ab.data(), g);
  default_reset_parameters(bw.data(), {2, 3}, bb.data(), g);
  float want_after = 0;
  normal_(&want_after, 1, 0.0, 1.0, g);

  ASSERT_EQ(sd.size(), 5u);
  EXPECT_EQ(sd[0].name, "ones");
  EXPECT_EQ(sd[0].f32()[3], 1.0f);
  EXPECT_EQ(sd[1].name, "a.weight");
  EXPECT_EQ(sd[1].f32()[0], 0.5f);
  EXPECT_EQ(std::memcmp(sd[2].f32(), ab.data(), 3 * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(sd[3].f32(), bw.data(), 6 * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(sd[4].f32(), bb.data(), 2 * sizeof(float)), 0);
  EXPECT_EQ(after, want_after);
  EXPECT_THROW(s.write("nope"), std::logic_error);
}

}  // namespace
}  // namespace tabula
