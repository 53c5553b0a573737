// A user's walk with checkpoints and model cards through the binary: converting, initialising and loading weight
// files the way PyTorch users name and size them. Each case runs the built binary as a user types it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/fileio.h"
#include "tests/test_util.h"
#include "util/npy.h"

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

namespace {
std::vector<float> read_floats(const fs::path& npy) { return tabula::read_npy(npy.string()).to_f32(); }
}  // namespace

// Weights saved at 32 px run at 16 px with `ARCH:img=16`: the load refused pos_embed's shape and said no more, while
// the README promises timm's pos-embed resampling (which `weights convert` does). The error now says the two ways
// that work, and both give timm's result: the same numbers as each other.
TEST(CliWalk4, PosEmbedOfAnotherSizeSaysHowToResample) {
  const fs::path dir = scratch_dir();
  const std::string base = "vit:dim=16,depth=1,heads=2,patch=8,classes=0";
  const fs::path w = dir / "vit32.safetensors";
  ASSERT_EQ(run_tabula("init '" + base + ",img=32' --seed 1 --out " + w.string()).exit_code, 0);
  std::vector<float> x(3 * 16 * 16);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(static_cast<int>(i * 37 % 101) - 50) / 25.0f;
  const fs::path npy = dir / "x16.npy";
  tabula::write_npy(npy.string(), {1, 3, 16, 16}, x.data());
  const std::string embed = " --data " + npy.string() + " --layers norm --pool none --quiet --out ";

  auto r = run_tabula("embed --arch '" + base + ",img=16' --weights " + w.string() + embed + (dir / "e0").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, w.string() + ": arch '" + base +
                             ",img=16': weight 'pos_embed' has shape [1, 17, 16], "
                             "the model needs [1, 5, 16] (weights for another image size: run the arch they were saved "
                             "for with dynamic_img_size=1"))
      << r.err;
  EXPECT_TRUE(has(r.err, "tabula weights convert FILE --arch ARCH --out NEW.safetensors")) << r.err;

  // Weights of another patch size also have another pos_embed grid: that is another model, not another size.
  r = run_tabula("embed --arch 'vit:dim=16,depth=1,heads=2,patch=16,classes=0,img=32' --weights " + w.string() + embed +
                 (dir / "e3").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "weight 'patch_embed.proj.weight' has shape [16, 3, 8, 8], the model needs [16, 3, 16, 16]"))
      << r.err;
  EXPECT_FALSE(has(r.err, "another image size")) << r.err;

  const fs::path w16 = dir / "vit16.safetensors";
  r = run_tabula("weights convert " + w.string() + " --arch '" + base + ",img=16' --out " + w16.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "pos_embed resampled from 4x4 to 2x2 patches")) << r.out;
  r = run_tabula("embed --arch '" + base + ",img=16' --weights " + w16.string() + embed + (dir / "e1").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_tabula("embed --arch '" + base + ",img=32,dynamic_img_size=1' --weights " + w.string() + embed +
                 (dir / "e2").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<float> once = read_floats(dir / "e1" / "norm.npy");
  const std::vector<float> per_input = read_floats(dir / "e2" / "norm.npy");
  ASSERT_EQ(once.size(), 5u * 16u);
  ASSERT_EQ(per_input.size(), once.size());
  for (size_t i = 0; i < once.size(); ++i) EXPECT_NEAR(per_input[i], once[i], 1e-5f) << i;
}

// `tabula init resnet18 --seed 0 --out r18.pth` (and `weights convert ... --out W.pt`) wrote safetensors under a
// torch name: torch.load(weights_only=True) then failed on it with an unpickling error that does not say why. An
// --out named as torch / numpy files are is a usage error that names the file and the name to use.
TEST(CliWalk4, SafetensorsAreNotWrittenUnderATorchName) {
  const fs::path dir = scratch_dir();
  const std::string arch = "'resnet:layers=1,1,1,1,block=basic,channels=8,8,8,8,classes=4'";
  const fs::path w = dir / "w.safetensors";
  ASSERT_EQ(run_tabula("init " + arch + " --seed 0 --out " + w.string()).exit_code, 0);
  for (const std::string name : {"r18.pth", "r18.PT", "pytorch_model.bin", "last.ckpt", "w.npy"}) {
    const fs::path out = dir / name;
    const std::string stem = (dir / fs::path(name).stem()).string();
    for (const std::string& cmd : {"init " + arch + " --seed 0 --out " + out.string(),
                                   "weights convert " + w.string() + " --arch " + arch + " --out " + out.string()}) {
      auto r = run_tabula(cmd);
      EXPECT_EQ(r.exit_code, 2) << cmd << "\n" << r.err;
      EXPECT_TRUE(has(r.err, "--out " + out.string() +
                                 ": tabula writes safetensors, which torch.load and np.load "
                                 "do not read; name it " +
                                 stem + ".safetensors"))
          << r.err;
      EXPECT_FALSE(fs::exists(out)) << cmd;
    }
  }
  // Other names are the user's choice (safetensors files are often named .st or have no extension).
  auto r = run_tabula("init " + arch + " --seed 0 --out " + (dir / "w.st").string());
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// `embed` and `weights convert` take --arch; `tabula init --arch resnet18 ...` was refused as an unknown flag. init
// takes the arch either way, the same file from both, and says so when it gets none or two.
TEST(CliWalk4, InitTakesTheArchAsAFlagToo) {
  const fs::path dir = scratch_dir();
  const std::string arch = "'resnet:layers=1,1,1,1,block=basic,channels=8,8,8,8,classes=4'";
  const fs::path a = dir / "a.safetensors", b = dir / "b.safetensors";
  auto r = run_tabula("init " + arch + " --seed 3 --out " + a.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_tabula("init --arch " + arch + " --seed 3 --out " + b.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(tabula::read_file_bytes(a.string()), tabula::read_file_bytes(b.string()));
  r = run_tabula("init --seed 3 --out " + (dir / "c.safetensors").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(has(r.err, "tabula init: which arch?")) << r.err;
  r = run_tabula("init resnet18 --arch resnet34 --seed 3 --out " + (dir / "c.safetensors").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(has(r.err, "the arch is given twice")) << r.err;
  EXPECT_FALSE(fs::exists(dir / "c.safetensors"));
}

// `tabula models` sent the user to `tabula hooks --help` for the key=value forms; that help has none of them. It
// names the README section that has them.
TEST(CliWalk4, ModelsPointsWhereTheKeyValueFormsAre) {
  auto r = run_tabula("models");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(has(r.out, "tabula hooks --help")) << r.out;
  EXPECT_TRUE(has(r.out, "(README: Models and untrained weights)")) << r.out;
  const std::string readme = tabula::read_file_text((tabula::test::fixture("") / ".." / ".." / "README.md").string());
  EXPECT_TRUE(has(readme, "### Models and untrained weights"));
  EXPECT_TRUE(has(readme, "`vit:dim=64,depth=2,heads=4,patch=8,img=32,reg=4`"));
}

// `--layers Layer4` suggested layer4.1 or layer4.0, the names that continue it, not layer4 itself.
TEST(CliWalk4, LayerInTheWrongCaseSuggestsThatLayer) {
  const fs::path dir = scratch_dir();
  std::vector<float> x(3 * 32 * 32, 0.5f);
  const fs::path npy = dir / "x.npy";
  tabula::write_npy(npy.string(), {1, 3, 32, 32}, x.data());
  auto r = run_tabula("embed --arch resnet18 --seed 0 --data " + npy.string() + " --out " + (dir / "e").string() +
                      " --layers layer3,Layer4 --quiet");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(has(r.err, "resnet18 has no tap 'Layer4' (did you mean layer4?)")) << r.err;
  r = run_tabula("embed --arch resnet18 --seed 0 --data " + npy.string() + " --out " + (dir / "e").string() +
                 " --layers layer4.1.bn3 --quiet");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(has(r.err, "no tap 'layer4.1.bn3' (did you mean layer4.1.bn2 or layer4.1.bn1?)")) << r.err;
}

// A Hugging Face ViTModel file (phikon's layout) converted for `vit:...` said nothing of its LayerNorm eps: run
// with timm's 1e-6 instead of ViTConfig's 1e-12 its embedding was ~1e-4 off, silently. Converting it says which
// eps the file was trained with and how to pass it; the card (`phikon`) and the arch with norm_eps=1e-12 agree.
TEST(CliWalk4, HfViTFileSaysItsLayerNormEps) {
  const fs::path dir = scratch_dir();
  const fs::path card = tabula::test::fixture("cards/phikon");
  const std::string arch = "vit:dim=48,depth=2,heads=4,patch=16,img=224,classes=0";
  auto r = run_tabula("weights convert " + (card / "model.safetensors").string() + " --arch '" + arch + "' --out " +
                      (dir / "w.safetensors").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "layout: hf-vit")) << r.out;
  EXPECT_TRUE(has(r.out, "run this file with norm_eps=1e-12 in the arch")) << r.out;
  // The converted file under the arch with that eps gives the card's embedding (ViTModel's last_hidden_state[:, 0]).
  r = run_tabula("embed --arch '" + arch + ",norm_eps=1e-12' --weights " + (dir / "w.safetensors").string() +
                 " --data " + tabula::test::fixture("cards/images/tiles.csv").string() +
                 " --resize 0 --crop 0 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --layers head --pool none"
                 " --quiet --out " +
                 (dir / "e").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<float> got = read_floats(dir / "e" / "head.npy");
  const std::vector<float> want = read_floats(card / "embedding.npy");
  ASSERT_EQ(got.size(), want.size());
  float scale = 0;
  for (float v : want) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 2e-6f * scale) << i;
}

// A Hugging Face download is a folder (config.json, model.safetensors): `--weights FOLDER` said only "not a regular
// file". It names the weight file to give, or says a sharded checkpoint's shards are not joined.
TEST(CliWalk4, WeightsFolderNamesTheFileInIt) {
  const fs::path dir = scratch_dir() / "hf";
  fs::create_directories(dir);
  const std::string arch = "'resnet:layers=1,1,1,1,block=basic,channels=8,8,8,8,classes=4'";
  ASSERT_EQ(run_tabula("init " + arch + " --seed 0 --out " + (dir / "model.safetensors").string()).exit_code, 0);
  tabula::write_file_atomic((dir / "config.json").string(), "{}\n");
  std::vector<float> x(3 * 32 * 32, 0.5f);
  const fs::path npy = scratch_dir() / "x.npy";
  tabula::write_npy(npy.string(), {1, 3, 32, 32}, x.data());
  const std::string want =
      dir.string() + ": a folder, not a weight file; give the weight file in it: model.safetensors";
  auto r = run_tabula("embed --arch " + arch + " --weights " + dir.string() + " --data " + npy.string() + " --out " +
                      (scratch_dir() / "e").string() + " --quiet");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, want)) << r.err;
  r = run_tabula("weights inspect " + dir.string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, want)) << r.err;
  tabula::write_file_atomic((dir / "model.safetensors.index.json").string(), "{}\n");
  r = run_tabula("weights convert " + dir.string() + " --arch " + arch + " --out " +
                 (scratch_dir() / "w.safetensors").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "it holds a sharded checkpoint (*.index.json), which tabula does not join")) << r.err;
}

// `tabula hooks vit_small_patch16_224 --size 100` failed with exit 1, as a broken model would; a size the arch does
// not take is a usage error (2) that says which sizes it takes.
TEST(CliWalk4, HooksSizeTheArchDoesNotTakeIsAUsageError) {
  auto r = run_tabula("hooks vit_small_patch16_224 --size 100");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(has(r.err, "tabula hooks: --size 100: arch 'vit_small_patch16_224': input must be 224x224")) << r.err;
  EXPECT_TRUE(has(r.err, "add dynamic_img_size=1 for other sizes")) << r.err;
  r = run_tabula("hooks vit_small_patch16_224:dynamic_img_size=1 --size 100");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(has(r.err, "multiples of the patch size 16")) << r.err;
  r = run_tabula("hooks vit_small_patch16_224:dynamic_img_size=1 --size 96");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "input [1, 3, 96, 96]")) << r.out;
}

// A card name where an arch goes (`init uni`, `weights convert --arch uni`) was an unknown arch; convert and
// `models ARCH` printed all ~150 arch names with exit 1 (models after its header, exit 0 for its shell). Each now
// says the name is a card and which arch it stands for, and a typo gets the closest names, exit 2.
TEST(CliWalk4, CardNameWhereAnArchGoesSaysItsArch) {
  const fs::path dir = scratch_dir();
  const std::string arch = "'resnet:layers=1,1,1,1,block=basic,channels=8,8,8,8,classes=4'";
  const fs::path w = dir / "w.safetensors";
  ASSERT_EQ(run_tabula("init " + arch + " --seed 0 --out " + w.string()).exit_code, 0);
  const std::string out = " --out " + (dir / "o.safetensors").string();
  for (const std::string& cmd : std::vector<std::string>{"init uni --seed 0" + out, "hooks UNI", "models uni",
                                                         "weights convert " + w.string() + " --arch uni" + out}) {
    auto r = run_tabula(cmd);
    EXPECT_EQ(r.exit_code, 2) << cmd;
    EXPECT_TRUE(has(r.err, "is a model card, not an arch: its arch is 'vit:dim=1024,depth=24")) << cmd << r.err;
    EXPECT_TRUE(has(r.err, "--model uni)")) << r.err;
    EXPECT_TRUE(r.out.empty()) << cmd << r.out;
  }
  const std::string convert = "weights convert " + w.string() + " --arch resnt50" + out;
  for (const std::string& cmd : std::vector<std::string>{"models resnt50", convert}) {
    auto r = run_tabula(cmd);
    EXPECT_EQ(r.exit_code, 2) << cmd;
    EXPECT_TRUE(has(r.err, "unknown arch 'resnt50' (did you mean resnet50?)")) << r.err;
    EXPECT_LT(r.err.size(), 300u) << r.err;
  }
  EXPECT_FALSE(fs::exists(dir / "o.safetensors"));
}
