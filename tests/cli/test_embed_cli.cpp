// `tabula embed` as a new user walks it: every input kind the README lists, --resume against changed settings,
// the layer sets, the messages for mistyped layers and poolings, and what index.csv keeps. Tiny synthetic data
// (64 px fields, --size 32) keeps each test to a few seconds.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "engine/fileio.h"
#include "tests/test_util.h"
#include "util/json.h"
#include "util/npy.h"

using tabula::test::run_tabula;
namespace fs = std::filesystem;

namespace {
using tabula::test::has;

fs::path data_dir() {
  fs::path d = tabula::test::scratch_dir().string() + "-data";
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Shell-quoted (appending piecewise: GCC 12 reports a false -Wrestrict for `const char* + std::string&&`).
std::string q(const fs::path& p) {
  std::string s(1, '\'');
  s += p.string();
  s += '\'';
  return s;
}

// One plate of 32 wells, 64 px fields, 5 channels.
fs::path cellpainting(const fs::path& dir) {
  auto r = run_tabula("synth cellpainting --size 64 --batches 1 --plates 1 --sites 1 --out " + q(dir / "cp"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return dir / "cp";
}

// Two patients of 4 RGB patches of 64 px (PNG files, metadata.csv, HEST .h5).
fs::path tissue(const fs::path& dir) {
  auto r = run_tabula("synth tissue --patients 2 --patches 4 --size 64 --out " + q(dir / "tis"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return dir / "tis";
}

// `tabula embed` of resnet18 (seed 0, 32 px) from `data` into `out`.
tabula::test::RunResult embed(const fs::path& data, const fs::path& out) {
  return run_tabula("embed --arch resnet18 --seed 0 --size 32 --data " + q(data) + " --out " + q(out));
}

std::string header(const fs::path& csv) {
  std::string t = tabula::read_file_text(csv.string());
  return t.substr(0, t.find('\n'));
}
}  // namespace

TEST(CliEmbed, EveryInputKindOfTheReadme) {
  fs::path dir = data_dir();
  fs::path cp = cellpainting(dir), tis = tissue(dir);
  // A folder of images (one patient's PNG patches), read like `preprocess` reads it.
  fs::copy(tis / "patches" / "P01", dir / "folder");
  auto r = embed(dir / "folder", dir / "e1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.out, ": 4 rows")) << r.out;
  EXPECT_EQ(header(dir / "e1" / "index.csv"), "path,name,folder");
  tabula::json::Value run = tabula::json::parse_file((dir / "e1" / "run.json").string());
  EXPECT_EQ(run.find("data")->find("kind")->as_string(), "folder");
  EXPECT_EQ(run.find("data")->find("sha256")->as_string().size(), 64u);
  // A plain CSV (metadata.csv: one path column + metadata): the path column stays in index.csv.
  r = embed(tis / "metadata.csv", dir / "e2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(header(dir / "e2" / "index.csv").substr(0, 14), "path,patch_id,") << header(dir / "e2" / "index.csv");
  // HEST .h5 patch files: one file, and the folder of them.
  r = embed(tis / "hest" / "P01.h5", dir / "e3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = embed(tis / "hest", dir / "e4");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.out, ": 8 rows")) << r.out;
  // JUMP load_data.csv (and its folder), per-channel.
  r = embed(cp / "load_data.csv", dir / "e5");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "avgpool [2560]")) << r.out;
  // RxRx3-core: the folder holding metadata_rxrx3_core.csv and images/<experiment>/Plate<n>/<address>_s1_<ch>.jp2.
  r = embed(tabula::test::fixture("data/rxrx3_core"), dir / "e7");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.out, ": 3 rows")) << r.out;
  // A preprocessed float32 [N, C, H, W] .npy, used as is.
  r = run_tabula("preprocess --data " + q(tis / "metadata.csv") + " --out " + q(dir / "x.npy") +
                 " --resize 40 --crop 32 --channels rgb:0,1,2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_tabula("embed --arch resnet18 --seed 0 --data " + q(dir / "x.npy") + " --out " + q(dir / "e6"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.out, ": 8 rows")) << r.out;
}

TEST(CliEmbed, ResumeOnAFinishedFolderRefusesChangedSettings) {
  fs::path dir = data_dir();
  fs::path tis = tissue(dir);
  const std::string base = "embed --size 32 --data " + q(tis / "metadata.csv") + " --out " + q(dir / "e");
  auto r = run_tabula(base + " --arch resnet18 --seed 0 --layers layer4");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string before = tabula::read_file_text((dir / "e" / "layer4.npy").string());
  // The same settings: nothing to do.
  r = run_tabula(base + " --arch resnet18 --seed 0 --layers layer4 --resume");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.err, "already complete")) << r.err;
  // Each changed setting is named, with the value stored and the value now.
  r = run_tabula(base + " --arch resnet18 --seed 1 --layers layer4 --resume");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "--seed: 0 in " + (dir / "e" / "run.json").string() + ", 1 now")) << r.err;
  r = run_tabula(base + " --arch resnet34 --seed 0 --layers layer3 --resume");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "--arch: resnet18 in")) << r.err;
  EXPECT_TRUE(has(r.err, "resnet34 now")) << r.err;
  EXPECT_TRUE(has(r.err, "--layers: layer4 in")) << r.err;
  EXPECT_TRUE(has(r.err, "--force")) << r.err;
  EXPECT_EQ(tabula::read_file_text((dir / "e" / "layer4.npy").string()), before) << "the finished folder is untouched";
}

TEST(CliEmbed, ResumeOnAnUnfinishedRunNamesChangedSettings) {
  fs::path dir = data_dir();
  fs::path cp = cellpainting(dir);
  const std::string base = "embed --size 32 --batch 2 --data " + q(cp / "load_data.csv") + " --out " + q(dir / "e") +
                           " --arch resnet18 --layers layer2";
  setenv("TABULA_TEST_EXIT_AFTER_CHUNKS", "0:1", 1);
  auto r = run_tabula(base + " --seed 0");
  unsetenv("TABULA_TEST_EXIT_AFTER_CHUNKS");
  ASSERT_NE(r.exit_code, 0);
  ASSERT_TRUE(fs::exists(dir / "e" / ".partial")) << r.err;
  r = run_tabula(base + " --seed 3 --resume");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "--seed: 0 in")) << r.err;
  EXPECT_TRUE(has(r.err, ", 3 now")) << r.err;
  EXPECT_FALSE(has(r.err, "key=")) << "settings by name, not hashes: " << r.err;
  r = run_tabula(base + " --seed 0 --resume");
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(CliEmbed, LayersAllHasNoTwoIdenticalTaps) {
  fs::path dir = data_dir();
  fs::path tis = tissue(dir);
  auto r = run_tabula("embed --arch resnet18 --seed 0 --size 32 --layers all --data " + q(tis / "metadata.csv") +
                      " --out " + q(dir / "e"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir / "e"))
    if (e.path().extension() == ".npy") files.push_back(tabula::read_file_text(e.path().string()));
  EXPECT_EQ(files.size(), 4u) << r.out;  // layer4 average-pooled is avgpool: the feature output stays
  for (size_t i = 0; i < files.size(); ++i)
    for (size_t j = i + 1; j < files.size(); ++j) EXPECT_NE(files[i], files[j]) << i << " " << j;
  EXPECT_TRUE(has(r.out, "layer1 [64], layer2 [128], layer3 [256], avgpool [512]")) << r.out;
  EXPECT_FALSE(has(r.out, "layer4")) << r.out;
}

TEST(CliEmbed, AttentionMapsAreNotPooledIntoAConstant) {
  fs::path dir = data_dir();
  fs::path tis = tissue(dir);
  const std::string arch = "vit:dim=32,depth=2,heads=2,patch=8,img=32";
  auto r = run_tabula("embed --arch " + arch + " --seed 0 --size 32 --layers blocks.1.attn.softmax --data " +
                      q(tis / "metadata.csv") + " --out " + q(dir / "e"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.err, "blocks.1.attn.softmax")) << r.err;
  EXPECT_TRUE(has(r.err, "max")) << "the pooling chosen is said: " << r.err;
  tabula::NpyArray a = tabula::read_npy((dir / "e" / "blocks.1.attn.softmax.npy").string());
  ASSERT_EQ(a.shape.size(), 2u);
  const float* v = a.as<float>();
  bool varies = false;
  for (int64_t i = 1; i < a.numel(); ++i) varies = varies || v[i] != v[0];
  EXPECT_TRUE(varies) << "a constant feature";
  // Asked for explicitly, avg is done but said to be constant.
  r = run_tabula("embed --arch " + arch + " --seed 0 --size 32 --layers blocks.1.attn.softmax --pool avg --data " +
                 q(tis / "metadata.csv") + " --out " + q(dir / "e2"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.err, "constant")) << r.err;
  // A tap that is already a vector (fc_norm): the pooling does not apply and is said not to, no engine message.
  r = run_tabula("embed --arch " + arch + " --seed 0 --size 32 --layers fc_norm --pool max --data " +
                 q(tis / "metadata.csv") + " --out " + q(dir / "e3"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.err, "does not apply")) << r.err;
  EXPECT_FALSE(has(r.err, "ref::")) << r.err;
}

TEST(CliEmbed, MistypedLayersAndPoolingsSuggest) {
  fs::path dir = data_dir();
  fs::path tis = tissue(dir);
  const std::string base = "embed --arch resnet18 --seed 0 --size 32 --data " + q(tis / "metadata.csv");
  auto r = run_tabula(base + " --out " + q(dir / "e1") + " --layers layer5");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(has(r.err, "no tap 'layer5'")) << r.err;
  EXPECT_TRUE(has(r.err, "did you mean layer")) << r.err;
  EXPECT_LT(r.err.size(), 300u) << r.err;
  EXPECT_FALSE(fs::exists(dir / "e1"));
  // A space after the comma (one quoted argument) is accepted.
  r = run_tabula(base + " --out " + q(dir / "e2") + " --layers 'layer3, layer4'");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "layer3 [256], layer4 [512]")) << r.out;
  // --pool cls on a ResNet: the message is about the flag, not an engine function.
  r = run_tabula(base + " --out " + q(dir / "e3") + " --pool cls");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(has(r.err, "--pool cls")) << r.err;
  EXPECT_FALSE(has(r.err, "ref::")) << r.err;
  EXPECT_TRUE(has(r.err, "avg")) << r.err;
  r = run_tabula(base + " --out " + q(dir / "e4") + " --pool maxx");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(has(r.err, "did you mean max?")) << r.err;
}

TEST(CliEmbed, EvalFeaturesLayerSuggests) {
  fs::path dir = data_dir();
  fs::path tis = tissue(dir);
  auto r = run_tabula("embed --arch resnet18 --seed 0 --size 32 --layers layer4 --data " + q(tis / "metadata.csv") +
                      " --out " + q(dir / "e"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_tabula("eval knn --features " + q(dir / "e") + ":layer5 --label-col patient --out " + q(dir / "k"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(has(r.err, "did you mean layer4?")) << r.err;
}

TEST(CliEmbed, NormalizingTwoLayersIntoOneFolderKeepsBothRecords) {
  fs::path dir = data_dir();
  fs::path tis = tissue(dir);
  auto r = run_tabula("embed --arch resnet18 --seed 0 --size 32 --layers layer3,layer4 --data " +
                      q(tis / "metadata.csv") + " --out " + q(dir / "e"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* layer : {"layer3", "layer4"}) {
    r = run_tabula("eval normalize --features " + q(dir / "e") + ":" + layer +
                   " --method standardize --group-col patient --out " + q(dir / "n"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  tabula::json::Value j = tabula::json::parse_file((dir / "n" / "normalize.json").string());
  const std::string text = tabula::json::dump(j);
  EXPECT_TRUE(has(text, "layer3")) << text;
  EXPECT_TRUE(has(text, "layer4")) << text;
}
