// Preprocessing on the GPU (Backend::preprocessor, engine/preprocess_plan.h): a sample's raw planes are copied from
// pinned memory and turned into its model inputs on a stream of their own, so decode workers keep the GPU fed while
// the model runs on the device's stream. Each kernel is one thread per output element calling the per-element
// function of engine/preprocess_kernels.h, whose host emulation (engine/preprocess_host.cpp) the CPU tests check
// against data/preprocess bit for bit. Steps, in the emulation's order:
//   raw -> float (illumination division, unit scaling)          raw_to_float
//   exact order statistics per channel: radix select, 4 passes  radix_hist / radix_choose -> intensity_params
//   (x - lo) / range                                            intensity_scale
//   resize passes fused with the crop (float or uint8)          resample_pass
//   channel strategy + Normalize into [inputs, C, h, w]         finalize
// Memory: the per-sample buffers come from the device's stream-ordered pool (cudaMallocAsync) and go back in stream
// order, so no buffer is reused before the work that reads it; the output is freed on the model's stream after
// gather() has copied it. Histogram counts use integer atomics: the counts, hence the selected values, do not depend
// on the order of the additions (the results are deterministic).
#include <cstring>
#include <map>
#include <mutex>

#include "engine/cuda/common.cuh"
#include "engine/preprocess_kernels.h"
#include "engine/preprocess_plan.h"

namespace tabula::cuda {

namespace {

constexpr int kRanks = 4;  // order statistics per channel at most (percentiles: lo, lo + 1, hi, hi + 1)

struct SelectState {
  uint32_t prefix[kRanks];
  unsigned long long rank[kRanks];
};

__global__ void raw_to_float(const void* raw, int sample, const float* illum, bool unit, float max_value, float* out,
                             int64_t hw, int64_t n) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float* il = illum ? illum + (i / hw) * hw : nullptr;
  out[i] = prep::unit_value(prep::raw_value(raw, sample, i), il, i % hw, unit, max_value);
}

__global__ void select_init(SelectState* st, int channels, unsigned long long r0, unsigned long long r1,
                            unsigned long long r2, unsigned long long r3) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= channels) return;
  const unsigned long long r[kRanks] = {r0, r1, r2, r3};
  for (int k = 0; k < kRanks; ++k) st[c].prefix[k] = 0, st[c].rank[k] = r[k];
}

// Pass `pass` of the radix select: per channel (blockIdx.y) and rank, the 256-bin histogram of the digit of the
// keys that match the rank's prefix so far. Microscopy planes put most keys in a few bins (16-bit data share their
// top byte), so the threads of a warp with the same digit add once (__match_any_sync) to shared-memory counts, and
// each block adds its counts to the global histogram once per bin. blockDim is a multiple of 32 and the loop bound
// warp-uniform, so every lane takes part in the warp votes.
__global__ void radix_hist(const float* v, int64_t hw, int nranks, int pass, const SelectState* st, uint32_t* hist) {
  __shared__ uint32_t sh[kRanks][256];
  const int c = blockIdx.y;
  for (int b = threadIdx.x; b < kRanks * 256; b += blockDim.x) sh[b / 256][b % 256] = 0;
  __syncthreads();
  uint32_t prefix[kRanks];
  for (int r = 0; r < nranks; ++r) prefix[r] = st[c].prefix[r];
  const float* plane = v + c * hw;
  const int lane = threadIdx.x & 31;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t w0 = blockIdx.x * int64_t(blockDim.x) + (threadIdx.x - lane); w0 < hw; w0 += stride) {
    const int64_t i = w0 + lane;
    const uint32_t key = i < hw ? prep::order_key(plane[i]) : 0u;
    for (int r = 0; r < nranks; ++r) {
      const bool counted = i < hw && prep::radix_match(key, pass, prefix[r]);
      const int digit = counted ? prep::radix_digit(key, pass) : 256;  // 256: not counted
      const unsigned peers = __match_any_sync(0xffffffffu, digit);
      if (counted && lane == __ffs(peers) - 1) atomicAdd(&sh[r][digit], unsigned(__popc(peers)));
    }
  }
  __syncthreads();
  for (int b = threadIdx.x; b < nranks * 256; b += blockDim.x)
    if (sh[b / 256][b % 256]) atomicAdd(&hist[(int64_t(c) * kRanks + b / 256) * 256 + b % 256], sh[b / 256][b % 256]);
}

__global__ void radix_choose(const uint32_t* hist, int channels, int nranks, int pass, SelectState* st) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= channels * nranks) return;
  const int c = t / nranks, r = t % nranks;
  uint64_t rank = st[c].rank[r];
  prep::radix_choose(hist + (int64_t(c) * kRanks + r) * 256, pass, &st[c].prefix[r], &rank);
  st[c].rank[r] = rank;
}

// Per channel: lo and range of the scaling, from the selected order statistics (percentile: numpy's lerp).
__global__ void intensity_params(const SelectState* st, int channels, bool pct, float t_lo, float t_hi,
                                 double* params) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= channels) return;
  const uint32_t* k = st[c].prefix;
  const double lo = pct ? double(prep::percentile_lerp(prep::key_value(k[0]), prep::key_value(k[1]), t_lo))
                        : double(prep::key_value(k[0]));
  const double hi = pct ? double(prep::percentile_lerp(prep::key_value(k[2]), prep::key_value(k[3]), t_hi))
                        : double(prep::key_value(k[1]));
  params[2 * c] = lo;
  params[2 * c + 1] = prep::dsub_rn(hi, lo);
}

__global__ void intensity_scale(float* v, int64_t hw, int64_t n, const double* params, bool clip) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const int64_t c = i / hw;
  v[i] = prep::intensity_scale(v[i], params[2 * c], params[2 * c + 1], clip);
}

template <class T>
__global__ void resample_pass(const T* src, prep::PassArgs a, T* dst, int64_t n) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < n) dst[i] = prep::pass_element(src, a, i);
}

__global__ void finalize(const void* geo, prep::FinalArgs a, float* out, int64_t n) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = prep::final_element(geo, a, i);
}

// ---- the job's host blob: raw planes, then the tables (each 16-byte aligned), copied in one transfer ----
size_t align16(size_t n) { return (n + 15) / 16 * 16; }

struct BlobLayout {
  size_t raw = 0, total = 0;
  struct PassAt {
    size_t first = 0, count = 0, weights = 0;
  };
  std::vector<PassAt> passes;
  size_t source = 0, mean = 0, std = 0;
};
BlobLayout layout_of(const PreprocessPlan& p) {
  BlobLayout L;
  size_t at = align16(p.raw_bytes());
  for (const PreprocessPass& ps : p.passes) {
    BlobLayout::PassAt q;
    q.first = at, at += align16(ps.first.size() * 4);
    q.count = at, at += align16(ps.count.size() * 4);
    q.weights = at, at += align16((p.u8_path ? ps.wi.size() : ps.wf.size()) * 4);
    L.passes.push_back(q);
  }
  L.source = at, at += align16(p.source.size() * 4);
  L.mean = at, at += align16(p.mean.size() * 4);
  L.std = at, at += align16(p.std.size() * 4);
  L.total = at;
  return L;
}
void put(uint8_t* blob, size_t at, const void* v, size_t bytes) {
  if (bytes) std::memcpy(blob + at, v, bytes);
}

// Page-locked host buffers, reused once the copy that read them has finished.
class PinnedPool {
 public:
  struct Slot {
    void* ptr = nullptr;
    size_t bytes = 0;
    cudaEvent_t copied = nullptr;
    bool recorded = false;
  };
  explicit PinnedPool(int dev) : dev_(dev) {}
  ~PinnedPool() {
    for (Slot& s : free_) {
      cudaFreeHost(s.ptr);
      cudaEventDestroy(s.copied);
    }
  }
  Slot take(size_t bytes) {
    std::lock_guard<std::mutex> g(m_);
    for (size_t i = 0; i < free_.size(); ++i) {
      Slot& s = free_[i];
      if (s.bytes >= bytes && (!s.recorded || cudaEventQuery(s.copied) == cudaSuccess)) {
        Slot out = s;
        free_.erase(free_.begin() + long(i));
        return out;
      }
    }
    TABULA_CUDA_CHECK(cudaSetDevice(dev_));
    Slot s;
    s.bytes = bytes;
    TABULA_CUDA_CHECK(cudaMallocHost(&s.ptr, bytes));
    TABULA_CUDA_CHECK(cudaEventCreateWithFlags(&s.copied, cudaEventDisableTiming));
    return s;
  }
  void give(Slot s) {
    std::lock_guard<std::mutex> g(m_);
    free_.push_back(s);
  }

 private:
  int dev_;
  std::mutex m_;
  std::vector<Slot> free_;
};

class CudaPreprocessor;

class CudaJob final : public PreprocessJob {
 public:
  CudaJob(CudaPreprocessor& owner, const PreprocessPlan& plan, std::shared_ptr<float> illum);
  ~CudaJob() override;
  void* staging() override {
    if (!slot_.ptr) op_error("cuda::preprocess", "staging() after submit()");
    return slot_.ptr;
  }
  void submit() override;
  const PreprocessPlan& plan() const override { return plan_; }
  const float* output() const { return out_; }
  cudaEvent_t done() const { return done_; }

 private:
  CudaPreprocessor& owner_;
  PreprocessPlan plan_;
  BlobLayout layout_;
  std::shared_ptr<float> illum_;
  PinnedPool::Slot slot_;
  float* out_ = nullptr;
  cudaEvent_t done_ = nullptr;
  bool submitted_ = false;
};

class CudaPreprocessor final : public DevicePreprocessor {
 public:
  explicit CudaPreprocessor(int dev) : dev_(dev), pinned_(dev) {
    TABULA_CUDA_CHECK(cudaSetDevice(dev));
    TABULA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    // Keep freed pool memory for the next sample instead of returning it to the driver at every synchronisation.
    cudaMemPool_t pool;
    TABULA_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, dev));
    uint64_t keep = UINT64_MAX;
    TABULA_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  }
  ~CudaPreprocessor() override {
    cudaSetDevice(dev_);
    cudaStreamSynchronize(stream_);
    cudaStreamSynchronize(cuda::stream(dev_));
    illum_.clear();
    cudaStreamDestroy(stream_);
  }

  std::unique_ptr<PreprocessJob> job(const PreprocessPlan& plan, const std::string& illum_key,
                                     const std::function<std::vector<std::vector<float>>()>& load_illum) override {
    std::shared_ptr<float> illum;
    if (plan.illumination) illum = illumination(plan, illum_key, load_illum);
    return std::make_unique<CudaJob>(*this, plan, std::move(illum));
  }

  Tensor gather(const std::vector<JobSlice>& slices) override {
    if (slices.empty()) op_error("cuda::preprocess", "gather of no inputs");
    const PreprocessPlan& p0 = slices[0].job->plan();
    int64_t n = 0;
    for (const JobSlice& s : slices) {
      const PreprocessPlan& p = s.job->plan();
      if (p.out_channels != p0.out_channels || p.out_h != p0.out_h || p.out_w != p0.out_w)
        op_error("cuda::preprocess", "model inputs of one batch differ in shape");
      if (s.first < 0 || s.count < 0 || s.first + s.count > p.inputs)
        op_error("cuda::preprocess", "slice out of range");
      n += s.count;
    }
    TABULA_CUDA_CHECK(cudaSetDevice(dev_));
    Tensor batch = empty({n, p0.out_channels, p0.out_h, p0.out_w}, dev_);
    const size_t per = size_t(p0.out_channels) * size_t(p0.out_h) * size_t(p0.out_w) * sizeof(float);
    char* dst = static_cast<char*>(batch.raw());
    for (const JobSlice& s : slices) {
      const auto& j = static_cast<const CudaJob&>(*s.job);
      TABULA_CUDA_CHECK(cudaStreamWaitEvent(model_stream(), j.done(), 0));
      TABULA_CUDA_CHECK(cudaMemcpyAsync(dst, reinterpret_cast<const char*>(j.output()) + s.first * per,
                                        s.count * per, cudaMemcpyDeviceToDevice, model_stream()));
      dst += s.count * per;
    }
    return batch;
  }

  int device() const { return dev_; }
  cudaStream_t prep_stream() const { return stream_; }
  cudaStream_t model_stream() const { return cuda::stream(dev_); }
  PinnedPool& pinned() { return pinned_; }
  std::mutex& submit_mutex() { return submit_; }

 private:
  std::shared_ptr<float> illumination(const PreprocessPlan& plan, const std::string& key,
                                      const std::function<std::vector<std::vector<float>>()>& load) {
    std::lock_guard<std::mutex> g(illum_m_);
    auto it = illum_.find(key);
    if (it != illum_.end()) return it->second;
    const std::vector<std::vector<float>> planes = load();
    const size_t hw = plan.plane_size();
    if (planes.size() != size_t(plan.channels)) op_error("cuda::preprocess", "illumination planes != channels");
    TABULA_CUDA_CHECK(cudaSetDevice(dev_));
    for (const std::vector<float>& pl : planes)
      if (pl.size() != hw) op_error("cuda::preprocess", "illumination plane size differs from the image's");
    // From the stream-ordered pool on the preprocessing stream, freed there in order after the last job that read
    // it (jobs hold a reference until they are submitted). Pageable sources: the copies return once they are done.
    cudaStream_t s = stream_;
    float* d = nullptr;
    TABULA_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&d), planes.size() * hw * sizeof(float), s));
    for (size_t c = 0; c < planes.size(); ++c)
      TABULA_CUDA_CHECK(cudaMemcpyAsync(d + c * hw, planes[c].data(), hw * sizeof(float), cudaMemcpyHostToDevice, s));
    TABULA_CUDA_CHECK(cudaStreamSynchronize(s));
    std::shared_ptr<float> buf(d, [s](float* p) { cudaFreeAsync(p, s); });
    // A plate's functions serve all its images; a long run meets many plates, so keep a bounded set.
    if (illum_.size() >= 8) illum_.clear();
    illum_[key] = buf;
    return buf;
  }

  int dev_;
  cudaStream_t stream_ = nullptr;
  PinnedPool pinned_;
  std::mutex submit_, illum_m_;
  std::map<std::string, std::shared_ptr<float>> illum_;
};

CudaJob::CudaJob(CudaPreprocessor& owner, const PreprocessPlan& plan, std::shared_ptr<float> illum)
    : owner_(owner), plan_(plan), layout_(layout_of(plan)), illum_(std::move(illum)) {
  if (plan.u8_path && plan.sample != RawSample::u8) op_error("cuda::preprocess", "the 8-bit path needs u8 planes");
  if (plan.illumination && !illum_) op_error("cuda::preprocess", "illumination planes missing");
  slot_ = owner_.pinned().take(layout_.total);
  TABULA_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
}

CudaJob::~CudaJob() {
  cudaSetDevice(owner_.device());
  if (out_) {
    // The output is read by gather()'s copies on the model's stream: free it there, after the job's own work.
    cudaStreamWaitEvent(owner_.model_stream(), done_, 0);
    cudaFreeAsync(out_, owner_.model_stream());
  }
  if (slot_.ptr) owner_.pinned().give(slot_);  // a job never submitted
  cudaEventDestroy(done_);
}

void CudaJob::submit() {
  if (submitted_) op_error("cuda::preprocess", "a job is submitted once");
  const PreprocessPlan& p = plan_;
  uint8_t* blob = static_cast<uint8_t*>(slot_.ptr);
  for (size_t k = 0; k < p.passes.size(); ++k) {
    const PreprocessPass& ps = p.passes[k];
    put(blob, layout_.passes[k].first, ps.first.data(), ps.first.size() * 4);
    put(blob, layout_.passes[k].count, ps.count.data(), ps.count.size() * 4);
    if (p.u8_path) put(blob, layout_.passes[k].weights, ps.wi.data(), ps.wi.size() * 4);
    else put(blob, layout_.passes[k].weights, ps.wf.data(), ps.wf.size() * 4);
  }
  put(blob, layout_.source, p.source.data(), p.source.size() * 4);
  put(blob, layout_.mean, p.mean.data(), p.mean.size() * 4);
  put(blob, layout_.std, p.std.data(), p.std.size() * 4);

  std::lock_guard<std::mutex> g(owner_.submit_mutex());
  TABULA_CUDA_CHECK(cudaSetDevice(owner_.device()));
  const cudaStream_t s = owner_.prep_stream();
  const int64_t C = p.channels, hw = int64_t(p.plane_size());
  uint8_t* d_blob = nullptr;
  TABULA_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&d_blob), layout_.total, s));
  TABULA_CUDA_CHECK(cudaMemcpyAsync(d_blob, blob, layout_.total, cudaMemcpyHostToDevice, s));
  TABULA_CUDA_CHECK(cudaEventRecord(slot_.copied, s));
  slot_.recorded = true;
  std::vector<void*> scratch = {d_blob};
  auto alloc = [&](size_t bytes) {
    void* d = nullptr;
    TABULA_CUDA_CHECK(cudaMallocAsync(&d, std::max<size_t>(bytes, 16), s));
    scratch.push_back(d);
    return d;
  };

  const void* cur = d_blob;  // the planes the passes start from
  if (!p.u8_path) {
    float* f = static_cast<float*>(alloc(size_t(C * hw) * sizeof(float)));
    raw_to_float<<<blocks_for(C * hw), 256, 0, s>>>(d_blob, int(p.sample), illum_.get(),
                                                    p.intensity == PlanIntensity::unit, p.max_value, f, hw, C * hw);
    LAUNCH_CHECK();
    if (p.intensity == PlanIntensity::percentile || p.intensity == PlanIntensity::minmax) {
      const bool pct = p.intensity == PlanIntensity::percentile;
      const int nranks = pct ? 4 : 2;
      auto* st = static_cast<SelectState*>(alloc(size_t(C) * sizeof(SelectState)));
      auto* hist = static_cast<uint32_t*>(alloc(size_t(C) * kRanks * 256 * sizeof(uint32_t)));
      auto* params = static_cast<double*>(alloc(size_t(C) * 2 * sizeof(double)));
      select_init<<<blocks_for(C, 64), 64, 0, s>>>(st, int(C), p.ranks[0], p.ranks[1], p.ranks[2], p.ranks[3]);
      LAUNCH_CHECK();
      const unsigned xblocks = std::min<unsigned>(blocks_for(hw), 64);
      for (int pass = 0; pass < 4; ++pass) {
        TABULA_CUDA_CHECK(cudaMemsetAsync(hist, 0, size_t(C) * kRanks * 256 * sizeof(uint32_t), s));
        radix_hist<<<dim3(xblocks, unsigned(C)), 256, 0, s>>>(f, hw, nranks, pass, st, hist);
        LAUNCH_CHECK();
        radix_choose<<<blocks_for(C * nranks, 64), 64, 0, s>>>(hist, int(C), nranks, pass, st);
        LAUNCH_CHECK();
      }
      intensity_params<<<blocks_for(C, 64), 64, 0, s>>>(st, int(C), pct, p.t_lo, p.t_hi, params);
      LAUNCH_CHECK();
      intensity_scale<<<blocks_for(C * hw), 256, 0, s>>>(f, hw, C * hw, params, pct && p.clip);
      LAUNCH_CHECK();
    }
    cur = f;
  }
  const size_t elem = p.u8_path ? 1 : sizeof(float);
  for (size_t k = 0; k < p.passes.size(); ++k) {
    const PreprocessPass& ps = p.passes[k];
    const int64_t n = C * int64_t(ps.dst_h) * ps.dst_w;
    void* dst = alloc(size_t(n) * elem);
    const BlobLayout::PassAt& at = layout_.passes[k];
    const prep::PassArgs a{ps.axis,
                           ps.src_h,
                           ps.src_w,
                           ps.dst_h,
                           ps.dst_w,
                           ps.out_offset,
                           ps.other_offset,
                           ps.taps,
                           ps.precision,
                           reinterpret_cast<const int32_t*>(d_blob + at.first),
                           reinterpret_cast<const int32_t*>(d_blob + at.count),
                           reinterpret_cast<const float*>(d_blob + at.weights),
                           reinterpret_cast<const int32_t*>(d_blob + at.weights)};
    if (p.u8_path)
      resample_pass<uint8_t><<<blocks_for(n), 256, 0, s>>>(static_cast<const uint8_t*>(cur), a,
                                                           static_cast<uint8_t*>(dst), n);
    else
      resample_pass<float><<<blocks_for(n), 256, 0, s>>>(static_cast<const float*>(cur), a, static_cast<float*>(dst),
                                                         n);
    LAUNCH_CHECK();
    cur = dst;
  }
  const int64_t out_n = int64_t(p.inputs) * p.out_channels * p.out_h * p.out_w;
  TABULA_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&out_), size_t(out_n) * sizeof(float), s));
  const prep::FinalArgs fa{p.inputs,
                           p.out_channels,
                           p.channels,
                           p.out_h,
                           p.out_w,
                           p.u8_path,
                           p.mean_of_channels,
                           p.normalize,
                           int(p.u8_scale),
                           reinterpret_cast<const int32_t*>(d_blob + layout_.source),
                           reinterpret_cast<const float*>(d_blob + layout_.mean),
                           reinterpret_cast<const float*>(d_blob + layout_.std)};
  finalize<<<blocks_for(out_n), 256, 0, s>>>(cur, fa, out_, out_n);
  LAUNCH_CHECK();
  TABULA_CUDA_CHECK(cudaEventRecord(done_, s));
  for (void* d : scratch) TABULA_CUDA_CHECK(cudaFreeAsync(d, s));
  illum_.reset();  // the buffer's free (if the cache dropped it) is queued after these kernels
  // The staging buffer is free again once the copy has run (its event): hand it back now, so pinned memory stays
  // at about one buffer per decode worker however many jobs wait for the model.
  owner_.pinned().give(slot_);
  slot_ = {};
  submitted_ = true;
}

}  // namespace

std::unique_ptr<DevicePreprocessor> CudaBackend::preprocessor(int index) {
  return std::make_unique<CudaPreprocessor>(index);
}

}  // namespace tabula::cuda
