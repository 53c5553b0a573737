// `--precision bf16` on the CPU through the binary: `tabula bench` runs and says so, `tabula embed` of real
// microscopy photos (the scikit-image immunohistochemistry photo and its crops, the tissue tile of the card
// fixtures) keeps every pooled embedding within cosine 0.9999 of fp32 for ResNet-50, ViT-B/16 and DINOv2 ViT-S/14
// (random init: torch's for seed 0), the same bits for 1 and 2 threads, and the clear errors where bf16 cannot run.
// Skipped (except the error paths) on CPUs without AVX512-BF16.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "engine/cpu/gemm_kernels.h"
#include "engine/fileio.h"
#include "tests/test_util.h"
#include "util/npy.h"

using tabula::test::fixture;
using tabula::test::run_tabula;
namespace fs = std::filesystem;

namespace {
using tabula::test::has;
std::string q(const fs::path& p) {
  std::string s(1, '\'');
  s += p.string();
  s += '\'';
  return s;
}

// Concatenation piece by piece (GCC 12 reports a false -Wrestrict for `const char* + std::string&&`).
std::string cat(std::initializer_list<std::string> parts) {
  std::string s;
  for (const std::string& p : parts) s += p;
  return s;
}

// Four RGB photos: the IHC photo (300 x 260), its two halves, and the 224 px tissue tile.
fs::path photos() {
  const fs::path d = tabula::test::scratch_dir() / "photos";
  fs::create_directories(d);
  fs::copy_file(fixture("data/pillow/ihc_big.png"), d / "ihc.png", fs::copy_options::overwrite_existing);
  fs::copy_file(fixture("data/pillow/ihc.png"), d / "ihc_small.png", fs::copy_options::overwrite_existing);
  fs::copy_file(fixture("cards/images/tiles/a.png"), d / "tile.png", fs::copy_options::overwrite_existing);
  fs::copy_file(fixture("cards/images/rects/a.png"), d / "rects.png", fs::copy_options::overwrite_existing);
  return d;
}

// embed fp32 and bf16 of the photos; every row's pooled embedding within cosine 0.9999, and not the same bits.
void expect_bf16_close_to_fp32(const std::string& arch) {
  const fs::path data = photos(), out = tabula::test::scratch_dir();
  std::string layer;
  for (const std::string p : {"fp32", "bf16"}) {
    const auto r = run_tabula(cat({"embed --arch ", arch, " --seed 0 --data ", q(data), " --out ",
                                   q(out / cat({arch, p})), " --threads 2 --quiet --precision ", p}));
    ASSERT_EQ(r.exit_code, 0) << arch << " " << p << ": " << r.err;
  }
  for (const auto& e : fs::directory_iterator(out / cat({arch, "fp32"})))
    if (e.path().extension() == ".npy") layer = e.path().filename().string();
  ASSERT_FALSE(layer.empty()) << arch;
  const auto a = tabula::read_npy((out / cat({arch, "fp32"}) / layer).string());
  const auto b = tabula::read_npy((out / cat({arch, "bf16"}) / layer).string());
  ASSERT_EQ(a.shape, b.shape);
  ASSERT_EQ(a.shape[0], 4);
  const std::vector<float> x = a.to_f32(), y = b.to_f32();
  const int64_t D = a.shape[1];
  bool differ = false;
  double worst = 1;
  for (int64_t i = 0; i < a.shape[0]; ++i) {
    double xy = 0, xx = 0, yy = 0;
    for (int64_t j = 0; j < D; ++j) {
      const double u = x[static_cast<size_t>(i * D + j)], v = y[static_cast<size_t>(i * D + j)];
      xy += u * v, xx += u * u, yy += v * v;
      differ |= u != v;
    }
    const double cosine = xy / std::sqrt(xx * yy);
    worst = std::min(worst, cosine);
    EXPECT_GE(cosine, 0.9999) << arch << " " << layer << " row " << i;
  }
  std::printf("%s %s: lowest cosine bf16 vs fp32 %.7f\n", arch.c_str(), layer.c_str(), worst);
  EXPECT_TRUE(differ) << arch << ": bf16 gave the fp32 bits (was bf16 used?)";
  const std::string run_json = tabula::read_file_text((out / cat({arch, "bf16"}) / "run.json").string());
  EXPECT_TRUE(has(run_json, "\"bf16\"")) << run_json;
}
}  // namespace

TEST(Bf16Cli, DinoV2SmallEmbeddingsOfPhotosWithinCosineOfFp32) {
  if (!tabula::detail::gemm_bf16_kernel()) GTEST_SKIP() << "no AVX512-BF16 on this CPU";
  expect_bf16_close_to_fp32("dinov2_vits14");
}

// ResNet-50 and ViT-B/16 at 224 px: ~20 s of CPU.
TEST(LongBf16Cli, ResNet50AndVitBaseEmbeddingsOfPhotosWithinCosineOfFp32) {
  if (!tabula::detail::gemm_bf16_kernel()) GTEST_SKIP() << "no AVX512-BF16 on this CPU";
  expect_bf16_close_to_fp32("resnet50");
  expect_bf16_close_to_fp32("vit_base_patch16_224");
}

TEST(Bf16Cli, BenchAndThreadCountDeterminism) {
  if (!tabula::detail::gemm_bf16_kernel()) GTEST_SKIP() << "no AVX512-BF16 on this CPU";
  const std::string vit = "'vit:dim=64,depth=2,heads=4,patch=8,img=32'";
  auto r = run_tabula(cat({"bench ", vit, " --batch 2 --iters 1 --warmup 0 --threads 2 --precision bf16"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "bf16 cpu (avx512-bf16 gemm)")) << r.out;
  const fs::path data = photos(), out = tabula::test::scratch_dir();
  for (int t : {1, 2}) {
    r = run_tabula(cat({"embed --arch resnet18 --seed 0 --size 64 --data ", q(data), " --out ",
                        q(out / cat({"t", std::to_string(t)})), " --layers layer2,avgpool --precision bf16 --quiet",
                        " --threads ", std::to_string(t)}));
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  for (const std::string layer : {"layer2.npy", "avgpool.npy"}) {
    EXPECT_EQ(tabula::read_file_text((out / "t1" / layer).string()),
              tabula::read_file_text((out / "t2" / layer).string()))
        << layer;
  }
}

// The lowest cosine, over the rows, between fp32's and bf16's rows of [N, D] features standardised with fp32's
// mean and spread over the rows (as per-plate normalisation does).
double worst_standardised_cosine(const tabula::NpyArray& a, const tabula::NpyArray& b) {
  const int64_t N = a.shape[0], D = a.numel() / std::max<int64_t>(N, 1);
  const std::vector<float> x = a.to_f32(), y = b.to_f32();
  std::vector<double> m(static_cast<size_t>(D)), sd(static_cast<size_t>(D));
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < D; ++j) m[j] += x[static_cast<size_t>(i * D + j)] / double(N);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < D; ++j) sd[j] += std::pow(x[static_cast<size_t>(i * D + j)] - m[j], 2) / double(N);
  double worst = 1;
  for (int64_t i = 0; i < N; ++i) {
    double xy = 0, xx = 0, yy = 0;
    for (int64_t j = 0; j < D; ++j) {
      const double s = std::sqrt(sd[j]) + 1e-30;
      const double u = (x[static_cast<size_t>(i * D + j)] - m[j]) / s;
      const double v = (y[static_cast<size_t>(i * D + j)] - m[j]) / s;
      xy += u * v, xx += u * u, yy += v * v;
    }
    worst = std::min(worst, xy / std::sqrt(xx * yy));
  }
  return worst;
}

// `tabula embed` of the quick synthetic Cell Painting set in fp32 (batch 16) and bf16 (batch 16 and 5) into
// out/<precision>/<batch>/; bf16's bytes must not depend on the batch (the centres come from reference images).
void embed_cell_painting(const std::string& arch, const std::string& layers, const fs::path& out) {
  const fs::path data = out / "cp";
  auto r = run_tabula(cat({"synth cellpainting --quick --threads 2 --out ", q(data)}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string manifest = q(data / "load_data.csv");
  for (const auto& [precision, batch] : {std::pair{"fp32", "16"}, {"bf16", "16"}, {"bf16", "5"}}) {
    r = run_tabula(cat({"embed --arch ", arch, " --seed 0 --data ", manifest, " --layers ", layers, " --out ",
                        q(out / precision / batch), " --threads 2 --quiet --precision ", precision, " --batch ",
                        batch}));
    ASSERT_EQ(r.exit_code, 0) << precision << " " << batch << ": " << r.err;
  }
}

// Untrained networks embed different wells of the synthetic Cell Painting set almost identically (cosine ~0.99998),
// so what tells the wells apart sits in the fourth digit of each feature. With plain bf16 rounding of the GEMM
// inputs and W c through the bf16 weights, the wells' standardised features (each feature's deviation from its mean
// over the wells, over its spread) agreed with fp32's only to cosine ~0.3-0.5 (vit_tiny, blocks.2); rounding around
// the reference centres with W c exact keeps them at 0.99982 (bound 0.9995). The same bytes with another batch
// size.
TEST(Bf16Cli, UntrainedVitKeepsTheWellSignalOfCellPainting) {
  if (!tabula::detail::gemm_bf16_kernel()) GTEST_SKIP() << "no AVX512-BF16 on this CPU";
  const fs::path out = tabula::test::scratch_dir();
  embed_cell_painting("vit_tiny_patch16_224", "blocks.2", out);
  EXPECT_EQ(tabula::read_file_text((out / "bf16" / "16" / "blocks.2.npy").string()),
            tabula::read_file_text((out / "bf16" / "5" / "blocks.2.npy").string()));
  const auto a = tabula::read_npy((out / "fp32" / "16" / "blocks.2.npy").string());
  const auto b = tabula::read_npy((out / "bf16" / "16" / "blocks.2.npy").string());
  ASSERT_EQ(a.shape, b.shape);
  ASSERT_EQ(a.shape[0], 32);
  const double worst = worst_standardised_cosine(a, b);
  std::printf("vit_tiny blocks.2 on Cell Painting: lowest cosine of the standardised rows, bf16 vs fp32 %.6f\n",
              worst);
  EXPECT_GE(worst, 0.9995);
}

// The same for a ResNet, whose padded convs' border pixels take W c over their in-map taps only: with W c through
// the bf16 weights there (the padding reading -c) resnet18's layer1 agreed only to 0.54 and its avgpool to 0.85;
// with the fp32 weights' W c per border pattern, 0.99932 and 0.99170 (bounds 0.999 and 0.99). What is left is
// per-pixel rounding noise of the weights and activations around the centres (bench/RESULTS.md, issue 23).
TEST(LongBf16Cli, UntrainedResNetKeepsTheWellSignalOfCellPainting) {
  if (!tabula::detail::gemm_bf16_kernel()) GTEST_SKIP() << "no AVX512-BF16 on this CPU";
  const fs::path out = tabula::test::scratch_dir();
  embed_cell_painting("resnet18", "layer1,avgpool", out);
  for (const auto& [layer, bound] : {std::pair{"layer1", 0.999}, {"avgpool", 0.99}}) {
    const std::string file = std::string(layer) + ".npy";
    EXPECT_EQ(tabula::read_file_text((out / "bf16" / "16" / file).string()),
              tabula::read_file_text((out / "bf16" / "5" / file).string()));
    const auto a = tabula::read_npy((out / "fp32" / "16" / file).string());
    const auto b = tabula::read_npy((out / "bf16" / "16" / file).string());
    ASSERT_EQ(a.shape, b.shape);
    const double worst = worst_standardised_cosine(a, b);
    std::printf("resnet18 %s on Cell Painting: lowest cosine of the standardised rows, bf16 vs fp32 %.6f\n", layer,
                worst);
    EXPECT_GE(worst, bound) << layer;
  }
}

// The weights' low halves (for W c with the fp32 weights) are kept within TABULA_BF16_LOW_WEIGHTS_MIB: with 0 none
// is kept, stderr says so once, and the embeddings differ from the default's (W c then uses the bf16 weights) while
// staying within cosine 0.9999 of it; a bad value is a clear error naming the variable.
TEST(Bf16Cli, LowWeightBudget) {
  if (!tabula::detail::gemm_bf16_kernel()) GTEST_SKIP() << "no AVX512-BF16 on this CPU";
  const fs::path data = photos(), out = tabula::test::scratch_dir();
  const std::string embed = cat({"embed --arch resnet18 --seed 0 --size 64 --data ", q(data),
                                 " --threads 2 --quiet --precision bf16 --out "});
  auto r = run_tabula(embed + q(out / "kept"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(has(r.err, "TABULA_BF16_LOW_WEIGHTS_MIB")) << r.err;
  r = tabula::test::run_tabula_prefixed("env TABULA_BF16_LOW_WEIGHTS_MIB=0", embed + q(out / "none"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.err, "low halves are kept for 0 MiB")) << r.err;
  const auto a = tabula::read_npy((out / "kept" / "avgpool.npy").string());
  const auto b = tabula::read_npy((out / "none" / "avgpool.npy").string());
  ASSERT_EQ(a.shape, b.shape);
  EXPECT_NE(a.data, b.data);
  const std::vector<float> x = a.to_f32(), y = b.to_f32();
  const int64_t D = a.shape[1];
  for (int64_t i = 0; i < a.shape[0]; ++i) {
    double xy = 0, xx = 0, yy = 0;
    for (int64_t j = 0; j < D; ++j) {
      const double u = x[static_cast<size_t>(i * D + j)], v = y[static_cast<size_t>(i * D + j)];
      xy += u * v, xx += u * u, yy += v * v;
    }
    EXPECT_GE(xy / std::sqrt(xx * yy), 0.9999) << "row " << i;
  }
  r = tabula::test::run_tabula_prefixed("env TABULA_BF16_LOW_WEIGHTS_MIB=lots", embed + q(out / "bad"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(has(r.err, "TABULA_BF16_LOW_WEIGHTS_MIB") && has(r.err, "'lots'")) << r.err;
  EXPECT_FALSE(has(r.err, "terminate")) << r.err;
}

TEST(Bf16Cli, ClearErrors) {
  // A CPU without AVX512-BF16 (TABULA_CPU=avx512 hides it): the error names what is missing and the way out.
  auto r = tabula::test::run_tabula_prefixed(
      "env TABULA_CPU=avx512", "bench resnet18 --batch 1 --iters 1 --warmup 0 --precision bf16");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(has(r.err, "AVX512-BF16") && has(r.err, "--precision fp32")) << r.err;
  EXPECT_FALSE(has(r.err, "terminate")) << r.err;
  r = run_tabula("bench resnet18 --batch 1 --iters 1 --warmup 0 --precision fp16");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(has(r.err, "cpu forwards are fp32 or bf16")) << r.err;
}
