// Weights held once: a model loaded from a weight file releases the file's mapped pages once each layer holds its
// own copy (engine/file_pages.h), and what it computes is unchanged by that -- including the tensors the forward
// keeps reading from the mapping (LayerNorm weights, biases, position embeddings).
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "embed/weights_load.h"
#include "engine/file_pages.h"
#include "models/registry.h"
#include "tests/test_util.h"
#include "weights_tools/safetensors.h"

namespace tabula {
namespace {

const char* kArch = "vit:dim=64,depth=2,heads=4,patch=8,img=32";

// The untrained weights of `seed` written as `tabula init` writes them (optionally in `dtype`).
std::string write_init_file(const std::string& arch, uint64_t seed, DType dtype = DType::f32) {
  const std::string path = (test::scratch_dir() / ("w_" + std::to_string(seed) + ".safetensors")).string();
  weights::StateDict sd;
  for (NamedTensor& t : init_weights(parse_arch(arch), seed)) {
    weights::WeightTensor w = weights::make_owned_tensor(t.name, t.dtype, {t.shape.begin(), t.shape.end()}, t.bytes);
    sd.tensors.push_back(t.dtype == DType::f32 ? w.to_dtype(dtype) : w);
  }
  weights::write_safetensors(path, sd);
  return path;
}

Tensor input(int64_t batch) {
  Tensor x = Tensor::empty({batch, 3, 32, 32});
  float* p = x.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i) p[i] = static_cast<float>((i * 37) % 101) / 50.0f - 1.0f;
  return x;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.contiguous().raw(), b.contiguous().raw(), a.nbytes()) == 0;
}

TEST(WeightsOnce, ReleasedViewStillReadsTheFile) {
  const std::string path = write_init_file(kArch, 1);
  WeightMap wm = load_weight_map(path);
  const Tensor& w = wm.at("blocks.0.mlp.fc1.weight");  // [256, 64]: 64 KiB, whole pages inside
  ASSERT_TRUE(w.storage()->file_mapped);
  const std::vector<float> before = w.to_vector();
  const PageReleaseStats s0 = page_release_stats();
  EXPECT_GT(release_file_pages(w), 0u);
  const PageReleaseStats s1 = page_release_stats();
  EXPECT_EQ(s1.releases, s0.releases + 1);
  EXPECT_GT(s1.bytes, s0.bytes);
  EXPECT_EQ(w.to_vector(), before);  // read back from the file
}

TEST(WeightsOnce, MemoryThatIsNotAFileMappingIsNeverReleased) {
  Tensor heap = Tensor::full({1 << 16}, 3.0f);
  const PageReleaseStats s0 = page_release_stats();
  EXPECT_EQ(release_file_pages(heap), 0u);
  EXPECT_EQ(page_release_stats().releases, s0.releases);
  EXPECT_EQ(heap.to_vector(), std::vector<float>(1 << 16, 3.0f));
}

// The model built from the file (every linear packed, its pages released) computes the bits of the model built
// from the seed in memory; so does one loaded from a bf16 file against the same bf16 weights held in memory.
TEST(WeightsOnce, LoadedModelAfterReleaseMatchesTheSeedModel) {
  const std::string path = write_init_file(kArch, 2);
  const PageReleaseStats s0 = page_release_stats();
  WeightLoadTimes times;
  auto from_file = load_model_file(kArch, path, "", -1, "test", true, &times);
  const PageReleaseStats s1 = page_release_stats();
  EXPECT_GE(s1.releases - s0.releases, 8u);  // qkv, proj, fc1, fc2 of both blocks at least
  EXPECT_GT(times.bytes, 0u);
  EXPECT_GE(times.pack_ms, 0.0);
  auto from_seed = build_model_seed(kArch, 2);
  const Tensor x = input(2);
  EXPECT_TRUE(same_bits(from_file->forward(x), from_seed->forward(x)));
  EXPECT_TRUE(same_bits(from_file->forward(x), from_seed->forward(x)));  // and again: nothing was lost

  const std::string bf16 = write_init_file(kArch, 3, DType::bf16);
  WeightMap in_memory;
  for (const auto& [k, t] : load_weight_map(bf16)) in_memory[k] = t.clone();  // heap copies: nothing to release
  const PageReleaseStats s2 = page_release_stats();
  auto converted = load_model_file(kArch, bf16, "", -1, "test", true, nullptr);
  EXPECT_GT(page_release_stats().releases, s2.releases);  // bf16 sources released once converted
  EXPECT_TRUE(same_bits(converted->forward(x), build_model(kArch, in_memory)->forward(x)));
}

// A torch.save zip checkpoint (HF layout: q, k, v joined into qkv by the layout mapping) is mapped the same way:
// its linears' pages are released once packed, and the model computes what one built from heap copies does.
TEST(WeightsOnce, TorchZipCheckpointIsReleasedToo) {
  const char* arch = "vit:dim=32,depth=2,heads=2,patch=8,img=32,init_values=1,classes=0";
  const std::string path = test::fixture("weights/hf_dinov2.bin").string();
  WeightMap in_memory;
  for (const auto& [k, t] : load_weight_map(path)) in_memory[k] = t.clone();
  const PageReleaseStats s0 = page_release_stats();
  auto from_file = load_model_file(arch, path, "", -1, "test", true, nullptr);
  EXPECT_GT(page_release_stats().releases, s0.releases);
  const Tensor x = input(2);
  EXPECT_TRUE(same_bits(from_file->forward(x), build_model(arch, in_memory)->forward(x)));
}

}  // namespace
}  // namespace tabula
