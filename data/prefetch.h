// Decode + preprocess on worker threads while the model runs: items are produced out of order by `workers`
// threads and handed to the consumer in order; at most `capacity` items are in flight or waiting, so memory
// stays bounded whatever the speed difference. An exception in a worker is rethrown by next() at that item.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace tabula::data {

template <class T>
class Prefetcher {
 public:
  Prefetcher(int64_t n, int workers, int capacity, std::function<T(int64_t)> produce)
      : n_(n), capacity_(std::max(1, capacity)), produce_(std::move(produce)) {
    workers = std::max(1, workers);
    for (int w = 0; w < workers; ++w) threads_.emplace_back([this] { run(); });
  }
  ~Prefetcher() {
    {
      std::lock_guard<std::mutex> g(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // The next item in order, or nullopt after the last.
  std::optional<T> next() {
    std::unique_lock<std::mutex> lk(m_);
    if (consumed_ >= n_) return std::nullopt;
    cv_.wait(lk, [&] { return done_.count(consumed_) > 0; });
    Slot s = std::move(done_.at(consumed_));
    done_.erase(consumed_);
    ++consumed_;
    lk.unlock();
    cv_.notify_all();
    if (s.error) std::rethrow_exception(s.error);
    return std::move(s.value);
  }
  int64_t max_in_flight_seen() const { return max_seen_; }

 private:
  struct Slot {
    std::optional<T> value;
    std::exception_ptr error;
  };
  void run() {
    for (;;) {
      int64_t i;
      {
        std::unique_lock<std::mutex> lk(m_);
        // A worker may start item i only while i is within `capacity` of the consumer.
        cv_.wait(lk, [&] { return stop_ || (issued_ < n_ && issued_ < consumed_ + capacity_); });
        if (stop_ || issued_ >= n_) return;
        i = issued_++;
        max_seen_ = std::max(max_seen_, issued_ - consumed_);
      }
      Slot s;
      try {
        s.value.emplace(produce_(i));
      } catch (...) {
        s.error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> g(m_);
        done_.emplace(i, std::move(s));
      }
      cv_.notify_all();
    }
  }
  const int64_t n_;
  const int capacity_;
  std::function<T(int64_t)> produce_;
  std::mutex m_;
  std::condition_variable cv_;
  std::map<int64_t, Slot> done_;
  int64_t issued_ = 0, consumed_ = 0, max_seen_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace tabula::data
