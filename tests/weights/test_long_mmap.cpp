// Long*: opening a 1 GB safetensors file maps it without reading it (RSS stays far below the file size until
// tensors are touched). The file is sparse, so the test costs no disk space or I/O.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "tests/weights/weights_test_util.h"
#include "weights_tools/checkpoint.h"
#include "weights_tools/safetensors.h"

namespace {

long rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

}  // namespace

TEST(LongWeights, OneGigabyteSafetensorsIsMappedNotCopied) {
  using namespace tabula::weights;
  const uint64_t per = 256ull << 20;  // 4 tensors x 256 MiB = 1 GiB of f32
  std::string header = "{";
  for (int i = 0; i < 4; ++i)
    header += std::string(i ? "," : "") + "\"t" + std::to_string(i) + "\":{\"dtype\":\"F32\",\"shape\":[" +
              std::to_string(per / 4) + "],\"data_offsets\":[" + std::to_string(per * i) + "," +
              std::to_string(per * (i + 1)) + "]}";
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string path = (tabula::test::scratch_dir() / "big.safetensors").string();
  {
    std::ofstream out(path, std::ios::binary);
    uint64_t n = header.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << header;
  }
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(8 + header.size() + 4 * per)), 0);

  long before = rss_kib();
  Checkpoint ck = load_checkpoint(path);
  long after_open = rss_kib();
  ASSERT_EQ(ck.sd.tensors.size(), 4u);
  EXPECT_EQ(ck.sd.total_bytes(), 4 * per);
  for (const WeightTensor& t : ck.sd.tensors) EXPECT_TRUE(t.mapped);
  // Touch one tensor (256 MiB): only its pages become resident.
  double sum = 0;
  const WeightTensor& t0 = ck.sd.at("t0");
  for (size_t i = 0; i < t0.nbytes(); i += 4096) sum += t0.data[i];
  long after_touch = rss_kib();
  std::cout << "[ rss ] before " << before << " KiB, after opening 1 GiB " << after_open << " KiB, after touching "
            << "256 MiB " << after_touch << " KiB (sum " << sum << ")\n";
  EXPECT_LT(after_open - before, 16 * 1024) << "opening must not read the file";
  EXPECT_GT(after_touch - after_open, 128 * 1024) << "touching maps pages in (sanity check of the measurement)";
  EXPECT_LT(after_touch - before, 512 * 1024);
  std::filesystem::remove(path);
}
