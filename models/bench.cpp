#include "models/bench.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <random>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "engine/arena.h"
#include "engine/backend.h"
#include "engine/file_pages.h"
#include "engine/ops.h"
#include "engine/threads.h"
#include "models/device.h"
#include "models/registry.h"

namespace tabula {

static double status_mb(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(key);
  while (std::getline(f, line)) {
    if (line.compare(0, n, key) == 0) {
      std::istringstream in(line.substr(n));
      double kb = 0;
      in >> kb;
      return kb / 1024.0;
    }
  }
  return 0;
}
double peak_rss_mb() { return status_mb("VmHWM:"); }
double current_rss_mb() { return status_mb("VmRSS:"); }

// CPU time of the whole process (every thread), in ms: on a shared machine the CPU time a forward needs is a
// steadier measure than its wall time (bench/compare_cpu.py reports both).
static double process_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return 1e3 * static_cast<double>(ts.tv_sec) + 1e-6 * static_cast<double>(ts.tv_nsec);
}

bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  f.flush();
  return static_cast<bool>(f);
}

std::string BenchResult::where() const {
  if (device == "cpu") return std::to_string(threads) + " threads, " + precision + " cpu (" + gemm_kernel + " gemm)";
  return precision + " " + device + (graph ? " (CUDA graph)" : " (eager)");
}

std::string BenchResult::key_values() const {
  char buf[512];
  std::snprintf(buf, sizeof buf, "images/s: %.3f\nlatency_ms: %.4f\npeak_rss_mb: %.1f\n", images_per_s, median_ms,
                peak_rss_mb);
  std::string out = buf;
  if (device != "cpu") {
    std::snprintf(buf, sizeof buf, "peak_gpu_mem_mb: %.1f\n", peak_gpu_mem_mb);
    out += buf;
  }
  if (load_ms() > 0) {
    std::snprintf(buf, sizeof buf,
                  "load_ms: %.1f\nload_map_ms: %.1f\nload_parse_ms: %.1f\nload_pack_ms: %.1f\nload_released_mb: %.1f\n",
                  load_ms(), map_ms, parse_ms, pack_ms, released_mb);
    out += buf;
  }
  return out;
}

std::string BenchResult::summary() const {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "%s: batch %lld at %lldx%lld, %s: %.1f ms/batch (median; min %.1f; cpu %.1f), "
                "%.2f images/s, %.1f GMAC/s, peak RSS %.0f MiB (after load %.0f MiB, activation arena %.0f MiB)",
                arch.c_str(), static_cast<long long>(batch), static_cast<long long>(size),
                static_cast<long long>(size), where().c_str(), median_ms, min_ms, cpu_ms, images_per_s,
                gmacs_per_image * images_per_s, peak_rss_mb, load_rss_mb, arena_mb);
  std::string out = buf;
  if (device != "cpu") {
    std::snprintf(buf, sizeof buf, ", peak GPU memory %.0f MiB", peak_gpu_mem_mb);
    out += buf;
  }
  if (load_ms() > 0) {
    std::snprintf(buf, sizeof buf, ", weights loaded in %.0f ms (map %.1f, parse %.1f, pack %.0f)", load_ms(), map_ms,
                  parse_ms, pack_ms);
    out += buf;
  }
  return out;
}

BenchResult bench_model(const std::string& arch, const BenchOptions& opt) {
  if (opt.batch < 1) throw std::invalid_argument("bench: --batch must be >= 1");
  if (opt.iters < 1 || opt.warmup < 0) throw std::invalid_argument("bench: --iters must be >= 1 and --warmup >= 0");
  if (opt.threads < 0) throw std::invalid_argument("bench: --threads must be >= 0");
  set_num_threads(opt.threads);
  // before the build: the CPU packs its weights for the precision (bf16) when the model is built
  const int dev = select_device(opt.device, opt.precision);
  if (opt.graph && dev < 0) throw std::invalid_argument("bench: --graph is for --device cuda");
  const auto l0 = std::chrono::steady_clock::now();
  const uint64_t released0 = page_release_stats().bytes;
  std::unique_ptr<Model> model;
  if (opt.weights) {  // prepared straight for the device: a GPU run never packs for the CPU first
    BuildOptions bo;
    bo.device = dev;
    bo.progress = opt.load_progress;
    model = build_model(arch, *opt.weights, bo);
  } else {
    BuildOptions bo;  // the init pass streams into the layers, prepared straight for the device
    bo.device = dev;
    bo.progress = opt.load_progress;
    model = build_model_seed(arch, opt.seed, bo);
  }
  const double build_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - l0).count();
  Shape in = model->default_input_shape(opt.batch);
  if (opt.size > 0) in[2] = in[3] = opt.size;
  model->check_input(in);
  // A fixed standard-normal batch (what preprocessed images look like), the same for every run.
  Tensor x = Tensor::empty(in);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  float* p = x.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i) p[i] = nd(rng);

  if (dev >= 0) {
    model->to_device(dev);
    x = upload(x, dev);
  } else {  // CPU bf16: the centres embed records (ImageNet-normalised black and white), at the same cost
    model->record_bf16_centres(black_white_inputs(in, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}));
  }
  const double load_rss = current_rss_mb();
  // CPU: activations come from a reuse arena (engine/arena.h) laid out from the first forward: later forwards
  // touch no fresh memory, and the peak RSS measured over the timed forwards is weights + the live activation set.
  // GPU: the caching allocator plays that part; each forward is synchronised so the wall time is the device's.
  Arena arena(0, Arena::Mode::reuse);
  std::function<void()> run = [&] {
    if (dev >= 0) {
      model->forward(x);
      synchronize_device(dev);
      return;
    }
    {
      ArenaScope scope(&arena);
      Tensor y = heap_copy(model->forward(x));  // the output leaves the arena before the batch ends
    }
    arena.reset();
  };
  Backend* gpu = dev >= 0 ? &backend("bench", Device::cuda) : nullptr;
  std::unique_ptr<CapturedForward> graph;
  if (opt.graph) {
    run();  // eager first: fills the allocator and the cuBLASLt/cuDNN algorithm caches
    graph = gpu->capture(dev, [&] { return model->forward(x); });
    run = [&] {
      graph->replay();
      synchronize_device(dev);
    };
  }
  for (int i = 0; i < opt.warmup; ++i) run();
#ifdef __GLIBC__
  malloc_trim(0);  // heap pages the sizing forward freed go back to the system before the peak is measured
#endif
  reset_peak_rss();
  std::vector<double> ms;
  if (gpu) gpu->clear_op_profile();  // TABULA_CUDA_PROFILE: only the timed forwards are reported
  const double cpu0 = process_cpu_ms();
  for (int i = 0; i < opt.iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    const auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  const double cpu_total = process_cpu_ms() - cpu0;
  if (gpu) gpu->print_op_profile(opt.iters);
  std::sort(ms.begin(), ms.end());
  BenchResult r;
  r.arch = arch;
  r.batch = opt.batch;
  r.size = in[2];
  r.threads = get_num_threads();
  r.median_ms = ms[ms.size() / 2];
  r.min_ms = ms.front();
  r.cpu_ms = cpu_total / opt.iters;
  r.images_per_s = static_cast<double>(opt.batch) / (r.median_ms / 1000.0);
  r.peak_rss_mb = peak_rss_mb();
  r.load_rss_mb = load_rss;
  r.arena_mb = static_cast<double>(arena.capacity()) / (1024.0 * 1024.0);
  r.device = opt.device;
  r.precision = opt.precision;
  r.graph = opt.graph;
  r.peak_gpu_mem_mb = peak_device_mem_mb(dev);
  Shape one = in;
  one[0] = 1;
  r.gmacs_per_image = model->gmacs(one);
  r.gemm_kernel = ops::gemm_kernel_name();
  if (opt.weights) {
    r.map_ms = opt.map_ms;
    r.parse_ms = opt.parse_ms;
    r.pack_ms = build_ms;
    r.released_mb = static_cast<double>(page_release_stats().bytes - released0) / (1024.0 * 1024.0);
  }
  return r;
}

}  // namespace tabula
