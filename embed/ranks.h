// How `tabula embed` shares one run among the MPI ranks of a job (mpirun/srun), kept apart from the embedding
// pipeline itself. Rank 0 opens the output folder (checks, --force, the journal); with --resume every rank re-hashes
// a share of the journalled chunks and the pending chunks are the union of what they found missing or damaged.
// The pending chunks go round-robin to the ranks (pending[i] to rank i mod size: deterministic, and
// balanced whatever an earlier run left); every rank computes its chunks and appends to its own journal
// (journal.<rank>); rank 0 collects the journal lines, assembles the files and writes run.json. Chunks and batches
// are those of a single-process run, so the bytes are the same; a killed rank leaves journals that --resume with any
// rank count (or none) completes.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "embed/store.h"

namespace tabula {

// The chunks `rank` of `size` computes.
std::vector<RowRange> chunks_of_rank(const std::vector<RowRange>& pending, int rank, int size);

// Chunk lists as text for a broadcast ("begin end\n" per chunk), and back.
std::string encode_chunks(const std::vector<RowRange>& chunks);
std::vector<RowRange> decode_chunks(const std::string& text);

// Test hook for the kill-a-rank test: TABULA_TEST_EXIT_AFTER_CHUNKS="RANK:N" makes that rank _exit(3) right after
// storing its N-th chunk, the way a node failure would stop it (no unwinding, no MPI_Finalize).
void exit_if_test_hook(int rank, int64_t chunks_stored);

}  // namespace tabula
