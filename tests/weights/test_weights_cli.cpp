#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "util/sha256.h"
#include "tests/weights/weights_test_util.h"
#include "weights_tools/pos_embed.h"
#include "weights_tools/safetensors.h"

using namespace tabula;
using namespace tabula::weights;
using tabula::test::run_tabula;
using tabula::test::wfix;

namespace {
using tabula::test::has;
std::string q(const std::string& s) { return "'" + s + "'"; }
}  // namespace

TEST(WeightsCli, InspectReportsFormatLayoutCountsDtypesAndSha) {
  auto r = run_tabula("weights inspect " + q(wfix("hf_dinov2.bin")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "format: torch zip checkpoint")) << r.out;
  EXPECT_TRUE(has(r.out, "layout: hf-dinov2")) << r.out;
  EXPECT_TRUE(has(r.out, "tensors: 43\n")) << r.out;
  EXPECT_TRUE(has(r.out, "parameters: 32,384 ")) << r.out;
  EXPECT_TRUE(has(r.out, "dtypes: f32 (43 tensors, 32,384 values)")) << r.out;
  EXPECT_TRUE(has(r.out, "sha256: " + sha256_file(wfix("hf_dinov2.bin")))) << r.out;

  r = run_tabula("weights inspect " + q(wfix("pt_dino_teacher.pth")) + " --tensors");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "top-level keys: student, teacher, optimizer, epoch, dino_loss")) << r.out;
  EXPECT_TRUE(has(r.out, "state dict: 'teacher'")) << r.out;
  EXPECT_TRUE(has(r.out, "  1.num_batches_tracked  i64 []\n")) << r.out;
  EXPECT_TRUE(has(r.out, "  0.weight  f32 [4, 3, 3, 3]\n")) << r.out;

  r = run_tabula("weights inspect --no-hash " + q(wfix("hf_dinov2.bin")));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_FALSE(has(r.out, "sha256")) << r.out;
  r = run_tabula("weights inspect " + q(wfix("st_meta.safetensors")));
  EXPECT_TRUE(has(r.out, "metadata: a=1 note=quote \" and \\")) << r.out;
  r = run_tabula("weights inspect " + q(wfix("pt_dino_teacher.pth")) + " --key nope");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "no entry 'nope'")) << r.err;
  r = run_tabula("weights inspect");
  EXPECT_EQ(r.exit_code, 2);
}

TEST(WeightsCli, ConvertHubCheckpointMatchesTimmBitForBit) {
  std::string out = (tabula::test::input_dir() / "vit.safetensors").string();
  auto r = run_tabula("weights convert --force " + q(wfix("hub_dinov2_reg_chunked.pth")) +
                      " --arch vit:dim=32,depth=2,heads=2,patch=14,img=28,reg=4,no_embed_class=1,init_values=1,in_chans=1,mlp_ratio=2,classes=0 --out " + q(out));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "layout: dinov2-hub -> timm-vit names")) << r.out;
  EXPECT_TRUE(has(r.out, "dropped mask_token")) << r.out;
  EXPECT_TRUE(has(r.out, "35 of 35 expected keys present")) << r.out;
  StateDict got = read_safetensors(out), want = read_safetensors(wfix("hub_dinov2_reg.expected.safetensors"));
  ASSERT_EQ(got.tensors.size(), want.tensors.size());
  for (const WeightTensor& w : want.tensors)
    EXPECT_EQ(tabula::test::tensor_sha(got.at(w.name)), tabula::test::tensor_sha(w)) << w.name;
  EXPECT_EQ(got.metadata.at("tabula.source_sha256"), sha256_file(wfix("hub_dinov2_reg_chunked.pth")));
  EXPECT_EQ(got.metadata.at("tabula.source_layout"), "dinov2-hub");
  EXPECT_EQ(got.metadata.at("format"), "pt");

  // --dtype bf16: each float tensor rounded as torch's .bfloat16()
  r = run_tabula("weights convert --force " + q(wfix("hf_vit.safetensors")) +
                 " --arch vit:dim=32,depth=2,heads=2,patch=8,img=32,mlp_ratio=2,classes=0 --dtype bf16 --out " + q(out));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "dropped pooler.dense.weight")) << r.out;
  StateDict b = read_safetensors(out), f = read_safetensors(wfix("hf_vit.expected.safetensors"));
  for (const WeightTensor& w : f.tensors) {
    EXPECT_EQ(b.at(w.name).dtype, DType::bf16);
    EXPECT_EQ(tabula::test::tensor_sha(b.at(w.name)), tabula::test::tensor_sha(w.to_dtype(DType::bf16))) << w.name;
  }
}

TEST(WeightsCli, ConvertRefusesMissingKeysUnlessAllowed) {
  std::string out = (tabula::test::input_dir() / "o.safetensors").string();
  auto r = run_tabula("weights convert --force " + q(wfix("hf_dinov2.bin")) + " --arch vit:dim=32,depth=3,heads=2,patch=8,img=32,init_values=1,classes=0 --out " + q(out));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "14 missing keys: blocks.2.norm1.weight")) << r.err;
  EXPECT_FALSE(std::filesystem::exists(out)) << "nothing is written on failure";
  r = run_tabula("weights convert --force " + q(wfix("hf_dinov2.bin")) +
                 " --arch vit:dim=32,depth=3,heads=2,patch=8,img=32,init_values=1,classes=0 --allow-missing --out " + q(out));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "missing (allowed by --allow-missing): blocks.2.norm1.weight")) << r.out;
  EXPECT_EQ(read_safetensors(out).tensors.size(), 34u);

  // unused keys (a classifier head the arch does not have) are named and left out
  r = run_tabula("weights convert --force " + q(wfix("timm_vit.safetensors")) + " --arch vit:dim=32,depth=2,heads=2,patch=8,img=32,classes=0 --out " + q(out));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_safetensors(out).tensors.size(), 30u);
}

TEST(WeightsCli, ConvertResamplesPosEmbedToTheArchGrid) {
  std::string out = (tabula::test::input_dir() / "o.safetensors").string();
  auto r = run_tabula("weights convert --force " + q(wfix("hf_dinov2.bin")) + " --arch vit:dim=32,depth=2,heads=2,patch=8,img=64,init_values=1,classes=0 --out " + q(out));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "pos_embed resampled from 4x4 to 8x8 patches")) << r.out;
  StateDict got = read_safetensors(out), src = read_safetensors(wfix("hf_dinov2.expected.safetensors"));
  const WeightTensor& pos = got.at("pos_embed");
  EXPECT_EQ(pos.shape, (std::vector<int64_t>{1, 65, 32}));
  // the class token's position is kept as is; the rest equals resample_abs_pos_embed of the source
  EXPECT_EQ(0, std::memcmp(pos.data, src.at("pos_embed").data, 32 * 4));
  WeightTensor want = resample_abs_pos_embed(src.at("pos_embed"), 8, 8, 1);
  EXPECT_EQ(0, std::memcmp(pos.data, want.data, want.nbytes()));
  // end to end against timm's own loader (checkpoint_filter_fn into a model for 48 px images)
  r = run_tabula("weights convert --force " + q(wfix("timm_vit.safetensors")) + " --arch vit:dim=32,depth=2,heads=2,patch=8,img=48,classes=0 --out " + q(out));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<float> mine = read_safetensors(out).at("pos_embed").to_f32();
  std::vector<float> timm = read_safetensors(wfix("timm_vit_img48_pos_embed.safetensors")).at("pos_embed").to_f32();
  ASSERT_EQ(mine.size(), timm.size());
  for (size_t i = 0; i < mine.size(); ++i) EXPECT_NEAR(mine[i], timm[i], 4e-7f * std::max(1.0f, std::abs(timm[i]))) << i;
  // a prefix layout that leaves no square grid is an error, not a guess
  r = run_tabula("weights convert --force " + q(wfix("hf_dinov2.bin")) + " --arch vit:dim=32,depth=2,heads=2,patch=8,img=64,init_values=1,reg=4,no_embed_class=1,classes=0 --allow-missing --out " + q(out));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "cannot be resampled")) << r.err;
}

TEST(WeightsCli, ConvertErrorsAreClear) {
  std::string out = (tabula::test::input_dir() / "o.safetensors").string();
  auto r = run_tabula("weights convert --force " + q(wfix("hf_dinov2.bin")) + " --arch vit:dim=48,depth=2,heads=2,patch=8,img=32,init_values=1,classes=0 --out " + q(out));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "shape mismatches: ")) << r.err;
  EXPECT_TRUE(has(r.err, "cls_token: file [1, 1, 32] vs model [1, 1, 48]")) << r.err;
  r = run_tabula("weights convert --force " + q(wfix("hf_dinov2.bin")) + " --arch resnet50 --out " + q(out));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "hf-dinov2 weights cannot be used for arch 'resnet50'")) << r.err;
  r = run_tabula("weights convert --force " + q(wfix("pt_plain.pth")) + " --arch resnet18 --out " + q(out));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "match no known layout")) << r.err;
  r = run_tabula("weights convert --force " + q(wfix("hf_dinov2.bin")) + " --arch vit:dim=32,heads=2 --dtype f8 --out " + q(out));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(has(r.err, "--dtype must be f32, f16 or bf16")) << r.err;
  r = run_tabula("weights convert --force " + q(wfix("hf_dinov2.bin")) + " --out " + q(out));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_FALSE(std::filesystem::exists(out));
  // an arch the model registry does not know: a usage error naming it and the closest name, nothing written
  r = run_tabula("weights convert --force " + q(wfix("timm_vit.safetensors")) + " --arch deit_tiny_patch16_224 --out " + q(out));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(has(r.err, "unknown arch 'deit_tiny_patch16_224' (did you mean vit_tiny_patch16_224?)")) << r.err;
  EXPECT_FALSE(std::filesystem::exists(out));
}

TEST(WeightsCli, BrokenFilesFailWithExitCodeOneAndTheFileName) {
  // One file per kind of damage; every one must be a one-line error naming the file, exit code 1, no crash.
  auto dir = tabula::test::input_dir();
  auto cut = [&](const std::string& src, size_t keep, const std::string& name) {
    auto b = tabula::test::slurp_bytes(wfix(src));
    b.resize(std::min(b.size(), keep));
    tabula::test::write_bytes((dir / name).string(), b);
    return (dir / name).string();
  };
  auto header = [&](const std::string& json, size_t data, const std::string& name) {
    std::vector<uint8_t> b(8);
    for (int i = 0; i < 8; ++i) b[static_cast<size_t>(i)] = static_cast<uint8_t>(json.size() >> (8 * i));
    b.insert(b.end(), json.begin(), json.end());
    b.resize(b.size() + data);
    tabula::test::write_bytes((dir / name).string(), b);
    return (dir / name).string();
  };
  struct Case {
    std::string path, expect;
  };
  std::vector<Case> cases = {
      {cut("st_f32.safetensors", 100, "truncated.safetensors"), "runs past"},
      {cut("pt_plain.pth", 500, "truncated.pth"), "truncated"},
      {header(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8, "lying.safetensors"), "run past the data section"},
      {header(R"({"w":{"dtype":"F32","shape":[9223372036854775807,9],"data_offsets":[0,8]}})", 8, "huge.safetensors"), "overflows 64 bits"},
      {header(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8, "dup.safetensors"), "duplicate key \"w\""},
      {header(R"({"w":{"dtype":"Q4_K","shape":[1],"data_offsets":[0,4]}})", 4, "dtype.safetensors"), "unsupported dtype 'Q4_K'"},
      {wfix("bad_storage_size.pth"), "declares 1000 f32 elements"},
      {wfix("bad_view.pth"), "runs past its storage"},
      {wfix("pt_legacy.pth"), "legacy (pre-1.6, non-zip)"},
  };
  for (const Case& c : cases) {
    for (const char* cmd : {"weights inspect ", "weights convert --arch vit_tiny_patch16_224 --out /dev/null/x.safetensors "}) {
      auto r = run_tabula(std::string(cmd) + q(c.path));
      EXPECT_EQ(r.exit_code, 1) << cmd << c.path << "\n" << r.err;
      EXPECT_TRUE(has(r.err, std::filesystem::path(c.path).filename().string())) << r.err;
      EXPECT_TRUE(has(r.err, c.expect)) << c.path << ": " << r.err;
      EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
    }
  }
}
