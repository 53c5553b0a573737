// The CUDA backend beyond the op table (op_cases.cpp runs every op on it against the reference): device copies,
// the caching allocator, converted weights, run-to-run determinism, whole ViT/ResNet blocks, shape errors, graph
// capture and the 16-bit storage types (engine/validate.h: per-run seed, NaN-poisoned outputs, worst-element
// report). Suites named Gpu* carry the ctest label `gpu` and skip without a device; CudaDevice* tests need no
// device (argument parsing) and run everywhere the backend is built.
//
// Tolerances by precision. fp32 ops: ~1e-5. bf16/fp16 GEMMs and attention round their inputs to 16 bits and
// accumulate in fp32, so they are compared with the reference run on the same rounded inputs (only the
// summation order differs: a tight tolerance that still catches layout or epilogue bugs). tf32 (and cuDNN's
// tensor-op math used for conv in the 16-bit precisions) rounds inside the hardware: compared with a tolerance
// that grows with sqrt(K), the size of the rounding noise of a K-long dot product.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>

#include "engine/backend.h"
#include "engine/ops.h"
#include "engine/system.h"
#include "engine/validate.h"
#include "tests/engine/op_cases.h"
#include "tests/engine/op_test_util.h"

#include "engine/cuda/device_name.h"

// Needs no device and no CUDA build: `--device` is parsed the same way everywhere.
TEST(CudaDevice, ParsesDeviceNames) {
  using tabula::cuda::parse_device;
  EXPECT_EQ(parse_device("cpu"), -1);
  EXPECT_EQ(parse_device("cuda"), 0);
  EXPECT_EQ(parse_device("cuda:0"), 0);
  EXPECT_EQ(parse_device("cuda:3"), 3);
  EXPECT_EQ(parse_device("cuda:12"), 12);
  EXPECT_EQ(parse_device("cuda:999"), 999);
  for (const char* bad :
       {"", "gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:1a", "CUDA:0", "cuda:1000", "cuda:123456", " cuda"})
    EXPECT_THROW(parse_device(bad), std::invalid_argument) << bad;
}

#if TABULA_HAVE_CUDA
#include "engine/cuda/ops.h"

using namespace tabula;
using validate::random_tensor;
using test::pick;
using test::rng_for;
using test::uni;
using test::gemm_tol;
using test::rounded;
using validate::Tolerance;

namespace {


#define REQUIRE_GPU()                                                          \
  do {                                                                         \
    if (cuda_devices().empty()) GTEST_SKIP() << "no CUDA device on this machine"; \
  } while (0)

// Sets the process precision for one scope (tests must not leak it into each other).
struct PrecisionScope {
  explicit PrecisionScope(cuda::Precision p) : saved(cuda::precision()) { cuda::set_precision(p); }
  ~PrecisionScope() { cuda::set_precision(saved); }
  cuda::Precision saved;
};

Tensor dev(const Tensor& h) { return cuda::to_device(h, 0); }

// Runs the device op (outputs poisoned), brings the result back and compares with the reference.
#define EXPECT_GPU_MATCHES(gpu_expr, ref_expr, tol, what)                                                      \
  do {                                                                                                       \
    auto r_ = validate::check([&] { return cuda::to_host(gpu_expr); }, [&] { return ref_expr; }, tol);       \
    EXPECT_TRUE(r_.ok) << what << ": " << r_.message << " (seed " << validate::run_seed()                   \
                       << "; replay with TABULA_TEST_SEED)";                                                 \
  } while (0)

const cuda::Precision kAllPrecisions[] = {cuda::Precision::fp32, cuda::Precision::tf32, cuda::Precision::bf16,
                                          cuda::Precision::fp16};

}  // namespace

TEST(CudaDevice, PrecisionNamesRoundTrip) {
  for (cuda::Precision p : kAllPrecisions) EXPECT_EQ(cuda::precision_from_name(cuda::precision_name(p)), p);
  EXPECT_FALSE(cuda::precision_from_name("fp8").has_value());
}

TEST(GpuDevice, CopiesRoundTripAndRejectHostTensorsInOps) {
  REQUIRE_GPU();
  auto g = rng_for("copies");
  Tensor h = random_tensor({3, 5, 7}, g);
  Tensor back = cuda::to_host(dev(h));
  ASSERT_EQ(back.shape(), h.shape());
  EXPECT_EQ(std::memcmp(back.data<float>(), h.data<float>(), h.nbytes()), 0);
  // a strided host view is uploaded in logical order
  Tensor t = h.transpose(0, 2);
  EXPECT_EQ(cuda::to_host(dev(t)).to_vector(), t.to_vector());
  EXPECT_THROW(backend("test", Device::cuda).relu(h), std::invalid_argument);  // a cpu tensor given to the cuda backend
  EXPECT_THROW(cuda::to_host(dev(h).transpose(0, 1)), std::invalid_argument);  // non-contiguous download
}

TEST(GpuDevice, PinnedUploadMatches) {
  REQUIRE_GPU();
  auto g = rng_for("pinned");
  Tensor h = random_tensor({4, 3, 9, 9}, g);
  cuda::PinnedBuffer pinned(h.nbytes());
  Tensor d = cuda::empty(h.shape(), 0);
  cuda::upload_async(h, pinned, d);
  EXPECT_EQ(cuda::to_host(d).to_vector(), h.to_vector());
}

// to_device goes through the pinned staging ring (4 slots of 8 MiB): a tensor of many slots, one that ends inside a
// slot, and small ones between them come back whole.
TEST(GpuDevice, UploadsThroughTheStagingRingRoundTrip) {
  REQUIRE_GPU();
  auto g = rng_for("ring");
  for (int64_t n : {int64_t{20'000'003}, int64_t{7}, int64_t{2'097'152}, int64_t{1}}) {
    Tensor h = random_tensor({n}, g);
    EXPECT_EQ(cuda::to_host(dev(h)).to_vector(), h.to_vector()) << n << " floats";
  }
}

TEST(GpuDevice, CachingAllocatorServesAWarmForwardWithoutMalloc) {
  REQUIRE_GPU();
  auto g = rng_for("allocator");
  Tensor x = dev(random_tensor({2, 197, 96}, g)), w = dev(random_tensor({384, 96}, g)),
         b = dev(random_tensor({384}, g));
  auto step = [&] { return ops::pool(ops::layer_norm(ops::linear(x, w, b, Activation::gelu), {}, {}), Pool::avg, 1); };
  cuda::to_host(step());  // warm-up: fills the cache and the cuBLASLt algorithm cache
  const auto before = cuda::allocator_stats(0);
  for (int i = 0; i < 3; ++i) cuda::to_host(step());
  const auto after = cuda::allocator_stats(0);
  EXPECT_EQ(after.device_mallocs, before.device_mallocs);
  EXPECT_GT(after.cache_hits, before.cache_hits);
}

TEST(GpuOps, ConvertedWeightsAndContiguousCopies) {
  REQUIRE_GPU();
  auto g = rng_for("linear");
  for (cuda::Precision p : kAllPrecisions) {
    PrecisionScope ps(p);
    // a weight converted once (convert_weight) gives the same bits as rounding it on every call
    Tensor x = random_tensor({13, 96}, g), w = random_tensor({40, 96}, g), b = random_tensor({40}, g);
    Tensor wc = cuda::convert_weight(dev(w));
    EXPECT_EQ(wc.dtype(), p == cuda::Precision::bf16   ? DType::bf16
                          : p == cuda::Precision::fp16 ? DType::f16
                                                       : DType::f32);
    Tensor once = cuda::to_host(ops::linear(dev(x), wc, dev(b))),
           per_call = cuda::to_host(ops::linear(dev(x), dev(w), dev(b)));
    EXPECT_EQ(std::memcmp(once.data<float>(), per_call.data<float>(), once.nbytes()), 0) << cuda::precision_name(p);
    if (p == cuda::Precision::bf16) {
      PrecisionScope other(cuda::Precision::fp16);
      EXPECT_THROW(ops::linear(dev(x), wc, dev(b)), std::invalid_argument);  // converted for another precision
    }
  }
  auto gc = rng_for("cat");
  Tensor patches = random_tensor({2, 256, 96}, gc), x = random_tensor({2, 3, 4, 5}, gc);
  EXPECT_GPU_MATCHES(cuda::contiguous(dev(x).permute({0, 2, 3, 1})), x.permute({0, 2, 3, 1}).contiguous(), Tolerance{},
                     "permute");
  EXPECT_GPU_MATCHES(cuda::contiguous(dev(patches).slice(1, 1, 200, 3)), patches.slice(1, 1, 200, 3).contiguous(),
                     Tolerance{}, "slice");
}

TEST(GpuOps, BitwiseDeterministicRunToRun) {
  REQUIRE_GPU();
  auto g = rng_for("determinism");
  Tensor x = random_tensor({2, 3, 32, 32}, g), w = random_tensor({32, 3, 4, 4}, g), b = random_tensor({32}, g);
  Tensor lw = random_tensor({96, 32}, g), lb = random_tensor({96}, g);
  for (cuda::Precision p : kAllPrecisions) {
    PrecisionScope ps(p);
    auto forward = [&] {
      Tensor f = ops::conv2d(dev(x), dev(w), dev(b), {{4, 4}, {0, 0}, {1, 1}, 1});   // [2, 32, 8, 8]
      Tensor t = cuda::contiguous(f.flatten(2).transpose(1, 2));                     // [2, 64, 32] tokens
      t = ops::layer_norm(t, {}, {});
      Tensor qkv = ops::linear(t, dev(lw), dev(lb), Activation::gelu);               // [2, 64, 96]
      Tensor q = cuda::contiguous(qkv.slice(2, 0, 32).unsqueeze(1));
      Tensor k = cuda::contiguous(qkv.slice(2, 32, 64).unsqueeze(1));
      Tensor v = cuda::contiguous(qkv.slice(2, 64, 96).unsqueeze(1));
      Tensor o = ops::scaled_dot_product_attention(q, k, v);
      return cuda::to_host(ops::pool(cuda::contiguous(o.squeeze(1)), Pool::gem, 1));
    };
    Tensor a = forward(), c = forward();
    ASSERT_EQ(a.nbytes(), c.nbytes());
    EXPECT_EQ(std::memcmp(a.data<float>(), c.data<float>(), a.nbytes()), 0)
        << "two runs differ in " << cuda::precision_name(p);
  }
}

// Whole blocks assembled from the ops, written once for both backends (the namespace is the only difference),
// compared by cosine similarity of the pooled features (>= 0.9999 in every precision) and elementwise in fp32.
namespace {
double cosine(const Tensor& a, const Tensor& b) {
  const auto x = a.to_vector(), y = b.to_vector();
  double xy = 0, xx = 0, yy = 0;
  for (size_t i = 0; i < x.size(); ++i) xy += double(x[i]) * y[i], xx += double(x[i]) * x[i], yy += double(y[i]) * y[i];
  return xy / std::sqrt(xx * yy);
}

struct VitBlockWeights {
  Tensor ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ls1, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b, ls2;
};

// timm's ViT Block (DINOv2 flavour with LayerScale): x + ls1 * attn(norm1(x)); x + ls2 * mlp(norm2(x)).
#define TABULA_VIT_BLOCK(NS, CONTIG)                                                                              \
  [](const Tensor& xb, const VitBlockWeights& wb, int64_t heads) {                                                \
    const int64_t nb = xb.size(0), nt = xb.size(1), nc = xb.size(2);                                              \
    Tensor h = NS::layer_norm(xb, wb.ln1_w, wb.ln1_b, 1e-6);                                                      \
    Tensor qkv = NS::linear(h, wb.qkv_w, wb.qkv_b).view({nb, nt, 3, heads, nc / heads}).permute({2, 0, 3, 1, 4}); \
    Tensor q = CONTIG(qkv.select(0, 0)), k = CONTIG(qkv.select(0, 1)), v = CONTIG(qkv.select(0, 2));              \
    Tensor a = CONTIG(NS::scaled_dot_product_attention(q, k, v).transpose(1, 2)).view({nb, nt, nc});              \
    Tensor y = NS::add(xb, NS::layer_scale(NS::linear(a, wb.proj_w, wb.proj_b), wb.ls1));                         \
    Tensor m =                                                                                                    \
        NS::linear(NS::linear(NS::layer_norm(y, wb.ln2_w, wb.ln2_b, 1e-6), wb.fc1_w, wb.fc1_b, Activation::gelu), \
                   wb.fc2_w, wb.fc2_b);                                                                           \
    return NS::pool(NS::add(y, NS::layer_scale(m, wb.ls2)), Pool::cls_mean, 1);                                   \
  }

Tensor host_contig(const Tensor& t) { return t.contiguous(); }
}  // namespace

TEST(GpuModels, VitBlockMatchesReferenceEveryPrecision) {
  REQUIRE_GPU();
  auto g = rng_for("vit_block");
  const int64_t B = 2, N = 197, C = 192, H = 3;  // ViT-Ti/16 width: 1 CLS + 196 patch tokens
  auto lin = [&](int64_t o, int64_t i) { return random_tensor({o, i}, g, 1.f / std::sqrt(float(i))); };
  VitBlockWeights w{validate::uniform_tensor({C}, g, 0.5f, 1.5f),
                    random_tensor({C}, g, 0.1f),
                    lin(3 * C, C),
                    random_tensor({3 * C}, g, 0.1f),
                    lin(C, C),
                    random_tensor({C}, g, 0.1f),
                    random_tensor({C}, g, 0.5f),
                    validate::uniform_tensor({C}, g, 0.5f, 1.5f),
                    random_tensor({C}, g, 0.1f),
                    lin(4 * C, C),
                    random_tensor({4 * C}, g, 0.1f),
                    lin(C, 4 * C),
                    random_tensor({C}, g, 0.1f),
                    random_tensor({C}, g, 0.5f)};
  Tensor x = random_tensor({B, N, C}, g);
  auto ref_block = TABULA_VIT_BLOCK(ref, host_contig);
  auto gpu_block = TABULA_VIT_BLOCK(ops, cuda::contiguous);
  const Tensor want = ref_block(x, w, H);
  VitBlockWeights wd;
  Tensor* src[] = {&w.ln1_w, &w.ln1_b, &w.qkv_w, &w.qkv_b, &w.proj_w, &w.proj_b, &w.ls1,
                   &w.ln2_w, &w.ln2_b, &w.fc1_w, &w.fc1_b, &w.fc2_w,  &w.fc2_b,  &w.ls2};
  Tensor* dst[] = {&wd.ln1_w, &wd.ln1_b, &wd.qkv_w, &wd.qkv_b, &wd.proj_w, &wd.proj_b, &wd.ls1,
                   &wd.ln2_w, &wd.ln2_b, &wd.fc1_w, &wd.fc1_b, &wd.fc2_w,  &wd.fc2_b,  &wd.ls2};
  for (size_t i = 0; i < std::size(src); ++i) *dst[i] = dev(*src[i]);
  for (cuda::Precision p : kAllPrecisions) {
    PrecisionScope ps(p);
    const Tensor got = cuda::to_host(gpu_block(dev(x), wd, H));
    ASSERT_EQ(got.shape(), want.shape());
    EXPECT_GE(cosine(got, want), 0.9999) << "ViT block pooled features, " << cuda::precision_name(p);
    if (p == cuda::Precision::fp32) {
      auto r = validate::compare(got, want, Tolerance{1e-4, 1e-3});
      EXPECT_TRUE(r.ok) << "ViT block fp32: " << r.message;
    }
  }
}

TEST(GpuModels, ResNetBottleneckMatchesReferenceEveryPrecision) {
  REQUIRE_GPU();
  auto g = rng_for("bottleneck");
  // torchvision Bottleneck (BN folded into the convs), after the stem's max-pool, then global average pooling
  Tensor x = random_tensor({2, 64, 29, 29}, g);
  auto conv_w = [&](int64_t o, int64_t i, int64_t k) {
    return random_tensor({o, i, k, k}, g, 1.f / std::sqrt(float(i * k * k)));
  };
  Tensor w1 = conv_w(32, 64, 1), b1 = random_tensor({32}, g, 0.1f), w2 = conv_w(32, 32, 3),
         b2 = random_tensor({32}, g, 0.1f);
  Tensor w3 = conv_w(64, 32, 1), b3 = random_tensor({64}, g, 0.1f);
  const Conv2dOptions pad1{{1, 1}, {1, 1}, {1, 1}, 1};
  auto ref_block = [&] {
    Tensor s = ref::max_pool2d(x, {3, 3}, {2, 2}, {1, 1});
    Tensor h = ref::conv2d(ref::conv2d(s, w1, b1, {}, Activation::relu), w2, b2, pad1, Activation::relu);
    return ref::pool(ref::conv2d(h, w3, b3, {}, Activation::relu, s), Pool::avg);
  };
  const Tensor want = ref_block();
  Tensor xd = dev(x), w1d = dev(w1), b1d = dev(b1), w2d = dev(w2), b2d = dev(b2), w3d = dev(w3), b3d = dev(b3);
  for (cuda::Precision p : kAllPrecisions) {
    PrecisionScope ps(p);
    Tensor s = ops::max_pool2d(xd, {3, 3}, {2, 2}, {1, 1});
    Tensor h = ops::conv2d(ops::conv2d(s, w1d, b1d, {}, Activation::relu), w2d, b2d, pad1, Activation::relu);
    const Tensor got = cuda::to_host(ops::pool(ops::conv2d(h, w3d, b3d, {}, Activation::relu, s), Pool::avg));
    EXPECT_GE(cosine(got, want), 0.9999) << "bottleneck pooled features, " << cuda::precision_name(p);
    if (p == cuda::Precision::fp32) {
      auto r = validate::compare(got, want, Tolerance{1e-4, 1e-3});
      EXPECT_TRUE(r.ok) << "bottleneck fp32: " << r.message;
    }
  }
}

TEST(GpuOps, BadShapesThrowNamingTheOp) {
  REQUIRE_GPU();
  auto g = rng_for("errors");
  auto d = [&](Shape s) { return dev(random_tensor(s, g)); };
  auto expect_error = [](const std::function<void()>& f, const std::string& op) {
    try {
      f();
      ADD_FAILURE() << op << ": no error";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(op), std::string::npos) << e.what();
    }
  };
  expect_error([&] { ops::linear(d({3, 8}), d({4, 9})); }, "cuda::linear");
  expect_error([&] { ops::linear(d({3, 8}), d({4, 8}), d({5})); }, "cuda::linear");
  expect_error([&] { ops::matmul(d({2, 3, 4}), d({2, 5, 6})); }, "cuda::matmul");
  expect_error([&] { ops::conv2d(d({1, 6, 8, 8}), d({4, 4, 3, 3}), {}, {{1, 1}, {0, 0}, {1, 1}, 2}); }, "cuda::conv2d");
  expect_error([&] { ops::conv2d(d({1, 3, 2, 2}), d({4, 3, 3, 3}), {}); }, "cuda::conv2d");
  expect_error([&] { ops::conv2d(d({1, 3, 8, 8}), d({4, 3, 3, 3}), {}, {{0, 1}, {0, 0}, {1, 1}, 1}); }, "cuda::conv2d");
  expect_error(
      [&] {
        ops::scaled_dot_product_attention(d({1, 2, 5, 64}), d({1, 2, 6, 64}), d({1, 2, 5, 64}));
      },
      "cuda::scaled_dot_product_attention");
  expect_error(
      [&] {
        ops::scaled_dot_product_attention(d({1, 1, 2, 300}), d({1, 1, 2, 300}), d({1, 1, 2, 300}));
      },
      "cuda::scaled_dot_product_attention");
  expect_error([&] { ops::layer_norm(d({2, 8}), d({7}), {}); }, "cuda::layer_norm");
  expect_error([&] { ops::swiglu(d({2, 7})); }, "cuda::swiglu");
  expect_error([&] { ops::layer_scale(d({2, 8}), d({4})); }, "cuda::layer_scale");
  expect_error([&] { ops::pool(d({2, 3}), Pool::avg); }, "cuda::pool");
  expect_error([&] { ops::max_pool2d(d({1, 1, 2, 2}), {5, 5}, {1, 1}); }, "cuda::max_pool2d");
  expect_error([&] { backend("test", Device::cuda).cat({}, 0); }, "cuda::cat");
  expect_error([&] { ops::cat({d({3, 5}), d({4, 2})}, 1); }, "cuda::cat");
  expect_error([&] { ops::add(d({2, 3}), d({4})); }, "cuda::add");
  expect_error([&] { ops::pool(d({2, 10, 8}), Pool::cls, 0); }, "cuda::pool");
  expect_error([&] { ops::pool(d({2, 10, 8}), Pool::mean, 10); }, "cuda::pool");
}

TEST(GpuGraph, ReplayMatchesEagerForEachNewBatch) {
  REQUIRE_GPU();
  auto g = rng_for("graph");
  Tensor w = dev(random_tensor({64, 3, 8, 8}, g)), b = dev(random_tensor({64}, g));
  Tensor lw = dev(random_tensor({128, 64}, g)), lb = dev(random_tensor({128}, g));
  Tensor x = cuda::empty({4, 3, 32, 32}, 0);  // the graph's input slot: each batch is uploaded into it
  auto forward = [&] {
    Tensor f = ops::conv2d(x, w, b, {{8, 8}, {0, 0}, {1, 1}, 1}, Activation::relu);   // [4, 64, 4, 4]
    Tensor t = cuda::contiguous(f.flatten(2).transpose(1, 2));                           // [4, 16, 64]
    t = ops::linear(ops::layer_norm(t, {}, {}), lw, lb, Activation::gelu);            // [4, 16, 128]
    return ops::pool(t, Pool::mean, 0);
  };
  cuda::PinnedBuffer pinned(x.nbytes());
  Tensor first = random_tensor(x.shape(), g);
  cuda::upload_async(first, pinned, x);
  cuda::to_host(forward());  // warm-up
  cuda::Graph graph(0, forward);
  for (int batch = 0; batch < 3; ++batch) {
    Tensor h = random_tensor(x.shape(), g);
    cuda::synchronize(0);  // the pinned buffer is free again once the previous copy has run
    cuda::upload_async(h, pinned, x);
    const auto before = cuda::allocator_stats(0);
    graph.replay();
    cuda::synchronize(0);
    EXPECT_EQ(cuda::allocator_stats(0).device_mallocs, before.device_mallocs);
    Tensor replayed = cuda::to_host(graph.output());
    Tensor eager = cuda::to_host(forward());
    ASSERT_EQ(replayed.shape(), eager.shape());
    EXPECT_EQ(std::memcmp(replayed.data<float>(), eager.data<float>(), eager.nbytes()), 0) << "batch " << batch;
  }
}

// ---- 16-bit activations (a forward in bf16/fp16 keeps its activations in 16 bits between ops) ----
namespace {
// Brings a device result of any storage type back as f32 on the host.
Tensor host_f32(const Tensor& d) { return cuda::to_host(cuda::contiguous(d)).to(DType::f32); }
// The host value a 16-bit device tensor holds: x rounded to bf16/fp16, as f32.
DType half_of(cuda::Precision p) { return p == cuda::Precision::bf16 ? DType::bf16 : DType::f16; }
// Output rounding to 16 bits (unit roundoff u = 2^-8 for bf16, 2^-11 for fp16; 2u allowed) on top of the fp32 noise
// `abs`.
double unit_roundoff(cuda::Precision p) { return p == cuda::Precision::bf16 ? 1.0 / 256 : 1.0 / 2048; }
Tolerance half_tol(cuda::Precision p, double abs) { return {abs, 2 * unit_roundoff(p)}; }
// A GEMM/conv result rounded to 16 bits before its bias/residual/activation epilogue (cuBLASLt and cuDNN write the
// 16-bit product, then the epilogue adds in fp32 and rounds again, as torch's bf16 addmm/conv + BN do): the first
// rounding is relative to the product's magnitude `amax`, not to the final value (cancellation with the bias).
Tolerance epilogue_tol(cuda::Precision p, double amax, double abs) {
  return {2 * unit_roundoff(p) * (amax + 2) + abs, 2 * unit_roundoff(p)};
}
double max_abs(const Tensor& t) {
  double m = 0;
  for (float v : t.contiguous().to_vector()) m = std::max(m, static_cast<double>(std::abs(v)));
  return m;
}
#define EXPECT_GPU16_MATCHES(gpu_expr, ref_expr, tol, what)                                                   \
  do {                                                                                                       \
    auto r_ = validate::check([&] { return host_f32(gpu_expr); }, [&] { return ref_expr; }, tol);            \
    EXPECT_TRUE(r_.ok) << what << ": " << r_.message << " (seed " << validate::run_seed()                   \
                       << "; replay with TABULA_TEST_SEED)";                                                 \
  } while (0)
}  // namespace

TEST(GpuOps16, ConversionsAndCopiesKeepTheStorageType) {
  REQUIRE_GPU();
  auto g = rng_for("half-copies");
  for (cuda::Precision p : {cuda::Precision::bf16, cuda::Precision::fp16}) {
    const DType h = half_of(p);
    Tensor x = random_tensor({2, 5, 7, 16}, g, 3.f);
    Tensor xd = dev(x).to(h);
    ASSERT_EQ(xd.dtype(), h);
    EXPECT_EQ(host_f32(xd).to_vector(), rounded(x, p).to_vector()) << "Tensor::to on the device rounds as the host";
    EXPECT_EQ(xd.to(DType::f32).dtype(), DType::f32);
    // strided views of every rank through the copy kernel (vectorised and element paths)
    for (const std::vector<int64_t>& perm : {std::vector<int64_t>{0, 2, 1, 3}, {3, 1, 2, 0}, {0, 1, 3, 2}}) {
      Tensor got = host_f32(cuda::contiguous(xd.permute(perm)));
      EXPECT_EQ(got.to_vector(), rounded(x, p).permute(perm).contiguous().to_vector()) << "permute";
    }
    Tensor c = ops::cat({dev(random_tensor({2, 1, 16}, g)), xd.select(1, 0).reshape({2, 7, 16})}, 1);
    EXPECT_EQ(c.dtype(), h) << "an f32 class token joined to 16-bit tokens gives 16-bit tokens";
    EXPECT_EQ(to_host(xd).dtype(), DType::f32) << "host copies of 16-bit device tensors are f32";
  }
}

TEST(GpuOps16, ElementwiseRowOpsAndPools) {
  REQUIRE_GPU();
  auto g = rng_for("half-rows");
  for (cuda::Precision p : {cuda::Precision::bf16, cuda::Precision::fp16}) {
    PrecisionScope ps(p);
    const DType h = half_of(p);
    Tensor x = rounded(random_tensor({3, 197, 96}, g, 3.f), p), pos = random_tensor({1, 197, 96}, g);
    Tensor w = random_tensor({96}, g), b = random_tensor({96}, g);
    Tensor xd = dev(x).to(h);
    EXPECT_GPU16_MATCHES(ops::add(xd, dev(pos)), ref::add(x, pos), half_tol(p, 1e-6), "add 16-bit + f32 broadcast");
    EXPECT_GPU16_MATCHES(ops::add(xd, xd), ref::add(x, x), half_tol(p, 1e-6), "add same layout");
    EXPECT_GPU16_MATCHES(ops::layer_scale(xd, dev(w)), ref::layer_scale(x, w), half_tol(p, 1e-6), "layer_scale");
    EXPECT_GPU16_MATCHES(ops::mul(xd, 0.5f), ref::mul(x, 0.5f), half_tol(p, 1e-6), "mul scalar");
    EXPECT_GPU16_MATCHES(ops::layer_norm(xd, dev(w), dev(b), 1e-6), ref::layer_norm(x, w, b, 1e-6), half_tol(p, 1e-4),
                         "layer_norm");
    EXPECT_GPU16_MATCHES(ops::softmax(xd), ref::softmax(x), half_tol(p, 1e-6), "softmax");
    for (Activation a : {Activation::relu, Activation::gelu, Activation::silu})
      EXPECT_GPU16_MATCHES(ops::activation(xd, a), ref::activation(x, a), half_tol(p, 1e-6),
                           "activation " << static_cast<int>(a));
    EXPECT_EQ(ops::layer_norm(xd, dev(w), dev(b)).dtype(), h);
    for (Pool pl : {Pool::avg, Pool::cls, Pool::max, Pool::gem}) {
      Tensor got = ops::pool(xd, pl, 1);
      EXPECT_EQ(got.dtype(), DType::f32) << "pooled features are f32";
      EXPECT_GPU_MATCHES(got, ref::pool(x, pl, 1), (Tolerance{1e-5, 1e-4}), "pool " << static_cast<int>(pl));
    }
    // channels-last feature maps (what 16-bit convolutions return): pools read them in place
    Tensor m = rounded(random_tensor({2, 24, 9, 11}, g, 2.f), p);
    Tensor md = cuda::contiguous(dev(m).to(h).permute({0, 2, 3, 1})).permute({0, 3, 1, 2});
    Tensor mp = ops::max_pool2d(md, {3, 3}, {2, 2}, {1, 1});
    EXPECT_EQ(mp.stride(1), 1) << "max_pool2d keeps channels-last";
    EXPECT_GPU16_MATCHES(mp, ref::max_pool2d(m, {3, 3}, {2, 2}, {1, 1}), (Tolerance{0, 0}), "max_pool2d channels-last");
    EXPECT_GPU16_MATCHES(ops::adaptive_avg_pool2d(md, {1, 1}), ref::adaptive_avg_pool2d(m, {1, 1}), half_tol(p, 1e-6),
                         "global avg");
    EXPECT_GPU16_MATCHES(ops::adaptive_avg_pool2d(md, {2, 3}), ref::adaptive_avg_pool2d(m, {2, 3}), half_tol(p, 1e-6),
                         "adaptive avg");
    EXPECT_GPU_MATCHES(ops::pool(md, Pool::avg), ref::pool(m, Pool::avg), (Tolerance{1e-5, 1e-4}),
                       "pool channels-last");
    EXPECT_GPU16_MATCHES(ops::relu(md), ref::relu(m), (Tolerance{0, 0}), "relu channels-last");
  }
}

TEST(GpuOps16, LinearConvAttentionIn16Bits) {
  REQUIRE_GPU();
  auto g = rng_for("half-gemm");
  for (cuda::Precision p : {cuda::Precision::bf16, cuda::Precision::fp16}) {
    PrecisionScope ps(p);
    const DType h = half_of(p);
    for (int64_t K : {96, 768, 100}) {
      Tensor x = rounded(random_tensor({2, 197, K}, g), p), w = random_tensor({3 * 96, K}, g, 0.2f),
             b = random_tensor({3 * 96}, g);
      Tensor wd = cuda::convert_weight(dev(w));
      const double rk = std::sqrt(static_cast<double>(K));
      for (Activation a : {Activation::none, Activation::gelu}) {
        Tensor y = ops::linear(dev(x).to(h), wd, dev(b).to(h), a);
        EXPECT_EQ(y.dtype(), h);
        // the bias is stored in 16 bits as the model keeps it (upload_activation_param)
        const double amax = max_abs(ref::linear(x, rounded(w, p), {}));
        EXPECT_GPU16_MATCHES(y, ref::linear(x, rounded(w, p), rounded(b, p), a), epilogue_tol(p, amax, 2e-5 * rk),
                             "linear K=" << K);
      }
      // the residual add inside the GEMM (cuBLASLt's C operand), as a ViT block's x + proj(...)
      Tensor res = rounded(random_tensor({2, 197, 3 * 96}, g), p);
      EXPECT_GPU16_MATCHES(ops::linear(dev(x).to(h), wd, dev(b).to(h), Activation::none, dev(res).to(h)),
                           ref::add(ref::linear(x, rounded(w, p), rounded(b, p)), res),
                           epilogue_tol(p, max_abs(ref::linear(x, rounded(w, p), {})), 2e-5 * rk),
                           "linear + residual K=" << K);
      {
        PrecisionScope f32(cuda::Precision::fp32);  // the f32 form of the same
        Tensor xf = random_tensor({3, 5, K}, g), rf = random_tensor({3, 5, 3 * 96}, g);
        EXPECT_GPU_MATCHES(ops::linear(dev(xf), dev(w), dev(b), Activation::none, dev(rf)),
                           ref::add(ref::linear(xf, w, b), rf), gemm_tol(cuda::Precision::fp32, K),
                           "f32 linear + residual K=" << K);
      }
    }
    struct Case { Shape x, w; Conv2dOptions o; };
    const Case cases[] = {
        {{2, 3, 37, 37}, {16, 3, 7, 7}, {{2, 2}, {3, 3}, {1, 1}, 1}},      // stem: 3 input channels
        {{2, 64, 14, 14}, {64, 64, 3, 3}, {{1, 1}, {1, 1}, {1, 1}, 1}},    // 3x3 body conv
        {{2, 64, 9, 9}, {128, 64, 1, 1}, {{2, 2}, {0, 0}, {1, 1}, 1}},     // strided 1x1 downsample
        {{2, 32, 9, 9}, {32, 8, 3, 3}, {{2, 2}, {1, 1}, {1, 1}, 4}},       // grouped
        {{2, 3, 64, 48}, {48, 3, 16, 16}, {{16, 16}, {0, 0}, {1, 1}, 1}},  // ViT patch embedding
    };
    for (const Case& c : cases) {
      Tensor x = rounded(random_tensor(c.x, g), p), w = random_tensor(c.w, g, 0.5f), b = random_tensor({c.w[0]}, g);
      Tensor y0 = ref::conv2d(x, rounded(w, p), b, c.o);
      Tensor res = rounded(random_tensor(y0.shape(), g), p);
      const double rk = std::sqrt(static_cast<double>(c.w[1] * c.w[2] * c.w[3]));
      const Tolerance tol = epilogue_tol(p, max_abs(ref::conv2d(x, rounded(w, p), {}, c.o)), 2e-5 * rk);
      Tensor y = ops::conv2d(dev(x).to(h), dev(w), dev(b), c.o);
      EXPECT_EQ(y.dtype(), h);
      EXPECT_EQ(y.stride(1), 1) << "16-bit convolutions return channels-last";
      EXPECT_GPU16_MATCHES(y, y0, tol, "conv2d " << x.str() << " * " << w.str());
      for (Activation a : {Activation::relu, Activation::none})
        EXPECT_GPU16_MATCHES(ops::conv2d(dev(x).to(h), dev(w), dev(b), c.o, a, dev(res).to(h)),
                             ref::conv2d(x, rounded(w, p), b, c.o, a, res), tol,
                             "conv2d+bias+residual act " << static_cast<int>(a) << " " << x.str() << " * " << w.str());
      // a channels-last 16-bit input is read in place: the result of one conv feeds the next
      Tensor w2 = random_tensor({8, c.w[0], 1, 1}, g, 0.5f);
      EXPECT_GPU16_MATCHES(ops::conv2d(y, dev(w2), {}, {}), ref::conv2d(host_f32(y), rounded(w2, p), {}, {}),
                           half_tol(p, 2e-5 * std::sqrt(static_cast<double>(c.w[0]))),
                           "conv2d of a channels-last result");
    }
    for (int64_t N : {197, 257, 50}) {
      for (int64_t D : {64, 80, 128, 32}) {  // 64-128: the tensor-core flash kernel; 32: the GEMM path
        Tensor q = rounded(random_tensor({2, 3, N, D}, g), p), k = rounded(random_tensor({2, 3, N, D}, g), p);
        Tensor v = rounded(random_tensor({2, 3, N, D}, g), p);
        Tensor o = ops::scaled_dot_product_attention(dev(q).to(h), dev(k).to(h), dev(v).to(h));
        EXPECT_EQ(o.dtype(), h);
        EXPECT_GPU16_MATCHES(
            o, ref::scaled_dot_product_attention(q, k, v),
            (Tolerance{p == cuda::Precision::bf16 ? 3e-3 : 5e-4, p == cuda::Precision::bf16 ? 8e-3 : 1e-3}),
            "sdpa 16-bit N=" << N << " D=" << D);
        // strided q/k/v views of one packed qkv tensor, as the ViT forward passes them
        Tensor qkv = rounded(random_tensor({2, N, 3, 3, D}, g), p);
        Tensor qv = qkv.permute({2, 0, 3, 1, 4});
        Tensor dq = dev(qkv).to(h).permute({2, 0, 3, 1, 4});
        EXPECT_GPU16_MATCHES(
            ops::scaled_dot_product_attention(dq.select(0, 0), dq.select(0, 1), dq.select(0, 2)),
            ref::scaled_dot_product_attention(qv.select(0, 0).contiguous(), qv.select(0, 1).contiguous(),
                                              qv.select(0, 2).contiguous()),
            (Tolerance{p == cuda::Precision::bf16 ? 3e-3 : 5e-4, p == cuda::Precision::bf16 ? 8e-3 : 1e-3}),
            "sdpa 16-bit strided views N=" << N);
      }
    }
    // the attention-probabilities tap stays exact (fp32 probabilities) and the output takes the inputs' type
    Tensor q = rounded(random_tensor({1, 2, 33, 64}, g), p);
    Tensor probs;
    Tensor o = ops::scaled_dot_product_attention(dev(q).to(h), dev(q).to(h), dev(q).to(h), std::nullopt, &probs);
    EXPECT_EQ(o.dtype(), h);
    EXPECT_EQ(probs.dtype(), DType::f32);
  }
}

#endif  // TABULA_HAVE_CUDA
