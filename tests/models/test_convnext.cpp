// timm's ConvNeXt (and the DINOv3 ConvNeXt layout) against timm 1.0.31 / the DINOv3 code:
// weights_tools/reference/convnext_fixtures.py writes tests/fixtures/convnext/ (the init state_dicts of two seeds,
// perturbed weights as timm's model.safetensors / pytorch_model.bin and DINOv3's .pth, hooked outputs at 224 x 224
// and 96 x 128, batch 1 and 3).
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "embed/embed.h"
#include "engine/ops.h"
#include "models/model.h"
#include "models/registry.h"
#include "tests/models/model_fixtures.h"
#include "tests/test_util.h"
#include "util/npy.h"
#include "util/sha256.h"
#include "weights_tools/safetensors.h"

using namespace tabula;

namespace {

const std::map<std::string, std::string> kArch = {
    {"cnx_cl", "convnext:dims=16,24,32,48,depths=1,2,1,1,classes=10,head_init_scale=0.5"},
    {"cnx_convmlp", "convnext:dims=8,16,24,32,depths=1,1,2,1,conv_mlp=1,classes=0,kernel=5"},
};

const test::FixtureFolder kFixtures("convnext", test::ShapeMatch::exact);

using Case = test::FixtureCase;

std::vector<Case> cases() { return kFixtures.cases(); }

Tensor fixture_input(const Case& c) { return test::hash_input_hw(c.input, c.seed); }

WeightMap weights_file(const std::string& name) {
  return load_weight_map(test::fixture("convnext/" + name).string(), "");
}

// The stored layouts of a case's weights (pytorch_model.bin for seed 0, DINOv3's .pth for seed 1).
std::vector<std::string> layouts(const Case& c) {
  std::vector<std::string> out{"model.safetensors"};
  if (c.seed == 0) out.push_back("pytorch_model.bin");
  if (c.seed == 1 && c.model == "cnx_cl") out.push_back("dinov3.pth");
  return out;
}

// DINOv3's ConvNeXt has no classifier: the fixture's arch with classes=0.
std::string dinov3_arch(const std::string& model) {
  std::string a = kArch.at(model);
  const size_t at = a.find("classes=10");
  return at == std::string::npos ? a : a.replace(at, 10, "classes=0");
}

// "head" is the model output; x_norm_clstoken (DINOv3's) is timm's head.flatten with classes=0.
std::string tabula_tap(const std::string& name) { return name == "x_norm_clstoken" ? "head.flatten" : name; }

void check_case(const Case& c, Model& model, const std::string& layout) {
  const auto expected = kFixtures.taps(c.id);
  ASSERT_FALSE(expected.empty()) << c.id;
  TapSet taps;
  std::set<std::string> keys;
  for (const auto& [name, t] : expected) keys.insert(tabula_tap(name));
  for (const std::string& k : keys) taps.capture(k, Pool::none);
  model.forward(fixture_input(c), taps);
  const auto& got = taps.captured();
  for (const auto& [name, t] : expected) {
    if (layout == "dinov3.pth" && (name == "head.fc" || name == "head")) continue;  // DINOv3: no classifier
    const std::string key = tabula_tap(name);
    ASSERT_TRUE(got.count(key)) << c.id << ": no capture of " << key;
    EXPECT_LE(kFixtures.rel_error(got.at(key), c.id, name, t), 1e-5) << c.id << " " << layout << " " << name;
  }
}

}  // namespace

TEST(ConvNeXt, InitMatchesTimmForTwoSeeds) {
  for (const auto& [id, arch] : kArch)
    for (uint64_t seed : {0, 1}) {
      const auto got = init_weights(arch, seed);
      const auto want = weights::read_safetensors(test::fixture("convnext/" + id + "_s" + std::to_string(seed) +
                                                                ".init.safetensors").string());
      ASSERT_EQ(got.size(), want.tensors.size()) << id;
      size_t exact = 0;
      for (const auto& g : got) {
        const auto* wt = want.find(g.name);
        ASSERT_NE(wt, nullptr) << id << ": " << g.name;
        ASSERT_EQ(g.shape, Shape(wt->shape.begin(), wt->shape.end())) << id << ": " << g.name;
        const std::vector<float> ref = wt->to_f32();
        int64_t worst = 0;
        for (size_t k = 0; k < ref.size(); ++k) {
          const float a = g.f32()[k], b = ref[k];
          if (a == b) continue;
          const float ulp = std::nextafter(std::fabs(b), INFINITY) - std::fabs(b);
          worst = std::max<int64_t>(worst, static_cast<int64_t>(std::ceil(std::fabs(a - b) / ulp)));
        }
        exact += worst == 0;
        // timm's trunc_normal_ goes through erfinv (torch's SIMD one): within 2 ULP; constants exact
        EXPECT_LE(worst, 2) << id << " seed " << seed << ": " << g.name;
        if (g.name.find("weight") == std::string::npos || g.shape.size() == 1) {
          EXPECT_EQ(worst, 0) << g.name;
        }
      }
      EXPECT_GT(exact, got.size() / 2) << id;
    }
}

TEST(ConvNeXt, StateDictOrderIsTimms) {
  // torch.save keeps the state_dict order (safetensors sorts its keys)
  for (const auto& [id, arch] : kArch) {
    const auto specs = param_specs(parse_arch(arch));
    const WeightMap bin = weights_file(id + "_s0.pytorch_model.bin");
    ASSERT_EQ(specs.size(), bin.size()) << id;
    EXPECT_EQ(specs[0].name, "stem.0.weight");
    EXPECT_EQ(specs[4].name, "stages.0.blocks.0.gamma");  // the block's own parameter before its children's
    EXPECT_EQ(specs[5].name, "stages.0.blocks.0.conv_dw.weight");
    for (const auto& s : specs) EXPECT_TRUE(bin.count(s.name)) << id << ": " << s.name;
  }
}

TEST(ConvNeXt, ForwardMatchesTimmOnEveryTapInEveryLayout) {
  const auto all = cases();
  ASSERT_EQ(all.size(), 12u);
  for (const Case& c : all)
    for (const std::string& layout : layouts(c)) {
      const std::string arch = layout == "dinov3.pth" ? dinov3_arch(c.model) : kArch.at(c.model);
      auto model = build_model(arch, weights_file(c.model + "_s" + std::to_string(c.seed) + "." + layout), true);
      check_case(c, *model, layout);
    }
}

TEST(ConvNeXt, UntrainedModelRunsTheFixtureInit) {
  // build_model_seed = init_weights + load: the same forward as the stored init weights
  const Case c{"", "cnx_convmlp", 1, {1, 3, 64, 96}};
  auto seeded = build_model_seed(kArch.at(c.model), 1);
  auto stored = build_model(kArch.at(c.model), weights_file("cnx_convmlp_s1.init.safetensors"), true);
  const Tensor x = fixture_input(c);
  const Tensor a = seeded->forward(x), b = stored->forward(x);
  ASSERT_EQ(a.shape(), (Shape{1, 32}));
  double err = 0, scale = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    err = std::max(err, std::fabs(static_cast<double>(a.data<float>()[i]) - b.data<float>()[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(b.data<float>()[i])));
  }
  EXPECT_LE(err, 1e-5 * scale);
}

TEST(ConvNeXt, NamedArchsHaveTimmsSizes) {
  int n = 0;
  for (const auto& r : kFixtures.rows("params.tsv")) {
    EXPECT_EQ(param_count(r[0]), std::stoll(r[1])) << r[0];
    ++n;
  }
  EXPECT_EQ(n, 12);
}

// The default transform of each named arch is timm's default pretrained_cfg's (embed without --preset).
TEST(ConvNeXt, TimmPretrainedCfgsMatchTimm) {
  int n = 0;
  for (const auto& c : kFixtures.rows("pretrained_cfgs.tsv")) {
    test::expect_timm_pretrained_cfg(c);
    if (HasFatalFailure()) return;
    ++n;
  }
  EXPECT_EQ(n, 8);
}

TEST(ConvNeXt, KeysAndInputsAreChecked) {
  EXPECT_THROW(parse_arch("convnext:dims=1,2,3"), std::invalid_argument);
  EXPECT_THROW(parse_arch("convnext:depths=1,1,1,1,1"), std::invalid_argument);
  EXPECT_THROW(parse_arch("convnext:kernel=4"), std::invalid_argument);
  EXPECT_THROW(parse_arch("convnext:use_grn=1"), std::invalid_argument);
  EXPECT_NO_THROW(parse_arch("convnext_tiny:ls_init=none,classes=0"));
  auto m = build_model_skeleton("convnext_atto");
  EXPECT_THROW(m->check_input({1, 3, 31, 64}), std::invalid_argument);  // below the stride-32 last stage
  EXPECT_NO_THROW(m->check_input({1, 3, 32, 40}));
  // tap shapes: torch's, NHWC inside the Linear MLP, NCHW with conv_mlp
  const auto tiny = build_model_skeleton("convnext_tiny")->list_taps({2, 3, 224, 224});
  auto shape = [&](const std::vector<TapInfo>& t, const std::string& n) {
    for (const auto& i : t)
      if (i.name == n) return i.shape;
    return Shape{};
  };
  EXPECT_EQ(shape(tiny, "stages.0.blocks.0.mlp.fc1"), (Shape{2, 56, 56, 384}));
  EXPECT_EQ(shape(tiny, "stages.3"), (Shape{2, 768, 7, 7}));
  EXPECT_EQ(shape(tiny, "head.fc"), (Shape{2, 1000}));
  const auto atto = m->list_taps({1, 3, 224, 224});
  EXPECT_EQ(shape(atto, "stages.0.blocks.0.mlp.fc1"), (Shape{1, 160, 56, 56}));
}

// The tap list is torch's named_modules() (every module, in its order) with the shapes forward hooks see.
TEST(ConvNeXt, TapsAreTimmsNamedModulesWithTheirShapes) {
  for (const char* arch : {"convnext_atto", "convnext_tiny"}) {
    SCOPED_TRACE(arch);
    std::vector<std::pair<std::string, std::string>> want;
    for (const auto& c : kFixtures.rows("named_modules_" + std::string(arch) + ".tsv")) want.emplace_back(c[0], c[1]);
    const auto got = build_model_skeleton(arch)->list_taps({1, 3, 224, 224});
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].name, want[i].first);
      std::string compact;
      for (const int64_t d : got[i].shape) {
        if (!compact.empty()) compact.push_back(',');
        compact.append(std::to_string(d));
      }
      EXPECT_EQ(compact, want[i].second) << got[i].name;
    }
  }
}

// Full-size configs against the sha256 of timm's init (convnext_fixtures.py named_rows): every constant exact; the
// trunc_normal_ weights exact or (on other CPUs) within the 2 ULP the small configs check.
TEST(LongConvNeXt, FullSizeInitMatchesTimmHashes) {
  const auto rows = kFixtures.init_hashes();
  ASSERT_EQ(rows.size(), 4u);
  for (const auto& [key, want] : rows) {
    const auto got = init_weights(key.first, key.second);
    ASSERT_EQ(got.size(), want.size()) << key.first;
    size_t exact = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].name, want[i][2]) << key.first << ": state_dict order";
      const bool same = sha256_hex(got[i].bytes.data(), got[i].bytes.size()) == want[i][4];
      exact += same;
      const bool drawn = got[i].shape.size() > 1;
      if (!drawn) {
        EXPECT_TRUE(same) << key.first << " seed " << key.second << ": " << got[i].name;
      }
    }
    EXPECT_GT(exact, got.size() / 2) << key.first;
  }
}

// ---- through the `tabula` binary ----------------------------------------------------------------------------

TEST(ConvNeXtCli, ModelsHooksInitAndEmbed) {
  auto models = test::run_tabula("models");
  ASSERT_EQ(models.exit_code, 0) << models.err;
  for (const char* n : {"convnext_atto", "convnext_tiny", "convnext_large", "dinov3_convnext_base"})
    EXPECT_NE(models.out.find(n), std::string::npos) << n;
  auto hooks = test::run_tabula("hooks convnext_tiny");
  ASSERT_EQ(hooks.exit_code, 0) << hooks.err;
  for (const char* n : {"stages.2.blocks.8.mlp.fc2", "stages.3.downsample.1", "head.norm", "head.fc"})
    EXPECT_NE(hooks.out.find(n), std::string::npos) << n;
  auto bad = test::run_tabula("hooks 'convnext:dims=1,2'");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("needs 4 values"), std::string::npos) << bad.err;

  const auto dir = test::scratch_dir();
  const std::string init = (dir / "init.safetensors").string();
  auto r = test::run_tabula("init '" + kArch.at("cnx_cl") + "' --seed 1 --out '" + init + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto got = weights::read_safetensors(init);
  const auto want = weights::read_safetensors(test::fixture("convnext/cnx_cl_s1.init.safetensors").string());
  ASSERT_EQ(got.tensors.size(), want.tensors.size());
  for (const char* k : {"stages.1.blocks.0.gamma", "head.norm.weight", "stem.0.bias"})
    EXPECT_EQ(got.find(k)->to_f32(), want.find(k)->to_f32()) << k;

  // embed the fixture input with the timm and DINOv3 layouts: the default tap is forward_head(pre_logits=True)
  const Case c = [] {
    for (const Case& k : cases())
      if (k.id == "cnx_cl_s1_b3_96x128") return k;
    throw std::runtime_error("no fixture case cnx_cl_s1_b3_96x128");
  }();
  const std::string npy = (dir / "x.npy").string();
  const Tensor x = fixture_input(c);
  write_npy(npy, x.shape(), x.data<float>());
  for (const char* layout : {"model.safetensors", "dinov3.pth"}) {
    const std::string out = (dir / layout).string();
    const bool dino = std::string(layout) == "dinov3.pth";
    const std::string arch = dino ? dinov3_arch("cnx_cl") : kArch.at("cnx_cl");
    auto e = test::run_tabula("embed --arch '" + arch + "' --weights '" +
                              test::fixture("convnext/cnx_cl_s1." + std::string(layout)).string() + "' --data '" + npy +
                              "' --out '" + out + "' --quiet");
    ASSERT_EQ(e.exit_code, 0) << e.err;
    const NpyArray a = read_npy(out + "/head.pre_logits.npy");
    const Tensor emb = Tensor::from_vector(a.shape, a.to_f32());
    EXPECT_LE(kFixtures.rel_error(emb, c.id, dino ? "x_norm_clstoken" : "head.flatten",
                                  kFixtures.taps(c.id).at("head.flatten")),
              1e-5)
        << layout;
  }
}

// convnext_tiny on a small synthetic tissue set (8 RGB patches, 64 px): the default tap (forward_head's
// pre-logits) and a block, pooled, the same bytes whatever the thread count.
TEST(ConvNeXtCli, EmbedTinyOnASyntheticSet) {
  const auto dir = test::scratch_dir();
  auto s = test::run_tabula("synth tissue --patients 2 --patches 4 --size 64 --out '" + (dir / "tis").string() + "'");
  ASSERT_EQ(s.exit_code, 0) << s.err;
  std::vector<std::vector<uint8_t>> bytes;
  for (const char* threads : {"1", "2"}) {
    const std::string out = (dir / (std::string("e") + threads)).string();
    auto r = test::run_tabula("embed --arch convnext_tiny --seed 0 --size 64 --threads " + std::string(threads) +
                              " --layers head.pre_logits,stages.2.blocks.8 --data '" +
                              (dir / "tis" / "metadata.csv").string() + "' --out '" + out + "' --quiet");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const NpyArray emb = read_npy(out + "/head.pre_logits.npy"), blk = read_npy(out + "/stages.2.blocks.8.npy");
    EXPECT_EQ(emb.shape, (std::vector<int64_t>{8, 768}));
    EXPECT_EQ(blk.shape, (std::vector<int64_t>{8, 384}));
    for (float v : emb.to_f32()) ASSERT_TRUE(std::isfinite(v));
    bytes.push_back(emb.data);
  }
  EXPECT_EQ(bytes[0], bytes[1]);
}
