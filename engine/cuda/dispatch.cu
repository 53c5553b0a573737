// The CUDA backend as a whole: the process-wide precision, the device primitives that are not copies, the per-op
// profiler, and the registration that makes ops::<op> on a cuda tensor land in CudaBackend.
#include "engine/cuda/common.cuh"

#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>

namespace tabula::cuda {

Precision g_precision = Precision::fp32;

void set_precision(Precision p) { g_precision = p; }
Precision precision() { return g_precision; }

void CudaBackend::set_precision(Precision p) { cuda::set_precision(p); }
Precision CudaBackend::precision() const { return g_precision; }
Tensor CudaBackend::convert_weight(const Tensor& weight) { return cuda::convert_weight(weight); }
std::vector<CudaDeviceInfo> CudaBackend::devices() const { return list_devices(); }
std::string CudaBackend::runtime_version() const {
  return "runtime " + runtime_version_string() + ", cuDNN " + cudnn_version_string();
}

void CudaBackend::set_current_device(int index) { cuda::set_current_device(index); }
void CudaBackend::synchronize(int index) { cuda::synchronize(index); }
size_t CudaBackend::peak_bytes_in_use(int index) const { return allocator_stats(index).peak_bytes_in_use; }
void CudaBackend::clear_op_profile() { cuda::clear_op_profile(); }
void CudaBackend::print_op_profile(int forwards) { cuda::print_op_profile(forwards); }

namespace {
class CapturedGraph final : public CapturedForward {
 public:
  CapturedGraph(int device, const std::function<Tensor()>& forward) : graph_(device, forward) {}
  void replay() override { graph_.replay(); }
  const Tensor& output() const override { return graph_.output(); }

 private:
  Graph graph_;
};
}  // namespace

std::unique_ptr<CapturedForward> CudaBackend::capture(int index, const std::function<Tensor()>& forward) {
  return std::make_unique<CapturedGraph>(index, forward);
}

// Constructing it touches no CUDA runtime, so a process that never uses a GPU never initialises one.
CudaBackend& backend_instance() {
  static CudaBackend backend;
  return backend;
}

namespace {

// ---- per-op device time (TABULA_CUDA_PROFILE=1) ----
struct ProfRec {
  std::string key;
  int dev;
  cudaEvent_t a, b;
};
std::mutex g_prof_mu;
std::vector<ProfRec> g_prof;
thread_local int t_op_depth = 0;
bool profiling() {
  static const bool on = std::getenv("TABULA_CUDA_PROFILE") != nullptr;
  return on;
}
}  // namespace

OpTimer::OpTimer(const char* name, const Tensor& x, const Tensor& w) {
  outer_ = t_op_depth++ == 0;
  if (!outer_ || !profiling() || !on_gpu(x)) return;
  try {
    ProfRec r{};
    r.dev = device_of(name, x);
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    TABULA_CUDA_CHECK(cudaStreamIsCapturing(stream(r.dev), &cs));
    if (cs != cudaStreamCaptureStatusNone) return;  // graph capture: only eager forwards are timed
    r.key = std::string(name) + " " + x.str() + (w.defined() ? " w" + shape_str(w.shape()) : "");
    TABULA_CUDA_CHECK(cudaEventCreate(&r.a));
    TABULA_CUDA_CHECK(cudaEventCreate(&r.b));
    TABULA_CUDA_CHECK(cudaEventRecord(r.a, stream(r.dev)));
    std::lock_guard<std::mutex> lock(g_prof_mu);
    record_ = static_cast<int>(g_prof.size());
    g_prof.push_back(r);
  } catch (...) {
    --t_op_depth;
    throw;
  }
}

OpTimer::~OpTimer() {
  --t_op_depth;
  if (record_ < 0) return;
  std::lock_guard<std::mutex> lock(g_prof_mu);
  if (record_ < static_cast<int>(g_prof.size())) cudaEventRecord(g_prof[record_].b, stream(g_prof[record_].dev));
}

void clear_op_profile() {
  std::lock_guard<std::mutex> lock(g_prof_mu);
  for (ProfRec& r : g_prof) cudaEventDestroy(r.a), cudaEventDestroy(r.b);
  g_prof.clear();
}
void print_op_profile(int forwards) {
  std::lock_guard<std::mutex> lock(g_prof_mu);
  if (g_prof.empty()) return;
  forwards = std::max(forwards, 1);
  std::map<std::string, std::pair<double, int>> by;  // key -> (ms, calls)
  double total = 0;
  for (ProfRec& r : g_prof) {
    TABULA_CUDA_CHECK(cudaEventSynchronize(r.b));
    float ms = 0;
    TABULA_CUDA_CHECK(cudaEventElapsedTime(&ms, r.a, r.b));
    by[r.key].first += ms / forwards, by[r.key].second += 1, total += ms / forwards;
    cudaEventDestroy(r.a), cudaEventDestroy(r.b);
  }
  g_prof.clear();
  std::vector<std::pair<std::string, std::pair<double, int>>> rows(by.begin(), by.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
  std::fprintf(stderr, "device time per op and forward (TABULA_CUDA_PROFILE, %d eager forwards): %.2f ms\n", forwards,
               total);
  for (const auto& [key, v] : rows)
    std::fprintf(stderr, "%9.3f ms %5.1f%% %6d calls  %s\n", v.first, 100.0 * v.first / total, v.second / forwards,
                 key.c_str());
}

}  // namespace tabula::cuda
