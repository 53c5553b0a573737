// timm's SwinTransformer and CTransPath (Swin + HEST's ConvStem) against timm 1.0.31 itself:
// weights_tools/reference/swin_fixtures.py writes tests/fixtures/swin/ (the init state_dicts of two seeds, perturbed
// weights in timm's layout and in ctranspath.pth's timm 0.5.4 layout, hooked outputs at batch 1 and 3, the built size,
// another built size (padding to whole windows, odd patch merging) and a dynamic_img_size run at a rectangular size).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "embed/embed.h"
#include "engine/ops.h"
#include "engine/validate.h"
#include "models/model.h"
#include "models/registry.h"
#include "tests/models/model_fixtures.h"
#include "tests/test_util.h"
#include "util/npy.h"
#include "util/sha256.h"
#include "weights_tools/safetensors.h"

using namespace tabula;

namespace {

// Swin's NHWC maps are tabula's [B, H*W, C] token view of timm's [B, H, W, C]: the same values in the same
// order, so only the element counts must agree.
const test::FixtureFolder kFixtures("swin", test::ShapeMatch::numel);

struct Case {
  std::string id, weights;
  uint64_t seed = 0;
  Shape input;
  std::string arch;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  for (const auto& c : kFixtures.case_rows())
    out.push_back({c[0], c[1], std::stoull(c[2]), test::parse_shape(c[3]), c[4]});
  return out;
}

const Case& find_case(const std::string& id) {
  static const std::vector<Case> all = cases();
  for (const Case& c : all)
    if (c.id == id) return c;
  throw std::runtime_error("no fixture case " + id);
}

Tensor fixture_input(const Case& c) { return test::hash_input_hw(c.input, c.seed); }

WeightMap weights_file(const std::string& name) { return load_weight_map(test::fixture("swin/" + name).string(), ""); }

bool convstem(const Case& c) { return c.weights.rfind("ctp", 0) == 0; }

std::vector<std::string> layouts(const Case& c) {
  if (convstem(c)) return {"timm.safetensors", "ctranspath.pth"};
  return {"timm.safetensors"};
}

void check_case(const Case& c, Model& model, const std::string& layout) {
  const auto expected = kFixtures.taps(c.id);
  ASSERT_FALSE(expected.empty()) << c.id;
  TapSet taps;
  for (const auto& [name, t] : expected) taps.capture(name, Pool::none);
  const Tensor out = model.forward(fixture_input(c), taps);
  const auto& got = taps.captured();
  for (const auto& [name, t] : expected) {
    ASSERT_TRUE(got.count(name)) << c.id << ": no capture of " << name;
    EXPECT_LE(kFixtures.rel_error(got.at(name), c.id, name, t), 1e-5) << c.id << " " << layout << " " << name;
  }
  EXPECT_LE(kFixtures.rel_error(out, c.id, "head", expected.at("head")), 1e-5) << c.id << " " << layout;
}

}  // namespace

TEST(Swin, InitMatchesTimmForTwoSeeds) {
  int checked = 0;
  for (const Case& c : cases()) {
    if (c.weights.find("_i32_") == std::string::npos || c.input[0] != 1) continue;  // one case per (config, seed)
    const auto got = init_weights(c.arch, c.seed);
    const auto want = weights::read_safetensors(test::fixture("swin/" + c.weights + ".init.safetensors").string());
    ASSERT_EQ(got.size(), want.tensors.size()) << c.arch;
    for (const auto& g : got) {
      const auto* wt = want.find(g.name);
      ASSERT_NE(wt, nullptr) << c.arch << ": " << g.name;
      ASSERT_EQ(g.shape, Shape(wt->shape.begin(), wt->shape.end())) << g.name;
      if (g.dtype != DType::f32) continue;  // num_batches_tracked
      const std::vector<float> ref = wt->to_f32();
      int64_t worst = 0;
      for (size_t k = 0; k < ref.size(); ++k) {
        const float a = g.f32()[k], b = ref[k];
        if (a == b) continue;
        const float ulp = std::nextafter(std::fabs(b), INFINITY) - std::fabs(b);
        worst = std::max<int64_t>(worst, static_cast<int64_t>(std::ceil(std::fabs(a - b) / ulp)));
      }
      // timm's erfinv-based trunc_normal_ (Linear weights, bias tables): within 2 ULP; the rest exact
      const bool erfinv = g.name.find("relative_position_bias_table") != std::string::npos ||
                          (g.shape.size() == 2 && g.name.find("weight") != std::string::npos);
      EXPECT_LE(worst, erfinv ? 2 : 0) << c.arch << " seed " << c.seed << ": " << g.name;
    }
    ++checked;
  }
  EXPECT_EQ(checked, 4);  // two configs x two seeds
}

TEST(Swin, StateDictOrderAndCountsAreTimms) {
  const auto specs = param_specs(parse_arch("swin:dim=8,depths=2,2,2,heads=2,2,4,window=4,classes=10"));
  EXPECT_EQ(specs[0].name, "patch_embed.proj.weight");
  EXPECT_EQ(specs[4].name, "layers.0.blocks.0.norm1.weight");
  EXPECT_EQ(specs[6].name, "layers.0.blocks.0.attn.relative_position_bias_table");
  EXPECT_EQ(specs[7].name, "layers.0.blocks.0.attn.qkv.weight");
  EXPECT_EQ(specs.back().name, "head.fc.bias");
  bool merge = false;
  for (const auto& s : specs) merge |= s.name == "layers.1.downsample.reduction.weight";
  EXPECT_TRUE(merge);
  int n = 0;
  for (const auto& r : kFixtures.rows("params.tsv")) {
    EXPECT_EQ(param_count(r[0]), std::stoll(r[1])) << r[0];
    ++n;
  }
  EXPECT_EQ(n, 7);
}

TEST(Swin, ForwardMatchesTimmOnEveryTapInEveryLayout) {
  int ran = 0;
  for (const Case& c : cases()) {
    for (const std::string& layout : layouts(c)) {
      auto model = build_model(c.arch, weights_file(c.weights + "." + layout), true);
      check_case(c, *model, layout);
      ++ran;
    }
  }
  EXPECT_EQ(ran, 10 * 1 + 10 * 2);  // 10 cases per config (2 seeds x 5 inputs); CTransPath in two layouts
}

TEST(Swin, CheckpointBuffersAreCheckedAndMisplacedWeightsNamed) {
  // ctranspath.pth holds relative_position_index: one that is not the window's derivation is refused by name
  WeightMap w = weights_file("ctp_tiny_i32_s0.ctranspath.pth");
  const std::string key = "layers.0.blocks.0.attn.relative_position_index";
  ASSERT_TRUE(w.count(key));
  Tensor bad = w.at(key).to(DType::f32).clone();
  bad.data<float>()[3] += 1;
  w[key] = bad;
  const std::string arch = find_case("ctp_tiny_s0_b1_32x32").arch;
  try {
    build_model(arch, w, true);
    ADD_FAILURE();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
  }
  // a plain Swin file given to the ConvStem arch of the same width: the stem's keys are named missing
  try {
    build_model("swin:dim=8,depths=2,2,2,heads=2,2,4,window=4,classes=10,img=32,embed_layer=convstem",
                weights_file("swin_tiny_i32_s0.timm.safetensors"), true);
    ADD_FAILURE();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("patch_embed.proj.0.weight"), std::string::npos) << e.what();
  }
}

TEST(Swin, HeadOfAnOldLayoutFileIsDroppedWithoutClassesAndKeptWithThem) {
  // HEST loads a file with a classifier into the Identity-headed model with strict=False: the head is ignored
  WeightMap w = weights_file("ctp_tiny_i32_s1.ctranspath.pth");
  ASSERT_FALSE(w.count("head.weight"));  // as published: TransPath loads it strict into the Identity head
  w["head.weight"] = Tensor::zeros({5, 32});
  w["head.bias"] = Tensor::zeros({5});
  const Case& c = find_case("ctp_tiny_s1_b1_32x32");
  const Tensor a = build_model(c.arch, w, true)->forward(fixture_input(c));
  EXPECT_LE(kFixtures.rel_error(a, c.id, "head", kFixtures.taps(c.id).at("head")), 1e-5);
  // with classes, the 0.5 classifier `head.*` becomes timm 1.0's `head.fc.*`
  std::string arch = c.arch;
  arch.replace(arch.find("classes=0"), 9, "classes=5");
  const Tensor logits = build_model(arch, w, true)->forward(fixture_input(c));
  EXPECT_EQ(logits.shape(), (Shape{1, 5}));
  EXPECT_EQ(logits.at({0, 2}), 0.0f);
}

TEST(Swin, NamedArchsUseTimmsPretrainedEvalTransform) {
  int n = 0;
  for (const auto& c : kFixtures.rows("pretrained_cfgs.tsv")) {
    test::expect_timm_pretrained_cfg(c);
    if (HasFatalFailure()) return;
    EXPECT_EQ(build_model_skeleton(c[0])->default_input_shape(1)[2], std::stoi(c[2])) << c[0];
    ++n;
  }
  EXPECT_EQ(n, 6);
}

TEST(Swin, KeysAreChecked) {
  EXPECT_THROW(parse_arch("swin:depths=2,2,heads=3"), std::invalid_argument);
  EXPECT_THROW(parse_arch("swin:embed_layer=convstem,dim=12"), std::invalid_argument);
  EXPECT_THROW(parse_arch("swin:window=0"), std::invalid_argument);
  EXPECT_THROW(parse_arch("swin:bogus=1"), std::invalid_argument);
  auto m = build_model_seed("swin:dim=8,depths=1,1,heads=1,2,window=3,img=24", 0);
  EXPECT_THROW(m->forward(Tensor::zeros({1, 3, 26, 24})), std::invalid_argument);  // not a multiple of the patch
  EXPECT_NO_THROW(m->forward(Tensor::zeros({2, 3, 20, 36})));
}

// Full-size configs against the sha256 of timm's init (swin_fixtures.py named_rows): every tensor but timm's
// erfinv-based trunc_normal_ ones (Linear weights, bias tables: within 2 ULP, checked on the tiny configs above)
// bit-identical, for swin_tiny_patch4_window7_224 and CTransPath's ConvStem variant, two seeds each.
TEST(LongSwin, FullSizeInitMatchesTimmHashes) {
  const auto rows = kFixtures.init_hashes();
  ASSERT_EQ(rows.size(), 4u);
  for (const auto& [key, want] : rows) {
    const auto got = init_weights(key.first, key.second);
    ASSERT_EQ(got.size(), want.size()) << key.first;
    int exact = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].name, want[i][2]) << key.first << ": state_dict order";
      const bool same = sha256_hex(got[i].bytes.data(), got[i].bytes.size()) == want[i][4];
      exact += same;
      const bool erfinv = got[i].name.find("relative_position_bias_table") != std::string::npos ||
                          (got[i].shape.size() == 2 && got[i].name.find("weight") != std::string::npos);
      if (!erfinv) {
        EXPECT_TRUE(same) << key.first << " seed " << key.second << ": " << got[i].name;
      }
    }
    EXPECT_GT(exact, 0);
  }
}

// ---- through the `tabula` binary ----------------------------------------------------------------------------

TEST(SwinCli, EmbedCTransPathCheckpointGivesHestsFeatures) {
  // ctranspath.pth's layout ({'model': state_dict}, timm 0.5.4 names) through `tabula embed`: the default tap
  // `head` (pooled, no classifier) is what HEST's CTransPath encoder returns.
  const Case& c = find_case("ctp_tiny_s1_b3_40x40");
  const auto dir = test::scratch_dir();
  const std::string npy = (dir / "x.npy").string();
  const Tensor x = fixture_input(c);
  write_npy(npy, x.shape(), x.data<float>());
  const std::string out = (dir / "e").string();
  auto r = test::run_tabula("embed --arch '" + c.arch + "' --weights '" +
                            test::fixture("swin/" + c.weights + ".ctranspath.pth").string() + "' --data '" + npy +
                            "' --out '" + out + "' --quiet --layers head,layers.1 --pool avg");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto taps = kFixtures.taps(c.id);
  EXPECT_LE(kFixtures.rel_error(test::read_tensor(out + "/head.npy"), c.id, "head", taps.at("head")), 1e-5);
  // an NHWC stage output with --pool avg: one C-vector per image, the mean over positions
  const Tensor l1 = test::read_tensor(out + "/layers.1.npy");
  ASSERT_EQ(l1.shape(), (Shape{3, 32}));
  TapSet t;
  t.capture("layers.1", Pool::none);
  build_model(c.arch, weights_file(c.weights + ".ctranspath.pth"), true)->forward(x, t);
  const Tensor full = t.captured().at("layers.1");  // [3, 25, 32]: 5 x 5 positions
  ASSERT_EQ(full.shape(), (Shape{3, 25, 32}));
  double err = 0;
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t ch = 0; ch < 32; ++ch) {
      double m = 0;
      for (int64_t p = 0; p < 25; ++p) m += full.at({b, p, ch});
      err = std::max(err, std::fabs(m / 25 - l1.at({b, ch})));
    }
  EXPECT_LE(err, 1e-5);
}

TEST(SwinCli, ModelsHooksAndInitKnowTheFamily) {
  auto models = test::run_tabula("models");
  ASSERT_EQ(models.exit_code, 0) << models.err;
  for (const char* n : {"swin_tiny_patch4_window7_224", "swin_base_patch4_window12_384", "ctranspath"})
    EXPECT_NE(models.out.find(n), std::string::npos) << n;
  auto hooks = test::run_tabula("hooks swin_tiny_patch4_window7_224");
  ASSERT_EQ(hooks.exit_code, 0) << hooks.err;
  EXPECT_NE(hooks.out.find("layers.3.downsample.reduction"), std::string::npos);
  EXPECT_NE(hooks.out.find("layers.2.blocks.5.attn.softmax"), std::string::npos);
  EXPECT_NE(hooks.out.find("[1, 192, 49, 49]"), std::string::npos);  // stage 0: 8 x 8 windows of 7 x 7, 3 heads
  EXPECT_NE(hooks.out.find("[1, 49, 768]"), std::string::npos);      // layers.3 / norm: 7 x 7 tokens
  auto stem = test::run_tabula("hooks ctranspath");
  ASSERT_EQ(stem.exit_code, 0) << stem.err;
  EXPECT_NE(stem.out.find("patch_embed.proj "), std::string::npos);
  const auto dir = test::scratch_dir();
  const Case& c = find_case("swin_tiny_s1_b1_32x32");
  const std::string out = (dir / "w.safetensors").string();
  auto r = test::run_tabula("init '" + c.arch + "' --seed 1 --out '" + out + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto got = weights::read_safetensors(out);
  const auto want = weights::read_safetensors(test::fixture("swin/" + c.weights + ".init.safetensors").string());
  ASSERT_EQ(got.tensors.size(), want.tensors.size());
  // the patch conv keeps its constructor draws (no erfinv): exact
  EXPECT_EQ(got.find("patch_embed.proj.weight")->to_f32(), want.find("patch_embed.proj.weight")->to_f32());
  // a block's attention output, per image: embed's rows stay images (the mean over every window token)
  const Tensor x = test::hash_input({2, 3, 32, 32}, 4);
  const std::string npy = (dir / "x.npy").string();
  write_npy(npy, x.shape(), x.data<float>());
  auto e =
      test::run_tabula("embed --arch '" + c.arch + "' --seed 1 --data '" + npy + "' --out '" + (dir / "e").string() +
                       "' --layers layers.0.blocks.1.attn,layers.0.blocks.1.attn.softmax --quiet");
  ASSERT_EQ(e.exit_code, 0) << e.err;
  EXPECT_EQ(test::read_tensor((dir / "e" / "layers.0.blocks.1.attn.npy").string()).shape(), (Shape{2, 8}));
  EXPECT_EQ(test::read_tensor((dir / "e" / "layers.0.blocks.1.attn.softmax.npy").string()).shape(), (Shape{2, 4 * 2}));
  auto bad = test::run_tabula("hooks 'swin:depths=2,2,heads=3'");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("one value per stage"), std::string::npos) << bad.err;
}

TEST(SwinCli, EmbedCTransPathCardUntrainedOnSyntheticTissue) {
  // `embed --model ctranspath --seed 0` on HEST-like synthetic patches: the card's transform (ToTensor, ImageNet
  // Normalize, no resize) and rule (the pooled features), the weights of the seed; the same numbers as preprocess +
  // the library's forward with init_weights("ctranspath", 0).
  const auto dir = test::scratch_dir();
  auto s = test::run_tabula("synth tissue --out '" + (dir / "t").string() + "' --patients 1 --patches 3");
  ASSERT_EQ(s.exit_code, 0) << s.err;
  const std::string data = (dir / "t" / "metadata.csv").string();
  auto r = test::run_tabula("embed --model ctranspath --seed 0 --data '" + data + "' --out '" + (dir / "e").string() +
                            "' --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Tensor got = test::read_tensor((dir / "e" / "head.npy").string());
  ASSERT_EQ(got.shape(), (Shape{3, 768}));
  std::ifstream run((dir / "e" / "run.json").string());
  const std::string json((std::istreambuf_iterator<char>(run)), std::istreambuf_iterator<char>());
  EXPECT_NE(json.find("\"origin\":\"card ctranspath\""), std::string::npos) << json.substr(0, 400);
  auto p =
      test::run_tabula("preprocess --model ctranspath --data '" + data + "' --out '" + (dir / "x.npy").string() + "'");
  ASSERT_EQ(p.exit_code, 0) << p.err;
  const Tensor x = test::read_tensor((dir / "x.npy").string());
  ASSERT_EQ(x.shape(), (Shape{3, 3, 224, 224}));
  const Tensor want = build_model_seed("ctranspath", 0)->forward(x);
  EXPECT_TRUE(validate::compare(got, want, {1e-6, 1e-5}).ok);
}
