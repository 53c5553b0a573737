// Distributed runs (issue #10): `mpirun -np 3 tabula embed` and `mpirun -np 2|3 tabula eval map` give the bytes of a
// single-process run; a rank that dies mid-run leaves journals that --resume with another rank count (or one
// process, no MPI) completes with the same bytes. The mpirun tests skip, saying why, when the build has no MPI or
// mpirun is not installed. The in-process tests of MapOptions::part/parts need neither.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <barrier>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <random>
#include <thread>

#include "engine/fileio.h"
#include "util/mpi.h"
#include "util/npy.h"
#include "embed/ranks.h"
#include "embed/store.h"
#include "eval/metrics/map.h"
#include "eval/metrics/recall.h"
#include "tests/eval/metrics_test_util.h"
#include "tests/test_util.h"

using namespace tabula;
using tabula::test::metrics_fixture;
namespace fs = std::filesystem;

namespace {

const char* kArch = "resnet:layers=1,1,1,1,block=bottleneck,width=8,classes=10";

// Why mpirun tests cannot run here, or "" when they can.
std::string mpi_unavailable() {
  if (!TABULA_HAVE_MPI) return "this build has no MPI (TABULA_MPI found no libopenmpi-dev)";
  if (std::system("command -v mpirun >/dev/null 2>&1") != 0) return "mpirun is not installed (openmpi-bin)";
  return "";
}

// mpirun as CI runs it: as root OpenMPI wants --allow-run-as-root, and --oversubscribe lets 3 ranks share 2 cores.
std::string mpirun(int np, const std::string& env = "") {
  std::string s = "mpirun --allow-run-as-root --oversubscribe -np " + std::to_string(np);
  if (!env.empty()) s += " -x " + env;
  return s + " '" + TABULA_BINARY + "' ";
}

test::RunResult run_shell(const std::string& cmd) {
  static int calls = 0;
  fs::path dir = test::scratch_dir() / (".sh" + std::to_string(++calls));
  fs::create_directories(dir);
  int status = std::system((cmd + " >'" + (dir / "out").string() + "' 2>'" + (dir / "err").string() + "' </dev/null").c_str());
  test::RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file_text((dir / "out").string());
  r.err = read_file_text((dir / "err").string());
  return r;
}

std::string synth_dir() {
  static std::string dir = [] {
    const char* base = std::getenv("TABULA_TEST_TMP");
    auto d = (base ? fs::path(base) : fs::temp_directory_path() / "tabula-tests") / ("mpi-synth." + std::to_string(::getpid()));
    fs::remove_all(d);
    auto r = test::run_tabula("synth cellpainting --quick --out '" + d.string() + "'");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return d.string();
  }();
  return dir;
}

// --threads 1 everywhere: run.json records the thread count, which a distributed run would otherwise choose per rank.
std::string embed_args(const std::string& out, const std::string& extra = "") {
  return std::string("embed --arch '") + kArch + "' --seed 3 --data '" + synth_dir() +
         "/load_data.csv' --size 32 --batch 7 --layers layer2,avgpool --threads 1 --quiet --out '" + out + "' " + extra;
}

void expect_same_files(const std::string& a, const std::string& b, std::initializer_list<const char*> files) {
  for (const char* f : files) {
    ASSERT_TRUE(fs::exists(b + "/" + f)) << b << "/" << f;
    EXPECT_EQ(read_file_bytes(a + "/" + f), read_file_bytes(b + "/" + f)) << f;
  }
}
const std::initializer_list<const char*> kEmbedFiles = {"layer2.npy", "avgpool.npy", "index.csv", "run.json"};

}  // namespace

TEST(MpiEmbed, ThreeRanksGiveTheSingleProcessBytes) {
  if (auto why = mpi_unavailable(); !why.empty()) GTEST_SKIP() << why;
  auto root = test::scratch_dir();
  std::string one = (root / "one").string(), three = (root / "three").string();
  auto r1 = test::run_tabula(embed_args(one));
  ASSERT_EQ(r1.exit_code, 0) << r1.err;
  // Not quiet: each rank announces itself, rank 0 alone prints the result line.
  std::string args = embed_args(three);
  args.replace(args.find(" --quiet"), 8, "");
  auto r3 = run_shell(mpirun(3) + args);
  ASSERT_EQ(r3.exit_code, 0) << r3.err;
  expect_same_files(one, three, kEmbedFiles);
  EXPECT_FALSE(fs::exists(EmbeddingStore::partial_dir(three)));
  for (const char* rank : {"rank 0/3", "rank 1/3", "rank 2/3"}) EXPECT_NE(r3.err.find(rank), std::string::npos) << r3.err;
  // One progress bar, rank 0's, counting every rank's chunks (rank 0 computed 3 of the 7 chunks itself).
  size_t at = r3.err.find("32/32 images");
  EXPECT_NE(at, std::string::npos) << r3.err;
  if (at != std::string::npos) {
    EXPECT_EQ(r3.err.find("32/32 images", at + 1), std::string::npos) << r3.err;
  }
  EXPECT_EQ(std::count(r3.out.begin(), r3.out.end(), '\n'), 1) << r3.out;
}

// Rank 1 of 3 dies after its first chunk (mpirun then stops the others): the folder holds journals, not a result.
// --resume under 2 ranks finishes it; another folder, killed under 2 ranks, is finished by one process without MPI.
TEST(MpiEmbed, KilledRankThenResumeWithAnotherRankCount) {
  if (auto why = mpi_unavailable(); !why.empty()) GTEST_SKIP() << why;
  auto root = test::scratch_dir();
  std::string one = (root / "one").string();
  ASSERT_EQ(test::run_tabula(embed_args(one)).exit_code, 0);

  std::string a = (root / "a").string();
  auto killed = run_shell(mpirun(3, "TABULA_TEST_EXIT_AFTER_CHUNKS=1:1") + embed_args(a));
  EXPECT_NE(killed.exit_code, 0) << killed.err;
  ASSERT_TRUE(fs::exists(EmbeddingStore::partial_dir(a) + "/journal.1")) << killed.err;
  EXPECT_FALSE(fs::exists(a + "/run.json"));
  // Damage the chunk rank 1 stored before dying (chunk 1, rows [5, 10)): on resume under 2 ranks it is rank 1's share
  // of the re-hashing, so only the ranks' union of failed checks brings it back (else the bytes below differ).
  {
    const std::string chunk = EmbeddingStore::partial_dir(a) + "/000000000005-000000000010/avgpool.npy";
    ASSERT_TRUE(fs::exists(chunk));
    std::string bytes = read_file_text(chunk);
    bytes[bytes.size() - 3] ^= 0x40;
    write_file_atomic(chunk, bytes);
  }
  // Without --resume the unfinished run is refused, naming the way on.
  auto refused = run_shell(mpirun(2) + embed_args(a));
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.err.find("--resume"), std::string::npos) << refused.err;
  auto resumed = run_shell(mpirun(2) + embed_args(a, "--resume"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  expect_same_files(one, a, kEmbedFiles);

  std::string b = (root / "b").string();
  auto killed0 = run_shell(mpirun(2, "TABULA_TEST_EXIT_AFTER_CHUNKS=0:1") + embed_args(b));
  EXPECT_NE(killed0.exit_code, 0) << killed0.err;
  ASSERT_TRUE(fs::exists(EmbeddingStore::partial_dir(b) + "/journal")) << killed0.err;
  auto single = test::run_tabula(embed_args(b, "--resume"));
  ASSERT_EQ(single.exit_code, 0) << single.err;
  expect_same_files(one, b, kEmbedFiles);
}

TEST(MpiEvalMap, RanksGiveTheSingleProcessBytes) {
  if (auto why = mpi_unavailable(); !why.empty()) GTEST_SKIP() << why;
  auto root = test::scratch_dir();
  // 144 profiles = 3 query blocks: 2 and 3 ranks both split them. Sparse (JUMP preset: pairs within plates) and dense
  // (negatives from every other compound) paths.
  const std::string data = "--features " + metrics_fixture("map_jump/features.npy") + " --meta " +
                           metrics_fixture("map_jump/meta.csv") + " --null-size 500 --seed 7 ";
  const std::vector<std::string> presets = {
      "--pos-sameby Metadata_JCP2022,Metadata_Reference_Index --neg-sameby Metadata_Plate "
      "--neg-diffby Metadata_negcon,Metadata_Reference_Index",
      "--pos-sameby Metadata_JCP2022 --neg-diffby Metadata_JCP2022"};
  for (size_t p = 0; p < presets.size(); ++p) {
    std::string one = (root / ("one" + std::to_string(p))).string();
    auto r1 = test::run_tabula("eval map " + data + presets[p] + " --out " + one);
    ASSERT_EQ(r1.exit_code, 0) << r1.err;
    for (int np : {2, 3}) {
      std::string many = (root / ("np" + std::to_string(np) + "_" + std::to_string(p))).string();
      auto r = run_shell(mpirun(np) + "eval map " + data + presets[p] + " --out " + many);
      ASSERT_EQ(r.exit_code, 0) << r.err;
      expect_same_files(one, many, {"average_precision.csv", "mean_average_precision.csv", "summary.json"});
    }
  }
}

// An error on one rank stops the job with the rank named (and no rank waits forever).
TEST(MpiEvalMap, AnErrorNamesTheRankAndStopsTheJob) {
  if (auto why = mpi_unavailable(); !why.empty()) GTEST_SKIP() << why;
  auto root = test::scratch_dir();
  auto r = run_shell(mpirun(2) + "eval map --features " + metrics_fixture("map_jump/features.npy") + " --meta " +
                     metrics_fixture("map_jump/meta.csv") + " --pos-sameby Metadata_Nope --neg-diffby Metadata_JCP2022 --out " + (root / "o").string());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("no column 'Metadata_Nope'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(rank "), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(root / "o" / "summary.json"));
}

TEST(MpiEvalRecall, RanksGiveTheSingleProcessBytes) {
  if (auto why = mpi_unavailable(); !why.empty()) GTEST_SKIP() << why;
  auto root = test::scratch_dir();
  // A map of 600 perturbations = 3 row blocks of the sweep, with 400 annotated pairs.
  const int n = 600, d = 8;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<size_t>(n * d));
  for (float& v : x) v = normal(rng);
  write_npy((root / "x.npy").string(), {n, d}, x.data());
  auto gene = [](unsigned long i) {
    std::string g = "G";  // (appending, not "G" + ...: GCC 12's -Wrestrict false positive)
    g += std::to_string(1000 + i);
    return g;
  };
  std::string meta = "gene\n", rels = "entity1,entity2\n";
  for (int i = 0; i < n; ++i) meta += gene(static_cast<unsigned long>(i)) + "\n";
  for (int k = 0; k < 400; ++k) {
    const unsigned long a = rng() % n, b = rng() % n;
    rels += gene(a) + "," + gene(b) + "\n";
  }
  write_file_atomic((root / "meta.csv").string(), meta);
  write_file_atomic((root / "rels.csv").string(), rels);
  const std::string args = "eval recall --features " + (root / "x.npy").string() + " --meta " +
                           (root / "meta.csv").string() + " --pert-col gene --aggregate none --relationships " +
                           (root / "rels.csv").string() + " --out ";
  std::string one = (root / "one").string();
  auto r1 = test::run_tabula(args + one);
  ASSERT_EQ(r1.exit_code, 0) << r1.err;
  for (int np : {2, 3}) {
    std::string many = (root / ("np" + std::to_string(np))).string();
    auto r = run_shell(mpirun(np) + args + many);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    expect_same_files(one, many, {"recall.csv", "summary.json"});
  }
}

// ---- without mpirun: the pieces -------------------------------------------------------------------------------------

// The split of MapOptions::part/parts, run as 3 threads that exchange bytes through an in-process allgather, equals
// one process bit for bit (AP, n_pos, n_total, mAP, p-values), on both similarity paths.
TEST(MpiEvalMap, PartsEqualOneProcessInProcess) {
  const int64_t n = 300, d = 12;
  std::mt19937 rng(5);
  std::normal_distribution<float> g;
  eval::RowMatrixF x(n, d);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) x(i, j) = g(rng) + static_cast<float>((i % 15) == j % 15) * 0.7f;
  tabula::Table meta({"Metadata_Compound", "Metadata_Plate"});
  for (int64_t i = 0; i < n; ++i) {
    std::string compound = "c", plate = "p";  // (appending, not "c" + ...: GCC 12's -Wrestrict false positive)
    compound += std::to_string(i % 15);
    plate += std::to_string(i % 4);
    meta.add_row({compound, plate});
  }

  for (bool dense : {false, true}) {
    eval::MapOptions opt;
    opt.pos_sameby = {"Metadata_Compound"};
    if (!dense) opt.neg_sameby = {"Metadata_Plate"};
    opt.neg_diffby = {"Metadata_Compound"};
    opt.null_size = 300;
    opt.seed = 11;
    opt.threads = 1;
    eval::AveragePrecision want_ap = eval::average_precision(x, meta, opt);
    eval::MeanAveragePrecision want = eval::mean_average_precision(meta, want_ap, opt);

    const int parts = 3;
    std::barrier sync(parts);
    std::mutex mu;
    std::vector<std::string> board(parts);
    std::vector<eval::AveragePrecision> got_ap(parts);
    std::vector<eval::MeanAveragePrecision> got(parts);
    std::vector<std::thread> ts;
    for (int p = 0; p < parts; ++p)
      ts.emplace_back([&, p] {
        eval::MapOptions o = opt;
        o.part = p;
        o.parts = parts;
        o.allgather = [&, p](const std::string& mine) {
          board[static_cast<size_t>(p)] = mine;
          sync.arrive_and_wait();
          std::vector<std::string> all = board;
          sync.arrive_and_wait();
          return all;
        };
        got_ap[p] = eval::average_precision(x, meta, o);
        got[p] = eval::mean_average_precision(meta, got_ap[p], o);
      });
    for (auto& t : ts) t.join();
    for (int p = 0; p < parts; ++p) {
      SCOPED_TRACE(testing::Message() << "dense=" << dense << " part " << p);
      ASSERT_EQ(got_ap[p].ap.size(), want_ap.ap.size());
      for (size_t i = 0; i < want_ap.ap.size(); ++i) {
        EXPECT_EQ(std::isnan(got_ap[p].ap[i]), std::isnan(want_ap.ap[i])) << i;
        if (!std::isnan(want_ap.ap[i])) {
          EXPECT_EQ(got_ap[p].ap[i], want_ap.ap[i]) << i;
        }
        EXPECT_EQ(got_ap[p].n_pos[i], want_ap.n_pos[i]) << i;
        EXPECT_EQ(got_ap[p].n_total[i], want_ap.n_total[i]) << i;
      }
      EXPECT_EQ(got[p].map, want.map);
      EXPECT_EQ(got[p].p_value, want.p_value);
      EXPECT_EQ(got[p].corrected_p_value, want.corrected_p_value);
    }
  }
}

// In-process parts (threads exchanging bytes) for recall: the histogram path, the one-pass band path (>= 2^20 null
// values) and the refine path for bins of many equal values, each equal to one process bit for bit.
TEST(MpiEvalRecall, PartsEqualOneProcessInProcess) {
  struct Case {
    int n;
    bool dup;
  };
  for (Case c : {Case{600, false}, Case{1500, false}, Case{600, true}}) {
    std::mt19937 rng(static_cast<unsigned>(c.n + c.dup));
    std::normal_distribution<float> normal;
    eval::RowMatrixF x(c.n, 6);
    for (int i = 0; i < c.n; ++i)
      for (int d = 0; d < 6; ++d) x(i, d) = c.dup ? static_cast<float>((i % 4) - 1.5f) * (d < 3 ? 1 : -1) : normal(rng);
    std::vector<std::pair<int64_t, int64_t>> pairs;
    for (int k = 0; k < 300; ++k) {
      int64_t a = rng() % c.n, b = rng() % c.n;
      if (a != b) pairs.emplace_back(std::min(a, b), std::max(a, b));
    }
    const std::vector<std::pair<double, double>> thr = {{0.05, 0.95}, {0.1, 0.9}, {0.25, 0.5}};
    const int64_t collect = c.dup ? 16 : int64_t(1) << 24;
    eval::RecallResult want = eval::relationship_recall(x, pairs, thr, 1, collect);
    const int parts = 3;
    std::barrier sync(parts);
    std::vector<std::string> board(parts);
    std::vector<eval::RecallResult> got(parts);
    std::vector<std::thread> ts;
    for (int p = 0; p < parts; ++p)
      ts.emplace_back([&, p] {
        eval::RecallParts rp;
        rp.part = p;
        rp.parts = parts;
        rp.allgather = [&, p](const std::string& mine) {
          board[static_cast<size_t>(p)] = mine;
          sync.arrive_and_wait();
          std::vector<std::string> all = board;
          sync.arrive_and_wait();
          return all;
        };
        got[p] = eval::relationship_recall(x, pairs, thr, 1, collect, rp);
      });
    for (auto& t : ts) t.join();
    for (int p = 0; p < parts; ++p) {
      SCOPED_TRACE(testing::Message() << "n=" << c.n << " dup=" << c.dup << " part " << p);
      EXPECT_EQ(got[p].recall, want.recall);
      EXPECT_EQ(got[p].query_similarity, want.query_similarity);
    }
  }
}

TEST(MpiEmbed, ChunksOfRankPartitionThePendingList) {
  std::vector<RowRange> pending;
  for (int64_t b = 0; b < 23; ++b) pending.push_back({b * 5, b * 5 + 5});
  for (int size : {1, 2, 3, 7, 40}) {
    std::vector<int> owner(pending.size(), -1);
    for (int r = 0; r < size; ++r)
      for (const RowRange& c : chunks_of_rank(pending, r, size)) {
        size_t k = static_cast<size_t>(c.begin / 5);
        EXPECT_EQ(owner[k], -1) << "chunk " << k << " twice";
        owner[k] = r;
      }
    for (size_t k = 0; k < owner.size(); ++k) EXPECT_EQ(owner[k], static_cast<int>(k % static_cast<size_t>(size)));
  }
  EXPECT_EQ(decode_chunks(encode_chunks(pending)), pending);
  EXPECT_THROW(decode_chunks("0 5\n5 x\n"), std::runtime_error);
  EXPECT_THROW(chunks_of_rank(pending, 2, 2), std::invalid_argument);
}

// Journals of several writers: a chunk is done when any journal's line matches its file; a torn last line of a
// rank's journal is cut before that rank appends again; a store reopened with --resume reads them all.
TEST(MpiEmbed, StoreReadsEveryRanksJournal) {
  std::string dir = (test::scratch_dir() / "s").string();
  auto layer = [](const RowRange& r, float v) {
    return std::vector<LayerRows>{{"feat", 2, std::vector<float>(static_cast<size_t>(r.size() * 2), v)}};
  };
  {
    EmbeddingStore s0(dir, 10, 3, "k", EmbeddingStore::Mode::fresh);
    EmbeddingStore s2(dir, 10, 3, "k", EmbeddingStore::Mode::attach, 2);
    s0.put({0, 3}, layer({0, 3}, 1));
    s2.put({6, 9}, layer({6, 9}, 3));
    EXPECT_NE(s2.written().find("done 6 9 feat=2:"), std::string::npos);
    s0.adopt(s2.written());
    EXPECT_EQ(s0.pending(), (std::vector<RowRange>{{3, 6}, {9, 10}}));
  }
  // A kill tore rank 2's next line.
  {
    FILE* f = std::fopen((EmbeddingStore::partial_dir(dir) + "/journal.2").c_str(), "a");
    std::fputs("done 9 10 fe", f);
    std::fclose(f);
  }
  {
    EmbeddingStore again(dir, 10, 3, "k", EmbeddingStore::Mode::resume);
    EXPECT_EQ(again.pending(), (std::vector<RowRange>{{3, 6}, {9, 10}}));
    EmbeddingStore s2(dir, 10, 3, "k", EmbeddingStore::Mode::attach, 2);
    s2.put({9, 10}, layer({9, 10}, 4));
  }
  std::string j2 = read_file_text(EmbeddingStore::partial_dir(dir) + "/journal.2");
  EXPECT_EQ(j2.find("done 9 10 fedone"), std::string::npos) << j2;
  EmbeddingStore last(dir, 10, 3, "k", EmbeddingStore::Mode::resume, 1);
  EXPECT_EQ(last.pending(), (std::vector<RowRange>{{3, 6}}));
  last.put({3, 6}, layer({3, 6}, 2));
  EXPECT_EQ(last.finalize(), std::vector<std::string>{"feat"});
  NpyArray a = read_npy(dir + "/feat.npy");
  std::vector<float> want;
  for (float v : {1.f, 2.f, 3.f}) want.insert(want.end(), 6, v);
  want.insert(want.end(), 2, 4.f);
  EXPECT_EQ(a.to_f32(), want);
  // A rank cannot attach to a run rank 0 did not open (finalize removed .partial).
  EXPECT_THROW(EmbeddingStore(dir, 10, 3, "k", EmbeddingStore::Mode::attach, 1), std::runtime_error);
}

TEST(MpiEmbed, DeviceBindingAndThreads) {
  EXPECT_EQ(mpi::bind_device("cuda", 5, 4), "cuda:1");
  EXPECT_EQ(mpi::bind_device("cuda", 0, 8), "cuda:0");
  EXPECT_EQ(mpi::bind_device("cuda:3", 5, 4), "cuda:3");
  EXPECT_EQ(mpi::bind_device("cpu", 5, 4), "cpu");
  EXPECT_EQ(mpi::bind_device("cuda", 2, 0), "cuda");
  EXPECT_GE(mpi::default_threads_per_rank(), 1);
  // Not launched by mpirun: one rank, MPI never started.
  EXPECT_EQ(mpi::world().size, 1);
  EXPECT_FALSE(mpi::active());
}
