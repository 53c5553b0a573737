// A user's walk with checkpoints and model cards through the binary: converting, initialising and loading weight
// files the way PyTorch users name and size them. Each case runs the built binary as a user types it.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "engine/fileio.h"
#include "util/npy.h"
#include "tests/test_util.h"

using tabula::test::has;
using tabula::test::run_tabula;
using tabula::test::scratch_dir;
namespace fs = std::filesystem;

// `weights convert` of a checkpoint for another arch (resnet50's bottlenecks into a resnet18) listed the unused keys
// and shape mismatches under "weights do not fit the model", naming neither the file nor the arch: in a script
// converting a folder of checkpoints the user could not tell which one failed.
TEST(CliWalk4, ConvertMismatchNamesTheFileAndTheArch) {
  const fs::path dir = scratch_dir();
  const std::string wide = "'resnet:layers=1,1,1,1,block=bottleneck,channels=8,8,8,8,classes=4'";
  const std::string narrow = "resnet:layers=1,1,1,1,block=basic,channels=8,8,8,8,classes=4";
  const fs::path w = dir / "bottleneck.safetensors";
  ASSERT_EQ(run_tabula("init " + wide + " --seed 0 --out " + w.string()).exit_code, 0);
  const fs::path out = dir / "basic.safetensors";
  auto r = run_tabula("weights convert " + w.string() + " --arch '" + narrow + "' --out " + out.string());
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(has(r.err, w.string() + ": arch '" + narrow + "': weights do not fit the model")) << r.err;
  EXPECT_TRUE(has(r.err, "shape mismatches: layer1.0.conv1.weight: file [8, 64, 1, 1] vs model [8, 64, 3, 3]"))
      << r.err;
  EXPECT_FALSE(fs::exists(out));
}
