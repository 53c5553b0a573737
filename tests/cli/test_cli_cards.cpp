// Model cards through the `tabula` binary: for every card with a fixture (weights_tools/reference/card_fixtures.py:
// the authors' code path, random weights in the published checkpoint's layout, the authors' transform on real 8-bit
// photographs), `preprocess --model` writes the authors' tensors bit for bit, and `embed --model NAME --weights`
// gives the authors' embedding and two block outputs within 1e-5 relative. Plus the shared transform flags and
// defaults of embed and preprocess, the untrained twin, and run.json's record of card and transform.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "data/image.h"
#include "models/cards/cards.h"
#include "tests/test_util.h"
#include "util/json.h"
#include "util/npy.h"
#include "util/sha256.h"
#include "weights_tools/safetensors.h"

using namespace tabula;
using tabula::test::fixture;
using tabula::test::run_tabula;
using tabula::test::scratch_dir;
namespace fs = std::filesystem;

namespace {

struct CardFixture {
  std::string card, override_keys, images, weights, embedding_layer, embedding_pool, tap_pool, input_sha256;
  std::vector<std::string> taps;
  fs::path dir;
  std::string model() const { return card + ":" + override_keys; }
  std::string manifest() const { return fixture("cards/images/" + images + ".csv").string(); }
};

std::vector<CardFixture> card_fixtures() {
  std::vector<CardFixture> out;
  for (const auto& e : fs::directory_iterator(fixture("cards"))) {
    if (!fs::exists(e.path() / "meta.json")) continue;
    const json::Value m = json::parse_file((e.path() / "meta.json").string());
    CardFixture c;
    c.dir = e.path();
    c.card = m.find("card")->as_string();
    c.override_keys = m.find("override")->as_string();
    c.images = m.find("images")->as_string();
    c.weights = (e.path() / m.find("weights")->as_string()).string();
    c.embedding_layer = m.find("embedding_layer")->as_string();
    c.embedding_pool = m.find("embedding_pool")->as_string();
    c.tap_pool = m.find("tap_pool")->as_string();
    c.input_sha256 = m.find("input_sha256")->as_string();
    for (const auto& t : m.find("taps")->as_array()) c.taps.push_back(t.as_string());
    out.push_back(c);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.card < b.card; });
  return out;
}

// max |got - want| / max |want|
double rel_diff(const NpyArray& got, const NpyArray& want) {
  EXPECT_EQ(got.shape, want.shape);
  if (got.numel() != want.numel()) return 1e30;
  const std::vector<float> g = got.to_f32(), w = want.to_f32();
  double worst = 0, scale = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    worst = std::max(worst, std::fabs(double(g[i]) - double(w[i])));
    scale = std::max(scale, std::fabs(double(w[i])));
  }
  return worst / std::max(scale, 1e-30);
}

std::string q(const std::string& s) { return "'" + s + "'"; }

}  // namespace

TEST(CliCards, AtLeastSixteenCardsHaveFidelityFixtures) {
  EXPECT_GE(card_fixtures().size(), 16u);
  const auto r = run_tabula("models --trained");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const auto& c : card_fixtures()) EXPECT_NE(r.out.find(c.card + " "), std::string::npos) << c.card;
}

TEST(CliCards, PreprocessWritesTheAuthorsTensorsBitForBit) {
  const fs::path dir = scratch_dir();
  for (const auto& c : card_fixtures()) {
    const std::string x = (dir / (c.card + ".npy")).string();
    const auto r = run_tabula("preprocess --model " + q(c.model()) + " --data " + q(c.manifest()) + " --out " + q(x));
    ASSERT_EQ(r.exit_code, 0) << c.card << ": " << r.err;
    const NpyArray a = read_npy(x);
    EXPECT_EQ(sha256_hex(a.data.data(), a.data.size()), c.input_sha256) << c.card;
    const NpyArray every = read_npy((c.dir / "input_every29.npy").string());
    const float* p = a.as<float>();
    const float* w = every.as<float>();
    double worst = 0;
    for (int64_t i = 0; i < every.numel(); ++i) worst = std::max(worst, std::fabs(double(p[i * 29]) - w[i]));
    EXPECT_LE(worst, 1e-6) << c.card;
  }
}

TEST(CliCards, EmbedByCardMatchesTheAuthorsEmbeddingAndTaps) {
  const fs::path dir = scratch_dir();
  for (const auto& c : card_fixtures()) {
    const std::string out = (dir / c.card).string();
    auto r = run_tabula("embed --model " + q(c.model()) + " --weights " + q(c.weights) + " --data " + q(c.manifest()) +
                        " --out " + q(out) + " --quiet");
    ASSERT_EQ(r.exit_code, 0) << c.card << ": " << r.err;
    const double e =
        rel_diff(read_npy(out + "/" + c.embedding_layer + ".npy"), read_npy((c.dir / "embedding.npy").string()));
    EXPECT_LE(e, 1e-5) << c.card;
    // run.json records the card and the resolved transform.
    const json::Value run = json::parse_file(out + "/run.json");
    ASSERT_NE(run.find("card"), nullptr) << c.card;
    EXPECT_EQ(run.find("card")->find("name")->as_string(), c.card);
    EXPECT_EQ(run.find("card")->find("arch_overrides")->as_string(), c.override_keys);
    ASSERT_NE(run.find("transform"), nullptr);
    EXPECT_EQ(run.find("transform")->find("origin")->as_string(), "card " + c.card);
    // 8-bit RGB: Pillow's resampling where the reference runs on PIL images, torch's uint8 path where on uint8 tensors
    EXPECT_EQ(run.find("transform")->find("resize_impl")->as_string(),
              c.card.rfind("kaiko-", 0) == 0 ? "uint8" : "pil");

    const std::string taps_out = (dir / (c.card + "-taps")).string();
    std::string layers;
    for (const auto& t : c.taps) layers += (layers.empty() ? "" : ",") + t;
    r = run_tabula("embed --model " + q(c.model()) + " --weights " + q(c.weights) + " --data " + q(c.manifest()) +
                   " --out " + q(taps_out) + " --layers " + layers + " --pool " + c.tap_pool + " --quiet");
    ASSERT_EQ(r.exit_code, 0) << c.card << ": " << r.err;
    for (size_t i = 0; i < c.taps.size(); ++i) {
      const double t = rel_diff(read_npy(taps_out + "/" + c.taps[i] + ".npy"),
                                read_npy((c.dir / ("tap" + std::to_string(i) + ".npy")).string()));
      EXPECT_LE(t, 1e-5) << c.card << " " << c.taps[i];
    }
    std::printf("  %-18s embedding rel diff %.2g\n", c.card.c_str(), e);
    // Where the fixture also holds the untrained twin's embedding (the reference constructor after
    // torch.manual_seed(seed), e.g. resnet50-hest's timm features model): `--seed` gives it.
    if (!fs::exists(c.dir / "twin.json")) continue;
    const json::Value twin = json::parse_file((c.dir / "twin.json").string());
    const std::string twin_out = (dir / (c.card + "-twin")).string();
    r = run_tabula("embed --model " + q(c.card + ":" + twin.find("override")->as_string()) + " --seed " +
                   std::to_string(twin.find("seed")->as_int64()) + " --data " + q(c.manifest()) + " --out " +
                   q(twin_out) + " --quiet");
    ASSERT_EQ(r.exit_code, 0) << c.card << ": " << r.err;
    EXPECT_LE(rel_diff(read_npy(twin_out + "/" + c.embedding_layer + ".npy"),
                       read_npy((c.dir / twin.find("embedding")->as_string()).string())),
              1e-5)
        << c.card << " twin";
  }
}

TEST(CliCards, PreprocessedTensorIsWhatEmbedFeedsTheModel) {
  // embed on the .npy `preprocess --model` wrote (used as is) equals embed on the manifest: bit for bit.
  const fs::path dir = scratch_dir();
  for (const std::string card : {"virchow2", "dinov2-vits14-reg", "h-optimus-0"}) {
    const auto all = card_fixtures();
    const auto it = std::find_if(all.begin(), all.end(), [&](const auto& c) { return c.card == card; });
    ASSERT_NE(it, all.end());
    const std::string x = (dir / (card + ".npy")).string();
    ASSERT_EQ(run_tabula("preprocess --model " + q(it->model()) + " --data " + q(it->manifest()) + " --out " + q(x))
                  .exit_code,
              0);
    const std::string a = (dir / (card + "-m")).string(), b = (dir / (card + "-x")).string();
    const std::string common = "embed --model " + q(it->model()) + " --weights " + q(it->weights) + " --quiet ";
    ASSERT_EQ(run_tabula(common + "--data " + q(it->manifest()) + " --out " + q(a)).exit_code, 0);
    ASSERT_EQ(run_tabula(common + "--data " + q(x) + " --out " + q(b)).exit_code, 0);
    const NpyArray ea = read_npy(a + "/" + it->embedding_layer + ".npy"),
                   eb = read_npy(b + "/" + it->embedding_layer + ".npy");
    EXPECT_EQ(ea.data, eb.data) << card;
  }
}

TEST(CliCards, UntrainedTwinHasTheCardsTransformAndEmbeddingRule) {
  const fs::path dir = scratch_dir();
  const std::string manifest = fixture("cards/images/rects.csv").string();
  const std::string trained = (dir / "trained").string(), twin = (dir / "twin").string();
  const std::string model = "virchow2:dim=48,depth=2,heads=4";
  ASSERT_EQ(
      run_tabula("embed --model " + model + " --weights " + q(fixture("cards/virchow2/pytorch_model.bin").string()) +
                 " --data " + q(manifest) + " --out " + q(trained) + " --quiet")
          .exit_code,
      0);
  const auto r =
      run_tabula("embed --model " + model + " --seed 3 --data " + q(manifest) + " --out " + q(twin) + " --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json::Value a = json::parse_file(trained + "/run.json"), b = json::parse_file(twin + "/run.json");
  EXPECT_EQ(json::dump(*a.find("transform")), json::dump(*b.find("transform")));
  EXPECT_EQ(json::dump(*a.find("pool")), json::dump(*b.find("pool")));
  EXPECT_EQ(b.find("weights")->find("kind")->as_string(), "untrained");
  EXPECT_EQ(read_npy(twin + "/norm.npy").shape, (std::vector<int64_t>{2, 96}));  // CLS ‖ mean patch, as the card says
  // Hub ids are accepted; unknown names are errors listing the cards.
  EXPECT_EQ(run_tabula("embed --model paige-ai/Virchow2:dim=48,depth=2,heads=4 --seed 3 --data " + q(manifest) +
                       " --out " + q((dir / "hub").string()) + " --quiet")
                .exit_code,
            0);
  const auto bad =
      run_tabula("embed --model no-such-model --seed 0 --data " + q(manifest) + " --out " + q((dir / "bad").string()));
  EXPECT_EQ(bad.exit_code, 2);  // a mistyped name is a usage error, as an arch's
  EXPECT_NE(bad.err.find("h-optimus-0"), std::string::npos) << bad.err;
}

TEST(CliCards, HuggingFaceCardsUntrainedTwinIsTheTransformersConstructor) {
  // phikon (ViTModel) and phikon-v2 (Dinov2Model): `--seed S` gives the weights torch.manual_seed(S) + the class's
  // constructor give (post_init's _init_weights; weights_tools/reference/hf_init_fixtures.py), bit for bit, and the
  // card's untrained twin embeds with them.
  const fs::path dir = scratch_dir();
  const json::Value cases = json::parse_file(fixture("cards/hf_init/cases.json").string());
  ASSERT_EQ(cases.find("cases")->as_array().size(), 4u);
  for (const auto& c : cases.find("cases")->as_array()) {
    const std::string card = c.find("card")->as_string(), over = c.find("override")->as_string();
    const std::string seed = std::to_string(c.find("seed")->as_int64());
    const std::string want_file = fixture("cards/hf_init/" + c.find("file")->as_string()).string();
    const std::string arch = cards::choose_card(card + ":" + over).arch;
    const std::string got_file = (dir / c.find("file")->as_string()).string();
    const auto r = run_tabula("init " + q(arch) + " --seed " + seed + " --out " + q(got_file));
    ASSERT_EQ(r.exit_code, 0) << arch << ": " << r.err;
    const weights::StateDict got = weights::read_safetensors(got_file), want = weights::read_safetensors(want_file);
    ASSERT_EQ(got.names().size(), want.names().size()) << card;
    for (const auto& t : want.tensors) {
      const weights::WeightTensor* g = got.find(t.name);
      ASSERT_NE(g, nullptr) << card << " " << t.name;
      EXPECT_EQ(g->shape, t.shape) << t.name;
      EXPECT_TRUE(g->nbytes() == t.nbytes() && std::equal(t.data, t.data + t.nbytes(), g->data))
          << card << " seed " << seed << " " << t.name;
    }
    // Through the card: the twin's embedding is the embedding of those weights.
    const std::string m = fixture("cards/images/tiles.csv").string(), model = q(card + ":" + over);
    const std::string a = (dir / (card + seed + "twin")).string(), b = (dir / (card + seed + "file")).string();
    ASSERT_EQ(run_tabula("embed --model " + model + " --seed " + seed + " --data " + q(m) + " --out " + q(a) +
                         " --quiet").exit_code, 0);
    ASSERT_EQ(run_tabula("embed --model " + model + " --weights " + q(want_file) + " --data " + q(m) + " --out " +
                         q(b) + " --quiet").exit_code, 0);
    const std::string layer = card == "phikon" ? "/head.npy" : "/x_norm_clstoken.npy";
    EXPECT_EQ(read_npy(a + layer).data, read_npy(b + layer).data) << card;
  }
  // hf_init names one of the two classes, on the geometry that class has
  for (const char* bad : {"vit:dim=48,depth=1,heads=4,classes=0,hf_init=bert",
                          "vit:dim=48,depth=1,heads=4,classes=0,reg=4,hf_init=vit",
                          "vit:dim=48,depth=1,heads=4,classes=0,hf_init=dinov2"}) {
    const auto r = run_tabula(std::string("init '") + bad + "' --seed 0 --out " + q((dir / "bad.safetensors").string()));
    EXPECT_NE(r.exit_code, 0) << bad;
    EXPECT_NE(r.err.find("hf_init"), std::string::npos) << bad << ": " << r.err;
  }
}

TEST(CliCards, EmbedAndPreprocessShareTransformFlagsAndDefaults) {
  auto flag_lines = [](const std::string& help) {
    std::vector<std::string> v;
    for (const char* f :
         {"--preset ", "--resize ", "--crop ", "--size ", "--interp ", "--no-antialias ", "--mean ", "--std ",
          "--no-normalize ", "--intensity ", "--percentiles ", "--channels ", "--resize-impl "}) {
      const size_t nl = help.find(std::string("\n  ") + f);
      const size_t at = nl == std::string::npos ? nl : nl + 1;
      v.push_back(at == std::string::npos ? "" : help.substr(at, help.find('\n', at) - at));
    }
    return v;
  };
  const auto e = run_tabula("embed --help"), p = run_tabula("preprocess --help");
  const auto fe = flag_lines(e.out + e.err), fp = flag_lines(p.out + p.err);
  for (size_t i = 0; i < fe.size(); ++i) {
    EXPECT_FALSE(fe[i].empty()) << i;
    EXPECT_EQ(fe[i], fp[i]);
  }
  // Same defaults: an RGB image is rgb for both (preprocess used to default to per-channel), and preprocess --arch
  // applies the arch's transform as embed does: 3 x 224 x 224 from one input per image.
  const fs::path dir = scratch_dir();
  const std::string manifest = fixture("cards/images/rects.csv").string();
  const auto r =
      run_tabula("preprocess --arch resnet18 --data " + q(manifest) + " --out " + q((dir / "x.npy").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("channels=rgb:0,1,2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("resize_impl=pil"), std::string::npos) << r.out;
  EXPECT_EQ(read_npy((dir / "x.npy").string()).shape, (std::vector<int64_t>{2, 3, 224, 224}));
  // A flag overrides the default it names, on both commands.
  const auto r2 = run_tabula("preprocess --model uni --resize-impl tensor --interp bicubic --data " + q(manifest) +
                             " --out " + q((dir / "y.npy").string()));
  ASSERT_EQ(r2.exit_code, 0) << r2.err;
  EXPECT_NE(r2.out.find("interp=bicubic"), std::string::npos) << r2.out;
  EXPECT_NE(r2.out.find("resize_impl=tensor"), std::string::npos) << r2.out;
  const std::string out = (dir / "e").string();
  ASSERT_EQ(run_tabula("embed --model uni:dim=48,depth=2,heads=4 --seed 0 --resize-impl tensor --interp bicubic "
                       "--data " +
                       q(fixture("cards/images/rects16.csv").string()) + " --out " + q(out) + " --quiet")
                .exit_code,
            0);
  const json::Value run = json::parse_file(out + "/run.json");
  EXPECT_EQ(run.find("transform")->find("interp")->as_string(), "bicubic");
  EXPECT_EQ(run.find("transform")->find("resize_impl")->as_string(), "tensor");
  // Bad values are errors naming the flag.
  const auto bad =
      run_tabula("preprocess --interp cubic --data " + q(manifest) + " --out " + q((dir / "z.npy").string()));
  EXPECT_EQ(bad.exit_code, 2);  // a usage error, before any data is read
  EXPECT_NE(bad.err.find("--interp"), std::string::npos) << bad.err;
}

TEST(CliCards, TimmPretrainedTagsUseTheirOwnEvalTransform) {
  // weights_tools/reference/card_fixtures.py: timm.data.create_transform(**resolve_data_config(model=...)) of each
  // tagged model on the rects images; tabula resolves the tag from its generated table.
  const fs::path dir = scratch_dir();
  const json::Value tags = json::parse_file(fixture("cards/tags/tags.json").string());
  ASSERT_GE(tags.as_object().size(), 3u);
  for (const auto& [name, want] : tags.as_object()) {
    const std::string x = (dir / (name + ".npy")).string();
    const auto r = run_tabula("preprocess --arch " + name + " --data " + q(fixture("cards/images/rects.csv").string()) +
                              " --out " + q(x));
    ASSERT_EQ(r.exit_code, 0) << name << ": " << r.err;
    EXPECT_NE(r.out.find("timm pretrained_cfg " + name), std::string::npos) << r.out;
    const NpyArray a = read_npy(x);
    std::vector<int64_t> shape;
    for (const auto& d : want.find("shape")->as_array()) shape.push_back(d.as_int64());
    EXPECT_EQ(a.shape, shape) << name;
    EXPECT_EQ(sha256_hex(a.data.data(), a.data.size()), want.find("sha256")->as_string()) << name;
  }
  const auto bad = run_tabula("preprocess --arch vit_small_patch16_224.no_such_tag --data " +
                              q(fixture("cards/images/rects.csv").string()) + " --out " + q((dir / "b.npy").string()));
  EXPECT_EQ(bad.exit_code, 2);  // checked before the data is read, as embed checks it
  EXPECT_NE(bad.err.find("augreg_in21k_ft_in1k"), std::string::npos) << bad.err;
}

TEST(CliCards, RealImagesThroughEmbedEqualTimmAndTorchvisionPipelinesOnPil) {
  // The untrained weights of seed 0 (torch-identical init) and the models' own eval transforms, applied by torchvision
  // / timm to PIL images of real photographs, against `tabula embed --arch NAME --seed 0` on the same PNG files.
  const fs::path dir = scratch_dir();
  const json::Value want = json::parse_file(fixture("cards/tags/pipelines.json").string());
  ASSERT_EQ(want.as_object().size(), 2u);
  for (const auto& [arch, w] : want.as_object()) {
    const std::string layer = w.find("layer")->as_string(), out = (dir / arch).string();
    const auto r =
        run_tabula("embed --arch " + arch + " --seed 0 --data " + q(fixture("cards/images/rects.csv").string()) +
                   " --layers " + layer + (layer == "norm" ? " --pool cls" : "") + " --out " + q(out) + " --quiet");
    ASSERT_EQ(r.exit_code, 0) << arch << ": " << r.err;
    const NpyArray got = read_npy(out + "/" + layer + ".npy");
    const auto& rows = w.find("values")->as_array();
    ASSERT_EQ(got.shape[0], int64_t(rows.size()));
    const std::vector<float> g = got.to_f32();
    double worst = 0, scale = 0;
    size_t k = 0;
    for (const auto& row : rows) {
      ASSERT_EQ(int64_t(row.as_array().size()), got.shape[1]);
      for (const auto& v : row.as_array()) {
        worst = std::max(worst, std::fabs(double(g[k++]) - v.as_double()));
        scale = std::max(scale, std::fabs(v.as_double()));
      }
    }
    EXPECT_LE(worst / scale, 1e-5) << arch;
    std::printf("  %s: rel diff %.2g\n", arch.c_str(), worst / scale);
  }
}

TEST(CliCards, SixteenBitDataTakesTheTensorPathAndPilRefusesIt) {
  // The references' 8-bit paths (PIL, uint8 tensors) cannot hold 16-bit samples: auto resolves to the float path,
  // an explicit --resize-impl pil is an error naming the file.
  const fs::path dir = scratch_dir();
  data::Image im(3, 240, 260);
  for (size_t i = 0; i < im.pixels.size(); ++i) im.pixels[i] = float((i * 2654435761u) % 65536u);
  data::write_tiff((dir / "a.tif").string(), im, 16, false);
  {
    std::FILE* f = std::fopen((dir / "m.csv").string().c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("id,image\na,a.tif\n", f);
    std::fclose(f);
  }
  const std::string m = q((dir / "m.csv").string());
  for (const char* card : {"uni", "kaiko-vits16"}) {
    const auto r = run_tabula(std::string("preprocess --model ") + card + " --data " + m + " --out " +
                              q((dir / (std::string(card) + ".npy")).string()));
    ASSERT_EQ(r.exit_code, 0) << card << ": " << r.err;
    EXPECT_NE(r.out.find("resize_impl=tensor"), std::string::npos) << r.out;
  }
  const auto bad =
      run_tabula("preprocess --model uni --resize-impl pil --data " + m + " --out " + q((dir / "bad.npy").string()));
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("a.tif"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("8-bit"), std::string::npos) << bad.err;
}

// ---- the cards of the new architectures, on the tiny fixtures of tests/fixtures/newvit (newvit_fixtures.py: the
// authors' code, random weights in the published layouts). The card's arch narrowed with NAME:k=v to the fixture's
// geometry; everything else (layout, transform, embedding rule) is the card's.

namespace {

const char* kCaViTTiny = "dim=32,depth=2,heads=4,patch=8,img=32,max_chans=11";  // newvit's ca_vit_tiny
const char* kDinov3Tiny = "dim=32,depth=2,heads=2,patch=8,img=32";              // dinov3_tiny(_swiglu)

// newvit_fixtures.py's input (tests/models/model_fixtures.cpp hash_input): values in [-1, 1).
std::vector<float> newvit_hash(int64_t n, uint64_t seed) {
  std::vector<float> out(static_cast<size_t>(n));
  const uint64_t m = 0xFFFFFFFFull;
  for (int64_t i = 0; i < n; ++i) {
    uint64_t s = (static_cast<uint64_t>(i) * 2654435761ull + seed * 40503ull + 12345ull) & m;
    s = ((s ^ (s >> 15)) * 2246822519ull) & m;
    s = ((s ^ (s >> 13)) * 3266489917ull) & m;
    s = s ^ (s >> 16);
    out[size_t(i)] = static_cast<float>(static_cast<double>(s >> 8) / static_cast<double>(1 << 23) - 1.0);
  }
  return out;
}

NpyArray newvit_tap(const std::string& file) { return read_npy(fixture("newvit/" + file).string()); }

// rel_diff for newvit's taps, stored flat (taps.tsv holds their shapes): same values in the same order
double rel_diff_flat(NpyArray got, const NpyArray& want) {
  EXPECT_EQ(got.numel(), want.numel());
  got.shape = want.shape;
  return rel_diff(got, want);
}

NpyArray read_out(const fs::path& p) { return read_npy(p.string()); }

// ca_vit_tiny_s1_c6_b3's uint8 pixels (3 samples x 6 channels of 32 x 32) as one 8-bit PNG per channel, listed in a
// CSV manifest with one column per channel: the RxRx-like input MAEModel.predict gets as a uint8 tensor.
std::string openphenom_manifest(const fs::path& dir) {
  const int B = 3, C = 6, S = 32;
  std::vector<float> v = newvit_hash(int64_t(B) * C * S * S, 1 * 10 + C);
  std::string csv = "c0,c1,c2,c3,c4,c5\n";
  for (int b = 0; b < B; ++b) {
    for (int c = 0; c < C; ++c) {
      data::Image img(1, S, S);
      const float* src = v.data() + (size_t(b) * C + c) * S * S;
      for (int i = 0; i < S * S; ++i)
        img.pixels[size_t(i)] = std::min(255.0f, std::max(0.0f, std::floor((src[i] + 1) * 128)));
      const std::string name = std::string("s") + std::to_string(b) + "_c" + std::to_string(c) + ".png";
      data::write_png((dir / name).string(), img);
      if (c) csv += ",";
      csv += name;
    }
    csv += "\n";
  }
  std::ofstream((dir / "metadata.csv").string()) << csv;
  return (dir / "metadata.csv").string();
}

}  // namespace

TEST(CliCards, OpenPhenomIsMaeModelPredictOnUint8Channels) {
  // The card's transform (/ 255, self-standardise per image and channel, every channel in one input), its
  // published layout (MAEModel.save_pretrained: a torch pickle named model.safetensors) and its embedding rule
  // (predict: the patch-token mean of the last block) on 8-bit PNGs equal MAEModel.predict on the uint8 tensor.
  const fs::path dir = scratch_dir();
  const std::string manifest = openphenom_manifest(dir);
  const std::string model = std::string("openphenom:") + kCaViTTiny;
  for (const char* file : {"ca_vit_tiny_s1.model.safetensors.pt", "ca_vit_tiny_s1.model.safetensors"}) {
    const fs::path out = dir / file;
    // --size 32: the card crops 256-pixel fields; the fixture's are 32 pixels
    const auto r =
        run_tabula("embed --model " + q(model) + " --weights " + q(fixture("newvit/" + std::string(file)).string()) +
                   " --data " + q(manifest) + " --size 32 --out " + q(out.string()) + " --quiet");
    ASSERT_EQ(r.exit_code, 0) << file << ": " << r.err;
    EXPECT_LE(rel_diff_flat(read_out(out / "norm.npy"), newvit_tap("ca_vit_tiny_s1_c6_b3.predict.npy")), 1e-5) << file;
    EXPECT_EQ(read_out(out / "norm.npy").shape, (std::vector<int64_t>{3, 32}));
    const json::Value run = json::parse_file((out / "run.json").string());
    EXPECT_EQ(run.find("card")->find("name")->as_string(), "openphenom");
    const std::string tf = json::dump(*run.find("transform"));
    EXPECT_NE(tf.find("self-standardize"), std::string::npos) << tf;
  }
  // preprocess writes what embed feeds the model: all 6 channels in one input, as with --arch ca_vit_*
  for (const std::string& choice : {"--model " + q(model), std::string("--arch ca_vit_small_patch16_256")}) {
    const fs::path x = dir / (std::to_string(choice.size()) + ".npy");
    const auto p = run_tabula("preprocess " + choice + " --size 32 --data " + q(manifest) + " --out " + q(x.string()));
    ASSERT_EQ(p.exit_code, 0) << p.err;
    EXPECT_EQ(read_out(x).shape, (std::vector<int64_t>{3, 6, 32, 32})) << choice;
  }
  // the hub id names the same card
  const auto alias =
      run_tabula("embed --model " + q(std::string("recursionpharma/OpenPhenom:") + kCaViTTiny) + " --weights " +
                 q(fixture("newvit/ca_vit_tiny_s1.model.safetensors").string()) + " --data " + q(manifest) +
                 " --size 32 --out " + q((dir / "alias").string()) + " --quiet");
  ASSERT_EQ(alias.exit_code, 0) << alias.err;
  EXPECT_LE(rel_diff_flat(read_out(dir / "alias" / "norm.npy"), newvit_tap("ca_vit_tiny_s1_c6_b3.predict.npy")), 1e-5);
}

TEST(CliCards, OpenPhenomUntrainedTwin) {
  // --seed S builds the torch-identical init (the fixture's timm init, seed 1) under the card's transform and rule
  const fs::path dir = scratch_dir();
  const std::string manifest = openphenom_manifest(dir);
  const std::string model = std::string("openphenom:") + kCaViTTiny;
  const std::string common = " --data " + q(manifest) + " --size 32 --quiet --out ";
  auto r = run_tabula("embed --model " + q(model) + " --seed 1" + common + q((dir / "twin").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_tabula("embed --model " + q(model) + " --weights " +
                 q(fixture("newvit/ca_vit_tiny_s1.init.safetensors").string()) + common + q((dir / "init").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const NpyArray twin = read_out(dir / "twin" / "norm.npy"), init = read_out(dir / "init" / "norm.npy");
  EXPECT_EQ(twin.shape, (std::vector<int64_t>{3, 32}));
  EXPECT_LE(rel_diff(twin, init), 1e-6);  // the init is torch's within 2 ULP (trunc_normal's SIMD erfinv)
  // the full-size twin (ViT-S/16, 384 wide) on one 6-channel field: the card's defaults as they are
  const fs::path big = dir / "big";
  fs::create_directories(big);
  std::string csv = "c0,c1,c2,c3,c4,c5\n";
  const std::vector<float> v = newvit_hash(6 * 256 * 256, 7);
  for (int c = 0; c < 6; ++c) {
    data::Image img(1, 256, 256);
    for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = std::floor((v[size_t(c) * 65536 + i] + 1) * 127);
    data::write_png((big / ("c" + std::to_string(c) + ".png")).string(), img);
    if (c) csv += ",";
    csv += "c" + std::to_string(c) + ".png";
  }
  std::ofstream((big / "metadata.csv").string()) << csv << "\n";
  r = run_tabula("embed --model openphenom --seed 0 --data " + q((big / "metadata.csv").string()) + " --out " +
                 q((big / "e").string()) + " --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_out(big / "e" / "norm.npy").shape, (std::vector<int64_t>{1, 384}));
}

TEST(CliCards, Dinov3CardsGiveTheHubModelsClassTokenFromBothLayouts) {
  // dinov3_tiny_s1_b3_32x48 (and its SwiGLU twin): the CLS token after the final norm, from the torch hub
  // checkpoint and from the transformers DINOv3ViTModel file. The fixture's input is the tensor itself (.npy).
  const fs::path dir = scratch_dir();
  struct Use {
    std::string card, fixture_model;
  };
  const std::vector<Use> uses = {{"dinov3-vits16", "dinov3_tiny"},
                                 {"dinov3-vitb16", "dinov3_tiny"},
                                 {"dinov3-vitl16", "dinov3_tiny"},
                                 {"dinov3-vits16plus", "dinov3_tiny_swiglu"},
                                 {"dinov3-vith16plus", "dinov3_tiny_swiglu"},
                                 {"facebook/dinov3-vitb16-pretrain-lvd1689m", "dinov3_tiny"}};
  const std::vector<float> x = newvit_hash(3 * 3 * 32 * 48, 1 * 10 + 32 + 48);
  const std::string npy = (dir / "x.npy").string();
  write_npy(npy, {3, 3, 32, 48}, x.data());
  for (const Use& u : uses) {
    for (const char* layout : {"hub.pth", "hf.safetensors"}) {
      const fs::path out = dir / (u.fixture_model + "_" + std::to_string(&u - uses.data()) + "_" + layout);
      const std::string weights = fixture("newvit/" + u.fixture_model + "_s1." + layout).string();
      const auto r = run_tabula("embed --model " + q(u.card + ":" + kDinov3Tiny) + " --weights " + q(weights) +
                                " --data " + q(npy) + " --out " + q(out.string()) + " --quiet");
      ASSERT_EQ(r.exit_code, 0) << u.card << " " << layout << ": " << r.err;
      EXPECT_EQ(read_out(out / "x_norm_clstoken.npy").shape, (std::vector<int64_t>{3, 32}));
      EXPECT_LE(rel_diff_flat(read_out(out / "x_norm_clstoken.npy"),
                              newvit_tap(u.fixture_model + "_s1_b3_32x48.x_norm_clstoken.npy")),
                1e-5)
          << u.card << " " << layout;
    }
  }
  // the other family's weights do not fit the card (SwiGLU keys in an MLP model): a clear error
  const auto bad = run_tabula("embed --model " + q(std::string("dinov3-vits16:") + kDinov3Tiny) + " --weights " +
                              q(fixture("newvit/dinov3_tiny_swiglu_s1.hub.pth").string()) + " --data " + q(npy) +
                              " --out " + q((dir / "bad").string()) + " --quiet");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("dinov3_tiny_swiglu_s1.hub.pth"), std::string::npos) << bad.err;
}

TEST(CliCards, Dinov3CardsPreprocessAsTheirEvalTransform) {
  // make_classification_eval_transform (transforms.v2 on the uint8 image: Resize(256, bicubic), CenterCrop(224),
  // ToDtype, Normalize(ImageNet)) on real photographs: weights_tools/reference/dinov3_card_transform.py
  const fs::path dir = scratch_dir();
  const json::Value m = json::parse_file(fixture("newvit/dinov3_card_transform.json").string());
  const NpyArray every = newvit_tap("dinov3_card_transform.every29.npy");
  for (const char* card : {"dinov3-vits16", "dinov3-vith16plus"}) {
    const std::string x = (dir / (std::string(card) + ".npy")).string();
    const auto r = run_tabula(std::string("preprocess --model ") + card + " --data " +
                              q(fixture("cards/images/rects.csv").string()) + " --out " + q(x));
    ASSERT_EQ(r.exit_code, 0) << card << ": " << r.err;
    const NpyArray a = read_npy(x);
    EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3, 224, 224}));
    if (a.numel() != 2 * 3 * 224 * 224) continue;
    EXPECT_EQ(sha256_hex(a.data.data(), a.data.size()), m.find("input_sha256")->as_string()) << card;
    const float* p = a.as<float>();
    const float* w = every.as<float>();
    double worst = 0;
    for (int64_t i = 0; i < every.numel(); ++i) worst = std::max(worst, std::fabs(double(p[i * 29]) - w[i]));
    EXPECT_LE(worst, 1e-6) << card;
  }
}

TEST(CliCards, OpenPhenomCardRunsTheRxRx3CoreLayout) {
  // docs/walkthroughs.md's RxRx3-core run by card (metadata_rxrx3_core.csv + per-channel .jp2, wells aggregated):
  // the card's defaults are the ca_vit arch's (crop, / 255, self-standardise, all channels, norm + patch mean)
  const fs::path dir = scratch_dir();
  const std::string data = fixture("data/rxrx3_core").string();
  const std::string common = " --seed 0 --data " + q(data) + " --aggregate well --quiet --out ";
  auto r = run_tabula("embed --model 'openphenom:dim=32,depth=1,heads=2,patch=4,img=8' --size 8" + common +
                      q((dir / "card").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_tabula("embed --arch 'ca_vit:dim=32,depth=1,heads=2,patch=4,img=8' --layers norm --pool mean" + common +
                 q((dir / "arch").string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const NpyArray card = read_out(dir / "card" / "norm.npy"), arch = read_out(dir / "arch" / "norm.npy");
  EXPECT_EQ(card.shape, (std::vector<int64_t>{3, 32}));
  EXPECT_EQ(card.data, arch.data);
  auto text = [](const fs::path& p) {
    std::ifstream f(p);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  };
  EXPECT_EQ(text(dir / "card" / "index.csv"), text(dir / "arch" / "index.csv"));
  EXPECT_FALSE(text(dir / "card" / "index.csv").empty());
}

TEST(LongCliCards, FullSizeTwinsOfTheNewCards) {
  // The cards as published (no narrowing): the untrained twin runs the card's transform and embedding rule at full
  // size -- H0-mini's CLS ‖ patch mean is 2 x 768 wide, Hibou-B's CLS 768, resnet50-hest's pooled layer3 1024.
  const fs::path dir = scratch_dir();
  struct Want {
    std::string card, layer, images;
    int64_t width;
  };
  for (const Want& w : {Want{"h0-mini", "norm", "rects", 1536}, Want{"hibou-b", "head", "rects", 768},
                        Want{"resnet50-hest", "layer3", "tiles", 1024}}) {
    const std::string out = (dir / w.card).string();
    const auto r = run_tabula("embed --model " + w.card + " --seed 0 --data " +
                              q(fixture("cards/images/" + w.images + ".csv").string()) + " --out " + q(out) +
                              " --quiet");
    ASSERT_EQ(r.exit_code, 0) << w.card << ": " << r.err;
    EXPECT_EQ(read_npy(out + "/" + w.layer + ".npy").shape, (std::vector<int64_t>{2, w.width})) << w.card;
  }
  // preprocess --model hibou-b: Resize((224, 224)) squashes the 256 x 288 crops, then CenterCrop(224) is a no-op
  const std::string x = (dir / "hibou.npy").string();
  const auto p = run_tabula("preprocess --model hibou-b --data " + q(fixture("cards/images/rects.csv").string()) +
                            " --out " + q(x));
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_NE(p.out.find("resize=224x224"), std::string::npos) << p.out;
  EXPECT_EQ(read_npy(x).shape, (std::vector<int64_t>{2, 3, 224, 224}));
}
