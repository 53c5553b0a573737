// `tabula models`, `tabula hooks ARCH`, `tabula bench ARCH` as users type them.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>

#include "util/sha256.h"
#include "engine/system.h"
#include "models/registry.h"
#include "tests/test_util.h"
#include "weights_tools/safetensors.h"

using tabula::test::run_tabula;

TEST(ModelCli, ModelsListsEveryArchWithParamsAndGflops) {
  auto r = run_tabula("models");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const auto& n : tabula::model_names()) EXPECT_NE(r.out.find(n + " "), std::string::npos) << n;
  // resnet50: 25.56 M parameters, 4.09 GFLOPs at 224, default tap avgpool.
  std::istringstream in(r.out);
  std::string line;
  bool found = false;
  while (std::getline(in, line)) {
    if (line.rfind("resnet50 ", 0) != 0) continue;
    found = true;
    EXPECT_NE(line.find("25.56"), std::string::npos) << line;
    EXPECT_NE(line.find("4.09"), std::string::npos) << line;
    EXPECT_NE(line.find("avgpool"), std::string::npos) << line;
  }
  EXPECT_TRUE(found);
}

TEST(ModelCli, HooksVitBaseListsEveryTorchModule) {
  auto r = run_tabula("hooks vit_base_patch16_224");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::ifstream f(tabula::test::fixture("models/named_modules_vit_base_patch16_224.tsv"));
  ASSERT_TRUE(f);
  std::string line;
  int n = 0;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    const std::string name = line.substr(0, line.find('\t'));
    EXPECT_NE(r.out.find("\n" + name + " "), std::string::npos) << name;
    ++n;
  }
  EXPECT_EQ(n, 275);  // named_modules() without the root
  EXPECT_NE(r.out.find("blocks.11.attn.softmax"), std::string::npos);
  EXPECT_NE(r.out.find("[1, 12, 197, 197]"), std::string::npos);
}

TEST(ModelCli, HooksSizeAndErrors) {
  auto r = run_tabula("hooks resnet18 --size 64 --batch 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("layer4"), std::string::npos);
  EXPECT_NE(r.out.find("[2, 512, 2, 2]"), std::string::npos) << r.out;
  auto bad = run_tabula("hooks no_such_arch");
  EXPECT_EQ(bad.exit_code, 2);  // a mistyped name is a usage error (cli/arch_names.cpp)
  EXPECT_NE(bad.err.find("unknown arch 'no_such_arch'"), std::string::npos) << bad.err;
  auto size = run_tabula("hooks vit_base_patch16_224 --size 200");
  EXPECT_EQ(size.exit_code, 2);  // a --size the arch does not take is a usage error
  EXPECT_NE(size.err.find("dynamic_img_size"), std::string::npos) << size.err;
  EXPECT_EQ(run_tabula("hooks").exit_code, 2);
}

TEST(ModelCli, BenchPrintsImagesPerSecond) {
  auto r = run_tabula("bench resnet:layers=1,1,1,1,block=basic,classes=10 --batch 2 --size 32 --iters 2 --warmup 1 --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(" images/s"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ms/batch"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("peak RSS"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("batch 2 at 32x32, 1 threads"), std::string::npos) << r.out;
  EXPECT_EQ(run_tabula("bench resnet18 --batch 0").exit_code, 2);
  // cpu forwards are fp32 or bf16; a GPU-only precision on the cpu is refused naming the flag
  auto p = run_tabula("bench resnet18 --precision fp16");
  EXPECT_NE(p.exit_code, 0);
  EXPECT_NE(p.err.find("--precision fp16"), std::string::npos) << p.err;
  if (tabula::cuda_devices().empty()) {
    auto c = run_tabula("bench resnet18 --device cuda:0");
    EXPECT_NE(c.exit_code, 0);
    EXPECT_NE(c.err.find("--device cuda:0"), std::string::npos) << c.err;
  }
}

// `tabula init` takes every name `tabula models` lists (the registry's extra timm names and the forward-only
// dynamic_img_size key too), writing init_weights' tensors (checked against torch in test_init).
TEST(ModelCli, InitTakesRegistryNamesAndKeys) {
  auto dir = tabula::test::scratch_dir();
  for (const std::string arch : {"vit_base_patch16_siglip_224:dim=16,depth=1,heads=2",
                                 "vit:dim=16,depth=1,heads=2,patch=8,img=16,mlp=swiglu,qk_norm=1,dynamic_img_size=1",
                                 "dinov2_vitg14:dim=16,depth=1,heads=2"}) {
    SCOPED_TRACE(arch);
    const std::string out = (dir / "w.safetensors").string();
    auto r = run_tabula("init '" + arch + "' --seed 3 --force --out '" + out + "'");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto want = tabula::init_weights(tabula::parse_arch(arch), 3);
    const auto sd = tabula::weights::read_safetensors(out);
    ASSERT_EQ(sd.tensors.size(), want.size());
    std::map<std::string, std::string> got;  // the file lists tensors by name
    for (const auto& t : sd.tensors) got[t.name] = tabula::sha256_hex(t.data, t.nbytes());
    for (const auto& t : want) {
      ASSERT_TRUE(got.count(t.name)) << t.name;
      EXPECT_EQ(got[t.name], tabula::sha256_hex(t.bytes.data(), t.bytes.size())) << t.name;
    }
  }
}

// `tabula embed` preprocesses for a timm name with that name's pretrained_cfg (vit_base_patch16_224_miil:
// Resize(floor(224 / 0.875) = 256, bilinear) -> CenterCrop(224) -> Normalize(0, 1)), not the ViT default.
TEST(ModelCli, EmbedUsesTheTimmNamesPretrainedCfg) {
  auto dir = tabula::test::scratch_dir();
  const std::string data = (dir / "t").string(), out = (dir / "o").string();
  auto s = run_tabula("synth tissue --quick --out '" + data + "'");
  ASSERT_EQ(s.exit_code, 0) << s.err;
  auto r = run_tabula("embed --arch vit_base_patch16_224_miil:dim=16,depth=1,heads=2 --seed 0 --data '" + data +
                      "/metadata.csv' --out '" + out + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::ifstream f(out + "/run.json");
  std::stringstream run;
  run << f.rdbuf();
  EXPECT_NE(run.str().find("resize=256 interp=bilinear antialias=1 crop=224 mean=0,0,0 std=1,1,1"), std::string::npos)
      << run.str();
}
