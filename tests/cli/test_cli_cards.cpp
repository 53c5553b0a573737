// Model cards through the `tabula` binary: for every card with a fixture (weights_tools/reference/card_fixtures.py:
// the authors' code path, random weights in the published checkpoint's layout, the authors' transform on real 8-bit
// photographs), `preprocess --model` writes the authors' tensors bit for bit, and `embed --model NAME --weights`
// gives the authors' embedding and two block outputs within 1e-5 relative. Plus the shared transform flags and
// defaults of embed and preprocess, the untrained twin, and run.json's record of card and transform.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "data/image.h"
#include "tests/test_util.h"
#include "util/json.h"
#include "util/npy.h"
#include "util/sha256.h"

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
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("h-optimus-0"), std::string::npos) << bad.err;
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
  EXPECT_EQ(bad.exit_code, 1);
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
