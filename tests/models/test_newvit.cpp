// The channel-agnostic ViT (OpenPhenom / CA-MAE) and DINOv3 against the authors' code:
// weights_tools/reference/newvit_fixtures.py writes tests/fixtures/newvit/ (the init state_dicts of two seeds, the
// perturbed weights in the published layouts, and hooked outputs on 1/3/5/6 channels and square/rectangular
// inputs, batch 1 and 3).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "embed/embed.h"
#include "engine/ops.h"
#include "engine/validate.h"
#include "data/preprocess.h"
#include "models/ca_vit.h"
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
    {"ca_vit_tiny", "ca_vit:dim=32,depth=2,heads=4,patch=8,img=32,max_chans=11"},
    {"dinov3_tiny", "dinov3:dim=32,depth=2,heads=2,patch=8,img=32"},
    {"dinov3_tiny_swiglu", "dinov3:dim=32,depth=2,heads=2,patch=8,img=32,ffn_ratio=6,ffn=swiglu"},
};

const test::FixtureFolder kFixtures("newvit", test::ShapeMatch::exact);

using Case = test::FixtureCase;

std::vector<Case> cases() { return kFixtures.cases(); }

// MAEModel.input_norm through tabula's transform step: x / 255, then data::self_standardize per image.
Tensor input_norm(const Tensor& pixels) {
  Tensor out = Tensor::empty(pixels.shape());
  const int64_t B = pixels.size(0), C = pixels.size(1), H = pixels.size(2), W = pixels.size(3);
  for (int64_t b = 0; b < B; ++b) {
    data::Image img(static_cast<int>(C), static_cast<int>(H), static_cast<int>(W));
    const float* src = pixels.data<float>() + b * C * H * W;
    for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = src[i] / 255.0f;
    const data::Image s = data::self_standardize(img);
    std::copy(s.pixels.begin(), s.pixels.end(), out.data<float>() + b * C * H * W);
  }
  return out;
}

// The input newvit_fixtures.py feeds: CA-ViT gets uint8 pixel values, DINOv3 the hash values themselves.
Tensor fixture_input(const Case& c) {
  if (c.model.rfind("ca_vit", 0) == 0) {
    Tensor h = test::hash_input(c.input, c.seed * 10 + static_cast<uint64_t>(c.input[1]));
    float* p = h.data<float>();
    for (int64_t i = 0; i < h.numel(); ++i) p[i] = std::min(255.0f, std::max(0.0f, std::floor((p[i] + 1) * 128)));
    return h;
  }
  return test::hash_input_hw(c.input, c.seed);
}

WeightMap weights_file(const std::string& name) {
  return load_weight_map(test::fixture("newvit/" + name).string(), "");
}

// The published layouts of each fixture model.
std::vector<std::string> layouts(const std::string& model) {
  if (model.rfind("ca_vit", 0) == 0) return {"model.safetensors", "model.safetensors.pt"};
  return {"hub.pth", "hf.safetensors"};
}

// Runs one case with all its taps captured ("none": whole tensors) and checks each against torch.
void check_case(const Case& c, Model& model, const std::string& layout) {
  const auto expected = kFixtures.taps(c.id);
  ASSERT_FALSE(expected.empty()) << c.id;
  const bool ca = c.model.rfind("ca_vit", 0) == 0;
  Tensor x = fixture_input(c);
  TapSet taps;
  for (const auto& [name, t] : expected) {
    if (name == "input_norm" || name == "predict" || name == "predict_channelwise") continue;
    // the fixture's forward_features is tabula's `norm` (an Identity with global_pool=avg)
    taps.capture(name == "forward_features" ? "norm" : name, Pool::none);
  }
  if (ca) {
    x = input_norm(x);
    EXPECT_LE(kFixtures.rel_error(x, c.id, "input_norm", expected.at("input_norm")), 1e-5) << c.id;
  }
  model.forward(x, taps);
  const auto& got = taps.captured();
  for (const auto& [name, t] : expected) {
    if (name == "input_norm" || name == "predict" || name == "predict_channelwise") continue;
    const std::string key = name == "forward_features" ? "norm" : name;
    ASSERT_TRUE(got.count(key)) << c.id << ": no capture of " << key;
    EXPECT_LE(kFixtures.rel_error(got.at(key), c.id, name, t), 1e-5) << c.id << " " << layout << " " << name;
  }
  if (!ca) return;
  // MAEModel.predict: mean of the patch tokens; return_channelwise_embeddings: the mean per channel's tokens
  const Tensor& feats = got.at("norm");
  EXPECT_LE(kFixtures.rel_error(ops::pool(feats, Pool::avg, 1), c.id, "predict", expected.at("predict")), 1e-5) << c.id;
  const int64_t B = feats.size(0), C = c.input[1], D = feats.size(2), g2 = (feats.size(1) - 1) / C;
  Tensor per = ops::pool(feats.slice(1, 1, feats.size(1)).reshape({B * C, g2, D}), Pool::mean, 0).reshape({B, C * D});
  EXPECT_LE(kFixtures.rel_error(per, c.id, "predict_channelwise", expected.at("predict_channelwise")), 1e-5) << c.id;
}

}  // namespace

TEST(NewViT, InitMatchesTheAuthorsConstructorsForTwoSeeds) {
  for (const auto& [id, arch] : kArch)
    for (uint64_t seed : {0, 1}) {
      const auto got = init_weights(arch, seed);
      const auto want = weights::read_safetensors(test::fixture("newvit/" + id + "_s" + std::to_string(seed) +
                                                                ".init.safetensors").string());
      ASSERT_EQ(got.size(), want.tensors.size()) << id;
      for (size_t i = 0; i < got.size(); ++i) {
        const auto& w = want.tensors[i];
        // safetensors sorts its keys: find by name; the order is checked against param_specs by the loaders
        const auto* wt = want.find(got[i].name);
        ASSERT_NE(wt, nullptr) << id << ": " << got[i].name;
        ASSERT_EQ(got[i].shape, Shape(wt->shape.begin(), wt->shape.end())) << id << ": " << got[i].name;
        const std::vector<float> ref = wt->to_f32();
        int64_t worst = 0;
        for (size_t k = 0; k < ref.size(); ++k) {
          const float a = got[i].f32()[k], b = ref[k];
          if (a == b || (std::isnan(a) && std::isnan(b))) continue;
          const float ulp = std::nextafter(std::fabs(b), INFINITY) - std::fabs(b);
          worst = std::max<int64_t>(worst, static_cast<int64_t>(std::ceil(std::fabs(a - b) / ulp)));
        }
        // timm's erfinv-based trunc_normal_ and torch's Sleef sin/cos/pow: within 2 ULP; everything else exact
        EXPECT_LE(worst, 2) << id << " seed " << seed << ": " << got[i].name;
        (void)w;
      }
    }
}

TEST(NewViT, StateDictOrderIsTheReferences) {
  // torch's state_dict order (the init fixture lists keys sorted: compare with the hub .pth, which keeps order)
  const auto specs = param_specs(parse_arch(kArch.at("dinov3_tiny")));
  const WeightMap hub = weights_file("dinov3_tiny_s0.hub.pth");
  EXPECT_EQ(specs.size(), hub.size());
  EXPECT_EQ(specs[0].name, "cls_token");
  EXPECT_EQ(specs[1].name, "storage_tokens");
  EXPECT_EQ(specs[2].name, "mask_token");
  EXPECT_EQ(specs[3].name, "patch_embed.proj.weight");
  EXPECT_EQ(specs[5].name, "rope_embed.periods");
}

TEST(NewViT, ForwardMatchesTheReferenceOnEveryTapInBothLayouts) {
  int ran = 0;
  for (const Case& c : cases()) {
    for (const std::string& layout : layouts(c.model)) {
      const std::string file = c.model + "_s" + std::to_string(c.seed) + "." + layout;
      auto model = build_model(kArch.at(c.model), weights_file(file), true);
      check_case(c, *model, layout);
      ++ran;
    }
  }
  EXPECT_EQ(ran, 2 * (8 + 12));  // 8 CA-ViT cases, 12 DINOv3 cases, two layouts each
}

TEST(NewViT, ReplacedModuleDrawsButHasNoKeys) {
  // ModuleTree::make_replaced, for the 6-channel patch conv vit.py builds and swaps out
  ModuleTree t;
  Module& ghost = t.make_replaced("Conv2d");
  t.reset_weight_bias(ghost, {2, 1, 1, 1}, true);
  t.param(t.root(), "w", {1});
  EXPECT_EQ(t.specs().size(), 1u);
  EXPECT_EQ(t.construction_order().size(), 3u);
  EXPECT_THROW(t.add(t.root(), "ghost", ghost), std::logic_error);
}

TEST(NewViT, TransformersLayoutWithoutTheModelPrefix) {
  // Files saved by transformers before 5.x name the blocks "layer.N." (5.x renames them to "model.layer.N.")
  WeightMap hf = weights_file("dinov3_tiny_s1.hf.safetensors"), old;
  for (const auto& [k, t] : hf) old[k.rfind("model.", 0) == 0 ? k.substr(6) : k] = t;
  ASSERT_TRUE(old.count("layer.0.norm1.weight"));
  const Tensor x = test::hash_input({1, 3, 32, 32}, 5);
  const Tensor a = build_model(kArch.at("dinov3_tiny"), hf)->forward(x);
  const Tensor b = build_model(kArch.at("dinov3_tiny"), old)->forward(x);
  EXPECT_TRUE(validate::compare(a, b, {0, 0}).ok);
  // weights of another width: the message names the key
  try {
    build_model("dinov3_vits16", hf);
    ADD_FAILURE();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("embeddings.cls_token"), std::string::npos) << e.what();
  }
}

TEST(NewViT, ChannelAgnosticAcceptsUpToMaxChannels) {
  auto model = build_model_seed("ca_vit:dim=16,depth=1,heads=2,patch=8,img=16,max_chans=3", 0);
  EXPECT_NO_THROW(model->forward(Tensor::zeros({1, 3, 16, 16})));
  EXPECT_NO_THROW(model->forward(Tensor::zeros({2, 1, 16, 16})));
  EXPECT_THROW(model->forward(Tensor::zeros({1, 4, 16, 16})), std::invalid_argument);
  EXPECT_THROW(model->forward(Tensor::zeros({1, 3, 24, 16})), std::invalid_argument);
  EXPECT_EQ(model->list_taps({2, 3, 16, 16})[0].shape, (Shape{2, 12, 16}));  // patch_embed: C x (H/P)(W/P) tokens
}

TEST(NewViT, NamedArchsHaveThePublishedSizes) {
  // parameters() of the reference constructors (pos_embed counts: it is an nn.Parameter in vit.py)
  EXPECT_EQ(param_count("ca_vit_small_patch16_256"), 22459776);
  EXPECT_EQ(param_count("dinov3_vits16"), 21601152);
  EXPECT_EQ(param_count("dinov3_vitb16"), 85669632);
  EXPECT_THROW(parse_arch("dinov3:dim=36,heads=6"), std::invalid_argument);  // head_dim 6 is not a multiple of 4
  EXPECT_THROW(parse_arch("ca_vit:global_pool=map"), std::invalid_argument);
}

// ---- through the `tabula` binary ----------------------------------------------------------------------------

namespace {

const Case& find_case(const std::string& id) {
  static const std::vector<Case> all = cases();
  for (const Case& c : all)
    if (c.id == id) return c;
  throw std::runtime_error("no fixture case " + id);
}

std::string embed_cmd(const std::string& arch, const std::string& weights, const std::string& npy,
                      const std::string& out, const std::string& extra = "") {
  return "embed --arch '" + arch + "' --weights '" + test::fixture("newvit/" + weights).string() + "' --data '" + npy +
         "' --out '" + out + "' --quiet " + extra;
}

}  // namespace

TEST(NewViTCli, EmbedOpenPhenomLayoutGivesThePredictEmbedding) {
  // MAEModel.predict = mean of the patch tokens of forward_features: `--layers norm --pool mean` (norm is the
  // Identity after the last block); the checkpoint as MAEModel.save_pretrained writes it (a torch pickle named
  // model.safetensors) and as real safetensors.
  const Case& c = find_case("ca_vit_tiny_s1_c6_b3");
  const auto dir = test::scratch_dir();
  const std::string npy = (dir / "x.npy").string();
  const Tensor x = input_norm(fixture_input(c));
  write_npy(npy, x.shape(), x.data<float>());
  for (const char* layout : {"model.safetensors.pt", "model.safetensors"}) {
    const std::string out = (dir / layout).string();
    // the defaults (tap norm, patch mean) are that rule; the second file spells it out
    const bool pickle = std::string(layout) == "model.safetensors.pt";
    auto r = test::run_tabula(embed_cmd(kArch.at(c.model), std::string("ca_vit_tiny_s1.") + layout, npy, out,
                                        pickle ? "" : "--layers norm --pool mean"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_LE(
        kFixtures.rel_error(test::read_tensor(out + "/norm.npy"), c.id, "predict", kFixtures.taps(c.id).at("predict")),
        1e-5)
        << layout;
  }
}

TEST(NewViTCli, EmbedDinov3BothLayoutsGiveTheClassToken) {
  const Case& c = find_case("dinov3_tiny_swiglu_s1_b3_32x48");
  const auto dir = test::scratch_dir();
  const std::string npy = (dir / "x.npy").string();
  const Tensor x = fixture_input(c);
  write_npy(npy, x.shape(), x.data<float>());
  for (const char* layout : {"hub.pth", "hf.safetensors"}) {
    const std::string out = (dir / layout).string();
    auto r = test::run_tabula(embed_cmd(kArch.at(c.model), std::string("dinov3_tiny_swiglu_s1.") + layout, npy, out));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_LE(kFixtures.rel_error(test::read_tensor(out + "/x_norm_clstoken.npy"), c.id, "x_norm_clstoken",
                                  kFixtures.taps(c.id).at("x_norm_clstoken")),
              1e-5)
        << layout;
  }
}

TEST(NewViTCli, InitHooksAndModelsKnowTheNewArchs) {
  const auto dir = test::scratch_dir();
  const std::string out = (dir / "ca.safetensors").string();
  auto r = test::run_tabula("init '" + kArch.at("ca_vit_tiny") + "' --seed 1 --out '" + out + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto got = weights::read_safetensors(out);
  const auto want = weights::read_safetensors(test::fixture("newvit/ca_vit_tiny_s1.init.safetensors").string());
  ASSERT_EQ(got.tensors.size(), want.tensors.size());
  const auto* w = got.find("patch_embed.proj.weight");  // drawn after timm's init pass: exact
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->to_f32(), want.find("patch_embed.proj.weight")->to_f32());
  auto hooks = test::run_tabula("hooks ca_vit_small_patch16_256");
  EXPECT_EQ(hooks.exit_code, 0) << hooks.err;
  EXPECT_NE(hooks.out.find("blocks.11.mlp_out_proj"), std::string::npos);
  EXPECT_NE(hooks.out.find("[1, 1537, 384]"), std::string::npos);  // 6 channels x 256 patches + CLS
  auto rect = test::run_tabula("hooks dinov3_vits16plus --size 224");
  EXPECT_EQ(rect.exit_code, 0) << rect.err;
  EXPECT_NE(rect.out.find("blocks.0.mlp.w3"), std::string::npos);
  auto models = test::run_tabula("models");
  for (const char* n : {"ca_vit_small_patch16_256", "ca_vit_large_patch16_256", "dinov3_vitl16", "dinov3_vit7b16"})
    EXPECT_NE(models.out.find(n), std::string::npos) << n;
  auto bad = test::run_tabula("hooks 'dinov3:dim=36,heads=6'");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("multiple of 4 * heads"), std::string::npos) << bad.err;
}

// Full-size configs against the sha256 of the reference init (newvit_fixtures.py named_rows): DINOv3 (torch's
// trunc_normal_, normal_, uniform_) bit-identical; the CA-ViT bit-identical except timm's erfinv-based
// trunc_normal_ Linear weights and the sin-cos table (within 2 ULP, checked on the small configs above).
TEST(LongNewViT, FullSizeInitMatchesTheReferenceHashes) {
  const auto rows = kFixtures.init_hashes();
  ASSERT_EQ(rows.size(), 6u);
  for (const auto& [key, want] : rows) {
    const auto got = init_weights(key.first, key.second);
    ASSERT_EQ(got.size(), want.size()) << key.first;
    int exact = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].name, want[i][2]) << key.first << ": state_dict order";
      const bool same = sha256_hex(got[i].bytes.data(), got[i].bytes.size()) == want[i][4];
      exact += same;
      const bool timm_erfinv = key.first.rfind("ca_vit", 0) == 0 &&
                               (got[i].name == "pos_embed" || got[i].name.find("proj.weight") != std::string::npos);
      if (!timm_erfinv) {
        EXPECT_TRUE(same) << key.first << " seed " << key.second << ": " << got[i].name;
      }
    }
    EXPECT_GT(exact, 0);
  }
}

TEST(NewViTCli, EmbedRxRx3CoreLayoutSelfStandardized) {
  // The RxRx3-core layout (metadata_rxrx3_core.csv + images/<experiment>/Plate<plate>/<address>_s1_<ch>.jp2):
  // the CA-ViT's default transform is the crop as it is, / 255, self-standardised, all channels in one input.
  // `tabula preprocess` with those settings gives the same model inputs, each channel standardised.
  const auto dir = test::scratch_dir();
  const std::string arch = "ca_vit:dim=32,depth=1,heads=2,patch=4,img=8";
  const std::string data = test::fixture("data/rxrx3_core").string();
  auto r = test::run_tabula("embed --arch '" + arch + "' --seed 0 --data '" + data + "' --out '" +
                            (dir / "e").string() + "' --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto p = test::run_tabula("preprocess --data '" + data + "' --out '" + (dir / "x.npy").string() +
                            "' --preset none --resize 0 --crop 8 --channels all --intensity self-standardize");
  ASSERT_EQ(p.exit_code, 0) << p.err;
  const Tensor x = test::read_tensor((dir / "x.npy").string());
  ASSERT_EQ(x.shape(), (Shape{3, 6, 8, 8}));
  for (int64_t plane = 0; plane < 18; ++plane) {
    double mean = 0, sq = 0;
    for (int64_t i = 0; i < 64; ++i) mean += x.data<float>()[plane * 64 + i];
    mean /= 64;
    for (int64_t i = 0; i < 64; ++i) sq += std::pow(x.data<float>()[plane * 64 + i] - mean, 2);
    EXPECT_NEAR(mean, 0.0, 1e-6);
    EXPECT_NEAR(sq / 64, 1.0, 1e-2);  // var / (var + 1e-5): below 1 for the dimmest 8-bit planes
  }
  auto e = test::run_tabula("embed --arch '" + arch + "' --seed 0 --data '" + (dir / "x.npy").string() + "' --out '" +
                            (dir / "n").string() + "' --quiet");
  ASSERT_EQ(e.exit_code, 0) << e.err;
  const Tensor a = test::read_tensor((dir / "e/norm.npy").string()),
               b = test::read_tensor((dir / "n/norm.npy").string());
  ASSERT_EQ(a.shape(), (Shape{3, 32}));
  EXPECT_TRUE(validate::compare(a, b, {0, 0}).ok);
}

TEST(NewViTCli, PoolMeanPerChannelIsTheChannelwisePredict) {
  // MAEModel.predict with return_channelwise_embeddings: the mean of each channel's 16 patch tokens, C x D
  const Case& c = find_case("ca_vit_tiny_s0_c3_b3");
  const auto dir = test::scratch_dir();
  const std::string npy = (dir / "x.npy").string();
  const Tensor x = input_norm(fixture_input(c));
  write_npy(npy, x.shape(), x.data<float>());
  const std::string out = (dir / "e").string();
  auto r = test::run_tabula(embed_cmd(kArch.at(c.model), "ca_vit_tiny_s0.model.safetensors", npy, out,
                                      "--layers norm --pool mean-per-channel"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Tensor got = test::read_tensor(out + "/norm.npy");
  EXPECT_EQ(got.shape(), (Shape{3, 3 * 32}));
  EXPECT_LE(kFixtures.rel_error(got, c.id, "predict_channelwise", kFixtures.taps(c.id).at("predict_channelwise")),
            1e-5);
  std::ifstream run(out + "/run.json");
  const std::string json((std::istreambuf_iterator<char>(run)), std::istreambuf_iterator<char>());
  EXPECT_NE(json.find("norm=mean-per-channel"), std::string::npos);
  // a model without channel groups refuses it, naming the flag
  auto bad = test::run_tabula("embed --arch 'dinov3:dim=32,depth=1,heads=2,patch=8,img=32' --seed 0 --data '" + npy +
                              "' --out '" + (dir / "b").string() + "' --pool mean-per-channel");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("--pool mean-per-channel"), std::string::npos) << bad.err;
}
