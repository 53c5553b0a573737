#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "tests/weights/weights_test_util.h"
#include "weights_tools/safetensors.h"

using namespace tabula;
using namespace tabula::weights;
using tabula::test::expected_json;
using tabula::test::wfix;

namespace {

// A safetensors file from a header text and `data_len` bytes of data (0, 1, 2, ...).
std::string make_file(const std::string& header, size_t data_len, const std::string& name = "t.safetensors") {
  std::string path = (tabula::test::input_dir() / name).string();
  std::vector<uint8_t> b(8);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) b[static_cast<size_t>(i)] = static_cast<uint8_t>(n >> (8 * i));
  b.insert(b.end(), header.begin(), header.end());
  for (size_t i = 0; i < data_len; ++i) b.push_back(static_cast<uint8_t>(i));
  tabula::test::write_bytes(path, b);
  return path;
}

std::string error_reading(const std::string& path) {
  try {
    read_safetensors(path);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Safetensors, ReadsFilesWrittenBySafetensorsBitForBit) {
  for (const char* f : {"st_f32.safetensors", "st_f16.safetensors", "st_bf16.safetensors", "st_meta.safetensors",
                        "timm_vit.safetensors", "hf_dinov2.safetensors", "hf_vit.safetensors"}) {
    StateDict sd = read_safetensors(wfix(f));
    const json::Value& e = *expected_json().find("files")->find(f);
    tabula::test::expect_tensors_match(sd, *e.find("tensors"), f);
    if (const json::Value* meta = e.find("metadata")) {
      ASSERT_EQ(sd.metadata.size(), meta->as_object().size()) << f;
      for (const auto& [k, v] : meta->as_object()) EXPECT_EQ(sd.metadata.at(k), v.as_string()) << f;
    }
  }
}

TEST(Safetensors, TensorsAreZeroCopyViewsIntoTheMapping) {
  StateDict sd = read_safetensors(wfix("st_f32.safetensors"));
  auto map = std::static_pointer_cast<const MappedFile>(sd.at("encoder.weight").storage);
  for (const WeightTensor& t : sd.tensors) {
    EXPECT_TRUE(t.mapped) << t.name;
    EXPECT_EQ(t.storage, sd.tensors[0].storage) << t.name;
    EXPECT_GE(t.data, map->data());
    EXPECT_LE(t.data + t.nbytes(), map->data() + map->size());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % dtype_size(t.dtype), 0u) << t.name;
  }
  // the mapping outlives the StateDict as long as a tensor holds it
  WeightTensor keep = sd.at("encoder.bias");
  sd = StateDict{};
  EXPECT_EQ(keep.to_f32().size(), 5u);
}

TEST(Safetensors, WriterReproducesTheReferenceWriterByteForByte) {
  // Same layout rules as safetensors' own writer (sorted by dtype then name, header padded to 8 bytes), so a
  // file read and written back is the identical file.
  for (const char* f : {"st_f32.safetensors", "st_f16.safetensors", "st_bf16.safetensors", "timm_vit.safetensors"}) {
    StateDict sd = read_safetensors(wfix(f));
    std::string out = (tabula::test::scratch_dir() / "copy.safetensors").string();
    write_safetensors(out, sd);
    EXPECT_EQ(tabula::test::slurp_bytes(out), tabula::test::slurp_bytes(wfix(f))) << f;
  }
}

TEST(Safetensors, ConversionToHalfTypesMatchesTorch) {
  StateDict sd = read_safetensors(wfix("st_f32.safetensors"));
  const json::Value& conv = *expected_json().find("conversions")->find("st_f32.safetensors");
  for (auto [tag, dt] : {std::pair{"f16", DType::f16}, std::pair{"bf16", DType::bf16}}) {
    StateDict out;
    for (const WeightTensor& t : sd.tensors)
      if (t.dtype == DType::f32) out.tensors.push_back(t.to_dtype(dt));
    tabula::test::expect_tensors_match(out, *conv.find(tag), tag);
  }
  // and widening back is exact: f16 file -> f32 values equal the f16 values
  StateDict h = read_safetensors(wfix("st_f16.safetensors"));
  std::vector<float> v = h.at("specials").to_f32();
  EXPECT_TRUE(std::isinf(v[2]) && v[2] > 0);
  EXPECT_TRUE(std::isinf(v[6]));  // 70000 overflows f16
  EXPECT_EQ(v[5], 65504.0f);
  EXPECT_TRUE(std::signbit(v[1]));
}

TEST(Safetensors, RoundTripKeepsMetadataAndAllDtypes) {
  StateDict sd;
  sd.metadata = {{"format", "pt"}, {"who", "tabula \"q\""}};
  sd.tensors.push_back(make_f32_tensor("a", {2, 2}, {1, 2, 3, 4}));
  sd.tensors.push_back(make_f32_tensor("b", {3}, {-1, 0.5f, 7}).to_dtype(DType::bf16));
  sd.tensors.push_back(make_owned_tensor("c", DType::u8, {3}, {1, 2, 3}));
  sd.tensors.push_back(make_owned_tensor("d", DType::i64, {}, std::vector<uint8_t>(8, 0xff)));
  sd.tensors.push_back(make_owned_tensor("e", DType::f32, {0, 5}, {}));
  std::string out = (tabula::test::scratch_dir() / "rt.safetensors").string();
  write_safetensors(out, sd);
  StateDict back = read_safetensors(out);
  EXPECT_EQ(back.metadata, sd.metadata);
  ASSERT_EQ(back.tensors.size(), sd.tensors.size());
  for (const WeightTensor& t : sd.tensors) {
    const WeightTensor& b = back.at(t.name);
    EXPECT_EQ(b.dtype, t.dtype);
    EXPECT_EQ(b.shape, t.shape);
    EXPECT_EQ(0, std::memcmp(b.data, t.data, t.nbytes())) << t.name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data) % dtype_size(b.dtype), 0u) << t.name;
  }
  sd.tensors.push_back(make_f32_tensor("a", {1}, {0}));
  EXPECT_THROW(write_safetensors(out, sd), std::runtime_error);  // duplicate name
}

TEST(Safetensors, TruncatedFilesAreRefused) {
  auto full = tabula::test::slurp_bytes(wfix("st_f32.safetensors"));
  for (size_t cut : {size_t(0), size_t(5), size_t(8), size_t(40), full.size() / 2, full.size() - 1}) {
    std::vector<uint8_t> part(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(cut));
    std::string p = (tabula::test::scratch_dir() / "cut.safetensors").string();
    tabula::test::write_bytes(p, part);
    std::string e = error_reading(p);
    EXPECT_FALSE(e.empty()) << "cut at " << cut;
    EXPECT_NE(e.find("cut.safetensors"), std::string::npos) << e;
  }
}

TEST(Safetensors, LyingHeadersAreRefusedWithTheBrokenRule) {
  struct Case {
    std::string header;
    size_t data;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4, "run past the data section"},
      {R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8, "needs 12 bytes but data_offsets span 8"},
      {R"({"w":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,8]}})", 8, "overflows 64 bits"},
      {R"({"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,8]}})", 8, "overflows 64 bits"},
      {R"({"w":{"dtype":"F32","shape":[1000000000,1000000000],"data_offsets":[0,8]}})", 8, "needs 4000000000000000000 bytes"},
      {R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8, "non-negative integers"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8, "begin 8 > end 0"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12, "overlaps"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", 12, "gap in the data section"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 12, "8 trailing bytes"},
      {R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8, "duplicate key \"w\""},
      {R"({"w":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})", 4, "unsupported dtype 'F8_E4M3'"},
      {R"({"w":{"dtype":"float32","shape":[1],"data_offsets":[0,4]}})", 4, "unsupported dtype 'float32'"},
      {R"({"w":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}})", 4, "unsupported dtype 'f32'"},
      {R"({"w":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})", 4, "non-string \"dtype\""},
      {R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4, "[begin, end]"},
      {R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4, "non-negative integers"},
      {R"({"w":[1,2]})", 0, "not a JSON object"},
      {R"({"__metadata__":{"a":1}})", 0, "__metadata__[\"a\"] is not a string"},
      {R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},})", 4, "line 1, column 55: expected a string key"},
      {R"([1,2,3])", 0, "does not start with '{'"},
  };
  for (const Case& c : cases) {
    std::string e = error_reading(make_file(c.header, c.data));
    EXPECT_NE(e.find(c.expect), std::string::npos) << "header " << c.header << "\n  error: " << e;
  }
}

TEST(Safetensors, HeaderLengthBeyondTheFileOrTheLimit) {
  std::string p = make_file("{}", 0);
  auto b = tabula::test::slurp_bytes(p);
  b[0] = 0xff;  // header length 255 > file
  tabula::test::write_bytes(p, b);
  EXPECT_NE(error_reading(p).find("runs past the end of the file"), std::string::npos) << error_reading(p);
  std::fill(b.begin(), b.begin() + 8, 0xff);  // 2^64 - 1
  tabula::test::write_bytes(p, b);
  EXPECT_NE(error_reading(p).find("exceeds the 100 MB limit"), std::string::npos) << error_reading(p);
  // deep JSON nesting in the header is refused by the depth limit
  std::string deep = "{\"__metadata__\":" + std::string(100, '[') + std::string(100, ']') + "}";
  EXPECT_NE(error_reading(make_file(deep, 0)).find("nesting deeper"), std::string::npos);
}

TEST(Safetensors, EmptyFileAndCliExitCode) {
  std::string p = (tabula::test::input_dir() / "empty.safetensors").string();
  tabula::test::write_bytes(p, {});
  EXPECT_NE(error_reading(p).find("too short"), std::string::npos);
  std::string lying = make_file(R"({"w":{"dtype":"F32","shape":[99999999],"data_offsets":[0,8]}})", 8, "lying.safetensors");
  auto r = tabula::test::run_tabula("weights inspect '" + lying + "'");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("tensor 'w'"), std::string::npos) << r.err;
  r = tabula::test::run_tabula("weights inspect '" + p + "'");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("unrecognised content"), std::string::npos) << r.err;
}

TEST(Safetensors, UnalignedTensorIsCopiedNotMisread) {
  // Another writer may put an f32 at an odd offset; the view would be misaligned, so it is copied.
  std::string p = make_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"F32","shape":[1],"data_offsets":[1,5]}})", 5);
  // pad the header so that the data section starts 8-aligned: the header above is 100 bytes -> data at 108
  StateDict sd = read_safetensors(p);
  const WeightTensor& b = sd.at("b");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data) % 4, 0u);
  uint32_t bits;
  std::memcpy(&bits, b.data, 4);
  EXPECT_EQ(bits, 0x04030201u);
}

TEST(Safetensors, CorruptedBytesGiveErrorsNotCrashes) {
  // Every byte of the header (and some of the data) flipped in turn: a clean error naming the file, or a
  // successful load whose tensors can be read in full.
  for (const char* f : {"st_f32.safetensors", "st_meta.safetensors"}) {
    auto full = tabula::test::slurp_bytes(wfix(f));
    for (size_t pos = 0; pos < full.size(); pos += (pos < 600 ? 1 : 37)) {
      for (uint8_t mask : {uint8_t(0x01), uint8_t(0x20), uint8_t(0xff)}) {
        auto bad = std::make_shared<std::vector<uint8_t>>(full);
        (*bad)[pos] ^= mask;
        try {  // parsed from memory, as read_safetensors parses the mapping (no file I/O per case)
          StateDict sd = parse_safetensors(bad->data(), bad->size(), bad, "flip.safetensors", false);
          for (const WeightTensor& t : sd.tensors) (void)t.to_f32();
        } catch (const std::exception& e) {
          EXPECT_NE(std::string(e.what()).find("flip.safetensors"), std::string::npos) << e.what();
        }
      }
    }
  }
}
