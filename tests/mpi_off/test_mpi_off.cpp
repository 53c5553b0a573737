// util/mpi.cpp as a build without MPI compiles it (TABULA_HAVE_MPI=0; this binary is built from that one file):
// a plain process is one rank, and a process that a launcher started as one of several ranks refuses to run
// instead of redoing the whole job in every copy.
#include <gtest/gtest.h>

#include <cstdlib>
#include <stdexcept>

#include "util/mpi.h"

using namespace tabula;

static_assert(TABULA_HAVE_MPI == 0, "this test checks the build without MPI");

TEST(MpiOff, LaunchedAsSeveralRanksIsRefusedWithTheWayOut) {
  ::unsetenv("OMPI_COMM_WORLD_SIZE");
  ::unsetenv("PMI_SIZE");
  ::unsetenv("PMIX_RANK");
  ::unsetenv("PMI_RANK");
  EXPECT_EQ(mpi::launched_size(), 1);
  // Launched by mpirun as 3 ranks (checked before world() caches a plain process).
  ::setenv("OMPI_COMM_WORLD_SIZE", "3", 1);
  EXPECT_EQ(mpi::launched_size(), 3);
  try {
    mpi::world();
    FAIL() << "world() accepted 3 ranks without MPI";
  } catch (const std::runtime_error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("one of 3 ranks"), std::string::npos) << m;
    EXPECT_NE(m.find("-DTABULA_MPI=ON"), std::string::npos) << m;
    EXPECT_NE(m.find("--shard"), std::string::npos) << m;
  }
  EXPECT_THROW(mpi::distributed(), std::runtime_error);  // refused at every call, never cached as one rank
  EXPECT_FALSE(mpi::active());
  // srun --mpi=pmix: a rank without a size, the step's task count is the size.
  ::unsetenv("OMPI_COMM_WORLD_SIZE");
  ::setenv("PMIX_RANK", "0", 1);
  ::setenv("SLURM_STEP_NUM_TASKS", "4", 1);
  EXPECT_EQ(mpi::launched_size(), 4);
  ::unsetenv("PMIX_RANK");
  EXPECT_EQ(mpi::launched_size(), 1);  // a batch script's own environment is no launch
  // Without a launcher: one rank; every collective is the identity.
  EXPECT_EQ(mpi::world().size, 1);
  EXPECT_EQ(mpi::broadcast("x"), "x");
  EXPECT_EQ(mpi::allgather("y"), std::vector<std::string>{"y"});
  EXPECT_EQ(mpi::gather("z"), std::vector<std::string>{"z"});
  EXPECT_EQ(mpi::allreduce_sum(5), 5);
  int finished = 0;
  EXPECT_EQ(mpi::poll_progress(&finished), 0);
  mpi::barrier();
  mpi::finalize();
}
