// The CONCH v1 vision tower against the authors' code: weights_tools/reference/conch_fixtures.py writes
// tests/fixtures/conch/ (the init state_dicts of two seeds of a tiny variant, a whole tiny CoCa checkpoint with every
// tensor random, hooked outputs of encode_image / visual(x) at 448, 224 and 224 x 320, batch 1 and 3, and the
// full-size init's per-tensor sha256).
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "embed/embed.h"
#include "engine/validate.h"
#include "models/model.h"
#include "models/registry.h"
#include "tests/models/model_fixtures.h"
#include "tests/test_util.h"
#include "util/json.h"
#include "util/npy.h"
#include "util/sha256.h"
#include "weights_tools/safetensors.h"

using namespace tabula;

namespace {

const std::string kTiny = "conch:dim=32,depth=2,heads=4,embed_dim=24,caption_dim=32";

const test::FixtureFolder kFixtures("conch", test::ShapeMatch::exact);

using Case = test::FixtureCase;

std::vector<Case> cases() { return kFixtures.cases(); }

Tensor fixture_input(const Case& c) { return test::hash_input_hw(c.input, c.seed); }

WeightMap checkpoint(uint64_t seed) {
  return load_weight_map(test::fixture("conch/conch_tiny_s" + std::to_string(seed) + ".pytorch_model.bin").string(),
                         "");
}

// The fixture's names for what tabula taps under another name: encode_image(proj_contrast=False, normalize=False)
// is ln_contrast's output, proj_contrast=True (unnormalised) tabula's `visual.proj_contrast`.
std::string tabula_tap(const std::string& fixture_tap) {
  if (fixture_tap == "encode_image") return "visual.ln_contrast";
  if (fixture_tap == "encode_image_proj") return "visual.proj_contrast";
  return fixture_tap;
}

double worst_seen = 0;  // over every case and tap (printed)

void check_case(const Case& c, Model& model) {
  const auto expected = kFixtures.taps(c.id);
  ASSERT_GE(expected.size(), 15u) << c.id;
  TapSet taps;
  std::set<std::string> names;
  for (const auto& [name, t] : expected) names.insert(tabula_tap(name));
  for (const std::string& n : names) taps.capture(n, Pool::none);
  model.forward(fixture_input(c), taps);
  const auto& got = taps.captured();
  for (const auto& [name, t] : expected) {
    const std::string key = tabula_tap(name);
    ASSERT_TRUE(got.count(key)) << c.id << ": no capture of " << key;
    const double e = kFixtures.rel_error(got.at(key), c.id, name, t);
    worst_seen = std::max(worst_seen, e);
    EXPECT_LE(e, 1e-5) << c.id << " " << name;
  }
}

// ULPs between a and b (0 when equal).
int64_t ulps(float a, float b) {
  if (a == b) return 0;
  const float ulp = std::nextafter(std::fabs(b), INFINITY) - std::fabs(b);
  return static_cast<int64_t>(std::ceil(std::fabs(a - b) / ulp));
}

// timm's trunc_normal_ goes through erfinv (torch: MKL's), within 2 ULP; every other draw is bit-identical.
bool timm_erfinv(const std::string& name) {
  return name == "visual.trunk.pos_embed" ||
         (name.rfind("visual.trunk.blocks.", 0) == 0 && name.size() > 7 && name.substr(name.size() - 7) == ".weight" &&
          name.find("norm") == std::string::npos);
}

}  // namespace

TEST(Conch, InitMatchesTheVisionTowerConstructorForTwoSeeds) {
  for (uint64_t seed : {0, 1}) {
    const auto got = init_weights(kTiny, seed);
    const auto want = weights::read_safetensors(
        test::fixture("conch/conch_tiny_s" + std::to_string(seed) + ".init.safetensors").string());
    ASSERT_EQ(got.size(), want.tensors.size());
    for (const NamedTensor& g : got) {
      const auto* w = want.find(g.name);
      ASSERT_NE(w, nullptr) << g.name;
      ASSERT_EQ(g.shape, Shape(w->shape.begin(), w->shape.end())) << g.name;
      const std::vector<float> ref = w->to_f32();
      int64_t worst = 0;
      for (size_t k = 0; k < ref.size(); ++k) worst = std::max(worst, ulps(g.f32()[k], ref[k]));
      EXPECT_LE(worst, timm_erfinv(g.name) ? 2 : 0) << "seed " << seed << ": " << g.name;
    }
  }
}

TEST(Conch, TrunkInitIsTimmsVisionTransformerInBothTimmGenerations) {
  // The trunk is drawn first, by timm's own constructor: its tensors equal the vit family's for the same
  // VisionTransformer(...) kwargs, with timm >= 1.0.23's draws and with legacy_init (timm <= 1.0.22's randn pos_embed).
  for (const std::string legacy : {"0", "1"}) {
    const auto conch = init_weights(kTiny + ",legacy_init=" + legacy, 5);
    const auto vit = init_weights(
        "vit:dim=32,depth=2,heads=4,patch=16,img=448,classes=0,dynamic_img_size=1,legacy_init=" + legacy, 5);
    std::map<std::string, const NamedTensor*> by_name;
    for (const NamedTensor& t : conch) by_name[t.name] = &t;
    for (const NamedTensor& t : vit) {
      const auto it = by_name.find("visual.trunk." + t.name);
      ASSERT_NE(it, by_name.end()) << t.name;
      EXPECT_EQ(it->second->bytes, t.bytes) << "legacy_init=" << legacy << ": " << t.name;
    }
  }
}

TEST(Conch, StateDictIsThePublishedLayoutInTorchsOrder) {
  // named.tsv lists the full-size tower's state_dict in order, with the published `visual.` names
  std::vector<std::pair<std::string, Shape>> want;
  for (const auto& [key, rows] : kFixtures.init_hashes())
    if (key.second == 0)
      for (const auto& r : rows) want.emplace_back(r[2], test::parse_shape(r[3]));
  const auto specs = param_specs(parse_arch("conch_vit_b16"));
  ASSERT_EQ(specs.size(), want.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    EXPECT_EQ(specs[i].name, want[i].first) << i;
    EXPECT_EQ(specs[i].shape, want[i].second) << specs[i].name;
  }
  EXPECT_EQ(specs[0].name, "visual.proj_contrast");   // VisualModel's own parameter comes before its children
  EXPECT_EQ(param_count("conch_vit_b16"), 90392832);  // sum(p.numel() for p in visual.parameters())
  EXPECT_EQ(param_count("conch_ViT-B-16"), 90392832);
}

TEST(Conch, ForwardMatchesTheAuthorsCodeOnEveryTap) {
  int ran = 0;
  for (const Case& c : cases()) {
    auto model = build_model(kTiny, checkpoint(c.seed), true);  // text tower keys dropped, the rest strict
    check_case(c, *model);
    ++ran;
  }
  EXPECT_EQ(ran, 10);  // two seeds x (448 b1/b3, 224 b1/b3, 224 x 320)
  std::printf("  worst tap rel diff over %d cases: %.2g\n", ran, worst_seen);
}

TEST(Conch, VisionTowerOnlyAndDataParallelLayoutsLoad) {
  const WeightMap full = checkpoint(1);
  WeightMap visual_only, wrapped;
  for (const auto& [k, t] : full) {
    wrapped["module." + k] = t;
    if (k.rfind("visual.", 0) == 0) visual_only[k.substr(7)] = t;  // model.visual.state_dict()
  }
  ASSERT_TRUE(visual_only.count("trunk.cls_token"));
  const Tensor x = test::hash_input({2, 3, 64, 48}, 3);
  const Tensor a = build_model(kTiny, full)->forward(x);
  EXPECT_TRUE(validate::compare(a, build_model(kTiny, visual_only)->forward(x), {0, 0}).ok);
  EXPECT_TRUE(validate::compare(a, build_model(kTiny, wrapped)->forward(x), {0, 0}).ok);
  EXPECT_EQ(a.shape(), (Shape{2, 24}));
  // a key that is neither the tower's nor the text tower's is still reported, by name
  WeightMap extra = full;
  extra["visual.extra_head.weight"] = Tensor::zeros({2});
  try {
    build_model(kTiny, extra, true);
    ADD_FAILURE();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("visual.extra_head.weight"), std::string::npos) << e.what();
  }
  // a missing pooler tensor names the key
  WeightMap missing = full;
  missing.erase("visual.attn_pool_contrast.attn.k_proj_weight");
  EXPECT_THROW(build_model(kTiny, missing), std::invalid_argument);
}

TEST(Conch, TapsStopEarlyAndAttentionMapsSumToOne) {
  auto model = build_model(kTiny, checkpoint(0));
  const Tensor x = test::hash_input({1, 3, 32, 32}, 9);
  TapSet taps;
  taps.capture("visual.attn_pool_contrast.attn.softmax", Pool::none);
  taps.capture("visual.attn_pool_contrast", Pool::none);
  const Tensor out = model->forward(x, taps);
  EXPECT_EQ(out.shape(), (Shape{1, 1, 24}));  // stopped after the contrastive pooler (the caption pooler never ran)
  const Tensor p = taps.captured().at("visual.attn_pool_contrast.attn.softmax");
  ASSERT_EQ(p.shape(), (Shape{1, 8, 1, 5}));  // 8 pooler heads, one query over CLS + 4 patches
  for (int64_t h = 0; h < 8; ++h) {
    double s = 0;
    for (int64_t j = 0; j < 5; ++j) s += p.data<float>()[h * 5 + j];
    EXPECT_NEAR(s, 1.0, 1e-6);
  }
  // replacing the maps changes the pooled output through probs @ v
  TapSet zero;
  zero.zero("visual.attn_pool_contrast.attn.softmax");
  zero.capture("visual.attn_pool_contrast.attn", Pool::none);
  model->forward(x, zero);
  TapSet plain;
  plain.capture("visual.attn_pool_contrast.attn", Pool::none);
  model->forward(x, plain);
  EXPECT_FALSE(validate::compare(zero.captured().at("visual.attn_pool_contrast.attn"),
                                 plain.captured().at("visual.attn_pool_contrast.attn"), {1e-6, 1e-6})
                   .ok);
  EXPECT_THROW(parse_arch("conch:embed_dim=20,pool_heads=8"), std::invalid_argument);
  EXPECT_THROW(model->forward(Tensor::zeros({1, 3, 30, 32})), std::invalid_argument);
}

// Full size: per-tensor sha256 of the reference init (conch_fixtures.py named_rows), bit-identical except timm's
// erfinv-based trunc_normal_ (pos_embed and the trunk's Linear weights: within 2 ULP on the tiny variant above).
TEST(LongConch, FullSizeInitMatchesTheReferenceHashes) {
  const auto rows = kFixtures.init_hashes();
  ASSERT_EQ(rows.size(), 2u);
  for (const auto& [key, want] : rows) {
    const uint64_t seed = key.second;
    const auto got = init_weights("conch_vit_b16", seed);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].name, want[i][2]);
      if (timm_erfinv(got[i].name)) continue;
      EXPECT_EQ(sha256_hex(got[i].bytes.data(), got[i].bytes.size()), want[i][4])
          << "seed " << seed << ": " << got[i].name;
    }
  }
}

// ---- through the `tabula` binary ----------------------------------------------------------------------------

namespace {

std::string q(const std::string& s) { return "'" + s + "'"; }

}  // namespace

TEST(ConchCli, EmbedThePublishedCheckpointGivesEncodeImage) {
  // conch_tiny_s1_b3_224x224: the whole CoCa file, default taps = encode_image(proj_contrast=False, normalize=False)
  const Case c = [] {
    for (const Case& k : cases())
      if (k.id == "conch_tiny_s1_b3_224x224") return k;
    throw std::runtime_error("no fixture case");
  }();
  const auto dir = test::scratch_dir();
  const std::string npy = (dir / "x.npy").string(), out = (dir / "e").string();
  const Tensor x = fixture_input(c);
  write_npy(npy, x.shape(), x.data<float>());
  const std::string weights = test::fixture("conch/conch_tiny_s1.pytorch_model.bin").string();
  auto r = test::run_tabula("embed --arch " + q(kTiny) + " --weights " + q(weights) + " --data " + q(npy) + " --out " +
                            q(out) + " --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto want = kFixtures.taps(c.id);
  EXPECT_LE(kFixtures.rel_error(test::read_tensor(out + "/visual.ln_contrast.npy"), c.id, "encode_image",
                                want.at("encode_image")),
            1e-5);
  // the projected embedding and the captioning tokens by name
  const std::string out2 = (dir / "p").string();
  r = test::run_tabula("embed --arch " + q(kTiny) + " --weights " + q(weights) + " --data " + q(npy) + " --out " +
                       q(out2) + " --layers visual.proj_contrast,visual.ln_caption --pool none --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LE(kFixtures.rel_error(test::read_tensor(out2 + "/visual.proj_contrast.npy"), c.id, "encode_image_proj",
                                want.at("encode_image_proj")),
            1e-5);
  const Tensor cap = test::read_tensor(out2 + "/visual.ln_caption.npy");
  EXPECT_EQ(cap.shape(), (Shape{3, 256 * 32}));
  EXPECT_LE(kFixtures.rel_error(cap.reshape({3, 256, 32}), c.id, "visual.ln_caption", want.at("visual.ln_caption")),
            1e-5);
}

TEST(ConchCli, ModelsHooksAndInitKnowTheArch) {
  auto models = test::run_tabula("models --trained");
  ASSERT_EQ(models.exit_code, 0) << models.err;
  EXPECT_NE(models.out.find("conch "), std::string::npos) << models.out;
  auto all = test::run_tabula("models");
  EXPECT_NE(all.out.find("conch_vit_b16"), std::string::npos);
  EXPECT_NE(all.out.find("90.39"), std::string::npos);
  auto hooks = test::run_tabula("hooks conch_vit_b16");
  ASSERT_EQ(hooks.exit_code, 0) << hooks.err;
  EXPECT_NE(hooks.out.find("visual.attn_pool_contrast.attn.softmax   [1, 8, 1, 785]"), std::string::npos) << hooks.out;
  EXPECT_NE(hooks.out.find("visual.trunk.blocks.11.mlp.fc2"), std::string::npos);
  EXPECT_NE(hooks.out.find("visual.ln_caption"), std::string::npos);
  const auto dir = test::scratch_dir();
  const std::string out = (dir / "w.safetensors").string();
  auto r = test::run_tabula("init " + q(kTiny) + " --seed 1 --out " + q(out));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto got = weights::read_safetensors(out);
  const auto want = weights::read_safetensors(test::fixture("conch/conch_tiny_s1.init.safetensors").string());
  for (const char* name :
       {"visual.proj_contrast", "visual.attn_pool_contrast.query", "visual.attn_pool_contrast.attn.k_proj_weight",
        "visual.attn_pool_caption.attn.in_proj_weight", "visual.attn_pool_caption.attn.out_proj.weight",
        "visual.trunk.patch_embed.proj.weight"}) {
    ASSERT_NE(got.find(name), nullptr) << name;
    EXPECT_EQ(got.find(name)->to_f32(), want.find(name)->to_f32()) << name;
  }
}

TEST(ConchCli, UntrainedTwinOnSyntheticTissueAndTheArchTransform) {
  // `--model conch:<tiny> --seed 0` on a small synthetic tissue set: the card's transform (Resize 448 bicubic,
  // CenterCrop 448, OpenAI CLIP statistics) and embedding rule; `--arch` alone resolves the same transform.
  const auto dir = test::scratch_dir();
  const std::string data = (dir / "tissue").string();
  auto s = test::run_tabula("synth tissue --out " + q(data) + " --patients 2 --patches 2 --size 64 --threads 1");
  ASSERT_EQ(s.exit_code, 0) << s.err;
  const std::string model = "conch:" + kTiny.substr(6);
  auto r = test::run_tabula("embed --model " + q(model) + " --seed 0 --data " + q(data) + " --out " +
                            q((dir / "twin").string()) + " --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Tensor e = test::read_tensor((dir / "twin/visual.ln_contrast.npy").string());
  EXPECT_EQ(e.shape(), (Shape{4, 24}));
  const json::Value run = json::parse_file((dir / "twin/run.json").string());
  EXPECT_EQ(run.find("weights")->find("kind")->as_string(), "untrained");
  const json::Value& tf = *run.find("transform");
  EXPECT_EQ(tf.find("resize")->as_int64(), 448);
  EXPECT_EQ(tf.find("crop")->as_int64(), 448);
  EXPECT_EQ(tf.find("interp")->as_string(), "bicubic");
  EXPECT_NEAR(tf.find("mean")->as_array()[0].as_double(), 0.48145466, 1e-7);
  // the arch's own default transform is CONCH's
  auto a = test::run_tabula("preprocess --arch " + q(kTiny) + " --data " + q(data) + " --out " +
                            q((dir / "a.npy").string()));
  ASSERT_EQ(a.exit_code, 0) << a.err;
  auto m = test::run_tabula("preprocess --model " + q(model) + " --data " + q(data) + " --out " +
                            q((dir / "m.npy").string()));
  ASSERT_EQ(m.exit_code, 0) << m.err;
  EXPECT_EQ(read_npy((dir / "a.npy").string()).data, read_npy((dir / "m.npy").string()).data);
  EXPECT_EQ(read_npy((dir / "a.npy").string()).shape, (std::vector<int64_t>{4, 3, 448, 448}));
}

// The full-size untrained twin end to end (about 30 s on the shared 2-core machine): `embed --model conch --seed 0`
// on the cards' 224-pixel tiles (Resize to 448 bicubic by Pillow, crop, OpenAI CLIP statistics) against PyTorch's
// torch.manual_seed(0); _build_vision_tower(conch_ViT-B-16) on CONCH's own transform (conch_fixtures.py).
TEST(LongConchCli, FullSizeUntrainedTwinEqualsTheAuthorsTowerOnTiles) {
  const auto dir = test::scratch_dir();
  const std::string out = (dir / "twin").string();
  auto r = test::run_tabula("embed --model conch --seed 0 --data " +
                            q(test::fixture("cards/images/tiles.csv").string()) + " --out " + q(out) + " --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const NpyArray got = read_npy(out + "/visual.ln_contrast.npy"),
                 want = read_npy(test::fixture("conch/twin_s0_tiles.npy").string());
  ASSERT_EQ(got.shape, want.shape);
  ASSERT_EQ(got.shape, (std::vector<int64_t>{2, 512}));
  const std::vector<float> g = got.to_f32(), w = want.to_f32();
  double err = 0, scale = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    err = std::max(err, std::fabs(double(g[i]) - w[i]));
    scale = std::max(scale, std::fabs(double(w[i])));
  }
  EXPECT_LE(err / scale, 1e-5);
  std::printf("  conch seed-0 twin on tiles: rel diff %.2g\n", err / scale);
}
