// Taps and hooks on a tiny hand-written module chain (a 3-block token MLP "model" with attention-like taps).
#include <gtest/gtest.h>

#include <random>

#include "engine/hooks.h"
#include "engine/ops.h"
#include "engine/validate.h"

using namespace tabula;

namespace {

// tokens [B, N, C] -> blocks.i.attn (heads=2) -> blocks.i (residual) -> norm; counts the blocks it ran.
struct TinyModel {
  static constexpr int64_t kDepth = 3, kHeads = 2, kDim = 8;
  std::vector<Tensor> w, b;
  int blocks_run = 0;
  TinyModel() {
    std::mt19937_64 g(7);
    for (int i = 0; i < kDepth; ++i) {
      w.push_back(validate::random_tensor({kDim, kDim}, g, 0.5f));
      b.push_back(validate::random_tensor({kDim}, g));
    }
  }
  static std::vector<std::string> taps() {
    std::vector<std::string> t = {"patch_embed"};
    for (int i = 0; i < kDepth; ++i) {
      t.push_back("blocks." + std::to_string(i) + ".attn");
      t.push_back("blocks." + std::to_string(i));
    }
    t.push_back("norm");
    return t;
  }
  Tensor forward(Tensor x, TapSet& taps) {
    blocks_run = 0;
    const TapContext ctx{1, kHeads};
    if (taps.tap("patch_embed", x, ctx)) return x;
    for (int i = 0; i < kDepth; ++i) {
      const std::string name = "blocks." + std::to_string(i);
      ++blocks_run;
      Tensor a = ops::linear(x, w[i], b[i]);
      if (taps.tap(name + ".attn", a, ctx)) return x;
      x = ops::add(x, a);
      if (taps.tap(name, x, ctx)) return x;
    }
    x = ops::layer_norm(x, {}, {}, 1e-6);
    taps.tap("norm", x, ctx);
    return x;
  }
};

Tensor input() {
  std::mt19937_64 g(3);
  return validate::random_tensor({2, 5, TinyModel::kDim}, g);
}

}  // namespace

TEST(Hooks, CapturesPooledOutputsAndStopsAfterDeepestTap) {
  TinyModel m;
  TapSet taps;
  taps.capture("blocks.1", Pool::cls).capture("blocks.0.attn", Pool::mean);
  taps.bind(TinyModel::taps());
  m.forward(input(), taps);
  EXPECT_TRUE(taps.done());
  EXPECT_EQ(m.blocks_run, 2);  // block 2 never ran
  ASSERT_EQ(taps.captured().size(), 2u);
  EXPECT_EQ(taps.captured().at("blocks.1").shape(), (Shape{2, TinyModel::kDim}));
  EXPECT_EQ(taps.capture_keys(), (std::vector<std::string>{"blocks.0.attn", "blocks.1"}));

  // The captured values are the pooled module outputs of a full, hook-free forward.
  TapSet all;
  all.capture("blocks.1", Pool::none);
  all.bind(TinyModel::taps());
  m.forward(input(), all);
  Tensor full = all.captured().at("blocks.1");
  auto r = validate::compare(taps.captured().at("blocks.1"), ref::pool(full, Pool::cls, 1), {0, 0});
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(Hooks, PrefixAndAllSelectionsAndSeveralPoolsOnOneTap) {
  TinyModel m;
  TapSet taps;
  taps.capture("blocks.*", Pool::avg);
  taps.bind(TinyModel::taps());
  m.forward(input(), taps);
  EXPECT_EQ(taps.captured().size(), 6u);
  EXPECT_EQ(m.blocks_run, 3);

  TapSet everything;
  everything.capture("all", Pool::cls_mean).capture("norm", Pool::max);
  everything.bind(TinyModel::taps());
  m.forward(input(), everything);
  EXPECT_EQ(everything.captured().size(), 9u);  // 8 taps, "norm" twice
  EXPECT_EQ(everything.captured().at("norm:cls+mean").shape(), (Shape{2, 2 * TinyModel::kDim}));
  EXPECT_TRUE(everything.captured().count("norm:max"));
}

TEST(Hooks, InterventionsChangeWhatFlowsDownstream) {
  TinyModel m;
  Tensor x = input();
  TapSet plain;
  plain.bind(TinyModel::taps());
  Tensor base = m.forward(x, plain);

  // zero the first block's attention output: block 0 then adds nothing
  TapSet z;
  z.zero("blocks.0.attn").capture("blocks.0", Pool::none);
  z.bind(TinyModel::taps());
  m.forward(x, z);
  EXPECT_TRUE(validate::compare(z.captured().at("blocks.0"), x, {0, 0}).ok);

  // scale by 1 is the identity; replace with the input's own patch_embed output likewise
  TapSet s;
  s.scale("blocks.1.attn", 1.f).replace("patch_embed", x.clone());
  s.bind(TinyModel::taps());
  EXPECT_TRUE(validate::compare(m.forward(x, s), base, {0, 0}).ok);

  // ablating head 1 zeroes channels [4, 8) of the attention output, and only those
  TapSet a;
  a.ablate_heads("blocks.2.attn", {1}).capture("blocks.2.attn", Pool::none);
  a.bind(TinyModel::taps());
  m.forward(x, a);
  Tensor att = a.captured().at("blocks.2.attn");
  for (int64_t bb = 0; bb < 2; ++bb)
    for (int64_t n = 0; n < 5; ++n)
      for (int64_t c = 0; c < TinyModel::kDim; ++c) {
        if (c >= 4) EXPECT_EQ(att.at({bb, n, c}), 0.f);
        else EXPECT_NE(att.at({bb, n, c}), 0.f);
      }
  // a capture stops the forward after its tap; interventions alone never do
  EXPECT_TRUE(a.done());
  EXPECT_FALSE(s.done());
}

TEST(Hooks, ClearErrors) {
  TinyModel m;
  TapSet bad;
  bad.capture("blocks.9");
  try {
    bad.bind(TinyModel::taps());
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("blocks.9"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("patch_embed"), std::string::npos);
  }
  TapSet wrong_shape;
  wrong_shape.replace("blocks.0", Tensor::zeros({1, 2}));
  wrong_shape.bind(TinyModel::taps());
  EXPECT_THROW(m.forward(input(), wrong_shape), std::invalid_argument);
  TapSet head;
  head.ablate_heads("blocks.0.attn", {2});
  head.bind(TinyModel::taps());
  EXPECT_THROW(m.forward(input(), head), std::invalid_argument);
  TapSet map_pool;
  map_pool.capture("blocks.0", Pool::cls);
  Tensor fm = Tensor::zeros({1, 3, 4, 4});
  EXPECT_THROW(map_pool.tap("blocks.0", fm), std::invalid_argument);  // cls of a feature map
  EXPECT_EQ(pool_from_name("cls+mean"), Pool::cls_mean);
  EXPECT_FALSE(pool_from_name("median").has_value());
}
