// --precision bf16 runs the CPU attention's Q K^T and P V on the bf16 kernel: through the binary, a small ViT's
// embeddings (17 tokens: an odd key count, padded to a pair) are the same bits for 1, 2 and 3 threads, and differ
// from fp32 only by bf16 rounding. Skipped on CPUs without AVX512-BF16.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/cpu/gemm_kernels.h"
#include "engine/fileio.h"
#include "tests/test_util.h"
#include "util/npy.h"

using tabula::test::fixture;
using tabula::test::run_tabula;
namespace fs = std::filesystem;

TEST(Bf16AttentionCli, SmallVitSameBitsForAnyThreadCountAndCloseToFp32) {
  if (!tabula::detail::gemm_bf16_kernel()) GTEST_SKIP() << "no AVX512-BF16 on this CPU";
  const fs::path dir = tabula::test::scratch_dir(), data = dir / "images";
  fs::create_directories(data);
  fs::copy_file(fixture("cards/images/tiles/a.png"), data / "tile.png", fs::copy_options::overwrite_existing);
  fs::copy_file(fixture("cards/images/rects/a.png"), data / "rects.png", fs::copy_options::overwrite_existing);
  auto embed = [&](const std::string& name, const std::string& precision, int threads) {
    const auto r = run_tabula("embed --arch 'vit:dim=64,depth=2,heads=4,patch=8,img=32' --seed 0 --size 32 --data '" +
                              data.string() + "' --out '" + (dir / name).string() +
                              "' --layers blocks.1,head --quiet --precision " + precision + " --threads " +
                              std::to_string(threads));
    EXPECT_EQ(r.exit_code, 0) << r.err;
  };
  embed("fp32", "fp32", 2);
  for (int t : {1, 2, 3}) embed("bf16-" + std::to_string(t), "bf16", t);
  for (const std::string layer : {"blocks.1.npy", "head.npy"}) {
    const std::string one = tabula::read_file_text((dir / "bf16-1" / layer).string());
    for (int t : {2, 3})
      EXPECT_EQ(one, tabula::read_file_text((dir / ("bf16-" + std::to_string(t)) / layer).string()))
          << layer << " with " << t << " threads";
    const tabula::NpyArray a = tabula::read_npy((dir / "bf16-1" / layer).string());
    const tabula::NpyArray b = tabula::read_npy((dir / "fp32" / layer).string());
    ASSERT_EQ(a.shape, b.shape);
    ASSERT_EQ(a.shape[0], 2);
    const std::vector<float> x = a.to_f32(), y = b.to_f32();
    const int64_t rows = a.shape[0], cols = a.numel() / rows;
    bool differ = false;
    for (int64_t i = 0; i < rows; ++i) {
      double xy = 0, xx = 0, yy = 0;
      for (int64_t j = 0; j < cols; ++j) {
        const double u = x[static_cast<size_t>(i * cols + j)], v = y[static_cast<size_t>(i * cols + j)];
        xy += u * v, xx += u * u, yy += v * v;
        differ |= u != v;
      }
      EXPECT_GE(xy / std::sqrt(xx * yy), 0.9999) << layer << " row " << i;
    }
    EXPECT_TRUE(differ) << layer << ": bf16 gave fp32's bits";
  }
}
