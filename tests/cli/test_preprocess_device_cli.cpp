// `tabula embed --preprocess device` through the binary: the usage errors anywhere, and on a GPU the embedding it
// writes equals the one of --preprocess cpu (the device transform gives the CPU path's bits, so the forward sees the
// same inputs).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "engine/fileio.h"
#include "engine/system.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using tabula::test::run_tabula;

namespace {

std::string q(const fs::path& p) {
  std::string s(1, '\'');
  s += p.string();
  s += '\'';
  return s;
}

fs::path fresh_dir() {
  fs::path d = tabula::test::scratch_dir();
  fs::create_directories(d);
  return d;
}

// One plate of 16-bit 5-channel fields with illumination functions (a JUMP-like load_data.csv).
fs::path cellpainting(const fs::path& dir) {
  auto r = run_tabula("synth cellpainting --size 64 --batches 1 --plates 1 --sites 1 --out " + q(dir / "cp"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return dir / "cp" / "load_data.csv";
}

}  // namespace

TEST(CliDevicePreprocess, UsageErrorsNameTheSetting) {
  const fs::path dir = fresh_dir();
  const fs::path data = cellpainting(dir);
  const std::string base = "embed --arch resnet18 --seed 0 --size 32 --quiet --data " + q(data);
  auto r = run_tabula(base + " --out " + q(dir / "a") + " --preprocess device");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--preprocess device needs --device cuda[:N]"), std::string::npos) << r.err;
  r = run_tabula(base + " --out " + q(dir / "b") + " --preprocess gpu");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--preprocess gpu: expected cpu or device"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "a") || fs::exists(dir / "b")) << "a refused run leaves no folder";
  // The default and the explicit cpu give the same folder.
  r = run_tabula(base + " --out " + q(dir / "c") + " --preprocess cpu");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(tabula::read_file_text((dir / "c" / "run.json").string()).find("preprocess_on"), std::string::npos);
  r = run_tabula("embed --help");
  EXPECT_NE((r.out + r.err).find("--preprocess"), std::string::npos) << r.out;
}

TEST(GpuCliDevicePreprocess, EmbeddingEqualsCpuPreprocessing) {
  if (tabula::cuda_devices().empty()) GTEST_SKIP() << "no CUDA device on this machine";
  const fs::path dir = fresh_dir();
  const fs::path data = cellpainting(dir);
  // Percentile scaling, per-channel inputs, illumination division: every step of the device path.
  const std::string base = "embed --arch resnet18 --seed 0 --size 64 --quiet --device cuda --intensity percentile "
                           "--layers layer3,avgpool --batch 7 --data " + q(data);
  auto r = run_tabula(base + " --out " + q(dir / "cpu") + " --preprocess cpu");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_tabula(base + " --out " + q(dir / "dev") + " --preprocess device");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* f : {"layer3.npy", "avgpool.npy", "index.csv"})
    EXPECT_EQ(tabula::read_file_text((dir / "cpu" / f).string()), tabula::read_file_text((dir / "dev" / f).string()))
        << f;
  EXPECT_NE(tabula::read_file_text((dir / "dev" / "run.json").string()).find("\"preprocess_on\":\"device\""),
            std::string::npos);
  // A transform the device path does not do is refused before any work.
  r = run_tabula(base + " --out " + q(dir / "ss") + " --preprocess device --intensity self-standardize");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("use --preprocess cpu"), std::string::npos) << r.err;
}
