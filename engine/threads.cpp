#include "engine/threads.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace tabula {

namespace {

int default_threads() {
  if (const char* e = std::getenv("TABULA_THREADS")) {
    int n = std::atoi(e);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

thread_local bool t_in_parallel = false;

// Workers sleep on a condition variable between jobs; a job is a chunk counter that all participants
// (workers + caller) draw from until it runs out.
class Pool {
 public:
  ~Pool() { resize(0); }

  void resize(int workers) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      stop_ = true;
      ++generation_;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
    stop_ = false;
    // Each worker starts from the current generation, so a job posted before it first waits is not missed.
    uint64_t gen = generation_;
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this, gen] { worker(gen); });
  }
  int workers() const { return static_cast<int>(threads_.size()); }

  void run(int64_t chunks, const std::function<void(int64_t)>& chunk_fn) {
    std::lock_guard<std::mutex> job_lock(job_mu_);  // one job at a time (ops are called from one thread)
    {
      std::unique_lock<std::mutex> lk(mu_);
      job_ = &chunk_fn;
      chunks_ = chunks;
      next_.store(0);
      active_ = static_cast<int>(threads_.size());
      error_ = nullptr;
      ++generation_;
    }
    cv_.notify_all();
    drain();
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return active_ == 0; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void drain() {
    t_in_parallel = true;
    for (;;) {
      int64_t c = next_.fetch_add(1);
      if (c >= chunks_) break;
      try {
        (*job_)(c);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu_);
        if (!error_) error_ = std::current_exception();
      }
    }
    t_in_parallel = false;
  }

  void worker(uint64_t seen) {
    for (;;) {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return generation_ != seen; });
      seen = generation_;
      if (stop_) return;
      lk.unlock();
      drain();
      lk.lock();
      if (--active_ == 0) done_cv_.notify_one();
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mu_, job_mu_;
  std::condition_variable cv_, done_cv_;
  uint64_t generation_ = 0;
  bool stop_ = false;
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t chunks_ = 0;
  std::atomic<int64_t> next_{0};
  int active_ = 0;
  std::exception_ptr error_;
};

std::mutex g_config_mu;
int g_threads = 0;  // 0: not yet initialised

Pool& pool() {
  static Pool p;
  return p;
}

}  // namespace

void set_num_threads(int n) {
  std::lock_guard<std::mutex> lk(g_config_mu);
  g_threads = n > 0 ? n : default_threads();
  if (pool().workers() != g_threads - 1) pool().resize(g_threads - 1);
}

int get_num_threads() {
  std::lock_guard<std::mutex> lk(g_config_mu);
  if (g_threads == 0) g_threads = default_threads();
  return g_threads;
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  int64_t chunks = (n + grain - 1) / grain;
  auto chunk_fn = [&](int64_t c) { fn(c * grain, std::min(n, (c + 1) * grain)); };
  int threads = get_num_threads();
  if (chunks == 1 || threads <= 1 || t_in_parallel) {
    for (int64_t c = 0; c < chunks; ++c) chunk_fn(c);
    return;
  }
  {
    std::lock_guard<std::mutex> lk(g_config_mu);
    if (pool().workers() != g_threads - 1) pool().resize(g_threads - 1);
  }
  pool().run(chunks, chunk_fn);
}

int64_t grain_for(int64_t n, int64_t work_per_item, int64_t min_work) {
  work_per_item = std::max<int64_t>(work_per_item, 1);
  int64_t g = (min_work + work_per_item - 1) / work_per_item;
  return std::clamp<int64_t>(g, 1, std::max<int64_t>(n, 1));
}

}  // namespace tabula
