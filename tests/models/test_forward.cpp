// Model forwards against torch (torchvision ResNet, timm VisionTransformer, DINOv2 hub) on the same weights and
// inputs: every stored tap within max relative error 1e-5 (relative to the tap's max magnitude).
#include <gtest/gtest.h>

#include <cstring>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "engine/hooks.h"
#include "engine/ops.h"
#include "engine/threads.h"
#include "engine/validate.h"
#include "models/registry.h"
#include "models/vit.h"
#include "embed/embed.h"
#include "weights_tools/checkpoint.h"
#include "weights_tools/layout.h"
#include "tests/engine/op_test_util.h"
#include "tests/models/model_fixtures.h"
#include "tests/test_util.h"

namespace tabula {
namespace {

using test::ForwardCase;
using test::error_of;

constexpr double kTol = 1e-5;

// Full-resolution captures of these taps (engine/hooks.h TapSet).
TapSet capture_none(const std::vector<std::string>& names) {
  TapSet t;
  for (const auto& n : names) t.capture(n, Pool::none);
  return t;
}

const Tensor& captured(const TapSet& t, const std::string& name) {
  auto it = t.captured().find(name);
  if (it == t.captured().end()) throw std::out_of_range("tap '" + name + "' was not captured");
  return it->second;
}

std::unique_ptr<Model> build_case(const ForwardCase& c) {
  const ArchConfig arch = parse_arch(c.arch);
  std::vector<NamedTensor> sd = init_weights(arch, c.seed);
  const double sum = test::perturb(sd);
  // The weights are torch's: init_weights replays torch's init (timm's trunc_normal_ within 2 ULP), and the
  // perturbation is exact.
  EXPECT_NEAR(sum, c.weight_abs_sum, 1e-6 * c.weight_abs_sum) << c.id << ": weights differ from torch's";
  return build_model(c.arch, to_weight_map(std::move(sd)));
}

void check_case(const ForwardCase& c) {
  SCOPED_TRACE(c.id + " (" + c.arch + ")");
  ASSERT_FALSE(c.expected.empty()) << "no taps.tsv rows";
  auto model = build_case(c);
  const Tensor x = test::hash_input(c.input, c.seed);
  // 1. With every stored tap requested: tapped modules run unfused, values are torch's module outputs.
  TapSet taps = capture_none(c.taps);
  model->forward(x, taps);
  double worst = 0;
  std::string worst_tap;
  for (const auto& f : c.expected) {
    if (f.tap == "__out__") continue;
    std::string why;
    ASSERT_TRUE(taps.captured().count(f.tap)) << "tap " << f.tap << " not captured";
    const double err = test::tap_error(captured(taps, f.tap), c.id, f, &why);
    EXPECT_LE(err, kTol) << "tap " << f.tap << ": " << why;
    if (err >= worst) worst = err, worst_tap = f.tap;
  }
  std::printf("  %s: %zu taps, worst max-rel error %.2e (%s)\n", c.id.c_str(), c.expected.size(), worst,
              worst_tap.c_str());
  // 2. No taps: the fused fast path (BN folded, fused epilogues, flash attention) gives the forward output.
  TapSet none;
  const Tensor out = model->forward(x, none);
  for (const auto& f : c.expected) {
    if (f.tap != "__out__") continue;
    std::string why;
    EXPECT_LE(test::tap_error(out, c.id, f, &why), kTol) << "forward output (fused): " << why;
  }
}

std::vector<ForwardCase> cases_with_prefix(bool long_cases) {
  std::vector<ForwardCase> out;
  for (auto& c : test::forward_cases())
    if ((c.id.rfind("long_", 0) == 0) == long_cases) out.push_back(c);
  return out;
}

class ModelForward : public ::testing::TestWithParam<ForwardCase> {};
TEST_P(ModelForward, MatchesTorch) { check_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Fixtures, ModelForward, ::testing::ValuesIn(cases_with_prefix(false)),
                         [](const auto& p) { return p.param.id; });

// Full-size models (resnet50, vit_base_patch16_224, dinov2_vits14 at 518 and 224, dinov2_vits14_reg): `ctest -L long`.
class LongModelForward : public ::testing::TestWithParam<ForwardCase> {};
TEST_P(LongModelForward, MatchesTorch) { check_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(Long, LongModelForward, ::testing::ValuesIn(cases_with_prefix(true)),
                         [](const auto& p) { return p.param.id; });

TEST(ModelForward, FixturesCoverTheIssueCases) {
  std::set<std::string> ids;
  for (const auto& c : test::forward_cases()) ids.insert(c.id);
  for (const char* id : {"resnet_basic_b3", "resnet_basic_b1", "resnet_bottleneck", "vit_b3", "vit_b1",
                         "vit_dynamic_rect", "dinov2_native", "dinov2_interp", "long_dinov2_vits14_518",
                         "long_dinov2_vits14_224", "vit_qknorm_packed_b3", "vit_swiglu_map_rect",
                         "vit_map_gelu_tanh_nocls", "dinov2_g_native_518", "dinov2_g_interp_224", "dinov2_g_reg_rect"})
    EXPECT_TRUE(ids.count(id)) << id;
}

// ---- taps: list_taps (computed from the config) agrees with what the forward passes --------------------------

void check_list_matches_forward(const std::string& arch, const Shape& input) {
  SCOPED_TRACE(arch);
  auto model = build_model_seed(arch, 0);
  TapSet all = capture_none({"all"});
  // The forward binds the TapSet to tap_order(): a tap the forward passes but list_taps lacks throws there.
  model->forward(test::hash_input(input, 1), all);
  std::map<std::string, Shape> seen;  // last call wins, as a forward hook
  for (const auto& [n, t] : all.captured()) seen[n] = t.shape();
  const auto listed = model->list_taps(input);
  const auto order = model->tap_order(input);
  EXPECT_EQ(order.size(), listed.size());
  EXPECT_EQ(std::set<std::string>(order.begin(), order.end()).size(), listed.size());
  std::set<std::string> listed_names;
  for (const auto& t : listed) {
    EXPECT_TRUE(listed_names.insert(t.name).second) << "listed twice: " << t.name;
    auto it = seen.find(t.name);
    if (it == seen.end()) {
      ADD_FAILURE() << "listed but never passed in the forward: " << t.name;
      continue;
    }
    EXPECT_EQ(shape_str(it->second), shape_str(t.shape)) << t.name;
  }
  for (const auto& [n, s] : seen) EXPECT_TRUE(listed_names.count(n)) << "passed but not listed: " << n;
}

TEST(ModelTaps, ListMatchesForwardResNet) {
  check_list_matches_forward("resnet:layers=1,1,1,1,block=basic,classes=3", {2, 3, 40, 32});
  check_list_matches_forward("resnet:layers=1,2,1,1,width=16,groups=2,classes=3", {1, 3, 33, 47});
  check_list_matches_forward("resnet:layers=1,1,1,1,block=basic,classes=3", {1, 3, 1, 3});  // any size >= 1
}

TEST(ModelTaps, ListMatchesForwardViT) {
  check_list_matches_forward("vit:dim=32,depth=2,heads=2,patch=8,img=32,classes=4,reg=2,init_values=0.5", {2, 3, 32, 32});
  check_list_matches_forward("vit:dim=32,depth=1,heads=2,patch=8,img=32,classes=0,global_pool=,dynamic_img_size=1",
                             {1, 3, 24, 40});
  check_list_matches_forward("vit:flavor=dinov2,dim=32,depth=1,heads=2,patch=8,img=32,reg=4,init_values=1.0",
                             {1, 3, 48, 32});
  // qk_norm, the gated MLPs, the attention-pool head
  check_list_matches_forward("vit:dim=32,depth=1,heads=2,patch=8,img=32,classes=3,qk_norm=1,mlp=swiglu_packed",
                             {2, 3, 32, 32});
  check_list_matches_forward("vit:dim=32,depth=1,heads=2,patch=8,img=32,classes=3,reg=1,mlp=swiglu,global_pool=map,"
                             "dynamic_img_size=1", {1, 3, 40, 16});
  check_list_matches_forward("vit:flavor=dinov2,dim=32,depth=1,heads=2,patch=8,img=32,mlp=swiglufused", {1, 3, 32, 32});
}

// `tabula hooks ARCH` lists every module torch's named_modules() lists, with torch's output shape.
void check_named_modules(const std::string& arch, const std::set<std::string>& extras) {
  SCOPED_TRACE(arch);
  std::ifstream f(test::fixture("models/named_modules_" + arch + ".tsv"));
  ASSERT_TRUE(f) << "missing fixture";
  auto model = build_model_skeleton(arch);
  std::map<std::string, Shape> listed;
  for (const auto& t : model->list_taps(model->default_input_shape(1))) listed[t.name] = t.shape;
  std::string line;
  size_t n = 0;
  std::set<std::string> torch_names;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t tab = line.find('\t');
    const std::string name = line.substr(0, tab), shape = line.substr(tab + 1);
    torch_names.insert(name);
    ++n;
    auto it = listed.find(name);
    if (it == listed.end()) {
      ADD_FAILURE() << "torch module not listed: " << name;
      continue;
    }
    if (shape != "-") {
      std::string s = shape_str(it->second);  // "[1, 197, 768]" vs "1,197,768"
      std::string compact;
      for (char ch : s)
        if (ch != '[' && ch != ']' && ch != ' ') compact += ch;
      EXPECT_EQ(compact, shape) << name;
    }
  }
  EXPECT_GT(n, 20u);
  for (const auto& [name, s] : listed) {
    if (torch_names.count(name)) continue;
    bool extra = false;
    for (const auto& e : extras)
      extra |= name.size() >= e.size() && name.compare(name.size() - e.size(), e.size(), e) == 0;
    EXPECT_TRUE(extra) << "listed but not a torch module: " << name;
  }
}

TEST(ModelTaps, NamedModulesVitBase) { check_named_modules("vit_base_patch16_224", {".attn.softmax"}); }
TEST(ModelTaps, NamedModulesResNet50) { check_named_modules("resnet50", {}); }
TEST(ModelTaps, NamedModulesDinov2Reg) {
  check_named_modules("dinov2_vits14_reg", {".attn.softmax", "x_norm_clstoken", "x_norm_patchtokens"});
}
// ViT-g (SwiGLUPacked, SwiGLUFFNFused) and a SigLIP tower (attention-pool head): torch's names from models built
// on the meta device; here from a skeleton (no weights allocated).
TEST(ModelTaps, NamedModulesGiantDinov2) {
  check_named_modules("vit_giant_patch14_reg4_dinov2", {".attn.softmax"});
  check_named_modules("dinov2_vitg14", {".attn.softmax", "x_norm_clstoken", "x_norm_patchtokens"});
}
TEST(ModelTaps, NamedModulesSiglipAttentionPool) {
  check_named_modules("vit_base_patch16_siglip_224", {".attn.softmax", "attn_pool.softmax"});
}

// ---- registry: parameter counts, GFLOPs ------------------------------------------------------------------------

TEST(ModelRegistry, ParamCountsMatchTorch) {
  std::set<std::string> checked;
  // models_fixtures.py (torchvision, timm, DINOv2), newvit_fixtures.py (CA-ViT, DINOv3), conch_fixtures.py (CONCH),
  // swin_fixtures.py (Swin), convnext_fixtures.py (ConvNeXt)
  for (const char* file :
       {"models/params.tsv", "newvit/params.tsv", "conch/params.tsv", "swin/params.tsv", "convnext/params.tsv"}) {
    std::ifstream f(test::fixture(file));
    ASSERT_TRUE(f) << file;
    for (std::string line; std::getline(f, line);) {
      if (line.empty() || line[0] == '#') continue;
      const size_t tab = line.find('\t');
      const std::string arch = line.substr(0, tab);
      EXPECT_EQ(param_count(parse_arch(arch)), std::stoll(line.substr(tab + 1))) << arch;
      checked.insert(arch);
    }
  }
  for (const auto& n : model_names()) EXPECT_TRUE(checked.count(n)) << "no torch parameter count for " << n;
}

// Every timm name's eval transform equals timm's default pretrained_cfg, and every timm name has one.
TEST(ModelRegistry, TimmPretrainedCfgsMatchTimm) {
  std::ifstream f(test::fixture("models/pretrained_cfgs.tsv"));
  ASSERT_TRUE(f);
  std::string line;
  std::set<std::string> checked;
  auto floats = [](const std::string& csv) {
    std::vector<float> v;
    std::istringstream in(csv);
    for (std::string x; std::getline(in, x, ',');) v.push_back(static_cast<float>(std::stod(x)));
    return v;
  };
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> c;
    std::istringstream in(line);
    for (std::string x; std::getline(in, x, '\t');) c.push_back(x);
    ASSERT_EQ(c.size(), 7u) << line;
    SCOPED_TRACE(c[0]);
    const auto cfg = timm_pretrained_cfg(c[0] + ":classes=0");  // keys after ':' do not matter
    ASSERT_TRUE(cfg.has_value());
    EXPECT_EQ(cfg->input_size, std::stoi(c[2]));
    EXPECT_EQ(cfg->crop_pct, std::stod(c[3]));
    EXPECT_EQ(cfg->interpolation, c[4]);
    const auto mean = floats(c[5]), sd = floats(c[6]);
    ASSERT_EQ(mean.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(cfg->mean[i], mean[i]);
      EXPECT_EQ(cfg->std[i], sd[i]);
    }
    // The model's default input is the pretrained input size.
    EXPECT_EQ(build_model_skeleton(c[0])->default_input_shape(1)[2], cfg->input_size);
    checked.insert(c[0]);
  }
  for (const auto& n : model_names())
    if (n.rfind("vit_", 0) == 0) {
      EXPECT_TRUE(checked.count(n)) << "no timm pretrained_cfg fixture row for " << n;
    }
  EXPECT_FALSE(timm_pretrained_cfg("resnet50").has_value());
  EXPECT_FALSE(timm_pretrained_cfg("dinov2_vits14").has_value());
  EXPECT_FALSE(timm_pretrained_cfg("vit:dim=16").has_value());
}

TEST(ModelRegistry, GmacsAsTorchvisionReports) {
  // torchvision's model docs ("GFLOPS", multiply-adds): resnet18 1.81, resnet50 4.09, wide_resnet50_2 11.4,
  // vit_b_16 17.56, vit_b_32 4.41, vit_l_16 61.55.
  const std::vector<std::pair<std::string, double>> want = {
      {"resnet18", 1.81}, {"resnet50", 4.09}, {"wide_resnet50_2", 11.4}, {"vit_base_patch16_224", 17.56},
      {"vit_base_patch32_224", 4.41}, {"vit_large_patch16_224", 61.55}};
  for (const auto& [arch, g] : want) {
    auto m = build_model_skeleton(arch);
    EXPECT_NEAR(m->gmacs(m->default_input_shape(1)), g, 0.006 * g) << arch;
  }
}

TEST(ModelRegistry, ExtraTimmNamesAndDynamicKey) {
  EXPECT_EQ(parse_arch("vit_small_patch8_224").vit().patch_size, 8);
  EXPECT_EQ(parse_arch("vit_small_patch8_224").name, "vit_small_patch8_224");
  const ArchConfig m = parse_arch("vit_base_patch16_224:dynamic_img_size=1,classes=3");
  EXPECT_TRUE(m.vit().dynamic_img_size);
  EXPECT_TRUE(parse_arch("vit:dynamic_img_size=1").vit().dynamic_img_size);  // a ViTConfig key too
  EXPECT_THROW(parse_arch("vit:flavor=dinov2,dynamic_img_size=1"), std::invalid_argument);
  EXPECT_EQ(m.vit().num_classes, 3);
  EXPECT_THROW(parse_arch("resnet18:dynamic_img_size=1"), std::invalid_argument);
  EXPECT_THROW(parse_arch("vit:dynamic_img_size=maybe"), std::invalid_argument);
  EXPECT_THROW(parse_arch("vit_nonesuch"), std::invalid_argument);
}

// ---- loading errors name the key ------------------------------------------------------------------------------

TEST(ModelLoad, ErrorsNameTheKey) {
  const std::string arch = "vit:dim=16,depth=1,heads=2,patch=8,img=16,classes=2";
  WeightMap w = to_weight_map(init_weights(arch, 0));
  WeightMap missing = w;
  missing.erase("blocks.0.attn.qkv.weight");
  EXPECT_NE(error_of([&] { build_model(arch, missing); }).find("missing keys: blocks.0.attn.qkv.weight"), std::string::npos);
  WeightMap extra = w;
  extra["blocks.0.attn.bogus"] = Tensor::zeros({1});
  EXPECT_NE(error_of([&] { build_model(arch, extra); }).find("unexpected keys: blocks.0.attn.bogus"), std::string::npos);
  LoadReport r;
  EXPECT_NO_THROW(build_model(arch, extra, /*strict=*/false, &r));
  ASSERT_EQ(r.unexpected.size(), 1u);
  WeightMap bad = w;
  bad["head.weight"] = Tensor::zeros({3, 16});
  const std::string e = error_of([&] { build_model(arch, bad); });
  EXPECT_NE(e.find("'head.weight' has shape [3, 16], the model needs [2, 16]"), std::string::npos) << e;
  // f16 weights are converted, not rejected.
  WeightMap half = w;
  half["head.weight"] = w["head.weight"].to(DType::f16);
  EXPECT_NO_THROW(build_model(arch, half));
}

TEST(ModelLoad, InputChecks) {
  auto vit = build_model_seed("vit:dim=16,depth=1,heads=2,patch=8,img=16,classes=2", 0);
  EXPECT_NE(error_of([&] { vit->forward(Tensor::zeros({1, 3, 24, 16})); }).find("dynamic_img_size"), std::string::npos);
  EXPECT_NE(error_of([&] { vit->forward(Tensor::zeros({1, 1, 16, 16})); }).find("input must be [B, 3, H, W]"),
            std::string::npos);
  auto dyn = build_model_seed("vit:dim=16,depth=1,heads=2,patch=8,img=16,classes=2,dynamic_img_size=1", 0);
  EXPECT_NE(error_of([&] { dyn->forward(Tensor::zeros({1, 3, 20, 16})); }).find("multiples of the patch size 8"),
            std::string::npos);
  auto sk = build_model_skeleton("resnet18");
  EXPECT_NE(error_of([&] { sk->forward(Tensor::zeros({1, 3, 32, 32})); }).find("without weights"), std::string::npos);
}

// ---- fusion, early stop, interventions, determinism ---------------------------------------------------------

float max_abs_diff(const Tensor& a, const Tensor& b) {
  auto x = a.contiguous().to_vector(), y = b.contiguous().to_vector();
  EXPECT_EQ(x.size(), y.size());
  float m = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) m = std::max(m, std::fabs(x[i] - y[i]));
  return m;
}

TEST(ModelForwardBehaviour, EarlyStopReturnsTheDeepestTap) {
  auto m = build_model_seed("resnet:layers=1,1,1,1,block=basic,classes=3", 2);
  const Tensor x = test::hash_input({1, 3, 32, 32}, 2);
  TapSet t = capture_none({"layer2"});
  const Tensor y = m->forward(x, t);
  EXPECT_EQ(shape_str(y.shape()), "[1, 128, 4, 4]");
  EXPECT_EQ(max_abs_diff(y, captured(t, "layer2")), 0.f);
  EXPECT_EQ(t.captured().size(), 1u);
  TapSet full = capture_none({"layer2", "fc"});
  EXPECT_EQ(shape_str(m->forward(x, full).shape()), "[1, 3]");
  // An intervention alone never stops the forward.
  TapSet z;
  z.scale("layer1", 2.f);
  EXPECT_EQ(shape_str(m->forward(x, z).shape()), "[1, 3]");
}

TEST(ModelForwardBehaviour, InterventionReplacesDownstream) {
  auto m = build_model_seed("resnet:layers=1,1,1,1,block=basic,classes=3", 2);
  TapSet t;
  t.zero("avgpool");
  const Tensor y = m->forward(test::hash_input({2, 3, 32, 32}, 3), t);
  // fc(0) = its bias.
  const auto bias = init_weights("resnet:layers=1,1,1,1,block=basic,classes=3", 2).back();
  ASSERT_EQ(bias.name, "fc.bias");
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t j = 0; j < 3; ++j) EXPECT_EQ(y.at({b, j}), bias.f32()[j]);
  // Replaced attention maps feed the attention output (o = probs @ v): uniform maps give the mean of v.
  auto v = build_model_seed("vit:dim=16,depth=1,heads=2,patch=8,img=16,classes=2", 1);
  TapSet a = capture_none({"blocks.0.attn"});
  a.replace("blocks.0.attn.softmax", Tensor::full({1, 2, 5, 5}, 0.2f));  // 4 patches + CLS, 2 heads
  const Tensor xa = test::hash_input({1, 3, 16, 16}, 4);
  v->forward(xa, a);
  TapSet plain = capture_none({"blocks.0.attn"});
  v->forward(xa, plain);
  EXPECT_GT(max_abs_diff(captured(a, "blocks.0.attn"), captured(plain, "blocks.0.attn")), 0.f);
  // Every token attends uniformly: the attention output is the same for every token.
  const Tensor o = captured(a, "blocks.0.attn");
  for (int64_t n = 1; n < o.size(1); ++n)
    for (int64_t d = 0; d < o.size(2); ++d) EXPECT_NEAR(o.at({0, n, d}), o.at({0, 0, d}), 1e-5f);
}

TEST(ModelForwardBehaviour, HooksPoolAblateAndNameErrors) {
  auto v = build_model_seed("vit:dim=16,depth=1,heads=2,patch=8,img=16,classes=2,reg=2", 1);
  const Tensor x = test::hash_input({2, 3, 16, 16}, 6);
  TapSet t = capture_none({"blocks.0", "patch_embed"});
  t.capture("blocks.0", Pool::mean);
  t.capture("patch_embed", Pool::mean);
  v->forward(x, t);
  // mean pools the patch tokens: after the CLS + 2 registers in blocks.N, all tokens of patch_embed.
  const Tensor blk = captured(t, "blocks.0:none"), pe = captured(t, "patch_embed:none");
  const Tensor blk_mean = captured(t, "blocks.0:mean"), pe_mean = captured(t, "patch_embed:mean");
  for (int64_t d = 0; d < 16; ++d) {
    double a = 0, b = 0;
    for (int64_t n = 3; n < 7; ++n) a += blk.at({1, n, d});
    for (int64_t n = 0; n < 4; ++n) b += pe.at({1, n, d});
    EXPECT_NEAR(blk_mean.at({1, d}), a / 4, 1e-5);
    EXPECT_NEAR(pe_mean.at({1, d}), b / 4, 1e-5);
  }
  // Ablating every head before proj leaves proj's bias.
  TapSet ab = capture_none({"blocks.0.attn.proj"});
  ab.ablate_heads("blocks.0.attn.norm", {0, 1});
  v->forward(x, ab);
  const auto sd = init_weights("vit:dim=16,depth=1,heads=2,patch=8,img=16,classes=2,reg=2", 1);
  const float* bias = nullptr;
  for (const auto& nt : sd)
    if (nt.name == "blocks.0.attn.proj.bias") bias = nt.f32();
  ASSERT_NE(bias, nullptr);
  EXPECT_EQ(captured(ab, "blocks.0.attn.proj").at({1, 3, 5}), bias[5]);
  // A hook naming no tap is an error that names it.
  TapSet bad = capture_none({"blocks.7"});
  EXPECT_NE(error_of([&] { v->forward(x, bad); }).find("no tap named 'blocks.7'"), std::string::npos);
}

TEST(ModelForwardBehaviour, FusedAndUnfusedAgree) {
  auto m = build_model_seed("resnet:layers=1,2,1,1,width=16,groups=2,classes=3", 5);
  const Tensor x = test::hash_input({2, 3, 40, 40}, 5);
  TapSet none;
  const Tensor fused = m->forward(x, none);
  TapSet all = capture_none({"all"});
  const Tensor unfused = m->forward(x, all);
  const float scale = max_abs_diff(fused, Tensor::zeros(fused.shape()));
  EXPECT_LE(max_abs_diff(fused, unfused), 1e-5f * scale);
  EXPECT_GT(max_abs_diff(captured(all, "layer1.0.bn1"), captured(all, "layer1.0.conv1")), 0.f);
}

// Every CPU fast path a model takes (packed convs on all three A paths: im2col stem, per-tap 3x3, 1x1 GEMM and
// strided 1x1 downsample; grouped convs; packed linears; attention), twice per thread count.
TEST(ModelForwardBehaviour, SameBitsForAnyThreadCount) {
  for (const std::string arch : {"resnet:layers=1,1,1,1,block=basic,classes=3", "resnet:layers=1,1,1,1,classes=3",
                                 "resnet:layers=1,1,1,1,width=8,groups=4,classes=3",
                                 "vit:dim=32,depth=2,heads=4,patch=8,img=32,classes=3,reg=1",
                                 "vit:dim=32,depth=2,heads=4,patch=8,img=32,classes=3,qk_norm=1,mlp=swiglu_packed,"
                                 "class_token=0,global_pool=map",
                                 "vit:flavor=dinov2,dim=32,depth=1,heads=2,patch=8,img=32,mlp=swiglufused"}) {
    auto m = build_model_seed(arch, 9);
    const Tensor x = test::hash_input({3, 3, 32, 32}, 9);
    test::expect_same_bits_across_threads([&] { return std::vector<Tensor>{m->forward(x)}; }, {1, 2, 3, 2}, arch);
  }
}

// A DINOv2 hub checkpoint as load_weight_map hands it over (weights_tools' canonical timm names: no mask_token,
// reg_token, fc1/fc2 for w12/w3, the CLS position folded into cls_token) gives the hub model the same bits.
TEST(ModelLoad, HubArchTakesCanonicalNames) {
  for (const std::string arch : {"vit:flavor=dinov2,dim=16,depth=1,heads=2,patch=8,img=16,mlp=swiglufused,reg=4,init_values=1.0",
                                 "vit:flavor=dinov2,dim=16,depth=2,heads=2,patch=8,img=16"}) {
    SCOPED_TRACE(arch);
    std::vector<NamedTensor> sd = init_weights(arch, 3);
    test::perturb(sd);  // non-zero cls / register tokens
    weights::StateDict file;
    for (const NamedTensor& t : sd)
      file.tensors.push_back(weights::make_owned_tensor(t.name, t.dtype, t.shape, t.bytes));
    weights::LayoutPlan plan;
    const weights::StateDict canon = weights::to_canonical(file, &plan);
    ASSERT_EQ(plan.from, weights::Layout::dinov2_hub);
    WeightMap w;
    for (const auto& t : canon.tensors) {
      Tensor x = Tensor::empty(Shape(t.shape.begin(), t.shape.end()), t.dtype);
      std::memcpy(x.raw(), t.data, t.nbytes());
      w[t.name] = x;
    }
    EXPECT_FALSE(w.count("mask_token"));
    auto from_canon = build_model(arch, w);
    auto from_hub = build_model(arch, to_weight_map(sd));
    for (const Shape& in : {Shape{2, 3, 16, 16}, Shape{1, 3, 24, 40}}) {  // native and interpolated
      const Tensor x = test::hash_input(in, 5);
      EXPECT_EQ(max_abs_diff(from_canon->forward(x), from_hub->forward(x)), 0.f) << shape_str(in);
    }
  }
}

// A real torch.hub-layout checkpoint (torch.save'd by weights_tools/reference/weights_fixtures.py, chunked blocks
// under teacher.backbone.) goes through `embed --weights`' loader into the hub arch: same bits as the plain hub file.
TEST(ModelLoad, HubCheckpointThroughLoadWeightMap) {
  const std::string arch = "vit:flavor=dinov2,dim=32,depth=2,heads=2,patch=14,img=28,chans=1,mlp_ratio=2,reg=4,init_values=1.0";
  auto via_loader = build_model(arch, load_weight_map(test::fixture("weights/hub_dinov2_reg_chunked.pth").string()));
  WeightMap raw;  // the unchunked hub file, names as the hub writes them
  const weights::Checkpoint ck = weights::load_checkpoint(test::fixture("weights/hub_dinov2_reg.pth").string());
  for (const auto& t : ck.sd.tensors) {
    Tensor x = Tensor::empty(Shape(t.shape.begin(), t.shape.end()), t.dtype);
    std::memcpy(x.raw(), t.data, t.nbytes());
    raw[t.name] = x;
  }
  ASSERT_TRUE(raw.count("mask_token") && raw.count("register_tokens"));
  auto direct = build_model(arch, raw);
  for (const Shape& in : {Shape{2, 1, 28, 28}, Shape{1, 1, 42, 56}}) {
    const Tensor x = test::hash_input(in, 2);
    EXPECT_EQ(max_abs_diff(via_loader->forward(x), direct->forward(x)), 0.f) << shape_str(in);
  }
}

}  // namespace
}  // namespace tabula

TEST(ModelTaps, PooledCapturesEqualTheReferencePoolOfTheFullTap) {
  using namespace tabula;
  // A capture pools where the tensor lives, whatever its layout (per-head q/k views, channels-last maps): the
  // result must be ref::pool of the full tap.
  const std::string arch = "vit:dim=48,depth=1,heads=3,patch=8,img=32,qk_norm=1,classes=0";
  auto m = build_model_seed(arch, 1);
  Tensor x = Tensor::empty({2, 3, 32, 32});
  std::mt19937 g(3);
  std::normal_distribution<float> nd;
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = nd(g);
  for (const char* tap : {"blocks.0.attn.q_norm", "blocks.0.attn.k_norm", "blocks.0.attn.qkv", "blocks.0"})
    for (Pool p : {Pool::avg, Pool::max}) {  // max too: a LayerNorm output's mean is ~0 whatever its layout
      TapSet full, pooled;
      full.capture(tap, Pool::none);
      pooled.capture(tap, p);
      m->forward(x, full);
      m->forward(x, pooled);
      const Tensor& f = full.captured().begin()->second;
      const Tensor want = ref::pool(f, p, f.dim() == 3 ? 1 : 0);
      const Tensor& got = pooled.captured().begin()->second;
      auto rep = validate::compare(got, want, {1e-6, 1e-5});
      EXPECT_TRUE(rep.ok) << tap << " " << pool_name(p) << ": " << rep.message;
    }
  auto r = build_model_seed("resnet:layers=1,1,1,1,block=bottleneck,classes=3", 0);
  Tensor xr = Tensor::empty({2, 3, 64, 64});
  for (int64_t i = 0; i < xr.numel(); ++i) xr.data<float>()[i] = nd(g);
  for (const char* tap : {"maxpool", "layer1.0.conv2", "layer2", "layer4"}) {
    TapSet full, pooled;
    full.capture(tap, Pool::none);
    pooled.capture(tap, Pool::avg);
    r->forward(xr, full);
    r->forward(xr, pooled);
    const Tensor& f = full.captured().begin()->second;
    auto rep = validate::compare(pooled.captured().begin()->second, ref::pool(f, Pool::avg), {1e-6, 1e-5});
    EXPECT_TRUE(rep.ok) << tap << ": " << rep.message;
  }
}
