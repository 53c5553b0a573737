// The streamed init (models/init_replay.h): the tensors an init pass hands on as they become final are the
// state_dict init_weights returns, a model built from the stream (build_model_seed) runs the forward of one built
// from the whole state_dict, and DINOv3's streamed fp32 reference (one block's weights at a time) has the bits of
// the ordinary forward, through the library and through `tabula bench --streamed`.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <random>
#include <stdexcept>

#include "engine/fileio.h"
#include "models/dinov3.h"
#include "models/registry.h"
#include "tests/test_util.h"
#include "util/npy.h"
#include "weights_tools/safetensors.h"

namespace tabula {
namespace {

const std::vector<std::string> kArchs = {
    "resnet:layers=1,1,1,1,block=basic,classes=3",
    "vit:dim=16,depth=2,heads=2,patch=8,img=16,classes=2,reg=2",
    "ca_vit:dim=32,depth=2,heads=2,patch=8,img=32",
    "swin:dim=8,depths=2,2,2,heads=2,2,4,window=4,classes=10,img=32",
    "swin:dim=16,depths=2,1,heads=2,2,window=4,img=64,embed_layer=convstem,classes=0",  // layers that fold at load
    "convnext:dims=8,16,24,32,depths=1,1,2,1,conv_mlp=1,classes=0,kernel=5",
    "conch:dim=32,depth=2,heads=4,embed_dim=24,caption_dim=32",
    "dinov3:dim=32,depth=3,heads=2,img=32",
    "dinov3:dim=64,depth=2,heads=2,img=32,ffn=swiglu64,qkv_bias=0,untie_global_and_local_cls_norm=1",
};

Tensor random_input(const Shape& shape, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  for (float& f : v) f = nd(rng);
  return Tensor::from_vector(shape, v);
}

void expect_bits_equal(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  const Tensor ac = a.contiguous(), bc = b.contiguous();
  EXPECT_EQ(0, std::memcmp(ac.data<float>(), bc.data<float>(), static_cast<size_t>(ac.numel()) * sizeof(float)))
      << what;
}

TEST(InitStream, SinkGetsTheTensorsOfTheWholeStateDict) {
  for (const std::string& arch : kArchs) {
    const ArchConfig a = parse_arch(arch);
    const std::vector<NamedTensor> whole = init_weights(a, 7);
    const std::unique_ptr<Model> m = a.config->construct(a);
    std::map<std::string, std::vector<uint8_t>> streamed;
    init_weights(a, m->tree(), 7, [&](NamedTensor&& t) {
      EXPECT_TRUE(streamed.emplace(t.name, std::move(t.bytes)).second) << arch << ": " << t.name << " twice";
    });
    ASSERT_EQ(whole.size(), streamed.size()) << arch;
    for (const NamedTensor& t : whole) {
      ASSERT_TRUE(streamed.count(t.name)) << arch << ": " << t.name;
      EXPECT_EQ(t.bytes, streamed[t.name]) << arch << ": " << t.name;
    }
  }
}

TEST(InitStream, Dinov3HandsBlocksOnInForwardOrder) {
  // The 7B's layout (SwiGLU, no qkv bias, the local cls norm) at a small width.
  const ArchConfig a = parse_arch("dinov3:dim=64,depth=3,heads=2,img=32,ffn=swiglu64,qkv_bias=0");
  const std::unique_ptr<Model> m = a.config->construct(a);
  std::vector<std::string> order;
  init_weights(a, m->tree(), 0, [&](NamedTensor&& t) { order.push_back(t.name); });
  auto starts = [](const std::string& n, const std::string& prefix) { return n.rfind(prefix, 0) == 0; };
  auto first = [&](const std::string& prefix) {  // index of the first tensor under prefix
    for (size_t i = 0; i < order.size(); ++i)
      if (starts(order[i], prefix)) return static_cast<long>(i);
    ADD_FAILURE() << "nothing under " << prefix;
    return -1L;
  };
  auto last = [&](const std::string& prefix) {
    for (size_t i = order.size(); i-- > 0;)
      if (starts(order[i], prefix)) return static_cast<long>(i);
    ADD_FAILURE() << "nothing under " << prefix;
    return -1L;
  };
  for (const char* pre : {"cls_token", "storage_tokens", "mask_token", "rope_embed.", "patch_embed."})
    EXPECT_LT(last(pre), first("blocks.0.")) << pre;
  EXPECT_LT(last("blocks.0."), first("blocks.1."));
  EXPECT_LT(last("blocks.1."), first("blocks.2."));
  EXPECT_LT(last("blocks.2."), first("norm."));
}

TEST(InitStream, WritingATensorAfterItIsDoneThrows) {
  ModuleTree t;
  Module& lin = t.child(t.root(), "lin", "Linear");
  t.reset_weight_bias(lin, {2, 3}, true);
  std::vector<std::string> got;
  InitState s(t, 0, [&](NamedTensor&& nt) { got.push_back(nt.name); });
  s.fill("lin.bias", 0.0f);
  s.done(lin);
  EXPECT_EQ(got, (std::vector<std::string>{"lin.weight", "lin.bias"}));  // a reset pair goes on together
  EXPECT_THROW(s.write("lin.weight"), std::logic_error);
  EXPECT_THROW(s.done("nope"), std::logic_error);
  EXPECT_TRUE(s.finish().empty());
}

TEST(InitStream, StreamedBuildRunsTheForwardOfTheWholeStateDict) {
  for (const std::string& arch : kArchs) {
    const std::unique_ptr<Model> streamed = build_model_seed(arch, 5);
    const std::unique_ptr<Model> whole = build_model(arch, to_weight_map(init_weights(arch, 5)));
    const Tensor x = random_input(whole->default_input_shape(2), 3);
    expect_bits_equal(streamed->forward(x), whole->forward(x), arch);
  }
}

void expect_streamed_reference_is_the_forward(const std::string& arch, const Shape& input) {
  const std::unique_ptr<Model> model = build_model_seed(arch, 2);
  const Tensor x = random_input(input, 9);
  TapSet taps;
  taps.capture("x_norm_clstoken", Pool::none);
  model->forward(x, taps);
  expect_bits_equal(dinov3_streamed_forward(arch, 2, x), taps.captured().at("x_norm_clstoken"), arch);
}

TEST(InitStream, Dinov3StreamedReferenceIsTheForward) {
  expect_streamed_reference_is_the_forward("dinov3:dim=32,depth=3,heads=2,img=32", {2, 3, 32, 48});
  expect_streamed_reference_is_the_forward(
      "dinov3:dim=64,depth=2,heads=2,img=32,ffn=swiglu64,qkv_bias=0,untie_global_and_local_cls_norm=1,"
      "untie_cls_and_patch_norms=1",
      {1, 3, 48, 32});
  EXPECT_THROW(dinov3_streamed_forward("vit:dim=16,depth=1,heads=2,patch=8,img=16", 0, random_input({1, 3, 16, 16}, 0)),
               std::invalid_argument);
}

TEST(LongInitStream, Dinov3StreamedReferenceIsTheForward) {
  expect_streamed_reference_is_the_forward("dinov3_vits16plus", {2, 3, 224, 224});
  // the 7B's block layout at a twentieth of its width
  expect_streamed_reference_is_the_forward(
      "dinov3:dim=256,depth=6,heads=4,ffn_ratio=3,ffn=swiglu64,qkv_bias=0,untie_global_and_local_cls_norm=1",
      {1, 3, 224, 160});
}

TEST(InitStream, BenchStreamedThroughTheBinary) {
  const std::filesystem::path d = test::scratch_dir();
  const std::string arch = "dinov3:dim=32,depth=2,heads=2,img=32,ffn=swiglu";
  const Tensor x = random_input({2, 3, 32, 32}, 4);
  write_npy((d / "x.npy").string(), x.shape(), x.data<float>());
  const std::string xs = (d / "x.npy").string(), ref = (d / "ref.npy").string(), emb = (d / "emb").string();
  const auto r = test::run_tabula("bench '" + arch + "' --seed 3 --streamed " + xs + " --out " + ref);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("streamed fp32 forward of 2 image(s)"), std::string::npos) << r.out;
  const auto e = test::run_tabula("embed --arch '" + arch + "' --seed 3 --data " + xs + " --out " + emb + " --quiet");
  ASSERT_EQ(e.exit_code, 0) << e.err;
  const NpyArray a = read_npy(ref), b = read_npy(emb + "/x_norm_clstoken.npy");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 32}));
  EXPECT_EQ(a.shape, b.shape);
  EXPECT_EQ(a.data, b.data);  // bit for bit
  // errors name what is wrong
  const auto no_out = test::run_tabula("bench '" + arch + "' --streamed " + xs);
  EXPECT_NE(no_out.exit_code, 0);
  EXPECT_NE(no_out.err.find("--out"), std::string::npos) << no_out.err;
  const auto vit = test::run_tabula("bench vit_tiny_patch16_224 --streamed " + xs + " --out " + ref);
  EXPECT_NE(vit.exit_code, 0);
  EXPECT_NE(vit.err.find("DINOv3"), std::string::npos) << vit.err;
  const auto bf16 = test::run_tabula("bench '" + arch + "' --precision bf16 --streamed " + xs + " --out " + ref);
  EXPECT_NE(bf16.exit_code, 0);
  EXPECT_NE(bf16.err.find("fp32"), std::string::npos) << bf16.err;
}

weights::StateDict state_dict_of(std::vector<NamedTensor>& tensors) {
  weights::StateDict sd;
  for (NamedTensor& t : tensors) {
    weights::WeightTensor w;
    w.name = t.name;
    w.dtype = t.dtype;
    w.shape.assign(t.shape.begin(), t.shape.end());
    w.data = t.bytes.data();
    sd.tensors.push_back(std::move(w));
  }
  return sd;
}

TEST(InitStream, InitFileThroughTheBinaryIsWhatTheWholeStateDictWrites) {
  const std::filesystem::path d = test::scratch_dir();
  for (const std::string arch : {"dinov3:dim=32,depth=3,heads=2,img=32", "resnet:layers=1,1,1,1,block=basic,classes=3"}) {
    const std::string got = (d / "got.safetensors").string(), want = (d / "want.safetensors").string();
    const auto r = test::run_tabula("init '" + arch + "' --seed 4 --force --out " + got);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::vector<NamedTensor> whole = init_weights(arch, 4);
    weights::StateDict sd = state_dict_of(whole);
    sd.metadata["format"] = "pt";
    sd.metadata["tabula_arch"] = arch;
    sd.metadata["tabula_seed"] = "4";
    sd.metadata["tabula_init"] =
        "torch.manual_seed(seed) + the reference constructor (torch 2.15, torchvision 0.29, timm 1.0.31)";
    weights::write_safetensors(want, sd);
    EXPECT_EQ(read_file_bytes(got), read_file_bytes(want)) << arch;
  }
}

TEST(InitStream, SafetensorsWriterRefusesWhatTheLayoutDoesNotSay) {
  const std::filesystem::path d = test::scratch_dir();
  const std::string path = (d / "w.safetensors").string();
  std::vector<NamedTensor> ts(2);
  ts[0] = {"a", {2, 3}, DType::f32, std::vector<uint8_t>(24, 1)};
  ts[1] = {"b", {4}, DType::f32, std::vector<uint8_t>(16, 2)};
  const weights::StateDict layout = state_dict_of(ts);
  {
    weights::SafetensorsWriter w(path, layout);
    EXPECT_THROW(w.write("c", ts[0].bytes.data(), 24), std::runtime_error);
    EXPECT_THROW(w.write("a", ts[0].bytes.data(), 20), std::runtime_error);
    w.write("b", ts[1].bytes.data(), 16);  // out of the file's order
    EXPECT_THROW(w.write("b", ts[1].bytes.data(), 16), std::runtime_error);
    try {
      w.commit();
      ADD_FAILURE() << "commit with 'a' missing";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("'a'"), std::string::npos) << e.what();
    }
  }
  EXPECT_FALSE(std::filesystem::exists(path));  // nothing appears unless committed
  weights::SafetensorsWriter w(path, layout);
  w.write("b", ts[1].bytes.data(), 16);
  w.write("a", ts[0].bytes.data(), 24);
  w.commit();
  const std::string want = (d / "want.safetensors").string();
  weights::write_safetensors(want, layout);
  EXPECT_EQ(read_file_bytes(path), read_file_bytes(want));
}


// From 32 MiB of tensors the writer writes past the page cache, front to back: tensors arriving before those in
// front of them are held, or, past the hold limit, the bypass ends and each goes to its offset. Same file each way.
TEST(InitStream, SafetensorsWriterPastThePageCacheInAnyOrder) {
  const std::filesystem::path d = test::scratch_dir();
  std::vector<NamedTensor> ts(4);
  const int64_t n = int64_t{3} << 20;  // 12 MiB of f32 each
  for (int i = 0; i < 4; ++i) {
    ts[static_cast<size_t>(i)] = {std::string(1, static_cast<char>('a' + i)), {n}, DType::f32,
                                  std::vector<uint8_t>(static_cast<size_t>(n) * 4)};
    for (size_t j = 0; j < ts[static_cast<size_t>(i)].bytes.size(); ++j)
      ts[static_cast<size_t>(i)].bytes[j] = static_cast<uint8_t>(j * 7 + static_cast<size_t>(i));
  }
  ts.push_back({"e", {0}, DType::f32, {}});
  const weights::StateDict layout = state_dict_of(ts);
  const std::string want = (d / "want.safetensors").string();
  weights::write_safetensors(want, layout);
  const std::vector<uint8_t> expect = read_file_bytes(want);
  const std::vector<std::vector<int>> orders = {{0, 1, 2, 3, 4}, {3, 4, 1, 0, 2}, {4, 3, 2, 1, 0}};
  for (uint64_t hold : {uint64_t{1} << 30, uint64_t{20} << 20})
    for (const auto& order : orders) {
      const std::string path = (d / "w.safetensors").string();
      weights::SafetensorsWriter w(path, layout, hold);
      for (int i : order) {
        const NamedTensor& t = ts[static_cast<size_t>(i)];
        w.write(t.name, std::vector<uint8_t>(t.bytes));
      }
      w.commit();
      EXPECT_EQ(read_file_bytes(path), expect) << "hold " << hold << ", first " << order[0];
    }
}

}  // namespace
}  // namespace tabula
