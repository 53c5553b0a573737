#include "util/mpi.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <thread>

#if TABULA_HAVE_MPI
#define OMPI_SKIP_MPICXX 1  // the C API only (OpenMPI's deprecated C++ bindings would otherwise be pulled in)
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace tabula::mpi {

namespace {

int env_int(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return 0;
  char* end = nullptr;
  long n = std::strtol(v, &end, 10);
  return end && *end == '\0' && n > 0 && n < (1L << 30) ? static_cast<int>(n) : 0;
}

World g_world;
bool g_started = false;  // world() succeeded (a refusal is repeated at every call)
bool g_mpi_up = false;   // MPI_Init ran and MPI_Finalize did not

#if TABULA_HAVE_MPI
constexpr int kProgressTag = 7101;
constexpr int kBytesTag = 7102;
constexpr int64_t kPiece = int64_t{1} << 30;  // MPI counts are int: move large buffers in 1 GiB pieces

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw std::runtime_error(std::string("MPI: ") + what + " failed: " + std::string(msg, static_cast<size_t>(len)));
  }
}

// Waits for a nonblocking operation by testing it with growing sleeps (up to 20 ms) instead of MPI's blocking
// calls, which spin at 100 % of a core: a rank that finished its share would otherwise take a core from ranks
// still computing (oversubscribed nodes, a workstation, CI). The collectives here are rare, so the added latency
// (at most the last sleep) is noise.
void wait_lazily(MPI_Request& req, const char* what) {
  int done = 0;
  for (int spins = 0;; ++spins) {
    check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), what);
    if (done) return;
    if (spins >= 100) std::this_thread::sleep_for(std::chrono::microseconds(std::min(20000, 50 * (spins - 99))));
  }
}

void send_bytes(const std::string& bytes, int to) {
  uint64_t n = bytes.size();
  MPI_Request req;
  check(MPI_Isend(&n, 1, MPI_UINT64_T, to, kBytesTag, MPI_COMM_WORLD, &req), "MPI_Isend");
  wait_lazily(req, "MPI_Isend");
  for (int64_t off = 0; off < static_cast<int64_t>(n); off += kPiece) {
    int len = static_cast<int>(std::min<int64_t>(kPiece, static_cast<int64_t>(n) - off));
    check(MPI_Isend(bytes.data() + off, len, MPI_BYTE, to, kBytesTag, MPI_COMM_WORLD, &req), "MPI_Isend");
    wait_lazily(req, "MPI_Isend");
  }
}

std::string recv_bytes(int from) {
  uint64_t n = 0;
  MPI_Request req;
  check(MPI_Irecv(&n, 1, MPI_UINT64_T, from, kBytesTag, MPI_COMM_WORLD, &req), "MPI_Irecv");
  wait_lazily(req, "MPI_Irecv");
  std::string out(n, '\0');
  for (int64_t off = 0; off < static_cast<int64_t>(n); off += kPiece) {
    int len = static_cast<int>(std::min<int64_t>(kPiece, static_cast<int64_t>(n) - off));
    check(MPI_Irecv(out.data() + off, len, MPI_BYTE, from, kBytesTag, MPI_COMM_WORLD, &req), "MPI_Irecv");
    wait_lazily(req, "MPI_Irecv");
  }
  return out;
}
#endif

}  // namespace

int launched_size() {
  // mpirun/mpiexec of OpenMPI; then PMI (MPICH/Intel MPI hydra, srun --mpi=pmi2); then srun --mpi=pmix, which
  // announces a rank but not always the size: the step's task count is the size.
  if (int n = env_int("OMPI_COMM_WORLD_SIZE")) return n;
  if (int n = env_int("PMI_SIZE")) return n;
  if (std::getenv("PMIX_RANK") || std::getenv("PMI_RANK")) {
    if (int n = env_int("SLURM_STEP_NUM_TASKS")) return n;
    if (int n = env_int("SLURM_NTASKS")) return n;
  }
  return 1;
}

const World& world() {
  if (g_started) return g_world;
  const int n = launched_size();
  if (n <= 1) {
    g_started = true;
    return g_world;
  }
#if TABULA_HAVE_MPI
  int provided = 0;
  // Only the main thread calls MPI (decode/model threads never do).
  check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  g_mpi_up = true;
  g_world.active = true;
  check(MPI_Comm_rank(MPI_COMM_WORLD, &g_world.rank), "MPI_Comm_rank");
  check(MPI_Comm_size(MPI_COMM_WORLD, &g_world.size), "MPI_Comm_size");
  MPI_Comm node;
  check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_world.rank, MPI_INFO_NULL, &node),
        "MPI_Comm_split_type");
  check(MPI_Comm_rank(node, &g_world.local_rank), "MPI_Comm_rank");
  check(MPI_Comm_size(node, &g_world.local_size), "MPI_Comm_size");
  MPI_Comm_free(&node);
  char name[MPI_MAX_PROCESSOR_NAME];
  int len = 0;
  MPI_Get_processor_name(name, &len);
  g_world.host.assign(name, static_cast<size_t>(len));
  g_started = true;
  return g_world;
#else
  throw std::runtime_error("this process is one of " + std::to_string(n) +
                           " ranks started by mpirun/srun, but this tabula was built without MPI (configure with "
                           "-DTABULA_MPI=ON after `apt-get install libopenmpi-dev openmpi-bin`), so every rank would "
                           "redo the whole job; run one process per job instead, or split the work with --shard I/N");
#endif
}

bool distributed() { return world().size > 1; }

bool active() { return g_mpi_up; }

void finalize() {
#if TABULA_HAVE_MPI
  if (g_mpi_up) {
    MPI_Finalize();
    g_mpi_up = false;
  }
#endif
}

void abort(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
#if TABULA_HAVE_MPI
  if (g_mpi_up) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::_Exit(code);
}

void barrier() {
#if TABULA_HAVE_MPI
  if (g_mpi_up) {
    MPI_Request req;
    check(MPI_Ibarrier(MPI_COMM_WORLD, &req), "MPI_Ibarrier");
    wait_lazily(req, "MPI_Ibarrier");
  }
#endif
}

std::string broadcast(const std::string& bytes, int root) {
#if TABULA_HAVE_MPI
  if (g_mpi_up) {
    uint64_t n = bytes.size();
    MPI_Request req;
    check(MPI_Ibcast(&n, 1, MPI_UINT64_T, root, MPI_COMM_WORLD, &req), "MPI_Ibcast");
    wait_lazily(req, "MPI_Ibcast");
    std::string out = g_world.rank == root ? bytes : std::string(n, '\0');
    for (int64_t off = 0; off < static_cast<int64_t>(n); off += kPiece) {
      int len = static_cast<int>(std::min<int64_t>(kPiece, static_cast<int64_t>(n) - off));
      check(MPI_Ibcast(out.data() + off, len, MPI_BYTE, root, MPI_COMM_WORLD, &req), "MPI_Ibcast");
      wait_lazily(req, "MPI_Ibcast");
    }
    return out;
  }
#endif
  (void)root;
  return bytes;
}

std::vector<std::string> allgather(const std::string& bytes) {
  const World& w = world();
  std::vector<std::string> out(static_cast<size_t>(w.size));
  // One broadcast per rank: sizes may exceed MPI's int counts, and the volumes tabula gathers (per-query results,
  // null vectors) are small next to the work that produced them.
  for (int r = 0; r < w.size; ++r) out[static_cast<size_t>(r)] = broadcast(r == w.rank ? bytes : std::string(), r);
  return out;
}

std::vector<std::string> gather(const std::string& bytes, int root) {
  const World& w = world();
  std::vector<std::string> out;
  if (w.size == 1) return {bytes};
#if TABULA_HAVE_MPI
  if (w.rank == root) {
    out.resize(static_cast<size_t>(w.size));
    for (int r = 0; r < w.size; ++r) out[static_cast<size_t>(r)] = r == root ? bytes : recv_bytes(r);
  } else {
    send_bytes(bytes, root);
  }
#endif
  return out;
}

#if TABULA_HAVE_MPI
namespace {
int64_t allreduce(int64_t v, MPI_Op op) {
  int64_t out = 0;
  MPI_Request req;
  check(MPI_Iallreduce(&v, &out, 1, MPI_INT64_T, op, MPI_COMM_WORLD, &req), "MPI_Iallreduce");
  wait_lazily(req, "MPI_Iallreduce");
  return out;
}
}  // namespace
#endif

int64_t allreduce_sum(int64_t v) {
#if TABULA_HAVE_MPI
  if (g_mpi_up) return allreduce(v, MPI_SUM);
#endif
  return v;
}

int64_t allreduce_max(int64_t v) {
#if TABULA_HAVE_MPI
  if (g_mpi_up) return allreduce(v, MPI_MAX);
#endif
  return v;
}

void post_progress(int64_t n) {
#if TABULA_HAVE_MPI
  // 8 bytes go out eagerly: MPI_Send returns at once, so reporting never waits for rank 0.
  if (g_mpi_up && g_world.rank != 0 && n > 0) check(MPI_Send(&n, 1, MPI_INT64_T, 0, kProgressTag, MPI_COMM_WORLD), "MPI_Send");
#else
  (void)n;
#endif
}

void post_finished() {
#if TABULA_HAVE_MPI
  int64_t last = -1;
  if (g_mpi_up && g_world.rank != 0) check(MPI_Send(&last, 1, MPI_INT64_T, 0, kProgressTag, MPI_COMM_WORLD), "MPI_Send");
#endif
}

#if TABULA_HAVE_MPI
static int64_t receive_progress(int* finished) {
  int64_t v = 0;
  MPI_Request req;
  check(MPI_Irecv(&v, 1, MPI_INT64_T, MPI_ANY_SOURCE, kProgressTag, MPI_COMM_WORLD, &req), "MPI_Irecv");
  wait_lazily(req, "MPI_Irecv");
  if (v < 0) {
    ++*finished;
    return 0;
  }
  return v;
}
#endif

int64_t poll_progress(int* finished) {
  int64_t total = 0;
#if TABULA_HAVE_MPI
  if (!g_mpi_up || g_world.rank != 0) return 0;
  for (;;) {
    int flag = 0;
    check(MPI_Iprobe(MPI_ANY_SOURCE, kProgressTag, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE), "MPI_Iprobe");
    if (!flag) break;
    total += receive_progress(finished);
  }
#else
  (void)finished;
#endif
  return total;
}

int64_t wait_progress(int* finished) {
#if TABULA_HAVE_MPI
  if (g_mpi_up && g_world.rank == 0) return receive_progress(finished);
#endif
  (void)finished;
  return 0;
}

int default_threads_per_rank() {
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int mine = hw;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) mine = std::max(1, CPU_COUNT(&set));
  const World& w = world();
  // A per-rank mask (srun --cpus-per-task, mpirun --bind-to core) is already this rank's share; a node-wide mask
  // is shared with the node's other ranks.
  return std::max(1, std::min(mine, hw / std::max(1, w.local_size)));
}

std::string bind_device(const std::string& device, int local_rank, int n_devices) {
  if (device != "cuda" || n_devices <= 0) return device;
  return "cuda:" + std::to_string(local_rank % n_devices);
}

}  // namespace tabula::mpi
