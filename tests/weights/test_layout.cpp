#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "tests/weights/weights_test_util.h"
#include "models/registry.h"
#include "weights_tools/checkpoint.h"
#include "weights_tools/layout.h"
#include "weights_tools/safetensors.h"

using namespace tabula;
using namespace tabula::weights;
using tabula::test::expected_json;
using tabula::test::wfix;

namespace {

// Real key lists of full-size models (torchvision / timm / transformers state_dict() on the meta device).
std::vector<ShapedName> key_list(const std::string& which) {
  static const json::Value lists = json::parse_file(wfix("key_lists.json"));
  const json::Value* l = lists.find(which);
  if (!l) throw std::runtime_error("no key list " + which);
  std::vector<ShapedName> out;
  for (const json::Value& e : l->as_array()) {
    ShapedName s{e.as_array()[0].as_string(), {}};
    for (const json::Value& d : e.as_array()[1].as_array()) s.shape.push_back(d.as_int64());
    out.push_back(s);
  }
  return out;
}

// The model registry's canonical key list of an arch (what `tabula weights convert --arch` checks against).
std::vector<ShapedName> arch_keys(const std::string& arch) {
  std::vector<ShapedName> out;
  for (const ParamSpec& s : canonical_specs(arch)) out.push_back({s.name, s.shape});
  return out;
}

std::vector<ShapedName> sorted(std::vector<ShapedName> v) {
  std::sort(v.begin(), v.end(), [](const ShapedName& a, const ShapedName& b) { return a.name < b.name; });
  return v;
}

std::vector<ShapedName> plan_outputs(const LayoutPlan& p) {
  std::vector<ShapedName> out;
  for (const MapOp& op : p.ops) out.push_back({op.out, op.shape});
  return out;
}

void expect_same_keys(const std::vector<ShapedName>& a, const std::vector<ShapedName>& b, const std::string& what) {
  auto sa = sorted(a), sb = sorted(b);
  ASSERT_EQ(sa.size(), sb.size()) << what;
  for (size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sa[i].name, sb[i].name) << what;
    EXPECT_EQ(sa[i].shape, sb[i].shape) << what << " " << sa[i].name;
  }
}

}  // namespace

TEST(Layout, DetectsLayoutsOfRealKeyLists) {
  EXPECT_EQ(detect_layout(key_list("torchvision_resnet50")).layout, Layout::torchvision_resnet);
  EXPECT_EQ(detect_layout(key_list("timm_vit_base_patch16_224")).layout, Layout::timm_vit);
  EXPECT_EQ(detect_layout(key_list("timm_vit_base_patch14_reg4_dinov2")).layout, Layout::timm_vit);
  EXPECT_EQ(detect_layout(key_list("hf_dinov2_base")).layout, Layout::hf_dinov2);
  EXPECT_EQ(detect_layout(key_list("hf_dinov2_reg_base")).layout, Layout::hf_dinov2);
  EXPECT_EQ(detect_layout(key_list("hf_vit_base")).layout, Layout::hf_vit);
  // HF *ForImageClassification: backbone under "vit." plus a classifier
  std::vector<ShapedName> cls;
  for (ShapedName s : key_list("hf_vit_base")) {
    s.name = "vit." + s.name;
    cls.push_back(s);
  }
  cls.push_back({"classifier.weight", {10, 768}});
  LayoutGuess g = detect_layout(cls);
  EXPECT_EQ(g.layout, Layout::hf_vit);
  EXPECT_EQ(g.strip_prefix, "vit.");
  LayoutPlan p = plan_layout(cls);
  EXPECT_EQ(p.dropped.front().first, "classifier.weight");
  EXPECT_EQ(detect_layout({{"foo.weight", {1}}}).layout, Layout::unknown);
}

TEST(Layout, ArchKeyListsEqualTheReferenceModels) {
  // same names, shapes and order as torchvision/timm state_dict()
  auto eq = [](const std::vector<ShapedName>& a, const std::vector<ShapedName>& b, const std::string& what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].name, b[i].name) << what << " #" << i;
      EXPECT_EQ(a[i].shape, b[i].shape) << what << " " << a[i].name;
    }
  };
  eq(arch_keys("resnet50"), key_list("torchvision_resnet50"), "resnet50");
  eq(arch_keys("vit_base_patch16_224"), key_list("timm_vit_base_patch16_224"), "vit_base_patch16_224");
  eq(arch_keys("vit_base_patch14_reg4_dinov2"), key_list("timm_vit_base_patch14_reg4_dinov2"), "reg4");
  eq(arch_keys("dinov2_vitb14_reg"), key_list("timm_vit_base_patch14_reg4_dinov2"), "hub alias");
  eq(arch_keys("dinov2_vitb14"), arch_keys("vit_base_patch14_dinov2"), "hub, no registers");
  EXPECT_EQ(arch_keys("resnet18").size(), 122u);  // torchvision resnet18: 122 state_dict entries
  EXPECT_THROW(arch_keys("efficientnet_b0"), std::invalid_argument);  // not in the registry
  EXPECT_THROW(arch_keys("vit:dim=64,bogus=1"), std::invalid_argument);
  EXPECT_THROW(arch_keys("vit:dim=64,patch=8,img=30"), std::invalid_argument);
  auto tiny = arch_keys("vit:dim=64,depth=2,heads=4,patch=8,img=32");
  EXPECT_EQ(tiny.at(1).name, "pos_embed");
  EXPECT_EQ(tiny.at(1).shape, (std::vector<int64_t>{1, 17, 64}));
}

TEST(Layout, MapsRealHuggingFaceKeyListsOntoTimm) {
  // transformers 5 in-memory names (q_proj/o_proj, layers.N) of full-size configs -> timm's own key lists
  LayoutPlan reg = plan_layout(key_list("hf_dinov2_reg_base"));
  EXPECT_TRUE(reg.problems.empty());
  expect_same_keys(plan_outputs(reg), key_list("timm_vit_base_patch14_reg4_dinov2"), "hf dinov2 reg -> timm");
  ASSERT_EQ(reg.dropped.size(), 1u);
  EXPECT_EQ(reg.dropped[0].first, "embeddings.mask_token");

  LayoutPlan plain = plan_layout(key_list("hf_dinov2_base"));
  expect_same_keys(plan_outputs(plain), arch_keys("vit_base_patch14_dinov2"), "hf dinov2 -> timm");

  LayoutPlan vit = plan_layout(key_list("hf_vit_base"));
  std::vector<ShapedName> timm_no_head;
  for (const ShapedName& s : key_list("timm_vit_base_patch16_224"))
    if (s.name.rfind("head.", 0) != 0) timm_no_head.push_back(s);
  expect_same_keys(plan_outputs(vit), timm_no_head, "hf vit -> timm");
  ASSERT_EQ(vit.dropped.size(), 2u);
  EXPECT_EQ(vit.dropped[0].first, "pooler.dense.weight");
}

TEST(Layout, ConvertsRealFilesBitForBitAsTheReferenceDoes) {
  // Expected tensors come from timm's checkpoint_filter_fn (hub) or from a forward-pass-checked mapping (HF).
  for (const auto& [file, info] : expected_json().find("layouts")->as_object()) {
    Checkpoint ck = load_checkpoint(wfix(file));
    LayoutPlan plan;
    StateDict out = to_canonical(ck.sd, &plan);
    EXPECT_EQ(std::string(layout_name(plan.from)), info.find("layout")->as_string()) << file;
    StateDict want = read_safetensors(wfix(info.find("expect")->as_string()));
    ASSERT_EQ(out.tensors.size(), want.tensors.size()) << file;
    for (const WeightTensor& w : want.tensors) {
      const WeightTensor* t = out.find(w.name);
      ASSERT_NE(t, nullptr) << file << ": " << w.name;
      EXPECT_EQ(t->dtype, w.dtype) << file << " " << w.name;
      EXPECT_EQ(t->shape, w.shape) << file << " " << w.name;
      EXPECT_EQ(tabula::test::tensor_sha(*t), tabula::test::tensor_sha(w)) << file << " " << w.name;
    }
    if (const json::Value* unused = info.find("unused")) {
      std::vector<std::string> dropped;
      for (const auto& d : plan.dropped) dropped.push_back(d.first);
      std::vector<std::string> want_unused;
      for (const json::Value& u : unused->as_array()) want_unused.push_back(u.as_string());
      std::sort(dropped.begin(), dropped.end());
      std::sort(want_unused.begin(), want_unused.end());
      EXPECT_EQ(dropped, want_unused) << file;
    }
  }
}

TEST(Layout, RenamesAreZeroCopyAndQkvSplitInvertsTheMerge) {
  Checkpoint ck = load_checkpoint(wfix("hf_dinov2.safetensors"));
  StateDict out = to_canonical(ck.sd);
  EXPECT_EQ(out.at("blocks.0.norm1.weight").data, ck.sd.at("encoder.layer.0.norm1.weight").data);
  auto parts = split_qkv(out.at("blocks.1.attn.qkv.weight"));
  const char* names[] = {"query", "key", "value"};
  for (int i = 0; i < 3; ++i) {
    const WeightTensor& src = ck.sd.at(std::string("encoder.layer.1.attention.attention.") + names[i] + ".weight");
    ASSERT_EQ(parts[static_cast<size_t>(i)].shape, src.shape);
    EXPECT_EQ(0, std::memcmp(parts[static_cast<size_t>(i)].data, src.data, src.nbytes())) << names[i];
  }
}

TEST(Layout, IncompleteQkvIsReportedByName) {
  std::vector<ShapedName> keys = key_list("hf_dinov2_base");
  keys.erase(std::remove_if(keys.begin(), keys.end(),
                            [](const ShapedName& s) { return s.name == "encoder.layer.3.attention.v_proj.bias"; }),
             keys.end());
  LayoutPlan p = plan_layout(keys);
  ASSERT_EQ(p.problems.size(), 1u);
  EXPECT_NE(p.problems[0].find("blocks.3.attn.qkv.bias: only some of its pieces"), std::string::npos) << p.problems[0];
  EXPECT_THROW(apply_plan(StateDict{}, p), std::runtime_error);
}

TEST(Layout, KeyChecksNameMissingUnusedAndMismatchedKeys) {
  std::vector<ShapedName> want = {{"a", {2}}, {"b", {3, 3}}, {"c", {1}}};
  std::vector<ShapedName> have = {{"a", {2}}, {"b", {3, 4}}, {"d", {5}}};
  KeyCheck c = check_keys(have, want);
  EXPECT_EQ(c.missing, (std::vector<std::string>{"c"}));
  EXPECT_EQ(c.unused, (std::vector<std::string>{"d"}));
  ASSERT_EQ(c.shape_mismatches.size(), 1u);
  EXPECT_EQ(c.shape_mismatches[0], "b: file [3, 4] vs model [3, 3]");
  EXPECT_FALSE(c.ok());
  EXPECT_THROW(require_loadable(c, true), std::runtime_error);  // shapes never pass
  KeyCheck m = check_keys({{"a", {2}}}, want);
  try {
    require_loadable(m, false);
    FAIL() << "missing keys must refuse";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("2 missing keys: b, c"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--allow-missing"), std::string::npos);
  }
  EXPECT_NO_THROW(require_loadable(m, true));
}
