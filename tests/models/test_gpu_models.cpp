// Whole models on the GPU (Model::to_device + ops:: dispatch) against the same model's CPU forward, which the
// fixture tests prove equal to torch: pooled taps agree to the precision's tolerance (cosine >= 0.9999 in bf16,
// as the CUDA issue asks), interventions act the same, and two GPU runs give the same bits. Every test skips
// on a machine without a CUDA device (label gpu: the suite names start with Gpu).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <string>

#include "engine/backend.h"
#include "engine/hooks.h"
#include "util/npy.h"
#include "engine/system.h"
#include "util/table.h"
#include "models/device.h"
#include "models/registry.h"
#include "models/vit.h"
#include "tests/test_util.h"

#if TABULA_HAVE_CUDA
#include "engine/cuda/ops.h"
#endif

using namespace tabula;

namespace {

#define REQUIRE_GPU()                                                       \
  do {                                                                      \
    if (!TABULA_HAVE_CUDA) GTEST_SKIP() << "built without the CUDA backend"; \
    if (cuda_devices().empty()) GTEST_SKIP() << "no CUDA device on this machine"; \
  } while (0)

[[maybe_unused]] Tensor normal_batch(const Shape& s, uint32_t seed) {  // unused without the CUDA backend
  Tensor x = Tensor::empty(s);
  std::mt19937 g(seed);
  std::normal_distribution<float> nd;
  float* p = x.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i) p[i] = nd(g);
  return x;
}

struct Agreement {
  double min_cosine = 1, max_rel = 0;  // cosine per row; |a-b| / max|b| over the tensor
};
Agreement agree(const Tensor& got_in, const Tensor& want_in) {
  Tensor got = got_in.contiguous(), want = want_in.contiguous();
  EXPECT_EQ(got.shape(), want.shape());
  Agreement a;
  const int64_t rows = want.size(0), cols = want.numel() / rows;
  const float* g = got.data<float>();
  const float* w = want.data<float>();
  double peak = 0, worst = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    peak = std::max(peak, std::abs(static_cast<double>(w[i])));
    worst = std::max(worst, std::abs(static_cast<double>(g[i]) - w[i]));
  }
  a.max_rel = peak > 0 ? worst / peak : worst;
  for (int64_t r = 0; r < rows; ++r) {
    double dot = 0, ng = 0, nw = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const double u = g[r * cols + c], v = w[r * cols + c];
      dot += u * v, ng += u * u, nw += v * v;
    }
    a.min_cosine = std::min(a.min_cosine, ng > 0 && nw > 0 ? dot / std::sqrt(ng * nw) : (ng == nw ? 1.0 : 0.0));
  }
  return a;
}

// Captures every pattern in `taps` (pooled) from one forward of `arch` (seed 0) on the CPU and on cuda:0 in
// `precision`, and checks each capture.
void expect_gpu_matches_cpu(const std::string& arch, const Shape& input, const std::vector<std::string>& taps,
                            const std::string& precision, double min_cosine, double max_rel,
                            const std::function<void(TapSet&)>& interventions = {}) {
#if TABULA_HAVE_CUDA
  SCOPED_TRACE(arch + " " + precision);
  Tensor x = normal_batch(input, 7);
  TapSet cpu_taps, gpu_taps;
  for (const std::string& t : taps) {
    // feature maps and token sequences pooled on the device; [B, C] outputs (fc, head, cls) as they are
    // (a LayerNorm output without affine has mean ~0 over its normalised dim: q_norm/k_norm are compared whole)
    const bool whole = t == "fc" || t == "head" || t == "x_norm_clstoken" || t == "attn_pool" ||
                       t == "visual.ln_contrast" || t == "visual.proj_contrast" ||
                       t.find("q_norm") != std::string::npos || t.find("k_norm") != std::string::npos;
    const Pool p = whole ? Pool::none : Pool::avg;
    cpu_taps.capture(t, p);
    gpu_taps.capture(t, p);
  }
  if (interventions) {
    interventions(cpu_taps);
    interventions(gpu_taps);
  }
  auto cpu = build_model_seed(arch, 0);
  cpu->forward(x, cpu_taps);

  const int dev = select_device("cuda:0", precision);
  auto gpu = build_model_seed(arch, 0);
  gpu->to_device(dev);
  Tensor out = gpu->forward(upload(x, dev), gpu_taps);
  EXPECT_TRUE(on_gpu(out)) << "the forward's result should stay on the device";
  ASSERT_EQ(cpu_taps.captured().size(), gpu_taps.captured().size());
  for (const auto& [key, want] : cpu_taps.captured()) {
    const Tensor& got = gpu_taps.captured().at(key);
    EXPECT_FALSE(on_gpu(got)) << key << ": captures come back to the host";
    const Agreement a = agree(got, want);
    EXPECT_GE(a.min_cosine, min_cosine) << key;
    EXPECT_LE(a.max_rel, max_rel) << key;
  }
  cuda::set_precision(cuda::Precision::fp32);
#else
  (void)arch, (void)input, (void)taps, (void)precision, (void)min_cosine, (void)max_rel, (void)interventions;
#endif
}

Tensor npy_tensor(const std::string& path) {
  NpyArray a = read_npy(path);
  return Tensor::from_vector({a.shape.at(0), a.numel() / a.shape.at(0)}, a.to_f32());
}

const char* kResNet = "resnet:layers=1,1,1,1,block=bottleneck,classes=10";
const char* kViT = "vit:dim=96,depth=3,heads=3,patch=16,img=64,classes=10";
const char* kDino = "vit:flavor=dinov2,dim=64,depth=2,heads=2,patch=14,img=56,reg=4,init_values=1.0";

}  // namespace

TEST(GpuModels, ResNetEveryTapMatchesCpuInEachPrecision) {
  REQUIRE_GPU();
  const std::vector<std::string> taps = {"conv1", "bn1", "maxpool", "layer1", "layer2.0.conv2", "layer3", "layer4", "avgpool", "fc"};
  expect_gpu_matches_cpu(kResNet, {3, 3, 96, 96}, taps, "fp32", 0.999999, 1e-4);
  expect_gpu_matches_cpu(kResNet, {3, 3, 96, 96}, taps, "tf32", 0.9999, 1e-2);
  expect_gpu_matches_cpu(kResNet, {3, 3, 96, 96}, taps, "bf16", 0.9999, 5e-2);
}

TEST(GpuModels, ViTEveryTapMatchesCpuInEachPrecision) {
  REQUIRE_GPU();
  const std::vector<std::string> taps = {"patch_embed", "blocks.0", "blocks.1.attn", "blocks.1.mlp.fc1",
                                         "blocks.2", "norm", "head"};
  expect_gpu_matches_cpu(kViT, {3, 3, 64, 64}, taps, "fp32", 0.999999, 1e-4);
  expect_gpu_matches_cpu(kViT, {3, 3, 64, 64}, taps, "tf32", 0.9999, 1e-2);
  expect_gpu_matches_cpu(kViT, {3, 3, 64, 64}, taps, "bf16", 0.9999, 5e-2);
}

TEST(GpuModels, ViTOptionsMatchCpu) {
  REQUIRE_GPU();
  // qk_norm (LayerNorm per head on strided q/k views), timm SwiGLU, the attention-pool head; DINOv2's fused SwiGLU.
  const char* timm_opts = "vit:dim=96,depth=2,heads=3,patch=16,img=64,qk_norm=1,mlp=swiglu,global_pool=map,classes=10";
  expect_gpu_matches_cpu(timm_opts, {2, 3, 64, 64}, {"blocks.0.attn.q_norm", "blocks.1", "attn_pool", "head"}, "fp32",
                         0.999999, 1e-4);
  // bf16: the pooled features (attn_pool, what embeddings use; the cosine >= 0.9999) and a block output.
  // The 10 logits of this random head measured cosine 0.99989 on an H100 -- bf16 activations end to end, as torch.
  expect_gpu_matches_cpu(timm_opts, {2, 3, 64, 64}, {"blocks.1", "attn_pool"}, "bf16", 0.9999, 5e-2);
  const char* fused = "vit:flavor=dinov2,dim=64,depth=2,heads=2,patch=14,img=56,mlp=swiglufused,init_values=1.0";
  expect_gpu_matches_cpu(fused, {2, 3, 56, 56}, {"blocks.1", "x_norm_clstoken"}, "fp32", 0.999999, 1e-4);
}

TEST(GpuModels, ConchPoolersMatchCpu) {
  REQUIRE_GPU();
  // CONCH's attentional poolers on the device: the shared query's projection, [k; v] in one GEMM (separate
  // q/k/v weights stacked at upload), the cross-attention and its map, proj_contrast; 48 px resamples the pos-embed.
  const char* conch = "conch:dim=64,depth=2,heads=4,embed_dim=48,caption_dim=64,img=64";
  const std::vector<std::string> taps = {"visual.trunk.blocks.1", "visual.attn_pool_contrast.attn.softmax",
                                         "visual.attn_pool_contrast", "visual.ln_contrast", "visual.proj_contrast",
                                         "visual.ln_caption"};
  expect_gpu_matches_cpu(conch, {2, 3, 64, 64}, taps, "fp32", 0.999999, 1e-4);
  expect_gpu_matches_cpu(conch, {2, 3, 48, 48}, taps, "fp32", 0.999999, 1e-4);
  expect_gpu_matches_cpu(conch, {2, 3, 64, 64}, {"visual.trunk.blocks.1", "visual.ln_contrast"}, "bf16", 0.9999,
                         5e-2);
}

TEST(GpuModels, Dinov3AndCaViTMatchCpu) {
  REQUIRE_GPU();
  // DINOv3: RoPE on the device (ops::rope_apply; the tables built on the host and placed there), storage tokens,
  // SwiGLU, a rectangular input. CA-ViT: one conv over every channel, 5 channels.
  const char* d3 = "dinov3:dim=64,depth=2,heads=2,patch=16,ffn=swiglu";
  const std::vector<std::string> d3_taps = {"patch_embed", "blocks.0.attn", "blocks.1", "norm", "x_norm_clstoken"};
  expect_gpu_matches_cpu(d3, {2, 3, 64, 48}, d3_taps, "fp32", 0.999999, 1e-4);
  expect_gpu_matches_cpu(d3, {2, 3, 64, 48}, {"blocks.1", "x_norm_clstoken"}, "bf16", 0.9999, 5e-2);
  const char* ca = "ca_vit:dim=64,depth=2,heads=2,patch=16,img=64";
  const std::vector<std::string> ca_taps = {"patch_embed", "blocks.0", "blocks.1.attn.softmax", "norm", "head"};
  expect_gpu_matches_cpu(ca, {2, 5, 64, 64}, ca_taps, "fp32", 0.999999, 1e-4);
  expect_gpu_matches_cpu(ca, {2, 5, 64, 64}, {"blocks.1", "head"}, "bf16", 0.9999, 5e-2);
}

TEST(GpuModels, Dinov2InterpolatesPosEmbedOnTheDevice) {
  REQUIRE_GPU();
  // 84 px on a 56-px (4x4 grid) model: the hub's bicubic pos-embed interpolation runs on the GPU; registers too.
  const std::vector<std::string> taps = {"blocks.0", "norm", "x_norm_clstoken"};
  expect_gpu_matches_cpu(kDino, {1, 3, 84, 84}, taps, "fp32", 0.999999, 1e-4);
  expect_gpu_matches_cpu(kDino, {3, 3, 84, 84}, taps, "bf16", 0.9999, 5e-2);
}

TEST(GpuModels, AttentionMapsAndInterventionsActAsOnCpu) {
  REQUIRE_GPU();
  auto interventions = [](TapSet& t) {
    t.ablate_heads("blocks.0.attn.proj", {1});
    t.scale("blocks.1.mlp.fc2", 0.5f);
    t.zero("blocks.2.ls1");
  };
  expect_gpu_matches_cpu(kViT, {2, 3, 64, 64}, {"blocks.0.attn.softmax", "blocks.1", "head"}, "fp32", 0.999999, 1e-4,
                         interventions);
}

TEST(GpuModels, SwinShiftedPaddedWindowsMatchCpu) {
  REQUIRE_GPU();
  // Shifted windows and their masks, padding to whole windows (40 px: 10 -> 5 -> 3 token maps), odd patch merging:
  // biased_attention and the tensor-op window partition on the device; then CTransPath's ConvStem (BN folded).
  const char* swin = "swin:dim=16,depths=2,2,2,heads=2,2,4,window=4,img=40,classes=10";
  const std::vector<std::string> taps = {"patch_embed", "layers.0.blocks.1", "layers.1", "layers.2", "norm", "head"};
  expect_gpu_matches_cpu(swin, {3, 3, 40, 40}, taps, "fp32", 0.999999, 1e-4);
  expect_gpu_matches_cpu(swin, {3, 3, 40, 40}, taps, "bf16", 0.9999, 5e-2);
  expect_gpu_matches_cpu("swin:dim=16,depths=2,2,heads=2,4,window=4,img=32,classes=0,embed_layer=convstem",
                         {2, 3, 32, 32}, {"patch_embed", "layers.1", "head"}, "fp32", 0.999999, 1e-4);
}

TEST(GpuModels, BitwiseDeterministicRunToRun) {
  REQUIRE_GPU();
#if TABULA_HAVE_CUDA
  for (const char* arch : {kResNet, kViT}) {
    const int dev = select_device("cuda:0", "bf16");
    auto m = build_model_seed(arch, 3);
    m->to_device(dev);
    Tensor x = upload(normal_batch(arch == kResNet ? Shape{4, 3, 64, 64} : Shape{4, 3, 64, 64}, 1), dev);
    Tensor a = to_host(m->forward(x)), b = to_host(m->forward(x));
    ASSERT_EQ(a.nbytes(), b.nbytes());
    EXPECT_EQ(0, std::memcmp(a.raw(), b.raw(), a.nbytes())) << arch;
  }
  cuda::set_precision(cuda::Precision::fp32);
#endif
}

TEST(GpuModels, CudaGraphReplayEqualsEagerForward) {
  REQUIRE_GPU();
#if TABULA_HAVE_CUDA
  const int dev = select_device("cuda:0", "bf16");
  auto m = build_model_seed(kViT, 0);
  m->to_device(dev);
  Tensor x = upload(normal_batch({2, 3, 64, 64}, 1), dev);
  Tensor eager = to_host(m->forward(x));
  cuda::Graph g(dev, [&] { return m->forward(x); });
  g.replay();
  cuda::synchronize(dev);
  Tensor replayed = to_host(g.output());
  EXPECT_EQ(0, std::memcmp(eager.raw(), replayed.raw(), eager.nbytes()));
  cuda::set_precision(cuda::Precision::fp32);
#endif
}

TEST(GpuModels, EmbedOnCudaEqualsCpuWithinPrecision) {
  REQUIRE_GPU();
  // tabula synth -> embed on cpu and on cuda (fp32 and bf16): same rows, same widths, close values.
  const auto dir = test::scratch_dir();
  auto synth = test::run_tabula("synth cellpainting --quick --out '" + (dir / "data").string() + "'");
  ASSERT_EQ(synth.exit_code, 0) << synth.err;
  const std::string common = "embed --arch resnet18 --data '" + (dir / "data" / "load_data.csv").string() +
                             "' --seed 0 --layers layer2,avgpool --batch 8 --size 64 --quiet";
  auto cpu = test::run_tabula(common + " --out '" + (dir / "cpu").string() + "'");
  ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
  for (const char* p : {"fp32", "bf16"}) {
    const std::string out = (dir / (std::string("cuda_") + p)).string();
    auto gpu = test::run_tabula(common + " --device cuda --precision " + p + " --out '" + out + "'");
    ASSERT_EQ(gpu.exit_code, 0) << gpu.err;
    for (const char* layer : {"layer2", "avgpool"}) {
      Tensor want = npy_tensor((dir / "cpu" / (std::string(layer) + ".npy")).string());
      Tensor got = npy_tensor(out + "/" + layer + ".npy");
      const Agreement a = agree(got, want);
      EXPECT_GE(a.min_cosine, std::string(p) == "fp32" ? 0.999999 : 0.9999) << p << " " << layer;
    }
  }
  // The evaluator's numbers on those embeddings agree: per-compound replicate-retrieval mAP (copairs semantics,
  // DMSO negatives per plate) from the GPU runs vs the CPU run. fp32: the same ranks, so the same mAP; bf16: a
  // near-tie may swap two neighbours of a query, so the mean over compounds is compared.
  auto map_of = [&](const std::string& run) {
    const std::string mdir = (dir / ("map_" + run)).string();
    auto r = test::run_tabula("eval map --features '" + (dir / run).string() + "':avgpool --pos-sameby Metadata_JCP2022 "
                              "--neg-sameby Metadata_Plate --neg-diffby Metadata_JCP2022 --reference-index "
                              "Metadata_pert_type=negcon --out '" + mdir + "'");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    tabula::Table t = tabula::read_csv(mdir + "/mean_average_precision.csv");
    std::map<std::string, double> m;
    for (size_t i = 0; i < t.rows(); ++i)
      m[t.column("Metadata_JCP2022")[i]] = std::stod(t.column("mean_average_precision")[i]);
    return m;
  };
  const auto cpu_map = map_of("cpu");
  ASSERT_GE(cpu_map.size(), 5u);
  for (const char* p : {"fp32", "bf16"}) {
    const auto gpu_map = map_of(std::string("cuda_") + p);
    ASSERT_EQ(gpu_map.size(), cpu_map.size()) << p;
    double worst = 0, sum_cpu = 0, sum_gpu = 0;
    for (const auto& [compound, v] : cpu_map) {
      worst = std::max(worst, std::abs(gpu_map.at(compound) - v));
      sum_cpu += v, sum_gpu += gpu_map.at(compound);
    }
    if (std::string(p) == "fp32") EXPECT_LE(worst, 1e-6) << "per-compound mAP, fp32";
    else EXPECT_LE(std::abs(sum_gpu - sum_cpu) / static_cast<double>(cpu_map.size()), 0.02) << "mean mAP, bf16";
  }
}

// ConvNeXt: channels-last activations, the direct depthwise kernel, LayerNorm over channels; the Linear MLP and
// the 1x1-conv MLP (conv_mlp). The CPU side fuses fc2 + LayerScale + residual where no tap looks; the GPU does not.
TEST(GpuModels, ConvNeXtEveryTapMatchesCpuInEachPrecision) {
  REQUIRE_GPU();
  const std::vector<std::string> taps = {"stem", "stages.0.blocks.0.conv_dw", "stages.0.blocks.0", "stages.1",
                                         "stages.2.blocks.0", "stages.3", "head"};
  for (const char* arch : {"convnext:dims=32,48,64,96,depths=1,2,1,1,classes=10",
                           "convnext:dims=16,32,48,64,depths=1,1,2,1,conv_mlp=1,classes=10"}) {
    expect_gpu_matches_cpu(arch, {3, 3, 96, 128}, taps, "fp32", 0.999999, 1e-4);
    expect_gpu_matches_cpu(arch, {3, 3, 96, 128}, taps, "bf16", 0.9999, 5e-2);
  }
}
