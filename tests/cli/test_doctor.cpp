// `tabula doctor` through the binary: the node report names what tabula will use, and the self-check passes on
// every CPU dispatch level this machine offers.
#include <gtest/gtest.h>

#include <cstdlib>
#include <regex>
#include <string>

#include "tests/test_util.h"

using tabula::test::run_tabula;
using tabula::test::run_tabula_prefixed;

namespace {

// Every self-check line says ok (none says FAIL), and there is at least one per backend check kind.
void expect_self_check_ok(const std::string& out) {
  EXPECT_NE(out.find("self-check:"), std::string::npos) << out;
  EXPECT_EQ(out.find("FAIL"), std::string::npos) << out;
  for (const char* check : {"cpu conv2d 3x3", "cpu linear + bias + gelu", "cpu scaled_dot_product_attention",
                            "cpu resnet forward: fused vs per-module", "cpu vit forward: 1 vs"})
    EXPECT_NE(out.find(check), std::string::npos) << check << "\n" << out;
  EXPECT_TRUE(std::regex_search(out, std::regex("\nresult: +ok \\([0-9.]+ s\\)"))) << out;
}

}  // namespace

TEST(Doctor, ReportsTheNodeAndPassesItsSelfCheck) {
  const auto dir = tabula::test::scratch_dir() / "doctor-out" / "not-yet";
  auto r = run_tabula("doctor --out " + dir.string());
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(std::regex_search(r.out, std::regex("GEMM micro-kernel: (avx512|avx2|generic)"))) << r.out;
  for (const char* word : {"cpu:", "features:", "threads:", "memory:", "available of", "cuda:", "mpi:"})
    EXPECT_NE(r.out.find(word), std::string::npos) << word << "\n" << r.out;
  // --out does not exist yet: the disk line names its nearest existing parent.
  EXPECT_NE(r.out.find("free of"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(dir.parent_path().parent_path().string() + " (writable)"), std::string::npos) << r.out;
  expect_self_check_ok(r.out);
}

TEST(Doctor, EachCpuDispatchLevelPassesTheSelfCheck) {
  for (const char* cap : {"generic", "avx2"}) {
    SCOPED_TRACE(cap);
    auto r = run_tabula_prefixed(std::string("TABULA_CPU=") + cap, "doctor --threads 3");
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find(std::string("TABULA_CPU=") + cap + " caps the dispatch"), std::string::npos) << r.out;
    if (std::string(cap) == "generic") {
      EXPECT_NE(r.out.find("GEMM micro-kernel: generic"), std::string::npos) << r.out;
    }
    EXPECT_NE(r.out.find("1 vs 3 threads"), std::string::npos) << r.out;
    expect_self_check_ok(r.out);
  }
}

TEST(Doctor, NamesTheBatchSchedulersVariablesAndSkipsTheCheckOnRequest) {
  auto r = run_tabula_prefixed("SLURM_JOB_ID=4242 SLURM_ARRAY_TASK_ID=7", "doctor --no-check");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("SLURM_JOB_ID=4242 SLURM_ARRAY_TASK_ID=7"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("self-check:"), std::string::npos) << r.out;
}

TEST(Doctor, SaysWhyCudaIsUnavailable) {
  auto r = run_tabula("doctor --no-check");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto line = r.out.substr(r.out.find("cuda:"));
  // A CPU build says so; a CUDA build names its runtime and cuDNN, and lists devices or says none is usable.
  EXPECT_TRUE(line.find("no CUDA backend") != std::string::npos ||
              (line.find("runtime") != std::string::npos && line.find("cuDNN") != std::string::npos))
      << line;
  EXPECT_TRUE(line.find("NVIDIA driver") != std::string::npos || line.find("NVRM") != std::string::npos) << line;
}

TEST(Doctor, ShowsTheRankLayoutUnderMpirunAndPrintsOnce) {
  if (!TABULA_HAVE_MPI) GTEST_SKIP() << "this build has no MPI";
  if (std::system("command -v mpirun >/dev/null 2>&1") != 0) GTEST_SKIP() << "mpirun is not installed (openmpi-bin)";
  auto r = run_tabula_prefixed("mpirun --allow-run-as-root --oversubscribe -np 2", "doctor");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("OMPI_COMM_WORLD_SIZE=2"), std::string::npos) << r.out;
  for (const char* rank : {"rank 0/2 on .*: local rank 0/2, [0-9]+ threads by default",
                           "rank 1/2 on .*: local rank 1/2, [0-9]+ threads by default"})
    EXPECT_TRUE(std::regex_search(r.out, std::regex(rank))) << rank << "\n" << r.out;
  // Rank 0 alone prints the report and the self-check.
  EXPECT_EQ(r.out.find("cpu:"), r.out.rfind("cpu:")) << r.out;
  EXPECT_EQ(r.out.find("result:"), r.out.rfind("result:")) << r.out;
  expect_self_check_ok(r.out);
}
