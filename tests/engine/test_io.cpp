#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "engine/direct_write.h"
#include "engine/fileio.h"
#include "util/npy.h"
#include "util/sha256.h"
#include "tests/test_util.h"

using namespace tabula;

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  std::string m(1000000, 'a');
  Sha256 s;
  for (size_t i = 0; i < m.size(); i += 999) s.update(m.data() + i, std::min<size_t>(999, m.size() - i));
  EXPECT_EQ(s.hex_digest(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// The header numpy writes for these shapes (np.save), byte for byte.
TEST(Npy, HeaderMatchesNumpy) {
  EXPECT_EQ(npy_header(DType::f32, {3, 4}).substr(10, 51), "{'descr': '<f4', 'fortran_order': False, 'shape': (");
  std::string h1 = npy_header(DType::f32, {5});
  EXPECT_NE(h1.find("'shape': (5,), }"), std::string::npos) << h1;
  std::string h2 = npy_header(DType::i64, {2, 3});
  EXPECT_NE(h2.find("'shape': (2, 3), }"), std::string::npos) << h2;
  std::string h0 = npy_header(DType::f64, {});
  EXPECT_NE(h0.find("'shape': (), }"), std::string::npos) << h0;
  EXPECT_EQ(h2.size() % 64, 0u);
  EXPECT_EQ(h2.back(), '\n');
}

TEST(Npy, RoundTripAndErrors) {
  auto dir = test::scratch_dir();
  std::vector<float> v = {1.5f, -2.f, 3.25f, 0.f, 7.f, 8.f};
  std::string p = (dir / "x.npy").string();
  write_npy(p, {2, 3}, v.data());
  NpyArray a = read_npy(p);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.to_f32(), v);
  EXPECT_EQ(a.to_f64()[2], 3.25);

  auto bytes = read_file_bytes(p);
  EXPECT_THROW(parse_npy(bytes.data(), bytes.size() - 1, "t"), std::runtime_error);   // truncated data
  EXPECT_THROW(parse_npy(bytes.data(), 20, "t"), std::runtime_error);                 // truncated header
  auto bad = bytes;
  bad[1] = 'X';
  EXPECT_THROW(parse_npy(bad.data(), bad.size(), "t"), std::runtime_error);
  std::string huge = npy_header(DType::f32, {1000000000, 1000000000});
  try {
    parse_npy(reinterpret_cast<const uint8_t*>(huge.data()), huge.size(), "huge.npy");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("huge.npy"), std::string::npos);
  }
  EXPECT_THROW(read_npy((dir / "missing.npy").string()), std::runtime_error);
}

TEST(AtomicFile, UncommittedLeavesOldContent) {
  auto dir = test::scratch_dir();
  std::string p = (dir / "out.txt").string();
  write_file_atomic(p, "old");
  {
    AtomicFile f(p);
    f.write("new content");
    // destroyed without commit(): as if the process failed mid-write
  }
  EXPECT_EQ(read_file_text(p), "old");
  size_t n = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) (void)e, ++n;
  EXPECT_EQ(n, 1u) << "temp file left behind";
}

namespace {
// Bytes 0..n-1 of a fixed pseudo-random stream, so a misplaced or missing block shows as a mismatch.
std::vector<uint8_t> pattern_bytes(size_t n) {
  std::mt19937 g(7);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(g());
  return v;
}
int open_for_direct(const std::string& p) {
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT, 0644);
  return fd >= 0 ? fd : ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);  // tmpfs: no O_DIRECT
}
}  // namespace

// Pieces of odd sizes across buffer boundaries, a tail that is not a whole block: the file holds exactly them.
TEST(DirectWriter, WritesExactlyTheBytesGiven) {
  auto dir = test::scratch_dir();
  for (size_t total : {size_t{0}, size_t{1}, size_t{4096}, size_t{3 * 8192}, size_t{100000}, size_t{123457}}) {
    const std::string p = (dir / ("out" + std::to_string(total))).string();
    const std::vector<uint8_t> want = pattern_bytes(total);
    const int fd = open_for_direct(p);
    ASSERT_GE(fd, 0);
    {
      DirectWriter w(fd, p, 8192, 2);  // two small buffers: the caller waits for the writer thread often
      size_t at = 0, step = 1;
      while (at < total) {
        const size_t n = std::min(total - at, step);
        w.write(want.data() + at, n);
        at += n;
        step = step * 3 + 1;  // 1, 4, 13, 40, ... bytes: pieces smaller and larger than a buffer
      }
      EXPECT_EQ(w.bytes_written(), total);
      w.finish();
    }
    ::close(fd);
    EXPECT_EQ(std::filesystem::file_size(p), total);
    const std::vector<uint8_t> got = read_file_bytes(p);
    EXPECT_TRUE(got == want) << "size " << total;
  }
}

TEST(DirectWriter, WriteErrorNamesTheFile) {
  auto dir = test::scratch_dir();
  const std::string p = (dir / "ro").string();
  write_file_atomic(p, "x");
  const int fd = ::open(p.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  const std::vector<uint8_t> bytes = pattern_bytes(50000);
  try {
    DirectWriter w(fd, p, 4096, 2);
    w.write(bytes.data(), bytes.size());
    w.finish();
    ADD_FAILURE() << "writing to a read-only descriptor did not fail";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(p + ": write failed"), std::string::npos) << e.what();
  }
  ::close(fd);
}

// PageCache::bypass gives the same file as the buffered path, and an uncommitted one leaves no trace.
TEST(AtomicFile, BypassingThePageCacheWritesTheSameFile) {
  auto dir = test::scratch_dir();
  const std::vector<uint8_t> want = pattern_bytes((size_t{5} << 20) + 12345);
  const std::string a = (dir / "a").string(), b = (dir / "b").string();
  write_file_atomic(a, want.data(), want.size());
  {
    AtomicFile f(b, AtomicFile::PageCache::bypass);
    f.write(want.data(), 7);
    f.write(want.data() + 7, want.size() - 7);
    f.commit();
  }
  EXPECT_TRUE(read_file_bytes(b) == read_file_bytes(a));
  {
    AtomicFile f(b, AtomicFile::PageCache::bypass);
    f.write(want.data(), 100);
  }
  EXPECT_TRUE(read_file_bytes(b) == want);
  size_t n = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) (void)e, ++n;
  EXPECT_EQ(n, 2u) << "temp file left behind";
}
