#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <thread>

#include "engine/fileio.h"
#include "util/npy.h"
#include "embed/progress.h"
#include "embed/store.h"
#include "tests/test_util.h"

using namespace tabula;
namespace fs = std::filesystem;

namespace {
// Deterministic features of rows [r.begin, r.end) for two layers of different widths.
std::vector<LayerRows> features(const RowRange& r) {
  LayerRows a{"layer1", 3, {}}, b{"blocks.0.attn", 5, {}};
  for (int64_t i = r.begin; i < r.end; ++i) {
    for (int d = 0; d < 3; ++d) a.values.push_back(static_cast<float>(i * 10 + d));
    for (int d = 0; d < 5; ++d) b.values.push_back(static_cast<float>(-i) - 0.25f * static_cast<float>(d));
  }
  return {a, b};
}

void run_all(const std::string& dir, EmbeddingStore::Mode mode, int64_t rows = 23, int64_t chunk = 4) {
  EmbeddingStore s(dir, rows, chunk, "key123", mode);
  for (const RowRange& r : s.pending()) s.put(r, features(r));
  s.finalize();
}
}  // namespace

TEST(EmbeddingStore, FinalizeConcatenatesChunksInRowOrder) {
  auto dir = (test::scratch_dir() / "run").string();
  run_all(dir, EmbeddingStore::Mode::fresh);
  NpyArray a = read_npy(dir + "/layer1.npy"), b = read_npy(dir + "/blocks.0.attn.npy");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{23, 3}));
  EXPECT_EQ(b.shape, (std::vector<int64_t>{23, 5}));
  auto full = features({0, 23});
  EXPECT_EQ(a.to_f32(), full[0].values);
  EXPECT_EQ(b.to_f32(), full[1].values);
  EXPECT_FALSE(fs::exists(EmbeddingStore::partial_dir(dir)));
}

TEST(EmbeddingStore, ResumeAfterInterruptionIsByteIdentical) {
  auto root = test::scratch_dir();
  std::string ref = (root / "ref").string(), dir = (root / "run").string();
  run_all(ref, EmbeddingStore::Mode::fresh);
  {
    EmbeddingStore s(dir, 23, 4, "key123", EmbeddingStore::Mode::fresh);
    auto p = s.pending();
    s.put(p[0], features(p[0]));
    s.put(p[3], features(p[3]));
  }  // "crash"
  EXPECT_THROW(EmbeddingStore(dir, 23, 4, "key123", EmbeddingStore::Mode::fresh), std::runtime_error);
  try {
    EmbeddingStore(dir, 23, 4, "otherkey", EmbeddingStore::Mode::resume);
    FAIL() << "a different run key must be refused";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("different settings"), std::string::npos) << e.what();
  }
  {
    EmbeddingStore s(dir, 23, 4, "key123", EmbeddingStore::Mode::resume);
    EXPECT_EQ(s.rows_done(), 8);
    EXPECT_EQ(s.pending().size(), 4u);
    for (const RowRange& r : s.pending()) s.put(r, features(r));
    s.finalize();
  }
  for (const char* f : {"layer1.npy", "blocks.0.attn.npy"})
    EXPECT_EQ(read_file_bytes(ref + "/" + f), read_file_bytes(dir + "/" + f)) << f;
}

TEST(EmbeddingStore, TornJournalLineAndDamagedChunkAreRecomputed) {
  auto root = test::scratch_dir();
  std::string dir = (root / "run").string();
  {
    EmbeddingStore s(dir, 12, 4, "k", EmbeddingStore::Mode::fresh);
    for (const RowRange& r : s.pending()) s.put(r, features(r));
  }
  std::string journal = EmbeddingStore::partial_dir(dir) + "/journal";
  std::string text = read_file_text(journal);
  write_file_atomic(journal, text + "done 0 4 layer1=3:abc");  // torn line: no newline
  // Damage chunk [4, 8)'s layer1 file.
  for (auto& e : fs::recursive_directory_iterator(EmbeddingStore::partial_dir(dir)))
    if (e.path().parent_path().filename().string().find("000000000004-") == 0 && e.path().filename() == "layer1.npy")
      write_file_atomic(e.path().string(), "garbage");
  EmbeddingStore s(dir, 12, 4, "k", EmbeddingStore::Mode::resume);
  ASSERT_EQ(s.pending().size(), 1u);
  EXPECT_EQ(s.pending()[0], (RowRange{4, 8}));
  s.put(s.pending()[0], features(s.pending()[0]));
  s.finalize();
  EXPECT_EQ(read_npy(dir + "/layer1.npy").to_f32(), features({0, 12})[0].values);
}

// kill -9 of a writer process at random moments, three times, then --resume: same bytes as one clean run.
TEST(EmbeddingStore, KillNineThenResumeIsByteIdentical) {
  auto root = test::scratch_dir();
  std::string ref = (root / "ref").string(), dir = (root / "run").string();
  const int64_t rows = 400, chunk = 7;
  run_all(ref, EmbeddingStore::Mode::fresh, rows, chunk);
  // Kill points: once the journal holds this many finished chunks, the writer is killed wherever it is (usually
  // in the middle of writing the next chunk's files). Polling the journal keeps the test independent of speed.
  const size_t kill_after_chunks[] = {5, 20, 40};
  const std::string journal = EmbeddingStore::partial_dir(dir) + "/journal";
  auto chunks_done = [&] {
    std::error_code ec;
    if (!fs::exists(journal, ec)) return size_t{0};
    std::string t = read_file_text(journal);
    return static_cast<size_t>(std::count(t.begin(), t.end(), '\n')) - 1;
  };
  for (int attempt = 0; attempt < 3; ++attempt) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      try {
        run_all(dir, attempt == 0 ? EmbeddingStore::Mode::fresh : EmbeddingStore::Mode::resume, rows, chunk);
      } catch (...) {
        _exit(3);
      }
      _exit(0);
    }
    while (chunks_done() < kill_after_chunks[attempt] && waitpid(pid, nullptr, WNOHANG) == 0)
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 3) << "writer failed before the kill";
  }
  {
    EmbeddingStore s(dir, rows, chunk, "key123", EmbeddingStore::Mode::resume);
    EXPECT_GT(s.rows_done(), 0) << "no kill landed after a stored chunk";
    EXPECT_LT(s.rows_done(), rows) << "no kill landed before the end";
  }
  run_all(dir, EmbeddingStore::Mode::resume, rows, chunk);
  for (const char* f : {"layer1.npy", "blocks.0.attn.npy"})
    EXPECT_EQ(read_file_bytes(ref + "/" + f), read_file_bytes(dir + "/" + f)) << f;
  for (auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << "temp file left: " << e.path();
}

TEST(EmbeddingStore, ShardsPartitionRowsInOrder) {
  for (int64_t rows : {0, 1, 7, 100, 101}) {
    for (int count : {1, 2, 3, 8}) {
      int64_t next = 0;
      for (int i = 0; i < count; ++i) {
        RowRange r = shard_rows(rows, i, count);
        EXPECT_EQ(r.begin, next);
        next = r.end;
      }
      EXPECT_EQ(next, rows);
    }
  }
  EXPECT_THROW(shard_rows(10, 3, 3), std::invalid_argument);
  EXPECT_THROW(shard_rows(10, 0, 0), std::invalid_argument);
}

TEST(EmbeddingStore, RejectsBadChunksAndLayers) {
  auto dir = (test::scratch_dir() / "run").string();
  EmbeddingStore s(dir, 10, 4, "k", EmbeddingStore::Mode::fresh);
  EXPECT_THROW(s.put({1, 5}, features({1, 5})), std::invalid_argument);
  auto f = features({0, 4});
  f[0].values.pop_back();
  EXPECT_THROW(s.put({0, 4}, f), std::invalid_argument);
  EXPECT_THROW(s.finalize(), std::runtime_error);
}

TEST(Progress, LogLineHasCountRateAndEta) {
  Progress p("embed resnet50", 100, "images", /*quiet=*/true);
  p.skip(10);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  p.advance(15);
  std::string l = p.line();
  EXPECT_NE(l.find("embed resnet50: "), std::string::npos) << l;
  EXPECT_NE(l.find("25/100 images (25%)"), std::string::npos) << l;
  EXPECT_NE(l.find("images/s"), std::string::npos) << l;
  EXPECT_NE(l.find("ETA "), std::string::npos) << l;
  EXPECT_NE(l.find("10 from an earlier run"), std::string::npos) << l;
  EXPECT_EQ(format_duration(42), "42s");
  EXPECT_EQ(format_duration(187), "3m07s");
  EXPECT_EQ(format_duration(3720), "1h02m");
}
