// Weights held once, through the binary: `tabula bench --weights` and `tabula embed --weights` report the load
// phases (map, parse, pack) and give back the file's mapped pages once packed, and what they compute from a file
// `tabula init` wrote is what they compute from the seed itself.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "engine/fileio.h"
#include "tests/test_util.h"
#include "util/npy.h"

using tabula::test::run_tabula;
namespace fs = std::filesystem;

namespace {

const char* kArch = "vit:dim=64,depth=2,heads=4,patch=8,img=32";

// Shell-quoted (appending piecewise: GCC 12 reports a false -Wrestrict for `const char* + std::string&&`).
std::string q(const fs::path& p) {
  std::string s(1, '\'');
  s += p.string();
  s += '\'';
  return s;
}

// The number after "key: " on its own line of `text` (-1 when absent).
double value_of(const std::string& text, const std::string& key) {
  const size_t at = text.find("\n" + key + ": ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + key.size() + 3));
}

TEST(WeightsOnceCli, BenchReportsLoadPhasesAndReleasedPages) {
  const fs::path dir = tabula::test::scratch_dir();
  auto r = run_tabula(std::string("init ") + kArch + " --seed 0 --out " + q(dir / "w.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_tabula(std::string("bench ") + kArch + " --weights " + q(dir / "w.safetensors") +
                 " --batch 1 --iters 1 --warmup 0 --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("weights loaded in"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(map "), std::string::npos) << r.out;
  for (const char* key : {"load_ms", "load_map_ms", "load_parse_ms", "load_pack_ms"})
    EXPECT_GE(value_of(r.out, key), 0.0) << key << "\n" << r.out;
  // qkv, proj, fc1 and fc2 of two blocks, 16 to 64 KiB each: whole pages given back once packed.
  EXPECT_GT(value_of(r.out, "load_released_mb"), 0.1) << r.out;
  EXPECT_EQ(r.out.find("load_ms"), r.out.rfind("load_ms")) << "one load_ms line";
  // A seed has no file: no load lines.
  r = run_tabula(std::string("bench ") + kArch + " --seed 0 --batch 1 --iters 1 --warmup 0 --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.find("load_ms"), std::string::npos) << r.out;
}

TEST(WeightsOnceCli, EmbedFromTheInitFileEqualsEmbedFromTheSeed) {
  const fs::path dir = tabula::test::scratch_dir();
  auto r = run_tabula(std::string("init ") + kArch + " --seed 4 --out " + q(dir / "w.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<float> x(3 * 3 * 32 * 32);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 29) % 97) / 48.0f - 1.0f;
  tabula::write_npy((dir / "x.npy").string(), {3, 3, 32, 32}, x.data());
  const std::string common = std::string(" --arch ") + kArch + " --data " + q(dir / "x.npy") + " --layers all";
  r = run_tabula("embed --weights " + q(dir / "w.safetensors") + common + " --out " + q(dir / "file"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("tabula embed: weights loaded: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("pack "), std::string::npos) << r.err;
  r = run_tabula("embed --seed 4" + common + " --out " + q(dir / "seed"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("weights loaded"), std::string::npos) << r.err;
  int layers = 0;
  for (const auto& e : fs::directory_iterator(dir / "seed")) {
    if (e.path().extension() != ".npy") continue;
    ++layers;
    EXPECT_EQ(tabula::read_file_text(e.path().string()),
              tabula::read_file_text((dir / "file" / e.path().filename()).string()))
        << e.path().filename();
  }
  EXPECT_GE(layers, 3);
}

}  // namespace
