// Sequential file writes that bypass the page cache (O_DIRECT), for outputs of gigabytes.
//
// A buffered write copies every byte into the page cache, and the fsync that makes the file durable then waits for
// the kernel's writeback of all of it: on the project VM, 4.5 GB took 12-25 s that way (10-12 s of it system CPU)
// against 3-5 s written with O_DIRECT (0.5 s system CPU). O_DIRECT wants the memory, the file offset and the length
// of every write aligned to the device block, so the bytes are gathered into a few aligned buffers; a writer thread
// writes a full buffer while the caller fills the next (so producing and writing overlap), and the last block is
// padded and the file cut back to its true length at the end.
#pragma once
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace tabula {

class DirectWriter {
 public:
  static constexpr size_t kAlign = 4096;  // covers 512-byte and 4 KiB logical blocks
  // `fd` is open for writing with O_DIRECT at offset 0 and stays owned by the caller; `path` names it in errors.
  DirectWriter(int fd, std::string path, size_t buffer_bytes = size_t{16} << 20, int buffers = 3);
  ~DirectWriter();  // stops the writer thread (what was not finished is left as it is)
  DirectWriter(const DirectWriter&) = delete;
  DirectWriter& operator=(const DirectWriter&) = delete;

  void write(const void* data, size_t n);
  // Writes what is buffered and waits for every write; the file then holds exactly the bytes given. Throws
  // std::runtime_error naming the file if any write failed.
  void finish();
  uint64_t bytes_written() const { return total_; }

 private:
  struct Job {
    int buffer;
    size_t bytes;     // aligned length written
    uint64_t offset;  // file offset
  };
  void submit(size_t padded_bytes);
  void writer_loop();
  void rethrow_if_failed();  // caller holds mutex_

  int fd_;
  std::string path_;
  size_t buffer_bytes_;
  std::vector<std::unique_ptr<unsigned char, void (*)(void*)>> buffers_;
  std::deque<int> free_;  // buffers the caller may fill
  std::deque<Job> jobs_;  // buffers waiting for the writer thread
  int current_ = -1;      // buffer being filled
  size_t fill_ = 0;       // bytes in it
  uint64_t total_ = 0;    // bytes given to write()
  uint64_t next_offset_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::thread thread_;
};

}  // namespace tabula
