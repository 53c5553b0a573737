// A small persistent thread pool with a deterministic work split.
//
// parallel_for(n, grain, fn) cuts [0, n) into chunks of `grain` items whose boundaries depend only on n and grain,
// never on the thread count; each chunk runs fn(begin, end) on exactly one thread. Ops keep every output element
// inside one chunk and never reduce across chunks, so results are bit-identical for 1, 2 or N threads.
// Calls from inside a chunk run inline (no nested parallelism), which keeps the split the same.
#pragma once
#include <cstdint>
#include <functional>

namespace tabula {

// Threads used by parallel_for (the calling thread counts as one). Default: hardware concurrency, or
// TABULA_THREADS. set_num_threads(0) restores the default. `--threads` sets this.
void set_num_threads(int n);
int get_num_threads();

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& fn);
// Grain chosen so that each chunk is worth roughly `min_work` scalar operations given `work_per_item`
// (a fixed function of the op's shape, so still independent of the thread count).
int64_t grain_for(int64_t n, int64_t work_per_item, int64_t min_work = 32768);

}  // namespace tabula
