// The few MPI operations tabula needs (rank/size, barrier, broadcast/gather of bytes, progress messages to rank 0),
// behind one header with no MPI types, so code using it compiles the same with and without MPI (TABULA_HAVE_MPI).
//
// MPI is started only when a launcher says this process is one of several ranks (mpirun/mpiexec: OMPI_COMM_WORLD_SIZE,
// PMI_SIZE / PMIX_RANK; srun: the same PMI variables): a plain `tabula` run never calls MPI_Init (OpenMPI's singleton
// start is slow and prints warnings in containers). Commands that can run distributed call world() once at start;
// every other command ignores MPI entirely, so `mpirun -np 4 tabula models` simply runs four copies.
//
// Collectives are called by every rank in the same order (the usual MPI contract). On an error a rank prints it and
// calls abort(): the launcher then stops every rank, and the on-disk state (journals) stays resumable.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tabula::mpi {

struct World {
  int rank = 0, size = 1;              // MPI_COMM_WORLD
  int local_rank = 0, local_size = 1;  // ranks on this node (MPI_COMM_TYPE_SHARED)
  bool active = false;                 // MPI was initialised (launched with more than one rank, built with MPI)
  std::string host;
};

// Ranks the launcher's environment announces (1 when not launched by mpirun/srun), without starting MPI.
int launched_size();
// Starts MPI on first use when launched_size() > 1. Throws when launched as several ranks by a build without MPI
// (each copy would redo the whole job): the message names the build option and the --shard alternative.
const World& world();
bool distributed();  // world().size > 1 (starts MPI like world())
bool active();       // MPI is running in this process (world() started it); never starts it
void finalize();     // MPI_Finalize if world() started MPI; called once at exit by the CLI
[[noreturn]] void abort(int code);  // MPI_Abort(MPI_COMM_WORLD); plain std::_Exit without MPI

void barrier();
// Root's bytes on every rank.
std::string broadcast(const std::string& bytes, int root = 0);
// Every rank's bytes on every rank, in rank order.
std::vector<std::string> allgather(const std::string& bytes);
// Every rank's bytes on root, in rank order (other ranks get an empty vector).
std::vector<std::string> gather(const std::string& bytes, int root = 0);
int64_t allreduce_sum(int64_t v);
int64_t allreduce_max(int64_t v);

// Progress from ranks > 0 to rank 0, point to point so rank 0 can poll between its own pieces of work:
// post_progress(n) says n more items are done; post_finished() is the last message of a rank.
void post_progress(int64_t n);
void post_finished();
// Rank 0: items reported since the last call, without blocking; `finished` counts ranks that posted their last message.
int64_t poll_progress(int* finished);
// Rank 0: blocks until one message arrives; returns its items (0 for a finished message, counted in *finished).
int64_t wait_progress(int* finished);

// CPU threads this rank should use when the user gave none: the CPUs it may run on (its affinity mask, which
// srun/mpirun binding sets), shared fairly with the other ranks on the node when the mask is not per rank.
int default_threads_per_rank();
// `--device` for this rank: "cuda" (no index) becomes cuda:<local_rank mod devices>, so ranks on a node spread
// over its GPUs; an explicit cuda:N or cpu stays as given. n_devices <= 0: the device string is returned unchanged.
std::string bind_device(const std::string& device, int local_rank, int n_devices);

}  // namespace tabula::mpi
