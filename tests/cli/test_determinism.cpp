// Determinism (issue #11): `tabula embed` gives the same bytes for every layer file across runs and across model
// thread counts (1 and 2), for a ResNet and a ViT at their real widths (the GEMM, convolution and attention
// paths that thread counts split differently). Resume and shard equivalence are tested in tests/eval/test_embed.cpp
// (Embed.KillNineThenResumeGivesTheSameBytes, Embed.ShardsMergeToTheUnshardedBytes).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "engine/fileio.h"
#include "data/image.h"
#include "tests/test_util.h"

using namespace tabula;
namespace fs = std::filesystem;

namespace {

// Three samples of two 16-bit 48x48 channels with structure (so features are not constant).
std::string make_data(const fs::path& dir) {
  fs::create_directories(dir);
  std::string csv = "well,path_a,path_b\n";
  for (int s = 0; s < 3; ++s) {
    for (int c = 0; c < 2; ++c) {
      data::Image im(1, 48, 48);
      for (int y = 0; y < 48; ++y)
        for (int x = 0; x < 48; ++x)
          im.at(0, y, x) = float((x * (7 + s) + y * (3 + c) + (x * y) % (11 + s)) % 4096) * 13.0f;
      // (Appending piecewise: GCC 12 reports a false -Wrestrict for `const char* + std::string&&`.)
      std::string name = "s";
      name += std::to_string(s);
      name += "c";
      name += std::to_string(c);
      name += ".tif";
      data::write_tiff((dir / name).string(), im, 16, true);
    }
    const std::string k = std::to_string(s);
    csv += "w";
    csv += k;
    csv += ",s";
    csv += k;
    csv += "c0.tif,s";
    csv += k;
    csv += "c1.tif\n";
  }
  write_file_atomic((dir / "list.csv").string(), csv);
  return (dir / "list.csv").string();
}

void expect_bitwise_equal_across_runs_and_threads(const std::string& arch, const std::string& extra,
                                                  const std::vector<std::string>& layers) {
  const fs::path root = test::scratch_dir();
  const std::string csv = make_data(root / "data");
  std::vector<fs::path> outs;
  for (int threads : {1, 2, 2, 1}) {
    std::string name = "t";
    name += std::to_string(threads);
    name += "_";
    name += std::to_string(outs.size());
    const fs::path out = root / name;
    std::string layer_list;
    for (const auto& l : layers) {
      if (!layer_list.empty()) layer_list += ",";
      layer_list += l;
    }
    auto r = test::run_tabula("embed --arch " + arch + " --seed 7 --data '" + csv + "' --out '" + out.string() +
                              "' --threads " + std::to_string(threads) + " --layers " + layer_list + " --quiet " + extra);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    outs.push_back(out);
  }
  for (const auto& l : layers) {
    const auto first = read_file_bytes((outs[0] / (l + ".npy")).string());
    ASSERT_GT(first.size(), 128u) << l;
    for (size_t i = 1; i < outs.size(); ++i)
      EXPECT_EQ(read_file_bytes((outs[i] / (l + ".npy")).string()), first) << arch << " " << l << ": run " << i;
  }
  EXPECT_EQ(read_file_bytes((outs[0] / "index.csv").string()), read_file_bytes((outs[1] / "index.csv").string()));
}

}  // namespace

TEST(Determinism, ResNetEmbeddingsAreBitwiseEqualAcrossRunsAndThreads) {
  expect_bitwise_equal_across_runs_and_threads("resnet18", "--size 64 --batch 4", {"layer1", "layer3", "avgpool"});
}

TEST(Determinism, ViTEmbeddingsAreBitwiseEqualAcrossRunsAndThreads) {
  expect_bitwise_equal_across_runs_and_threads("vit_tiny_patch16_224", "--batch 3", {"blocks.0", "blocks.11", "fc_norm"});
}
