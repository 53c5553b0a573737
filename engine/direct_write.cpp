#include "engine/direct_write.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

namespace tabula {

namespace {
std::runtime_error write_error(const std::string& path, const char* what, int err) {
  return std::runtime_error(path + ": " + what + ": " + std::strerror(err));
}
}  // namespace

DirectWriter::DirectWriter(int fd, std::string path, size_t buffer_bytes, int buffers)
    : fd_(fd), path_(std::move(path)), buffer_bytes_(std::max(kAlign, buffer_bytes / kAlign * kAlign)) {
  for (int i = 0; i < std::max(2, buffers); ++i) {
    void* p = std::aligned_alloc(kAlign, buffer_bytes_);
    if (!p) throw std::bad_alloc();
    buffers_.emplace_back(static_cast<unsigned char*>(p), std::free);
    free_.push_back(i);
  }
  thread_ = std::thread([this] { writer_loop(); });
}

DirectWriter::~DirectWriter() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    jobs_.clear();
  }
  cv_.notify_all();
  thread_.join();
}

void DirectWriter::rethrow_if_failed() {
  if (error_) std::rethrow_exception(error_);
}

void DirectWriter::write(const void* data, size_t n) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  while (n > 0) {
    if (current_ < 0) {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [this] { return !free_.empty() || error_; });
      rethrow_if_failed();
      current_ = free_.front();
      free_.pop_front();
      fill_ = 0;
    }
    const size_t take = std::min(n, buffer_bytes_ - fill_);
    std::memcpy(buffers_[static_cast<size_t>(current_)].get() + fill_, p, take);
    fill_ += take;
    total_ += take;
    p += take;
    n -= take;
    if (fill_ == buffer_bytes_) submit(buffer_bytes_);
  }
}

void DirectWriter::submit(size_t padded_bytes) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    rethrow_if_failed();
    jobs_.push_back({current_, padded_bytes, next_offset_});
  }
  next_offset_ += padded_bytes;
  current_ = -1;
  fill_ = 0;
  cv_.notify_all();
}

void DirectWriter::finish() {
  if (current_ >= 0 && fill_ > 0) {
    // The last block is written whole (zero-padded) and the file cut back below.
    const size_t padded = (fill_ + kAlign - 1) / kAlign * kAlign;
    std::memset(buffers_[static_cast<size_t>(current_)].get() + fill_, 0, padded - fill_);
    submit(padded);
  }
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [this] { return (jobs_.empty() && free_.size() + (current_ >= 0) == buffers_.size()) || error_; });
  rethrow_if_failed();
  if (next_offset_ != total_ && ::ftruncate(fd_, static_cast<off_t>(total_)) != 0)
    throw write_error(path_, "truncate failed", errno);
}

void DirectWriter::writer_loop() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
      if (stop_) return;
      job = jobs_.front();  // stays queued until written, so finish() waits for it
    }
    const unsigned char* p = buffers_[static_cast<size_t>(job.buffer)].get();
    size_t done = 0;
    int err = 0;
    while (done < job.bytes) {
      const ssize_t put = ::pwrite(fd_, p + done, job.bytes - done, static_cast<off_t>(job.offset + done));
      if (put < 0 && errno == EINTR) continue;
      if (put <= 0) {
        err = put < 0 ? errno : EIO;
        break;
      }
      done += static_cast<size_t>(put);
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stop_) return;
      jobs_.pop_front();
      free_.push_back(job.buffer);
      if (err && !error_) error_ = std::make_exception_ptr(write_error(path_, "write failed", err));
    }
    cv_.notify_all();
  }
}

}  // namespace tabula
