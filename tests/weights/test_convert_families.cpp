// `tabula weights convert` on the layouts only their models map (weights_tools/layout.h owned_by_model): Swin (timm,
// and ctranspath.pth's original / timm 0.5 names), ConvNeXt (timm, and the original / DINOv3 hub names), CONCH's
// CoCa `visual.*` and Recursion's MAEModel `encoder.vit_backbone.*`. The files are the models' own fixtures (weights_tools/reference/{swin,convnext,conch}_fixtures.py
// wrote each set of weights in every layout), so a converted file must equal the timm-layout one tensor by tensor.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/weights/weights_test_util.h"
#include "util/npy.h"
#include "weights_tools/checkpoint.h"
#include "weights_tools/layout.h"
#include "weights_tools/safetensors.h"

using namespace tabula;
using namespace tabula::weights;
using tabula::test::run_tabula;

namespace {

using tabula::test::has;
std::string q(const std::string& s) { return "'" + s + "'"; }
std::string fix(const std::string& rel) { return test::fixture(rel).string(); }

const std::string kCtp = "swin:dim=16,depths=2,2,heads=2,4,window=4,classes=0,embed_layer=convstem,img=32";
const std::string kSwin = "swin:dim=8,depths=2,2,2,heads=2,2,4,window=4,classes=10,img=32";
const std::string kCnx = "convnext:dims=16,24,32,48,depths=1,2,1,1,head_init_scale=0.5";
const std::string kConch = "conch:dim=32,depth=2,heads=4,embed_dim=24,caption_dim=32";

struct Case {
  std::string file, arch, layout;
  std::string want;     // the same weights in timm's layout; empty: the source's own tensors, `strip` removed
  size_t tensors;       // what the converted file holds
  std::string left_out; // a source tensor the report names as left out by the model ("": none)
  std::string strip;    // the prefix of the source's names the model drops
};

const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      {"swin/ctp_tiny_i32_s0.ctranspath.pth", kCtp, "swin-timm0.5", "swin/ctp_tiny_i32_s0.timm.safetensors", 73,
       "layers.0.blocks.1.attn_mask", ""},
      {"swin/swin_tiny_i32_s0.timm.safetensors", kSwin, "timm-swin", "swin/swin_tiny_i32_s0.timm.safetensors", 92,
       "", ""},
      // the DINOv3 hub's backbone has no classifier: every tensor but head.fc
      {"convnext/cnx_cl_s1.dinov3.pth", kCnx + ",classes=0", "original-convnext",
       "convnext/cnx_cl_s1.model.safetensors", 63, "", ""},
      {"convnext/cnx_cl_s0.pytorch_model.bin", kCnx + ",classes=10", "timm-convnext",
       "convnext/cnx_cl_s0.model.safetensors", 65, "", ""},
      {"conch/conch_tiny_s0.pytorch_model.bin", kConch, "conch-coca", "", 55, "text.token_embedding.weight", ""},
      {"newvit/ca_vit_tiny_s1.model.safetensors", "ca_vit:dim=32,depth=2,heads=4,patch=8,img=32,max_chans=11",
       "recursion-mae", "", 32, "decoder.context_norm.weight", "encoder.vit_backbone."},
  };
  return c;
}

}  // namespace

TEST(WeightsConvertFamilies, DetectsTheLayoutsTheirModelsMap) {
  for (const Case& c : cases()) {
    const LayoutGuess g = detect_layout(shaped_names(load_checkpoint(fix(c.file)).sd));
    EXPECT_EQ(std::string(layout_name(g.layout)), c.layout) << c.file << " (from '" << g.evidence << "')";
    EXPECT_TRUE(owned_by_model(g.layout)) << c.file;
    EXPECT_EQ(layout_from_name(c.layout), g.layout);
  }
  EXPECT_FALSE(owned_by_model(Layout::timm_vit));
  EXPECT_FALSE(owned_by_model(Layout::unknown));
  // `tabula weights inspect` names them, with the key that decided
  auto r = run_tabula("weights inspect --no-hash " + q(fix("swin/ctp_tiny_i32_s0.ctranspath.pth")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "layout: swin-timm0.5 (from 'layers.0.downsample.reduction.weight')")) << r.out;
  r = run_tabula("weights inspect --no-hash " + q(fix("conch/conch_tiny_s0.pytorch_model.bin")));
  EXPECT_TRUE(has(r.out, "layout: conch-coca (from 'visual.trunk.cls_token')")) << r.out;
}

TEST(WeightsConvertFamilies, ConvertedFilesEqualTheTimmLayoutTensorByTensor) {
  const auto dir = test::scratch_dir();
  for (const Case& c : cases()) {
    const std::string out = (dir / "out.safetensors").string();
    auto r = run_tabula("weights convert --force " + q(fix(c.file)) + " --arch " + q(c.arch) + " --out " + q(out));
    ASSERT_EQ(r.exit_code, 0) << c.file << ": " << r.err;
    EXPECT_TRUE(has(r.out, "layout: " + c.layout + " -> arch " + c.arch + "'s names")) << r.out;
    EXPECT_TRUE(has(r.out, std::to_string(c.tensors) + " of " + std::to_string(c.tensors) + " expected keys present"))
        << r.out;
    if (!c.left_out.empty()) {
      EXPECT_TRUE(has(r.out, "left out by the model") && has(r.out, c.left_out)) << r.out;
    }
    const StateDict got = read_safetensors(out);
    EXPECT_EQ(got.tensors.size(), c.tensors) << c.file;
    EXPECT_EQ(got.metadata.at("tabula.source_layout"), c.layout);
    const StateDict want = c.want.empty() ? load_checkpoint(fix(c.file)).sd : read_safetensors(fix(c.want));
    for (const WeightTensor& t : got.tensors) {
      const WeightTensor* w = want.find(c.strip + t.name);
      ASSERT_NE(w, nullptr) << c.file << ": " << t.name << " is not in " << (c.want.empty() ? c.file : c.want);
      EXPECT_EQ(t.shape, w->shape) << c.file << ": " << t.name;
      EXPECT_EQ(test::tensor_sha(t), test::tensor_sha(*w)) << c.file << ": " << t.name;
    }
  }
}

TEST(WeightsConvertFamilies, EmbeddingsFromTheConvertedFileAreTheSourceFilesBytes) {
  const auto dir = test::scratch_dir();
  const std::string npy = (dir / "x.npy").string();
  std::vector<float> x(2 * 3 * 32 * 32);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 37) % 101) / 50.0f - 1.0f;
  write_npy(npy, {2, 3, 32, 32}, x.data());
  for (const Case& c : {cases()[0], cases()[2], cases()[4], cases()[5]}) {
    const std::string conv = (dir / "conv.safetensors").string();
    auto r = run_tabula("weights convert --force " + q(fix(c.file)) + " --arch " + q(c.arch) + " --out " + q(conv));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::vector<std::string> bytes;
    for (const std::string& w : {fix(c.file), conv}) {
      const std::string out = (dir / "e").string() + std::to_string(bytes.size());
      std::filesystem::remove_all(out);
      auto e = run_tabula("embed --arch " + q(c.arch) + " --weights " + q(w) + " --data " + q(npy) + " --out " +
                          q(out) + " --quiet");
      ASSERT_EQ(e.exit_code, 0) << c.file << ": " << e.err;
      std::string all;
      for (const auto& f : std::filesystem::directory_iterator(out))
        if (f.path().extension() == ".npy") all += f.path().filename().string() + sha256_file(f.path().string());
      ASSERT_FALSE(all.empty()) << out;
      bytes.push_back(all);
    }
    EXPECT_EQ(bytes[0], bytes[1]) << c.file;
  }
}

TEST(WeightsConvertFamilies, AFamilyFileForAnotherArchIsAClearError) {
  const std::string out = (test::scratch_dir() / "out.safetensors").string();
  auto r = run_tabula("weights convert --force " + q(fix("swin/ctp_tiny_i32_s0.ctranspath.pth")) +
                      " --arch vit:dim=32,depth=2,heads=2,patch=8,img=32 --out " + q(out));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "ctp_tiny_i32_s0.ctranspath.pth: swin-timm0.5 weights cannot be used for arch 'vit:"))
      << r.err;
  r = run_tabula("weights convert --force " + q(fix("conch/conch_tiny_s0.pytorch_model.bin")) + " --arch " + q(kCnx) +
                 " --out " + q(out));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "conch-coca weights cannot be used for arch 'convnext:")) << r.err;
  EXPECT_FALSE(std::filesystem::exists(out));
  // a forced layout of another family is refused the same way
  r = run_tabula("weights convert --force " + q(fix("swin/swin_tiny_i32_s0.timm.safetensors")) + " --arch " + q(kSwin) +
                 " --layout conch-cocoa --out " + q(out));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(has(r.err, "conch-coca")) << r.err;  // the message lists the layouts
}
