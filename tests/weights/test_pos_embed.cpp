#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <sstream>

#include "tests/weights/weights_test_util.h"
#include "weights_tools/pos_embed.h"
#include "weights_tools/safetensors.h"

using namespace tabula;
using namespace tabula::weights;

TEST(PosEmbed, AntialiasedCubicWeightsMatchTorchBitForBit) {
  // torch's own weights, read back by interpolating one-hot rows (weights_fixtures.py: aa_weights.*)
  StateDict sd = read_safetensors(tabula::test::wfix("pos_embed_resample.safetensors"));
  for (auto [in, out] : {std::pair<int64_t, int64_t>{4, 6}, {6, 3}, {37, 16}, {5, 7}, {8, 5}, {5, 9}, {16, 37}}) {
    const WeightTensor& t = sd.at("aa_weights." + std::to_string(in) + "_" + std::to_string(out));  // [in, out]
    std::vector<float> torch_w = t.to_f32();
    AaCubicWeights k = aa_cubic_weights(in, out);
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) {
        int64_t j = i - k.xmin[static_cast<size_t>(o)];
        float mine = (j >= 0 && j < k.xsize[static_cast<size_t>(o)]) ? k.w[static_cast<size_t>(o * k.max_size + j)] : 0.0f;
        EXPECT_EQ(f32_bits(mine), f32_bits(torch_w[static_cast<size_t>(i * out + o)] + 0.0f))
            << in << "->" << out << " output " << o << " input " << i;
      }
  }
}

TEST(PosEmbed, ResampleMatchesTimm) {
  StateDict sd = read_safetensors(tabula::test::wfix("pos_embed_resample.safetensors"));
  ASSERT_FALSE(sd.metadata.empty());
  for (const auto& [name, spec] : sd.metadata) {
    if (name.rfind("aa_weights", 0) == 0) continue;
    std::istringstream in(spec);
    int64_t old_grid, nh, nw, prefix;
    in >> old_grid >> nh >> nw >> prefix;
    const WeightTensor& x = sd.at(name + ".in");
    const WeightTensor& want = sd.at(name + ".out");
    WeightTensor got = resample_abs_pos_embed(x, nh, nw, prefix);
    ASSERT_EQ(got.shape, want.shape) << name;
    std::vector<float> g = got.to_f32(), w = want.to_f32();
    size_t exact = 0;
    float max_diff = 0;
    for (size_t i = 0; i < g.size(); ++i) {
      exact += std::memcmp(&g[i], &w[i], 4) == 0;
      max_diff = std::max(max_diff, std::abs(g[i] - w[i]));
    }
    std::cout << "[ resample ] " << name << ": " << exact << "/" << g.size() << " bit-exact, max |diff| " << max_diff
              << "\n";
    // The weights are torch's bit for bit (test above); the weighted sums differ from torch's compiled kernel in
    // the last bits where its compiler fused multiply-adds (see pos_embed.cpp), hence a few-ULP tolerance.
    for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(g[i], w[i], 4e-7f * std::max(1.0f, std::abs(w[i]))) << name << " " << i;
    EXPECT_GT(exact, g.size() / 2) << name;
  }
}
