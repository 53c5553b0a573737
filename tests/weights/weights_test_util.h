// Shared by the weights tests: the expected.json written by weights_tools/reference/weights_fixtures.py,
// tensor fingerprints, and small file-mangling helpers for the corruption tests.
#pragma once
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "util/sha256.h"
#include "tests/test_util.h"
#include "util/json.h"
#include "weights_tools/weight_tensor.h"

namespace tabula::test {

inline std::string wfix(const std::string& name) { return fixture("weights/" + name).string(); }

inline const json::Value& expected_json() {
  static const json::Value v = json::parse_file(wfix("expected.json"));
  return v;
}

inline std::string tensor_sha(const weights::WeightTensor& t) { return sha256_hex(t.data, t.nbytes()); }

// Checks every tensor of `sd` against expected[name] = {dtype, shape, sha256}, and that the names match exactly.
inline void expect_tensors_match(const weights::StateDict& sd, const json::Value& expected, const std::string& what) {
  ASSERT_TRUE(expected.is_object()) << what;
  EXPECT_EQ(sd.tensors.size(), expected.as_object().size()) << what;
  for (const auto& [name, e] : expected.as_object()) {
    const weights::WeightTensor* t = sd.find(name);
    ASSERT_NE(t, nullptr) << what << ": missing " << name;
    EXPECT_EQ(std::string(dtype_name(t->dtype)), e.find("dtype")->as_string()) << what << " " << name;
    std::vector<int64_t> shape;
    for (const json::Value& d : e.find("shape")->as_array()) shape.push_back(d.as_int64());
    EXPECT_EQ(t->shape, shape) << what << " " << name;
    EXPECT_EQ(tensor_sha(*t), e.find("sha256")->as_string()) << what << " " << name;
  }
}

// A folder for a test's input files that, unlike scratch_dir(), is not wiped by later scratch_dir() calls
// (run_tabula uses scratch_dir() too). Emptied on the first call of each test.
inline std::filesystem::path input_dir() {
  static std::string last_test;
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "no-test";
  std::filesystem::path dir = scratch_dir().string() + ".in";
  if (name != last_test) {
    std::filesystem::remove_all(dir);
    last_test = name;
  }
  std::filesystem::create_directories(dir);
  return dir;
}

inline std::vector<uint8_t> slurp_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
inline void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

}  // namespace tabula::test
