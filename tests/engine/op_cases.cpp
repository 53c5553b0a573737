// The op case table (op_cases.h) and its runners: every family on the CPU backend (suite Ops/OpCases) and on the
// CUDA backend when a device is present (suite Gpu/GpuOpCases, ctest label `gpu`, skipped without one).
//
// Families come from two sources, both run on every backend: random shapes per op (>= 20 per op, including the
// odd sizes models meet: 7x7 maps, 197/257/261 tokens, channels not a multiple of 16, batch 1), and the fixed
// shapes of real models (ResNet stem and bodies, ViT patch embedding, DINOv2's 1370 tokens) with every GPU
// precision. Tolerances by precision on a GPU: fp32 ops ~1e-5. bf16/fp16 GEMMs and attention round their inputs
// to 16 bits and accumulate in fp32, so they are compared with the reference run on the same rounded inputs (only
// the summation order differs: a tight tolerance that still catches layout or epilogue bugs). tf32 (and cuDNN's
// tensor-op math used for conv in the 16-bit precisions) rounds inside the hardware: compared with a tolerance
// that grows with sqrt(K), the size of the rounding noise of a K-long dot product.
//
// Adding an op: one entry in a family below (or a new family in op_case_families()). engine/README.md.
#include "tests/engine/op_cases.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <sstream>

#include "engine/system.h"
#include "tests/engine/op_test_util.h"

namespace tabula::test {

using validate::random_tensor;
using validate::Tolerance;

namespace {

constexpr int kCases = 24;
using In = const std::vector<Tensor>&;

// The attention map a hook captures, as a case: `attend(reference, inputs, &probs)` runs the op (ref:: when
// `reference`, else ops::) and the case compares the probabilities it wrote; q, k and v are rounded in 16-bit
// precisions (the attention rule).
using Attend = std::function<void(bool reference, In, Tensor* probs)>;
OpCase probs_case(std::string what, std::vector<Tensor> in, const Attend& attend, Tolerance tol,
                  std::optional<Tolerance> cuda_tol = std::nullopt) {
  OpCase c{std::move(what), std::move(in),
           [attend](In t) {
             Tensor p;
             attend(false, t, &p);
             return p;
           },
           [attend](In t) {
             Tensor p;
             attend(true, t, &p);
             return p;
           },
           tol};
  c.cuda_tol = cuda_tol;
  c.rule = PrecisionRule::attention, c.rounded = {0, 1, 2};
  return c;
}

OpCase sdpa_probs_case(std::string what, std::vector<Tensor> qkv, std::optional<double> scale, Tolerance tol,
                       std::optional<Tolerance> cuda_tol = std::nullopt) {
  const Attend attend = [scale](bool reference, In t, Tensor* p) {
    if (reference) ref::scaled_dot_product_attention(t[0], t[1], t[2], scale, p);
    else ops::scaled_dot_product_attention(t[0], t[1], t[2], scale, p);
  };
  return probs_case(std::move(what), std::move(qkv), attend, tol, cuda_tol);
}

// ---- random shapes per op -----------------------------------------------------------------------------------

std::vector<OpCase> conv2d_cases() {
  std::vector<OpCase> cases;
  auto g = rng_for("conv2d");
  for (int c = 0; c < kCases; ++c) {
    const int64_t N = pick(g, {1, 1, 2, 3});
    const int64_t groups = pick(g, {1, 1, 1, 2, 3});
    const int64_t cin = groups * pick(g, {1, 3, 5, 8, 17});
    const int64_t cout = groups * pick(g, {1, 4, 7, 16, 19});
    const int64_t k = pick(g, {1, 1, 3, 3, 5, 7});
    Conv2dOptions o;
    o.groups = groups;
    o.stride = {pick(g, {1, 1, 2}), pick(g, {1, 2})};
    o.dilation = {pick(g, {1, 1, 2}), pick(g, {1, 1, 3})};
    o.padding = {uni(g, 0, k / 2 + 1), uni(g, 0, k / 2)};
    int64_t H = pick(g, {7, 7, 9, 14, 15, uni(g, 5, 20)}), W = pick(g, {7, 8, 13, uni(g, 5, 20)});
    H = std::max(H, o.dilation[0] * (k - 1) + 1), W = std::max(W, o.dilation[1] * (k - 1) + 1);
    if (c == 0) o = {}, o.groups = 1;  // plain 1x1 path (input used as the GEMM operand directly)
    if (c == 1) {                      // depthwise
      o = {};
      o.groups = cin;
    }
    int64_t kk = c == 0 ? 1 : k;
    if (c == 2 || c == 3) {  // ViT patch embedding: kernel = stride = patch (16; DINOv2's 14), 3 channels
      kk = c == 2 ? 16 : 14;
      o = {};
      o.stride = {kk, kk};
      H = kk * pick(g, {1, 2, 3}), W = kk * pick(g, {1, 2});
    }
    const int64_t cin2 = c == 2 || c == 3 ? 3 : cin;
    const int64_t cout2 = c == 1 ? cin * 2 : cout;
    Tensor x = random_tensor({N, cin2, H, W}, g);
    Tensor w = random_tensor({cout2, cin2 / o.groups, kk, kk}, g, 0.5f);
    Tensor b = c % 3 == 0 ? Tensor() : random_tensor({cout2}, g);
    const Activation act = c % 2 ? Activation::relu : Activation::none;
    const int64_t Ho = (H + 2 * o.padding[0] - o.dilation[0] * (kk - 1) - 1) / o.stride[0] + 1;
    const int64_t Wo = (W + 2 * o.padding[1] - o.dilation[1] * (kk - 1) - 1) / o.stride[1] + 1;
    Tensor res = c % 4 == 1 ? random_tensor({N, cout2, Ho, Wo}, g) : Tensor();
    std::ostringstream what;
    what << "conv2d x=" << x.str() << " w=" << w.str() << " stride=" << o.stride[0] << "," << o.stride[1]
         << " pad=" << o.padding[0] << "," << o.padding[1] << " dil=" << o.dilation[0] << "," << o.dilation[1]
         << " groups=" << o.groups;
    OpCase oc{what.str(), {x, w, b, res}, [=](In in) { return ops::conv2d(in[0], in[1], in[2], o, act, in[3]); },
              [=](In in) { return ref::conv2d(in[0], in[1], in[2], o, act, in[3]); }, {1e-4, 1e-4}};
    oc.rule = PrecisionRule::conv;
    oc.K = cin2 / o.groups * kk * kk;
    cases.push_back(oc);
  }
  return cases;
}

// Depthwise convs (groups = C_in = C_out, ConvNeXt's conv_dw): the CPU's channels-last window-sum path, fed
// NCHW and channels-last inputs, with every epilogue; channel counts across the kernel's 64-channel blocks.
std::vector<OpCase> depthwise_conv2d_cases() {
  std::vector<OpCase> cases;
  auto g = rng_for("depthwise_conv2d");
  for (int c = 0; c < kCases; ++c) {
    const int64_t N = pick(g, {1, 2, 3});
    int64_t C = pick(g, {2, 3, 17, 64, 96, 130});
    int64_t k = pick(g, {3, 5, 7, 7});
    Conv2dOptions o;
    o.stride = {pick(g, {1, 1, 2}), pick(g, {1, 1, 2})};
    o.dilation = {pick(g, {1, 1, 2}), pick(g, {1, 1, 2})};
    o.padding = c % 2 ? Int2{k / 2, k / 2} : Int2{uni(g, 0, k / 2 + 1), uni(g, 0, k / 2)};
    int64_t H = std::max(pick(g, {7, 14, uni(g, 5, 20)}), o.dilation[0] * (k - 1) + 1);
    int64_t W = std::max(pick(g, {7, 9, 28, uni(g, 5, 20)}), o.dilation[1] * (k - 1) + 1);
    if (c < 2) {  // ConvNeXt's conv_dw (7x7, pad 3) with interior strips; then a channel tail and stride 2
      o.stride = {1, c + 1}, o.dilation = {1, 1}, o.padding = {3, 3}, H = 12, W = c ? 45 : 28;
      k = 7, C = c ? 130 : 96;
    }
    Tensor x = random_tensor({N, H, W, C}, g).permute({0, 3, 1, 2});  // channels-last memory
    if (c % 3 == 0) x = x.contiguous();                                // and plain NCHW
    o.groups = C;
    Tensor w = random_tensor({C, 1, k, k}, g, 0.5f);
    Tensor b = c % 4 == 3 ? Tensor() : random_tensor({C}, g);
    const Activation act = c % 5 == 1 ? Activation::gelu : c % 5 == 2 ? Activation::relu : Activation::none;
    const int64_t Ho = (H + 2 * o.padding[0] - o.dilation[0] * (k - 1) - 1) / o.stride[0] + 1;
    const int64_t Wo = (W + 2 * o.padding[1] - o.dilation[1] * (k - 1) - 1) / o.stride[1] + 1;
    Tensor res = c % 4 == 1 ? random_tensor({N, C, Ho, Wo}, g) : Tensor();
    std::ostringstream what;
    what << "depthwise conv2d x=" << x.str() << (x.is_contiguous() ? "" : " channels-last") << " k=" << k
         << " stride=" << o.stride[0] << "," << o.stride[1] << " pad=" << o.padding[0] << "," << o.padding[1]
         << " dil=" << o.dilation[0] << "," << o.dilation[1] << " act=" << static_cast<int>(act)
         << (res.defined() ? " +residual" : "");
    OpCase oc{what.str(), {x, w, b, res}, [=](In in) { return ops::conv2d(in[0], in[1], in[2], o, act, in[3]); },
              [=](In in) { return ref::conv2d(in[0], in[1], in[2], o, act, in[3]); }, {1e-5, 1e-5}};
    oc.rule = PrecisionRule::conv;
    oc.K = k * k;
    cases.push_back(oc);
  }
  return cases;
}

std::vector<OpCase> linear_matmul_cases() {
  std::vector<OpCase> cases;
  auto g = rng_for("linear");
  auto gr = rng_for("linear_residual");  // its own stream: the other cases draw the shapes they always drew
  for (int c = 0; c < kCases; ++c) {
    const int64_t B = pick(g, {1, 2, 3}), Ntok = pick(g, {1, 7, 197, 257, 261, uni(g, 1, 300)});
    const int64_t in = pick(g, {8, 19, 64, 100, 384}), out = pick(g, {1, 17, 48, 96, 200});
    Tensor x = random_tensor({B, Ntok, in}, g);
    Tensor w = random_tensor({out, in}, g, 0.2f);
    Tensor b = c % 3 ? random_tensor({out}, g) : Tensor();
    const Activation act = static_cast<Activation>(c % 5);
    OpCase lin{"linear x=" + x.str() + " w=" + w.str() + " act=" + std::to_string(c % 5), {x, w, b},
               [=](In t) { return ops::linear(t[0], t[1], t[2], act); },
               [=](In t) { return ref::linear(t[0], t[1], t[2], act); }, {1e-5, 1e-4}};
    lin.rule = PrecisionRule::gemm, lin.K = in, lin.rounded = {0, 1};
    cases.push_back(lin);
    Tensor bm = c % 2 ? random_tensor({in, out}, g) : random_tensor({B, in, out}, g);
    OpCase mm{"matmul " + x.str() + " @ " + bm.str(), {x, bm}, [](In t) { return ops::matmul(t[0], t[1]); },
              [](In t) { return ref::matmul(t[0], t[1]); }, {1e-4, 1e-4}};
    mm.rule = PrecisionRule::gemm, mm.K = in, mm.rounded = {0, 1};
    cases.push_back(mm);
    if (c % 4 == 2) {  // the residual add inside the GEMM epilogue (a transformer block's x + proj(...))
      Tensor r = random_tensor({B, Ntok, out}, gr);
      OpCase lr{"linear+residual x=" + x.str() + " w=" + w.str(), {x, w, b, r},
                [=](In t) { return ops::linear(t[0], t[1], t[2], act, t[3]); },
                [=](In t) { return ref::linear(t[0], t[1], t[2], act, t[3]); }, {1e-5, 1e-4}};
      lr.rule = PrecisionRule::gemm, lr.K = in, lr.rounded = {0, 1};
      cases.push_back(lr);
    }
  }
  return cases;
}

std::vector<OpCase> row_cases() {
  std::vector<OpCase> cases;
  auto g = rng_for("rows");
  for (int c = 0; c < kCases; ++c) {
    const int64_t B = pick(g, {1, 2, 4}), L = pick(g, {1, 7, 197, 257, 261}), C = pick(g, {1, 5, 15, 64, 384, 769});
    Tensor x = random_tensor({B, L, C}, g, 3.0f);
    // a large common offset: layer_norm must not lose the variance to cancellation
    Tensor xo = ref::add(x, Tensor::full({1}, c % 2 ? 50.f : 0.f));
    Tensor w = random_tensor({C}, g), b = random_tensor({C}, g);
    cases.push_back({"layer_norm " + x.str(), {xo, w, b}, [](In t) { return ops::layer_norm(t[0], t[1], t[2], 1e-6); },
                     [](In t) { return ref::layer_norm(t[0], t[1], t[2], 1e-6); }, {2e-5, 2e-4}});
    cases.push_back({"layer_norm (no affine) " + x.str(), {x}, [](In t) { return ops::layer_norm(t[0], {}, {}, 1e-5); },
                     [](In t) { return ref::layer_norm(t[0], {}, {}, 1e-5); }, {2e-5, 2e-4}});
    const int64_t dim = pick(g, {-1, -1, 1, 0});
    OpCase sm{"softmax dim=" + std::to_string(dim) + " " + x.str(), {x}, [=](In t) { return ops::softmax(t[0], dim); },
              [=](In t) { return ref::softmax(t[0], dim); }, {1e-6, 1e-5}};
    sm.cuda_tol = Tolerance{1e-6, 1e-4};
    cases.push_back(sm);
    for (Activation act : {Activation::relu, Activation::gelu, Activation::gelu_tanh, Activation::silu}) {
      OpCase ac{"activation " + std::to_string(static_cast<int>(act)) + " " + x.str(), {x},
                [=](In t) { return ops::activation(t[0], act); }, [=](In t) { return ref::activation(t[0], act); },
                {1e-6, 1e-5}};
      ac.cuda_tol = Tolerance{};  // erff/expf/tanhf in fp32
      cases.push_back(ac);
    }
    cases.push_back({"hardswish " + x.str(), {x}, [](In t) { return ops::hardswish(t[0]); },
                     [](In t) { return ref::hardswish(t[0]); }, {1e-6, 1e-5}});
    Tensor x2 = random_tensor({B, L, 2 * C}, g, 4.0f);
    OpCase sw{"swiglu " + x2.str(),
              {x2},
              [](In t) { return ops::swiglu(t[0]); },
              [](In t) { return ref::swiglu(t[0]); },
              {1e-6, 1e-5}};
    sw.cuda_tol = Tolerance{};
    cases.push_back(sw);
    // strided (non-contiguous) input: the transpose of a [B, C, L] tensor
    Tensor xt = random_tensor({B, C, L}, g);
    cases.push_back({"layer_norm strided " + xt.transpose(1, 2).str(), {xt, w, b},
                     [](In t) { return ops::layer_norm(t[0].transpose(1, 2), t[1], t[2], 1e-6); },
                     [](In t) { return ref::layer_norm(t[0].transpose(1, 2), t[1], t[2], 1e-6); }, {2e-5, 2e-4}});
  }
  return cases;
}

std::vector<OpCase> sdpa_cases() {
  std::vector<OpCase> cases;
  auto g = rng_for("sdpa");
  for (int c = 0; c < kCases; ++c) {
    const int64_t B = pick(g, {1, 2}), H = pick(g, {1, 3, 6}), N = pick(g, {1, 7, 50, 197, 257, 261, uni(g, 1, 300)});
    int64_t Nk = c % 5 == 4 ? uni(g, 1, 130) : N, D = pick(g, {8, 16, 33, 64});
    if (c < 2) Nk = c == 0 ? 1100 : 1025;  // several key blocks: the online-softmax rescaling path
    Tensor q = random_tensor({B, H, N, D}, g, 2.f), k = random_tensor({B, H, Nk, D}, g, 2.f);
    Tensor v = random_tensor({B, H, Nk, D}, g);
    std::optional<double> scale;
    if (c % 3 == 2) scale = 0.3;
    OpCase s{"sdpa q=" + q.str() + " k=" + k.str(), {q, k, v},
             [=](In t) { return ops::scaled_dot_product_attention(t[0], t[1], t[2], scale); },
             [=](In t) { return ref::scaled_dot_product_attention(t[0], t[1], t[2], scale); }, {1e-5, 1e-4}};
    s.cuda_tol = Tolerance{1e-5, 2e-4};
    s.rule = PrecisionRule::attention, s.rounded = {0, 1, 2};
    cases.push_back(s);
    if (c % 4 == 0) {  // the hook path that materialises the attention map: the output, then the map itself
      OpCase sp = s;
      sp.what = "sdpa with probs q=" + q.str();
      sp.op = [=](In t) {
        Tensor p;
        return ops::scaled_dot_product_attention(t[0], t[1], t[2], scale, &p);
      };
      sp.reference = [=](In t) {
        Tensor p;
        return ref::scaled_dot_product_attention(t[0], t[1], t[2], scale, &p);
      };
      cases.push_back(sp);
      cases.push_back(
          sdpa_probs_case("sdpa probs q=" + q.str(), {q, k, v}, scale, {1e-6, 1e-4}, Tolerance{1e-7, 1e-4}));
    }
  }
  return cases;
}

std::vector<OpCase> pool_batch_norm_cases() {
  std::vector<OpCase> cases;
  auto g = rng_for("pools");
  for (int c = 0; c < kCases; ++c) {
    const int64_t N = pick(g, {1, 2}), C = pick(g, {1, 3, 17, 64}), H = pick(g, {7, 8, 15, 56, uni(g, 2, 30)});
    const int64_t W = pick(g, {7, 9, 15, uni(g, 2, 30)});
    Tensor x = random_tensor({N, C, H, W}, g);
    const int64_t k = std::min<int64_t>(pick(g, {1, 2, 3, 3, 5}), std::min(H, W));
    std::array<int64_t, 2> s{pick(g, {1, 2, 2, 3}), pick(g, {1, 2})}, p{uni(g, 0, k / 2), uni(g, 0, k / 2)};
    const bool ceil_mode = c % 2;
    std::array<int64_t, 2> d{c % 5 == 3 ? 2 : 1, 1};
    if (d[0] * (k - 1) + 1 > H + 2 * p[0]) d[0] = 1;
    const std::string xs = x.str();
    cases.push_back({"max_pool2d " + xs + " k=" + std::to_string(k) + " s=" + std::to_string(s[0]) + " p=" +
                         std::to_string(p[0]) + " ceil=" + std::to_string(ceil_mode),
                     {x}, [=](In t) { return ops::max_pool2d(t[0], {k, k}, s, p, d, ceil_mode); },
                     [=](In t) { return ref::max_pool2d(t[0], {k, k}, s, p, d, ceil_mode); }, {0, 0}});
    const bool cip = c % 3 != 0;
    OpCase avg{"avg_pool2d " + xs + " k=" + std::to_string(k) + " ceil=" + std::to_string(ceil_mode) +
                   " count_include_pad=" + std::to_string(cip),
               {x}, [=](In t) { return ops::avg_pool2d(t[0], {k, k}, s, p, ceil_mode, cip); },
               [=](In t) { return ref::avg_pool2d(t[0], {k, k}, s, p, ceil_mode, cip); }, {1e-6, 1e-5}};
    avg.on_cuda = false;
    cases.push_back(avg);
    std::array<int64_t, 2> os{pick(g, {1, 1, 3, 7}), pick(g, {1, 2, 7})};
    cases.push_back({"adaptive_avg_pool2d " + xs + " -> " + std::to_string(os[0]) + "x" + std::to_string(os[1]), {x},
                     [=](In t) { return ops::adaptive_avg_pool2d(t[0], os); },
                     [=](In t) { return ref::adaptive_avg_pool2d(t[0], os); }, {1e-6, 1e-5}});
    OpCase amax{"adaptive_max_pool2d " + xs, {x}, [=](In t) { return ops::adaptive_max_pool2d(t[0], os); },
                [=](In t) { return ref::adaptive_max_pool2d(t[0], os); }, {0, 0}};
    amax.on_cuda = false;
    cases.push_back(amax);
    Tensor gm = random_tensor({C}, g), bt = random_tensor({C}, g), mu = random_tensor({C}, g);
    Tensor var = validate::uniform_tensor({C}, g, 0.1f, 2.f);
    cases.push_back({"batch_norm " + xs, {x, gm, bt, mu, var},
                     [](In t) { return ops::batch_norm(t[0], t[1], t[2], t[3], t[4], 1e-5); },
                     [](In t) { return ref::batch_norm(t[0], t[1], t[2], t[3], t[4], 1e-5); }, {1e-5, 1e-5}});
    for (Pool pl : {Pool::avg, Pool::max, Pool::gem}) {
      OpCase pc{"pool " + std::string(pool_name(pl)) + " " + xs, {x}, [=](In t) { return ops::pool(t[0], pl); },
                [=](In t) { return ref::pool(t[0], pl); }, {1e-6, 1e-5}};
      pc.cuda_tol = Tolerance{1e-5, 1e-4};
      cases.push_back(pc);
    }
  }
  return cases;
}

std::vector<OpCase> token_cases() {
  std::vector<OpCase> cases;
  auto g = rng_for("tokens");
  for (int c = 0; c < kCases; ++c) {
    const int64_t B = pick(g, {1, 2, 5}), L = pick(g, {2, 7, 197, 257, 261}), C = pick(g, {1, 15, 64, 100});
    const int64_t prefix = std::min<int64_t>(pick(g, {1, 1, 5}), L - 1);
    Tensor x = random_tensor({B, L, C}, g);
    for (Pool pl : {Pool::avg, Pool::cls, Pool::mean, Pool::cls_mean, Pool::max, Pool::gem}) {
      OpCase pc{"pool " + std::string(pool_name(pl)) + " " + x.str() + " prefix=" + std::to_string(prefix), {x},
                [=](In t) { return ops::pool(t[0], pl, prefix); }, [=](In t) { return ref::pool(t[0], pl, prefix); },
                {1e-6, 1e-5}};
      pc.cuda_tol = Tolerance{1e-5, 1e-4};
      cases.push_back(pc);
    }
    Tensor y = random_tensor({B, L, C}, g), gamma = random_tensor({C}, g), row = random_tensor({1, L, 1}, g);
    cases.push_back({"add", {x, y}, [](In t) { return ops::add(t[0], t[1]); },
                     [](In t) { return ref::add(t[0], t[1]); }, {0, 0}});
    cases.push_back({"add (bias broadcast)", {x, gamma}, [](In t) { return ops::add(t[0], t[1]); },
                     [](In t) { return ref::add(t[0], t[1]); }, {0, 0}});
    cases.push_back({"mul (general broadcast)", {x, row}, [](In t) { return ops::mul(t[0], t[1]); },
                     [](In t) { return ref::mul(t[0], t[1]); }, {0, 0}});
    cases.push_back({"layer_scale", {x, gamma}, [](In t) { return ops::layer_scale(t[0], t[1]); },
                     [](In t) { return ref::layer_scale(t[0], t[1]); }, {0, 0}});
    cases.push_back({"mul scalar", {x}, [](In t) { return ops::mul(t[0], 0.37f); },
                     [](In t) { return ref::mul(t[0], 0.37f); }, {0, 0}});
    const int64_t dim = pick(g, {0, 1, 2});
    cases.push_back({"cat dim=" + std::to_string(dim), {x, y},
                     [=](In t) { return ops::cat({t[0], t[1].narrow(dim, 0, 1), t[0]}, dim); },
                     [=](In t) { return ref::cat({t[0], t[1].narrow(dim, 0, 1), t[0]}, dim); }, {0, 0}});
  }
  return cases;
}

// The separable fast interpolate against the reference's 2-D double sum: every mode, align_corners, antialias
// (up and down), size- and scale-factor-based, odd sizes (DINOv2's 37 -> 16 pos-embed grids, 7x7 maps).
std::vector<OpCase> interpolate_cases() {
  std::vector<OpCase> cases;
  auto g = rng_for("interpolate");
  for (int c = 0; c < kCases; ++c) {
    const int64_t N = pick(g, {1, 2}), C = pick(g, {1, 3, 17});
    const int64_t H = pick(g, {7, 16, 37, uni(g, 1, 40)}), W = pick(g, {7, 16, 37, uni(g, 1, 40)});
    Tensor x = random_tensor({N, C, H, W}, g);
    InterpolateOptions o;
    o.mode = static_cast<InterpMode>(c % 3);
    if (o.mode != InterpMode::nearest) o.align_corners = c % 4 == 1, o.antialias = !o.align_corners && c % 2 == 0;
    if (c % 5 == 0) {
      const double s = pick(g, {2, 3, 4}) / 2.0 + 0.1;  // >= 1.1: a 1-pixel input keeps a non-empty output
      o.scale_factor = std::array<double, 2>{s, s};
    } else {
      o.size = std::array<int64_t, 2>{pick(g, {1, 7, 16, 37, uni(g, 1, 50)}), pick(g, {7, 16, 37, uni(g, 1, 50)})};
    }
    OpCase ic{"interpolate " + x.str() + " mode=" + std::to_string(c % 3) + " align_corners=" +
                  std::to_string(o.align_corners) + " antialias=" + std::to_string(o.antialias),
              {x}, [=](In t) { return ops::interpolate(t[0], o); }, [=](In t) { return ref::interpolate(t[0], o); },
              {1e-6, 1e-5}};
    ic.cuda_tol = Tolerance{2e-5, 1e-4};
    cases.push_back(ic);
  }
  return cases;
}

// ---- the fixed shapes of real models ------------------------------------------------------------------------

std::vector<OpCase> model_elementwise_cases() {
  std::vector<OpCase> cases;
  auto g = rng_for("activations");
  for (Shape s : {Shape{1}, Shape{7, 13}, Shape{2, 197, 768}, Shape{3, 5, 9, 11}}) {
    Tensor x = random_tensor(s, g, 6.f);
    for (Activation a : {Activation::relu, Activation::gelu, Activation::gelu_tanh, Activation::silu})
      cases.push_back({"activation " + std::to_string(static_cast<int>(a)) + " " + x.str(), {x},
                       [=](In t) { return ops::activation(t[0], a); }, [=](In t) { return ref::activation(t[0], a); },
                       Tolerance{}});
    cases.push_back({"gelu " + x.str(), {x}, [](In t) { return ops::gelu(t[0]); }, [](In t) { return ref::gelu(t[0]); },
                     Tolerance{}});
    cases.push_back({"silu " + x.str(), {x}, [](In t) { return ops::silu(t[0]); }, [](In t) { return ref::silu(t[0]); },
                     Tolerance{}});
    cases.push_back({"relu " + x.str(), {x}, [](In t) { return ops::relu(t[0]); }, [](In t) { return ref::relu(t[0]); },
                     Tolerance{}});
  }
  Tensor sw = random_tensor({3, 7, 2 * 37}, g, 4.f);
  cases.push_back({"swiglu", {sw}, [](In t) { return ops::swiglu(t[0]); }, [](In t) { return ref::swiglu(t[0]); },
                   Tolerance{}});

  auto ge = rng_for("elementwise");
  const std::pair<Shape, Shape> shapes[] = {{{2, 3, 5}, {5}}, {{4, 1, 7}, {1, 6, 1}}, {{1}, {9, 2}},
                                            {{2, 197, 768}, {2, 197, 768}}, {{3, 64, 7, 7}, {64, 1, 1}}};
  for (const auto& [sa, sb] : shapes) {
    Tensor a = random_tensor(sa, ge), b = random_tensor(sb, ge);
    cases.push_back({"add " + a.str() + " " + b.str(), {a, b}, [](In t) { return ops::add(t[0], t[1]); },
                     [](In t) { return ref::add(t[0], t[1]); }, Tolerance{}});
    cases.push_back({"mul " + a.str() + " " + b.str(), {a, b}, [](In t) { return ops::mul(t[0], t[1]); },
                     [](In t) { return ref::mul(t[0], t[1]); }, Tolerance{}});
  }
  Tensor a = random_tensor({5, 8, 3}, ge);
  Tensor bt = random_tensor({3, 8, 5}, ge);  // strided operands take the general index path
  cases.push_back({"add of a strided view", {a, bt}, [](In t) { return ops::add(t[0].transpose(0, 2), t[1]); },
                   [](In t) { return ref::add(t[0].transpose(0, 2), t[1]); }, Tolerance{}});
  cases.push_back({"mul scalar", {a}, [](In t) { return ops::mul(t[0], -2.5f); },
                   [](In t) { return ref::mul(t[0], -2.5f); }, Tolerance{}});
  Tensor x = random_tensor({2, 11, 96}, ge), gamma = random_tensor({96}, ge);
  cases.push_back({"layer_scale", {x, gamma}, [](In t) { return ops::layer_scale(t[0], t[1]); },
                   [](In t) { return ref::layer_scale(t[0], t[1]); }, Tolerance{}});
  return cases;
}

std::vector<OpCase> model_row_cases() {
  std::vector<OpCase> cases;
  auto g = rng_for("rows");
  for (int64_t C : {1, 7, 96, 384, 768, 1024, 1025}) {
    Tensor x = random_tensor({3, uni(g, 1, 40), C}, g, 3.f);
    x = ref::add(x, Tensor::full({1}, 0.75f));  // a non-zero mean, as real activations have
    Tensor w = random_tensor({C}, g), b = random_tensor({C}, g);
    const std::string cs = " C=" + std::to_string(C);
    cases.push_back({"layer_norm" + cs, {x, w, b}, [](In t) { return ops::layer_norm(t[0], t[1], t[2], 1e-6); },
                     [](In t) { return ref::layer_norm(t[0], t[1], t[2], 1e-6); }, {2e-5, 1e-4}});
    cases.push_back({"layer_norm no affine" + cs, {x}, [](In t) { return ops::layer_norm(t[0], {}, {}); },
                     [](In t) { return ref::layer_norm(t[0], {}, {}); }, {2e-5, 1e-4}});
    cases.push_back({"softmax" + cs, {x}, [](In t) { return ops::softmax(t[0], -1); },
                     [](In t) { return ref::softmax(t[0], -1); }, {1e-6, 1e-4}});
    cases.push_back({"softmax dim 1" + cs, {x}, [](In t) { return ops::softmax(t[0], 1); },
                     [](In t) { return ref::softmax(t[0], 1); }, {1e-6, 1e-4}});
  }
  Tensor s = random_tensor({2, 12, 1370}, g, 8.f);
  cases.push_back({"softmax 1370",
                   {s},
                   [](In t) { return ops::softmax(t[0]); },
                   [](In t) { return ref::softmax(t[0]); },
                   {1e-6, 1e-4}});
  Tensor x = random_tensor({2, 13, 5, 7}, g);
  Tensor w = random_tensor({13}, g), b = random_tensor({13}, g), m = random_tensor({13}, g);
  Tensor v = validate::uniform_tensor({13}, g, 0.1f, 2.f);
  cases.push_back({"batch_norm", {x, w, b, m, v}, [](In t) { return ops::batch_norm(t[0], t[1], t[2], t[3], t[4]); },
                   [](In t) { return ref::batch_norm(t[0], t[1], t[2], t[3], t[4]); }, Tolerance{}});
  return cases;
}

std::vector<OpCase> model_pool_cases() {
  std::vector<OpCase> cases;
  auto g = rng_for("pool");
  for (Pool p : {Pool::avg, Pool::cls, Pool::mean, Pool::cls_mean, Pool::max, Pool::gem}) {
    for (int64_t prefix : {1, 5}) {
      Tensor t = random_tensor({3, pick(g, {197, 257, 261, 50}), pick(g, {7, 96, 384})}, g);
      cases.push_back({"pool " + std::string(pool_name(p)) + " prefix " + std::to_string(prefix) + " " + t.str(), {t},
                       [=](In in) { return ops::pool(in[0], p, prefix); },
                       [=](In in) { return ref::pool(in[0], p, prefix); }, {1e-5, 1e-4}});
    }
    if (p == Pool::avg || p == Pool::max || p == Pool::gem) {
      Tensor f = random_tensor({2, 33, 7, 7}, g);
      cases.push_back({"pool map " + std::string(pool_name(p)), {f}, [=](In in) { return ops::pool(in[0], p); },
                       [=](In in) { return ref::pool(in[0], p); }, {1e-5, 1e-4}});
    }
  }
  Tensor t = random_tensor({2, 10, 8}, g);
  cases.push_back({"pool without prefix", {t}, [](In in) { return ops::pool(in[0], Pool::avg, 0); },
                   [](In in) { return ref::pool(in[0], Pool::avg, 0); }, Tolerance{}});

  auto g2 = rng_for("pool2d");
  for (int c = 0; c < 8; ++c) {
    Tensor x = random_tensor({uni(g2, 1, 3), uni(g2, 1, 9), uni(g2, 3, 20), uni(g2, 3, 20)}, g2);
    const int64_t k = pick(g2, {2, 3}), s = pick(g2, {1, 2}), p = k / 2;
    const bool ceil = c % 2;
    cases.push_back({"max_pool2d " + x.str(),
                     {x},
                     [=](In in) {
                       return ops::max_pool2d(in[0], {k, k}, {s, s}, {p, p}, {1, 1}, ceil);
                     },
                     [=](In in) {
                       return ref::max_pool2d(in[0], {k, k}, {s, s}, {p, p}, {1, 1}, ceil);
                     },
                     Tolerance{}});
    const std::array<int64_t, 2> os{uni(g2, 1, 5), uni(g2, 1, 5)};
    cases.push_back({"adaptive_avg_pool2d " + x.str(), {x}, [=](In in) { return ops::adaptive_avg_pool2d(in[0], os); },
                     [=](In in) { return ref::adaptive_avg_pool2d(in[0], os); }, Tolerance{}});
  }

  // NaN propagates as in torch (max pooling and relu keep it; averages spread it)
  auto gn = rng_for("nan");
  Tensor x = random_tensor({1, 2, 6, 6}, gn);
  x.at_f32({0, 1, 2, 3}) = std::nanf("");
  cases.push_back({"max_pool2d NaN", {x}, [](In in) { return ops::max_pool2d(in[0], {3, 3}, {2, 2}, {1, 1}); },
                   [](In in) { return ref::max_pool2d(in[0], {3, 3}, {2, 2}, {1, 1}); }, Tolerance{}});
  cases.push_back({"relu NaN", {x}, [](In in) { return ops::relu(in[0]); }, [](In in) { return ref::relu(in[0]); },
                   Tolerance{}});
  cases.push_back({"pool max NaN", {x}, [](In in) { return ops::pool(in[0], Pool::max); },
                   [](In in) { return ref::pool(in[0], Pool::max); }, Tolerance{}});
  cases.push_back({"pool avg NaN", {x}, [](In in) { return ops::pool(in[0], Pool::avg); },
                   [](In in) { return ref::pool(in[0], Pool::avg); }, Tolerance{}});
  return cases;
}

std::vector<OpCase> model_cat_interpolate_cases() {
  std::vector<OpCase> cases;
  auto g = rng_for("cat");
  Tensor cls = random_tensor({2, 1, 96}, g), reg = random_tensor({2, 4, 96}, g),
         patches = random_tensor({2, 256, 96}, g);
  cases.push_back({"token cat", {cls, reg, patches}, [](In t) { return ops::cat({t[0], t[1], t[2]}, 1); },
                   [](In t) { return ref::cat({t[0], t[1], t[2]}, 1); }, Tolerance{}});
  Tensor a = random_tensor({3, 5}, g), b = random_tensor({3, 2}, g);
  cases.push_back({"cat last dim", {a, b}, [](In t) { return ops::cat({t[0], t[1]}, -1); },
                   [](In t) { return ref::cat({t[0], t[1]}, -1); }, Tolerance{}});

  auto gi = rng_for("interpolate");
  Tensor x = random_tensor({1, 5, 14, 14}, gi);  // a ViT position-embedding grid
  for (InterpMode m : {InterpMode::nearest, InterpMode::bilinear, InterpMode::bicubic})
    for (bool ac : {false, true})
      for (bool aa : {false, true}) {
        if (m == InterpMode::nearest && (ac || aa)) continue;
        for (std::array<int64_t, 2> size : {std::array<int64_t, 2>{37, 37}, std::array<int64_t, 2>{16, 9},
                                            std::array<int64_t, 2>{5, 5}}) {
          InterpolateOptions o;
          o.size = size, o.mode = m, o.align_corners = ac, o.antialias = aa;
          cases.push_back({"interpolate mode " + std::to_string(static_cast<int>(m)) + " ac " + std::to_string(ac) +
                               " aa " + std::to_string(aa) + " -> " + std::to_string(size[0]) + "x" +
                               std::to_string(size[1]),
                           {x}, [=](In t) { return ops::interpolate(t[0], o); },
                           [=](In t) { return ref::interpolate(t[0], o); }, {2e-5, 1e-4}});
        }
      }
  InterpolateOptions o;
  o.scale_factor = std::array<double, 2>{2.6, 0.7}, o.mode = InterpMode::bicubic;
  cases.push_back({"interpolate scale_factor", {x}, [=](In t) { return ops::interpolate(t[0], o); },
                   [=](In t) { return ref::interpolate(t[0], o); }, {2e-5, 1e-4}});
  return cases;
}

std::vector<OpCase> model_linear_cases() {
  std::vector<OpCase> cases;
  auto g = rng_for("linear");
  for (int c = 0; c < 8; ++c) {
    // sizes keep the double-precision reference under ~0.3 s per case
    const int64_t M = pick(g, {1, 7, 197, uni(g, 1, 300)}), K = pick(g, {8, 64, 96, 768, 8 * uni(g, 1, 100)});
    const int64_t N = pick(g, {8, 16, 384, 8 * uni(g, 1, 100)});
    Tensor x = random_tensor({M, K}, g), w = random_tensor({N, K}, g), b = random_tensor({N}, g);
    const Activation act = c % 3 == 0 ? Activation::gelu : Activation::none;
    const bool with_bias = c % 4 != 3;
    OpCase lc{"linear M=" + std::to_string(M) + " K=" + std::to_string(K) + " N=" + std::to_string(N),
              {x, w, with_bias ? b : Tensor()}, [=](In t) { return ops::linear(t[0], t[1], t[2], act); },
              [=](In t) { return ref::linear(t[0], t[1], t[2], act); }, gemm_tol(Precision::fp32, K)};
    lc.rule = PrecisionRule::gemm, lc.K = K, lc.rounded = {0, 1};
    cases.push_back(lc);
  }
  // attention-style batched matmul, and a 2-D right operand broadcast over the batch
  Tensor a = random_tensor({2, 3, 197, 64}, g), bt = random_tensor({2, 3, 64, 197}, g), b2 = random_tensor({64, 40}, g);
  for (const Tensor& b : {bt, b2}) {
    OpCase mc{"matmul " + a.str() + " @ " + b.str(), {a, b}, [](In t) { return ops::matmul(t[0], t[1]); },
              [](In t) { return ref::matmul(t[0], t[1]); }, gemm_tol(Precision::fp32, 64)};
    mc.rule = PrecisionRule::gemm, mc.K = 64, mc.rounded = {0, 1};
    cases.push_back(mc);
  }
  return cases;
}

std::vector<OpCase> model_conv2d_cases() {
  std::vector<OpCase> cases;
  auto g = rng_for("conv2d");
  struct Shapes {
    Shape x, w;
    Conv2dOptions o;
  };
  const Shapes shapes[] = {
      {{2, 3, 37, 37}, {16, 3, 7, 7}, {{2, 2}, {3, 3}, {1, 1}, 1}},      // ResNet stem (odd size)
      {{1, 24, 14, 14}, {24, 24, 3, 3}, {{1, 1}, {1, 1}, {1, 1}, 1}},    // 3x3 body conv
      {{2, 32, 9, 9}, {32, 8, 3, 3}, {{2, 2}, {1, 1}, {1, 1}, 4}},       // grouped, strided
      {{2, 64, 7, 7}, {40, 64, 1, 1}, {}},                               // 1x1 projection
      {{1, 3, 64, 48}, {32, 3, 16, 16}, {{16, 16}, {0, 0}, {1, 1}, 1}},  // ViT patch embedding
      {{1, 8, 11, 11}, {8, 8, 3, 3}, {{1, 1}, {2, 2}, {2, 2}, 1}},       // dilated
  };
  for (const Shapes& s : shapes) {
    Tensor x = random_tensor(s.x, g), w = random_tensor(s.w, g, 0.5f), b = random_tensor({s.w[0]}, g);
    Tensor res = random_tensor(ref::conv2d(x, w, b, s.o).shape(), g);
    const int64_t K = s.w[1] * s.w[2] * s.w[3];
    const Conv2dOptions o = s.o;
    const std::string xw = " " + x.str() + " * " + w.str();
    auto add = [&](const std::string& what, bool bias, Activation a, bool residual) {
      OpCase oc{what + xw, {x, w, bias ? b : Tensor(), residual ? res : Tensor()},
                [=](In t) { return ops::conv2d(t[0], t[1], t[2], o, a, t[3]); },
                [=](In t) { return ref::conv2d(t[0], t[1], t[2], o, a, t[3]); }, gemm_tol(Precision::fp32, K)};
      oc.rule = PrecisionRule::conv, oc.K = K;
      cases.push_back(oc);
    };
    add("conv2d", true, Activation::none, false);
    // with and without bias, residual and activation: the cuDNN-fused path (none/ReLU) and the separate
    // epilogue kernel (GELU/SiLU) both run
    for (Activation a : {Activation::relu, Activation::none, Activation::gelu, Activation::silu}) {
      add("conv2d+residual act " + std::to_string(static_cast<int>(a)), false, a, true);
      add("conv2d+bias+residual act " + std::to_string(static_cast<int>(a)), true, a, true);
    }
    add("conv2d without bias", false, Activation::none, false);
  }
  return cases;
}

std::vector<OpCase> model_attention_cases() {
  std::vector<OpCase> cases;
  auto g = rng_for("sdpa");
  // tf32 does not change attention (no tensor cores in these kernels); the streaming softmax makes sqrt(N)
  // roundings of the running sums
  const Tolerance tol{1e-5, 2e-4};
  auto add = [&](const std::string& what, const Tensor& q, const Tensor& k, const Tensor& v, std::optional<double> sc) {
    OpCase oc{what, {q, k, v}, [=](In t) { return ops::scaled_dot_product_attention(t[0], t[1], t[2], sc); },
              [=](In t) { return ref::scaled_dot_product_attention(t[0], t[1], t[2], sc); }, tol};
    oc.rule = PrecisionRule::attention, oc.rounded = {0, 1, 2};
    cases.push_back(oc);
  };
  for (int64_t D : {64, 80, 96, 128})
    for (int64_t N : {1, 197, 257, 261}) {
      Tensor q = random_tensor({1, 2, N, D}, g), k = random_tensor({1, 2, N, D}, g), v = random_tensor({1, 2, N, D}, g);
      add("sdpa D=" + std::to_string(D) + " N=" + std::to_string(N), q, k, v, std::nullopt);
    }
  // the probabilities tap (exact kernel) and a cross-attention shape with Nq != Nk and Dv != D
  Tensor q = random_tensor({2, 3, 261, 64}, g), k = random_tensor({2, 3, 261, 64}, g),
         v = random_tensor({2, 3, 261, 64}, g);
  cases.push_back(sdpa_probs_case("sdpa probabilities", {q, k, v}, std::nullopt, {1e-7, 1e-4}));
  Tensor qc = random_tensor({1, 2, 5, 80}, g), kc = random_tensor({1, 2, 33, 80}, g),
         vc = random_tensor({1, 2, 33, 48}, g);
  add("cross attention", qc, kc, vc, 0.3);
  // DINOv2 ViT-L/14 at 518 px: 1370 tokens (one head keeps the CPU reference fast)
  Tensor ql = random_tensor({1, 1, 1370, 64}, g), kl = random_tensor({1, 1, 1370, 64}, g);
  Tensor vl = random_tensor({1, 1, 1370, 64}, g);
  add("sdpa 1370 tokens", ql, kl, vl, std::nullopt);
  // CONCH's attentional poolers (models/conch.cpp): learned queries over the 785 tokens of a 448-px image, k and v
  // strided views of one [B, N, 2, H, hd] projection; the contrastive one (1 query, head dim 64) also with its map
  auto kv_views = [&](int64_t B, int64_t N, int64_t H, int64_t hd) {
    Tensor kv = random_tensor({B, N, 2, H, hd}, g).permute({2, 0, 3, 1, 4});
    return std::pair{kv.select(0, 0), kv.select(0, 1)};
  };
  const auto [kp, vp] = kv_views(2, 785, 8, 64);
  Tensor qp = random_tensor({1, 8, 1, 64}, g).expand({2, 8, 1, 64}).contiguous();
  add("CONCH contrastive pooler", qp, kp, vp, std::nullopt);
  cases.push_back(sdpa_probs_case("CONCH contrastive pooler map", {qp, kp, vp}, std::nullopt, {1e-7, 1e-4}));
  const auto [kc2, vc2] = kv_views(1, 785, 8, 96);
  add("CONCH captioning pooler", random_tensor({1, 8, 256, 96}, g), kc2, vc2, std::nullopt);
  return cases;
}

// Swin's window attention: the relative position bias per head and the shifted windows' 0 / -100 mask per window
// (window b % nW of a batch of B = images x nW windows), with and without each, and the probabilities tap.
std::vector<OpCase> window_attention_cases() {
  std::vector<OpCase> cases;
  auto g = rng_for("window_attention");
  for (int c = 0; c < kCases; ++c) {
    const int64_t nW = pick(g, {1, 4, 9}), B = nW * pick(g, {1, 2}), H = pick(g, {1, 3, 4});
    const int64_t N = pick(g, {1, 4, 16, 49, uni(g, 2, 150)}), D = pick(g, {8, 16, 32, 33});
    Tensor q = random_tensor({B, H, N, D}, g, 2.f), k = random_tensor({B, H, N, D}, g, 2.f);
    Tensor v = random_tensor({B, H, N, D}, g);
    Tensor bias = c % 4 == 3 ? Tensor() : random_tensor({H, N, N}, g, 0.5f);
    Tensor mask;
    if (c % 3 != 1) {  // region labels per token, -100 between tokens of different regions (timm's get_attn_mask)
      std::vector<float> m(static_cast<size_t>(nW * N * N));
      std::vector<int64_t> region(static_cast<size_t>(N));
      for (int64_t w = 0; w < nW; ++w) {
        for (auto& r : region) r = uni(g, 0, 3);
        for (int64_t i = 0; i < N; ++i)
          for (int64_t j = 0; j < N; ++j)
            m[static_cast<size_t>((w * N + i) * N + j)] = region[i] == region[j] ? 0.f : -100.f;
      }
      mask = Tensor::from_vector({nW, N, N}, m);
    }
    std::optional<double> scale;
    if (c % 5 == 2) scale = 0.3;
    const std::string what = "window attention q=" + q.str() + " bias=" + bias.str() + " mask=" + mask.str();
    OpCase s{what, {q, k, v, bias, mask},
             [=](In t) { return ops::biased_attention(t[0], t[1], t[2], t[3], t[4], scale); },
             [=](In t) { return ref::biased_attention(t[0], t[1], t[2], t[3], t[4], scale); }, {1e-5, 1e-4}};
    s.cuda_tol = Tolerance{1e-5, 2e-4};
    s.rule = PrecisionRule::attention, s.rounded = {0, 1, 2};
    cases.push_back(s);
    if (c % 4 == 0) {
      const Attend attend = [scale](bool reference, In t, Tensor* p) {
        if (reference) ref::biased_attention(t[0], t[1], t[2], t[3], t[4], scale, p);
        else ops::biased_attention(t[0], t[1], t[2], t[3], t[4], scale, p);
      };
      cases.push_back(probs_case("window attention probs " + what, {q, k, v, bias, mask}, attend, {1e-6, 1e-4},
                                 Tolerance{1e-7, 1e-4}));
    }
  }
  return cases;
}

// DINOv3's RoPE on q / k as the model calls it: a strided view of the qkv output [B, N, 3, H, hd] (q or k), the
// tables covering the patch tokens after 0, 1 or 5 prefix tokens (class, storage); head dims of the configs.
std::vector<OpCase> rope_cases() {
  std::vector<OpCase> cases;
  auto g = rng_for("rope");
  for (int c = 0; c < kCases; ++c) {
    const int64_t B = pick(g, {1, 2, 3}), H = pick(g, {1, 2, 6}), hd = pick(g, {4, 16, 32, 64, 80});
    const int64_t gh = pick(g, {1, 3, 4, 14}), gw = pick(g, {1, 5, 4, 14}), prefix = pick(g, {0, 1, 5});
    const int64_t N = prefix + gh * gw, which = pick(g, {0, 1});
    Tensor qkv = random_tensor({B, N, 3 * H * hd}, g), sin = random_tensor({gh * gw, hd}, g),
           cos = random_tensor({gh * gw, hd}, g);
    auto view = [=](const Tensor& t) { return t.reshape({B, N, 3, H, hd}).permute({2, 0, 3, 1, 4}).select(0, which); };
    cases.push_back({"rope_apply " + shape_str({B, H, N, hd}) + " prefix=" + std::to_string(prefix), {qkv, sin, cos},
                     [=](In t) { return ops::rope_apply(view(t[0]), t[1], t[2]); },
                     [=](In t) { return ref::rope_apply(view(t[0]), t[1], t[2]); }, {1e-6, 1e-5}});
    if (c == 0)  // a contiguous input
      cases.push_back({"rope_apply contiguous", {view(qkv).contiguous(), sin, cos},
                       [](In t) { return ops::rope_apply(t[0], t[1], t[2]); },
                       [](In t) { return ref::rope_apply(t[0], t[1], t[2]); }, {1e-6, 1e-5}});
  }
  return cases;
}

const std::map<std::string, std::vector<OpCase> (*)()>& families() {
  static const std::map<std::string, std::vector<OpCase> (*)()> f = {
      {"conv2d", conv2d_cases},
      {"linear_matmul", linear_matmul_cases},
      {"rows", row_cases},
      {"sdpa", sdpa_cases},
      {"pools_batch_norm", pool_batch_norm_cases},
      {"tokens", token_cases},
      {"interpolate", interpolate_cases},
      {"model_elementwise", model_elementwise_cases},
      {"model_rows", model_row_cases},
      {"model_pools", model_pool_cases},
      {"model_cat_interpolate", model_cat_interpolate_cases},
      {"model_linear", model_linear_cases},
      {"model_conv2d", model_conv2d_cases},
      {"model_attention", model_attention_cases},
      {"window_attention", window_attention_cases},
      {"depthwise_conv2d", depthwise_conv2d_cases},
      {"rope", rope_cases},
  };
  return f;
}

// Sets the backend's precision for one scope (tests must not leak it into each other).
struct PrecisionScope {
  PrecisionScope(Backend& backend, Precision p) : b(backend), saved(backend.precision()) { b.set_precision(p); }
  ~PrecisionScope() { b.set_precision(saved); }
  Backend& b;
  Precision saved;
};

bool half(Precision p) { return p == Precision::bf16 || p == Precision::fp16; }

}  // namespace

Tolerance gemm_tol(Precision p, int64_t K) {
  const double rk = std::sqrt(static_cast<double>(std::max<int64_t>(K, 1)));
  switch (p) {
    // fp32 summation noise of K terms whose partial sums reach ~sqrt(K)/3: ~6e-8 sqrt(K) x sqrt(K)/3 per
    // element; 1e-5 sqrt(K) leaves room for the worst of ~1e5 elements and is still ~3e-5 of the output scale.
    case Precision::fp32: return {1e-5 * rk, 1e-4};
    // tf32 keeps 10 mantissa bits (rounding or truncating, unspecified): ~1e-3 per product, random signs.
    case Precision::tf32: return {4e-3 * rk, 2e-3};
    default: return {1e-5 * rk, 1e-4};  // 16-bit products are exact in fp32: only the summation order differs
  }
}

Tensor rounded(const Tensor& x, Precision p) {
  if (p == Precision::bf16) return x.to(DType::bf16).to(DType::f32);
  if (p == Precision::fp16) return x.to(DType::f16).to(DType::f32);
  return x;
}

std::vector<std::string> op_case_families() {
  std::vector<std::string> names;
  for (const auto& [name, fn] : families()) names.push_back(name);
  return names;
}

std::vector<OpCase> op_cases(const std::string& family) { return families().at(family)(); }

void run_op_cases(const std::string& family, Device device) {
  const std::vector<OpCase> cases = op_cases(family);
  ASSERT_FALSE(cases.empty()) << family;
  Backend& b = backend("run_op_cases", device);
  for (const OpCase& c : cases) {
    if (device == Device::cpu) {
      EXPECT_VALID(validate::check([&] { return c.op(c.in); }, [&] { return c.reference(c.in); }, c.tol), c.what);
      continue;
    }
    if (!c.on_cuda) continue;
    std::vector<Precision> precisions = {Precision::fp32};
    if (c.rule != PrecisionRule::fp32)
      precisions = {Precision::fp32, Precision::tf32, Precision::bf16, Precision::fp16};
    std::vector<Tensor> din;
    for (const Tensor& t : c.in) din.push_back(t.defined() ? b.to_device(t, 0) : Tensor());
    for (Precision p : precisions) {
      const PrecisionScope scope(b, p);
      std::vector<Tensor> rin = c.in;
      if (half(p))
        for (size_t i : c.rounded) rin[i] = rounded(rin[i], p);
      Tolerance tol = c.cuda_tol.value_or(c.tol);
      if (c.rule == PrecisionRule::gemm) tol = gemm_tol(p, c.K);
      if (c.rule == PrecisionRule::conv) tol = gemm_tol(p == Precision::fp32 ? p : Precision::tf32, c.K);
      EXPECT_VALID(validate::check([&] { return to_host(c.op(din)); }, [&] { return c.reference(rin); }, tol),
                   c.what << " " << precision_name(p));
    }
  }
}

}  // namespace tabula::test

namespace {

using tabula::Device;

std::string family_name(const testing::TestParamInfo<std::string>& info) { return info.param; }

class OpCases : public testing::TestWithParam<std::string> {};
TEST_P(OpCases, CpuBackend) { tabula::test::run_op_cases(GetParam(), Device::cpu); }
INSTANTIATE_TEST_SUITE_P(Ops, OpCases, testing::ValuesIn(tabula::test::op_case_families()), family_name);

class GpuOpCases : public testing::TestWithParam<std::string> {};
TEST_P(GpuOpCases, CudaBackend) {
  if (tabula::cuda_devices().empty()) GTEST_SKIP() << "no CUDA device on this machine";
  tabula::test::run_op_cases(GetParam(), Device::cuda);
}
INSTANTIATE_TEST_SUITE_P(Gpu, GpuOpCases, testing::ValuesIn(tabula::test::op_case_families()), family_name);

}  // namespace
