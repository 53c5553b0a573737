// `tabula embed` / `tabula merge` end to end on the synthetic Cell Painting data, with a tiny ResNet so the
// suite stays fast: shards merge to the unsharded bytes, kill -9 + --resume gives the same bytes, finished
// folders are never overwritten without --force, and a layer's features equal the model's own pooled tap.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "engine/fileio.h"
#include "util/npy.h"
#include "engine/ops.h"
#include "embed/embed.h"
#include "embed/store.h"
#include "models/registry.h"
#include "tests/test_util.h"

using namespace tabula;
namespace fs = std::filesystem;

namespace {
const char* kArch = "resnet:layers=1,1,1,1,block=bottleneck,width=8,classes=10";

// One quick synthetic plate set per test binary run.
std::string synth_dir() {
  static std::string dir = [] {
    // Shared by the tests of this process (scratch_dir() is per test and emptied when a test asks for it).
    const char* base = std::getenv("TABULA_TEST_TMP");
    auto d = (base ? fs::path(base) : fs::temp_directory_path() / "tabula-tests") /
             ("embed-synth." + std::to_string(::getpid()));
    fs::remove_all(d);
    auto r = test::run_tabula("synth cellpainting --quick --out '" + d.string() + "'");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return d.string();
  }();
  return dir;
}

std::string embed_args(const std::string& out, const std::string& extra = "", const std::string& layers = "layer2,avgpool") {
  return std::string("embed --arch '") + kArch + "' --seed 3 --data '" + synth_dir() +
         "/load_data.csv' --size 32 --batch 7 --layers " + layers + " --quiet --out '" + out + "' " + extra;
}

void expect_same_files(const std::string& a, const std::string& b) {
  for (const char* f : {"layer2.npy", "avgpool.npy", "index.csv", "run.json"})
    EXPECT_EQ(read_file_bytes(a + "/" + f), read_file_bytes(b + "/" + f)) << f;
}
}  // namespace

TEST(Embed, WritesLayersIndexAndRunJson) {
  auto dir = (test::scratch_dir() / "e").string();
  auto r = test::run_tabula(embed_args(dir));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  NpyArray a = read_npy(dir + "/avgpool.npy"), l2 = read_npy(dir + "/layer2.npy");
  // 32 fields x 5 channels embedded per channel: 5 x 2048 avgpool features, 5 x 512 layer2 features per field.
  EXPECT_EQ(a.shape, (std::vector<int64_t>{32, 5 * 2048}));
  EXPECT_EQ(l2.shape, (std::vector<int64_t>{32, 5 * 512}));
  std::string index = read_file_text(dir + "/index.csv");
  EXPECT_EQ(std::count(index.begin(), index.end(), '\n'), 33);
  EXPECT_EQ(index.rfind("Metadata_Source,Metadata_Batch,Metadata_Plate", 0), 0u) << index.substr(0, 80);
  std::string run = read_file_text(dir + "/run.json");
  for (const char* k : {"\"arch\"", "\"seed\":3", "\"preprocessing\"", "\"channels\":\"per-channel\"", "\"sha256\""})
    EXPECT_NE(run.find(k), std::string::npos) << k << " in " << run;
}

// The embedding of a .npy input equals the model's own pooled tap on the same tensor.
TEST(Embed, NpyInputEqualsDirectForward) {
  auto root = test::scratch_dir();
  std::vector<float> x(4 * 3 * 32 * 32);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 7919) % 1000) / 500.f - 1.f;
  write_npy((root / "x.npy").string(), {4, 3, 32, 32}, x.data());
  EmbedOptions o;
  o.arch = kArch;
  o.seed = 3;
  o.data = (root / "x.npy").string();
  o.out = (root / "e").string();
  o.layers = {"layer3"};
  o.quiet = true;
  o.batch = 3;
  run_embed(o);
  auto model = build_model_seed(kArch, 3);
  TapSet taps;
  taps.capture("layer3", Pool::avg);
  model->forward(Tensor::from_vector({4, 3, 32, 32}, x), taps);
  EXPECT_EQ(read_npy(o.out + "/layer3.npy").to_f32(), taps.captured().at("layer3").to_vector());
}

TEST(Embed, ShardsMergeToTheUnshardedBytes) {
  auto root = test::scratch_dir();
  std::string whole = (root / "whole").string();
  ASSERT_EQ(test::run_tabula(embed_args(whole)).exit_code, 0);
  std::string shards;
  for (int i = 0; i < 3; ++i) {
    std::string d = (root / ("s" + std::to_string(i))).string();
    auto r = test::run_tabula(embed_args(d, "--shard " + std::to_string(i) + "/3"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    shards += " '" + d + "'";
  }
  // A missing shard is named.
  auto bad = test::run_tabula("merge '" + (root / "s0").string() + "' '" + (root / "s2").string() + "' --out '" +
                              (root / "bad").string() + "'");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("missing"), std::string::npos) << bad.err;
  auto m = test::run_tabula("merge" + shards + " --out '" + (root / "merged").string() + "'");
  ASSERT_EQ(m.exit_code, 0) << m.err;
  expect_same_files(whole, (root / "merged").string());
}

// kill -9 of the real process three times, then --resume: the same bytes as an uninterrupted run.
TEST(Embed, KillNineThenResumeGivesTheSameBytes) {
  auto root = test::scratch_dir();
  std::string whole = (root / "whole").string(), dir = (root / "killed").string();
  ASSERT_EQ(test::run_tabula(embed_args(whole)).exit_code, 0);
  const std::string journal = EmbeddingStore::partial_dir(dir) + "/journal";
  auto chunks_done = [&] {
    std::error_code ec;
    if (!fs::exists(journal, ec)) return 0L;
    std::string t = read_file_text(journal);
    return static_cast<long>(std::count(t.begin(), t.end(), '\n')) - 1;
  };
  const long kill_after[] = {1, 2, 3};
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::string cmd = std::string("exec '") + TABULA_BINARY + "' " + embed_args(dir, attempt ? "--resume" : "") +
                      " >/dev/null 2>&1";
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    while (chunks_done() < kill_after[attempt] && waitpid(pid, nullptr, WNOHANG) == 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  EXPECT_TRUE(fs::exists(journal)) << "the run finished before the last kill";
  auto r = test::run_tabula(embed_args(dir, "--resume"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same_files(whole, dir);
}

TEST(Embed, NeverOverwritesWithoutForce) {
  auto root = test::scratch_dir();
  std::string dir = (root / "e").string();
  ASSERT_EQ(test::run_tabula(embed_args(dir)).exit_code, 0);
  auto before = read_file_bytes(dir + "/avgpool.npy");
  auto again = test::run_tabula(embed_args(dir));
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("--force"), std::string::npos) << again.err;
  EXPECT_EQ(read_file_bytes(dir + "/avgpool.npy"), before);
  // A folder with someone else's files is refused even with --force.
  fs::create_directories(root / "foreign");
  write_file_atomic((root / "foreign" / "notes.txt").string(), "mine");
  auto f = test::run_tabula(embed_args((root / "foreign").string(), "--force"));
  EXPECT_EQ(f.exit_code, 1);
  EXPECT_EQ(read_file_text((root / "foreign" / "notes.txt").string()), "mine");
  // Bad inputs: one line naming the problem.
  auto nolayer = test::run_tabula(embed_args((root / "x").string(), "", "nosuchtap"));
  EXPECT_NE(nolayer.exit_code, 0);
  EXPECT_NE(nolayer.err.find("nosuchtap"), std::string::npos) << nolayer.err;
  auto both = test::run_tabula(std::string("embed --arch '") + kArch + "' --data x.npy --out y");
  EXPECT_NE(both.exit_code, 0);
  EXPECT_NE(both.err.find("--seed"), std::string::npos) << both.err;
}

TEST(Embed, BaselinesRunAsArchs) {
  auto root = test::scratch_dir();
  for (const char* arch : {"pixels", "nuclei:dna=0"}) {
    std::string dir = (root / (std::string(arch).substr(0, 6))).string();
    auto r = test::run_tabula(std::string("embed --arch ") + arch + " --data '" + synth_dir() +
                              "/load_data.csv' --quiet --out '" + dir + "'");
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  EXPECT_EQ(read_npy((root / "nuclei" / "nuclei.npy").string()).shape[0], 32);
  EXPECT_EQ(read_npy((root / "pixels" / "pixels.npy").string()).shape[0], 32);
}

// --weights: a file written by `tabula init` for a seed gives the same embedding bytes as --seed itself, and
// `tabula bench --weights` reports the load time.
TEST(Embed, WeightsFileEqualsSeed) {
  auto root = test::scratch_dir();
  std::string w = (root / "w.safetensors").string();
  ASSERT_EQ(test::run_tabula(std::string("init '") + kArch + "' --seed 3 --out '" + w + "'").exit_code, 0);
  std::string a = (root / "seed").string(), b = (root / "file").string();
  ASSERT_EQ(test::run_tabula(embed_args(a)).exit_code, 0);
  std::string args = embed_args(b);
  args.replace(args.find("--seed 3"), 8, "--weights '" + w + "'");
  auto r = test::run_tabula(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* f : {"layer2.npy", "avgpool.npy", "index.csv"})
    EXPECT_EQ(read_file_bytes(a + "/" + f), read_file_bytes(b + "/" + f)) << f;
  EXPECT_NE(read_file_text(b + "/run.json").find("\"sha256\""), std::string::npos);
  auto bench = test::run_tabula(std::string("bench '") + kArch + "' --weights '" + w + "' --batch 2 --size 32 --iters 1 --warmup 0");
  ASSERT_EQ(bench.exit_code, 0) << bench.err;
  EXPECT_NE(bench.out.find("weights loaded in"), std::string::npos) << bench.out;
  EXPECT_NE(bench.out.find("images/s"), std::string::npos) << bench.out;
  // Weights of another arch: refused naming a key.
  auto wrong = test::run_tabula("bench resnet18 --weights '" + w + "' --batch 1 --iters 1 --warmup 0");
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_NE(wrong.err.find("weight 'layer1.0.conv1.weight'"), std::string::npos) << wrong.err;
}
