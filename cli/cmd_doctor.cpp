// `tabula doctor`: what this node offers and what tabula will use on it (CPU features and the kernels chosen,
// threads, memory, disk, GPUs, MPI rank layout), then a short self-check: the fast CPU ops against the reference
// ops (ref::), a tiny ResNet and ViT forward (fused path against the per-module path, 1 thread against N bit for
// bit) and, where a GPU is usable, the same forwards on it against the CPU. Exit code 1 when a check fails.
#include <sched.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cli/args.h"
#include "engine/backend.h"
#include "engine/hooks.h"
#include "util/mpi.h"
#include "engine/ops.h"
#include "engine/system.h"
#include "engine/threads.h"
#include "engine/validate.h"
#include "models/device.h"
#include "models/registry.h"

namespace tabula::cli {
namespace {

const char* kResNet = "resnet:layers=1,1,1,1,block=bottleneck,classes=10";
const char* kViT = "vit:dim=96,depth=3,heads=3,patch=16,img=64,classes=10";

std::string gib(double bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
  return b;
}

// A /proc/meminfo field in bytes (0 when absent).
double meminfo(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  std::string k;
  double kb = 0;
  std::string unit;
  while (in >> k >> kb) {
    std::getline(in, unit);
    if (k == key + ":") return kb * 1024.0;
  }
  return 0;
}

// The first line of a small file, or "" (cgroup limits, the NVIDIA driver's version file).
std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

void report_cpu() {
  std::printf("cpu:      %s\n", cpu_model_name().c_str());
  std::printf("          features: %s; GEMM micro-kernel: %s; Winograd 3x3 convs: %s\n",
              cpu_features_string().c_str(), ops::gemm_kernel_name(), ops::winograd_enabled() ? "on" : "off");
  if (const char* cap = std::getenv("TABULA_CPU")) std::printf("          TABULA_CPU=%s caps the dispatch\n", cap);
  cpu_set_t set;
  CPU_ZERO(&set);
  const int affinity = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : -1;
  std::printf("threads:  %d used by default (hardware %u, this process may run on %d",
              get_num_threads(), std::thread::hardware_concurrency(), affinity);
  if (const char* t = std::getenv("TABULA_THREADS")) std::printf(", TABULA_THREADS=%s", t);
  if (const char* t = std::getenv("SLURM_CPUS_PER_TASK")) std::printf(", SLURM_CPUS_PER_TASK=%s", t);
  std::printf(")\n");
}

void report_memory_and_disk(const std::string& out) {
  std::printf("memory:   %s available of %s", gib(meminfo("MemAvailable")).c_str(), gib(meminfo("MemTotal")).c_str());
  // A batch job's limit is its cgroup's, not the node's (Slurm's ConstrainRAMSpace).
  const std::string limit = first_line("/sys/fs/cgroup/memory.max");
  if (!limit.empty() && limit != "max")
    std::printf("; this job's cgroup limit %s", gib(std::atof(limit.c_str())).c_str());
  std::printf("\n");
  // --out need not exist yet: its nearest existing parent holds the files.
  std::filesystem::path p = std::filesystem::absolute(out).lexically_normal();
  if (!p.has_filename() && p.has_parent_path() && p != p.root_path()) p = p.parent_path();  // "dir/" -> "dir"
  std::error_code ec;
  while (!std::filesystem::exists(p, ec) && p.has_parent_path() && p != p.parent_path()) p = p.parent_path();
  struct statvfs fs {};
  if (statvfs(p.c_str(), &fs) == 0) {
    const double free_b = static_cast<double>(fs.f_bavail) * fs.f_frsize;
    const double total_b = static_cast<double>(fs.f_blocks) * fs.f_frsize;
    std::printf("disk:     %s free of %s in %s (%s)\n", gib(free_b).c_str(), gib(total_b).c_str(), p.c_str(),
                access(p.c_str(), W_OK) == 0 ? "writable" : "NOT writable by this user");
  } else {
    std::printf("disk:     cannot query %s: %s\n", p.c_str(), std::strerror(errno));
  }
}

// Usable GPUs (none when the build has no CUDA backend or no device/driver is visible).
int report_cuda() {
  // The driver's own version file exists whenever the NVIDIA kernel module is loaded, CUDA libraries or not.
  const std::string driver = first_line("/proc/driver/nvidia/version");
  const std::string driver_text = driver.empty() ? "no NVIDIA driver loaded" : driver;
  if (!cuda_built()) {
    std::printf("cuda:     this binary has no CUDA backend (a CPU build); %s\n", driver_text.c_str());
    return 0;
  }
  // The backend module is loaded here (engine/cuda_module.h): when it cannot be, the reason names the library.
  const Backend* gpu = find_backend(Device::cuda);
  if (!gpu) {
    std::printf("cuda:     unavailable: %s; %s\n", unavailable_reason(Device::cuda).c_str(), driver_text.c_str());
    return 0;
  }
  std::printf("cuda:     %s; %s\n", gpu->runtime_version().c_str(), driver_text.c_str());
  const auto devs = gpu->devices();
  if (devs.empty()) std::printf("          no usable CUDA device (CUDA_VISIBLE_DEVICES, driver, or none installed)\n");
  for (const auto& d : devs)
    std::printf("          device %d: %s (sm_%d%d, %zu MiB)\n", d.index, d.name.c_str(), d.sm_major, d.sm_minor,
                d.total_memory / (1024 * 1024));
  return static_cast<int>(devs.size());
}

void report_mpi() {
  static const char* kVars[] = {"SLURM_JOB_ID",         "SLURM_ARRAY_TASK_ID", "SLURM_PROCID", "SLURM_NTASKS",
                                "SLURM_LOCALID",        "SLURM_NODEID",        "OMPI_COMM_WORLD_RANK",
                                "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "PMI_RANK", "PMI_SIZE",
                                "PMIX_RANK",            "CUDA_VISIBLE_DEVICES"};
  std::string env;
  for (const char* v : kVars)
    if (const char* val = std::getenv(v)) env += std::string(env.empty() ? "" : " ") + v + "=" + val;
  std::printf("mpi:      %s; launcher: %s\n", mpi_built() ? "built" : "not built",
              env.empty() ? "none (a plain run)" : env.c_str());
  const int launched = mpi::launched_size();
  if (launched <= 1) return;
  if (!mpi_built()) {
    std::printf("          launched as %d ranks, but this build has no MPI: each copy would redo the whole job "
                "(use --shard I/N with a Slurm array, or the MPI build)\n", launched);
    return;
  }
  const mpi::World& w = mpi::world();
  char line[512];
  std::snprintf(line, sizeof line, "          rank %d/%d on %s: local rank %d/%d, %d threads by default\n", w.rank,
                w.size, w.host.c_str(), w.local_rank, w.local_size, mpi::default_threads_per_rank());
  const auto lines = mpi::gather(line);
  for (const auto& l : lines) std::fputs(l.c_str(), stdout);
}

// ---- self-check ----------------------------------------------------------------------------------------------

struct Checks {
  int failed = 0;
  void result(const std::string& what, bool ok, const std::string& detail) {
    std::printf("  %-52s %s  %s\n", what.c_str(), ok ? "ok  " : "FAIL", detail.c_str());
    if (!ok) ++failed;
  }
};

std::string rel_text(double r) {
  char b[48];
  std::snprintf(b, sizeof b, "max rel error %.1e", r);
  return b;
}

// max |a - b| / max |b| (0 for equal tensors); infinity for a shape mismatch or a NaN.
double max_rel(const Tensor& got_in, const Tensor& want_in) {
  const Tensor got = to_host(got_in).contiguous(), want = to_host(want_in).contiguous();
  if (got.shape() != want.shape()) return INFINITY;
  const float* g = got.data<float>();
  const float* w = want.data<float>();
  double peak = 0, worst = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    if (std::isnan(g[i]) || std::isnan(w[i])) return INFINITY;
    peak = std::max(peak, std::abs(static_cast<double>(w[i])));
    worst = std::max(worst, std::abs(static_cast<double>(g[i]) - w[i]));
  }
  return peak > 0 ? worst / peak : worst;
}

// The fast CPU ops (the kernels dispatch chose on this CPU) against the reference ops, on fixed random inputs.
void check_cpu_ops(Checks& c) {
  std::mt19937_64 rng(20240601);
  auto rnd = [&](const Shape& s) { return validate::random_tensor(s, rng); };
  const validate::Tolerance tol{1e-4, 1e-4};
  auto op = [&](const std::string& name, const std::function<Tensor()>& fast, const std::function<Tensor()>& ref) {
    // validate::check poisons the output (an element the kernel never writes is caught) and applies the
    // element-wise tolerance; the detail shown is the error relative to the output's largest magnitude.
    const validate::Report r = validate::check(fast, ref, tol);
    c.result("cpu " + name, r.ok, r.ok ? rel_text(max_rel(fast(), ref())) : r.message);
  };
  const Tensor x = rnd({2, 16, 20, 20}), w3 = rnd({32, 16, 3, 3}), b3 = rnd({32});
  Conv2dOptions same;
  same.padding = {1, 1};
  op("conv2d 3x3 + bias + relu", [&] { return ops::conv2d(x, w3, b3, same, Activation::relu); },
     [&] { return ref::conv2d(x, w3, b3, same, Activation::relu); });
  const Tensor img = rnd({1, 3, 32, 32}), w7 = rnd({8, 3, 7, 7});
  Conv2dOptions stem;
  stem.stride = {2, 2};
  stem.padding = {3, 3};
  op("conv2d 7x7 stride 2", [&] { return ops::conv2d(img, w7, {}, stem); },
     [&] { return ref::conv2d(img, w7, {}, stem); });
  const Tensor tok = rnd({2, 37, 96}), wl = rnd({192, 96}), bl = rnd({192}), g = rnd({96}), be = rnd({96});
  op("linear + bias + gelu", [&] { return ops::linear(tok, wl, bl, Activation::gelu); },
     [&] { return ref::linear(tok, wl, bl, Activation::gelu); });
  op("layer_norm", [&] { return ops::layer_norm(tok, g, be, 1e-6); },
     [&] { return ref::layer_norm(tok, g, be, 1e-6); });
  const Tensor q = rnd({2, 3, 37, 32}), k = rnd({2, 3, 37, 32}), v = rnd({2, 3, 37, 32});
  op("scaled_dot_product_attention", [&] { return ops::scaled_dot_product_attention(q, k, v); },
     [&] { return ref::scaled_dot_product_attention(q, k, v); });
  op("softmax", [&] { return ops::softmax(tok, -1); }, [&] { return ref::softmax(tok, -1); });
}

Tensor fixed_input(const Shape& s) {
  std::mt19937_64 rng(7);
  return validate::random_tensor(s, rng);
}

// One tiny model on the CPU: the fused forward (BN folded, fused epilogues, flash attention) against the
// per-module path (every tap captured, so nothing is fused), and 1 thread against `threads` bit for bit.
void check_cpu_model(Checks& c, const char* arch, const char* label, int threads) {
  auto model = build_model_seed(arch, 0);
  const Tensor x = fixed_input({2, 3, 64, 64});
  const std::vector<std::string> order = model->tap_order(x.shape());
  TapSet all;
  for (const auto& t : order) all.capture(t, Pool::none);
  model->forward(x, all);
  const Tensor per_module = all.captured().at(order.back());
  set_num_threads(1);
  const Tensor one = model->forward(x).contiguous();
  set_num_threads(threads);
  const Tensor many = model->forward(x).contiguous();
  set_num_threads(0);
  const double r = max_rel(many, per_module);
  c.result(std::string("cpu ") + label + " forward: fused vs per-module", r <= 1e-4, rel_text(r));
  const bool same = one.shape() == many.shape() &&
                    std::memcmp(one.data<float>(), many.data<float>(), one.numel() * sizeof(float)) == 0;
  c.result(std::string("cpu ") + label + " forward: 1 vs " + std::to_string(threads) + " threads", same,
           same ? "bit-identical" : "results differ: the forward is not deterministic on this machine");
}

// The same tiny model on GPU `dev` in fp32 against its CPU forward (the tolerance of the GPU model tests).
void check_gpu_model(Checks& c, const char* arch, const char* label, int dev_index) {
  const Tensor x = fixed_input({2, 3, 64, 64});
  auto cpu = build_model_seed(arch, 0);
  const Tensor want = cpu->forward(x);
  const int dev = select_device("cuda:" + std::to_string(dev_index), "fp32");
  auto gpu = build_model_seed(arch, 0);
  gpu->to_device(dev);
  const double r = max_rel(gpu->forward(upload(x, dev)), want);
  c.result("cuda:" + std::to_string(dev_index) + " " + label + " forward (fp32) vs cpu", r <= 1e-3, rel_text(r));
}

int self_check(int n_gpus) {
  const auto t0 = std::chrono::steady_clock::now();
  Checks c;
  std::printf("self-check:\n");
  auto guarded = [&](const std::string& what, const std::function<void()>& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      c.result(what, false, e.what());
    }
  };
  guarded("cpu ops", [&] { check_cpu_ops(c); });
  const int threads = std::max(2, get_num_threads());
  guarded("cpu resnet", [&] { check_cpu_model(c, kResNet, "resnet", threads); });
  guarded("cpu vit", [&] { check_cpu_model(c, kViT, "vit", threads); });
  for (int d = 0; d < n_gpus; ++d) {
    guarded("cuda resnet", [&] { check_gpu_model(c, kResNet, "resnet", d); });
    guarded("cuda vit", [&] { check_gpu_model(c, kViT, "vit", d); });
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("result:   %s (%.1f s)\n", c.failed ? "FAILED" : "ok", s);
  if (c.failed) std::printf("          %d check(s) failed: please report this output with the issue\n", c.failed);
  return c.failed ? 1 : 0;
}

}  // namespace

int cmd_doctor(const Args& args) {
  if (args.get_int("threads") > 0) set_num_threads(static_cast<int>(args.get_int("threads")));
  // Under mpirun/srun every rank looks at its own node and checks it, but rank 0 alone prints (with every rank's
  // line of the layout, gathered).
  if (mpi::launched_size() > 1 && mpi_built() && mpi::world().rank != 0) {
    std::FILE* quiet = std::freopen("/dev/null", "w", stdout);
    (void)quiet;
  }
  const std::string summary = build_summary();
  std::fputs(summary.substr(0, summary.find('\n') + 1).c_str(), stdout);
  report_cpu();
  report_memory_and_disk(args.get("out"));
  const int n_gpus = report_cuda();
  report_mpi();
  std::fflush(stdout);
  return args.has("no-check") ? 0 : self_check(n_gpus);
}

}  // namespace tabula::cli
