// Model throughput on this machine: `tabula bench`, and bench/compare_cpu.py's tabula column.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "models/model.h"

namespace tabula {

struct BenchOptions {
  int64_t batch = 16;
  int threads = 0;  // 0: the default (TABULA_THREADS or hardware concurrency)
  uint64_t seed = 0;
  int iters = 5, warmup = 2;
  int64_t size = 0;  // input height = width; 0: the arch's default input size
  std::shared_ptr<const WeightMap> weights;  // trained weights (mapped and parsed); null: the untrained model of `seed`
  double map_ms = 0, parse_ms = 0;           // the caller's phases of reading the weight file (reported)
  LoadProgress load_progress;                // while the weights are packed / uploaded (Model::load)
  std::string device = "cpu", precision = "fp32";  // --device cpu|cuda[:N], --precision (see select_device)
  bool graph = false;  // cuda: capture the forward once as a CUDA graph and time its replays
};

struct BenchResult {
  std::string arch;
  int64_t batch = 0, size = 0;
  int threads = 0;
  double median_ms = 0, min_ms = 0;  // per batch
  double cpu_ms = 0;                 // process CPU time per batch over the timed forwards (all threads)
  double images_per_s = 0;           // batch / median
  double peak_rss_mb = 0;            // VmHWM over the timed forwards (the high-water mark is reset after warm-up)
  double load_rss_mb = 0;            // VmRSS once the model is built (weights, code, libraries)
  double arena_mb = 0;               // the activation arena's size: the forward's peak of live activations
  std::string device = "cpu", precision = "fp32";
  bool graph = false;
  double peak_gpu_mem_mb = 0;        // the caching allocator's peak bytes in use (cuda)
  double gmacs_per_image = 0;
  std::string gemm_kernel;
  // Weights from a file: mapping it, parsing it, building the model (converting, packing or uploading each weight
  // and releasing its mapped pages); 0 for seeds.
  double map_ms = 0, parse_ms = 0, pack_ms = 0;
  double released_mb = 0;  // mapped weight pages given back once their layers held their own copies
  double load_ms() const { return map_ms + parse_ms + pack_ms; }
  std::string summary() const;  // one line: "... ms/batch ... images/s ... peak RSS ..."
  std::string key_values() const;
  std::string where() const;       // "2 threads, fp32 cpu (avx512 gemm)" / "bf16 cuda:0 (CUDA graph)"  // "images/s: N", "latency_ms: N", ... one per line (bench/gpu_compare.py reads them)
};

// Builds the untrained model of `seed`, runs `warmup` then `iters` forwards of a fixed random batch, on the CPU or
// (opt.device cuda) on a GPU with the weights and the batch uploaded once and each forward synchronised.
BenchResult bench_model(const std::string& arch, const BenchOptions& opt);
// VmHWM from /proc/self/status in MiB (0 when unavailable).
double peak_rss_mb();
// VmRSS in MiB (0 when unavailable).
double current_rss_mb();
// Resets VmHWM to the current RSS (Linux >= 4.0: "5" > /proc/self/clear_refs); false when not possible.
bool reset_peak_rss();

}  // namespace tabula
