#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>

#include "util/sha256.h"
#include "tests/test_util.h"
#include "weights_tools/safetensors.h"

using namespace tabula;

// `tabula init resnet18 --seed 0` writes, under torchvision's key names, tensors whose bytes hash to what
// torch.manual_seed(0); torchvision.models.resnet18() gives (fixture from weights_tools/reference/init_fixtures.py).
TEST(InitCli, Resnet18Seed0EqualsTorch) {
  auto dir = test::scratch_dir();
  std::string out = (dir / "r18.safetensors").string();
  auto r = test::run_tabula("init resnet18 --seed 0 --out '" + out + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, std::string> want;
  std::ifstream in(test::fixture("init/resnet18_s0.tsv"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream f(line);
    std::string name, shape, dtype, sha;
    std::getline(f, name, '\t');
    std::getline(f, shape, '\t');
    std::getline(f, dtype, '\t');
    std::getline(f, sha, '\t');
    want[name] = sha;
  }
  ASSERT_GT(want.size(), 100u);
  weights::StateDict sd = weights::read_safetensors(out);
  ASSERT_EQ(sd.tensors.size(), want.size());
  for (const auto& t : sd.tensors) {
    ASSERT_TRUE(want.count(t.name)) << t.name;
    EXPECT_EQ(sha256_hex(t.data, t.nbytes()), want[t.name]) << t.name;
  }
  EXPECT_EQ(sd.metadata.at("tabula_seed"), "0");
  // 47 MB of weights: written past the page cache (O_DIRECT, padded then cut back), yet the file is exactly the
  // header plus the tensors, and no temp file is left beside it.
  uint64_t header = 0, payload = 0;
  std::ifstream(out, std::ios::binary).read(reinterpret_cast<char*>(&header), 8);  // little-endian u64
  for (const auto& t : sd.tensors) payload += t.nbytes();
  EXPECT_GT(payload, uint64_t{32} << 20);
  EXPECT_EQ(std::filesystem::file_size(out), 8 + header + payload);
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1u) << "temp file left behind";
}

TEST(InitCli, BadArchAndMissingSeedAreErrors) {
  auto dir = test::scratch_dir();
  auto bad = test::run_tabula("init resnet1000 --seed 0 --out '" + (dir / "x.safetensors").string() + "'");
  EXPECT_EQ(bad.exit_code, 2);  // a mistyped name is a usage error
  EXPECT_NE(bad.err.find("resnet1000"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("did you mean resnet10"), std::string::npos) << bad.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "x.safetensors"));
  EXPECT_EQ(test::run_tabula("init resnet18 --out x.safetensors").exit_code, 2);
}
