// Whole-file reads and atomic writes: a reader never sees a half-written output (temp file + fsync + rename).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tabula {

// Throws std::runtime_error naming the file on any failure.
std::vector<uint8_t> read_file_bytes(const std::string& path);
std::string read_file_text(const std::string& path);

// Writes `path` atomically: `path.tmp.<pid>` is written, fsync'ed and renamed over `path`; on failure the temp
// file is removed and an existing `path` is left untouched.
// PageCache::bypass writes the bytes with O_DIRECT (engine/direct_write.h) where the file system allows it, for
// outputs of gigabytes that nothing reads back at once; elsewhere (tmpfs) it writes through the page cache.
class DirectWriter;
class AtomicFile {
 public:
  enum class PageCache { use, bypass };
  explicit AtomicFile(std::string path, PageCache cache = PageCache::use);
  ~AtomicFile();  // not committed: the temp file is removed
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  void write(const void* data, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  // At byte `offset` of the file (pwrite; the sequential position is not moved): a file whose layout is known up
  // front filled in the order its parts become available. On a file bypassing the page cache it first ends the
  // bypass (what was written sequentially is flushed; from then on writes go through the page cache).
  void write_at(const void* data, size_t n, uint64_t offset);
  bool bypassing() const { return direct_ != nullptr; }
  void commit();  // fsync + rename; throws on failure (disk full is reported here or in write)
  const std::string& path() const { return path_; }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
  std::unique_ptr<DirectWriter> direct_;  // set when the temp file is open with O_DIRECT
};

void write_file_atomic(const std::string& path, const void* data, size_t n);

// Installs SIGINT/SIGTERM/SIGHUP handlers that remove the temp files of AtomicFiles still being written, then
// die of the signal as before (an interrupted command leaves neither a partial output nor a stray temp file).
// Signals the process ignores (nohup) stay ignored. Called once by the CLI's main.
void install_interrupt_cleanup();
inline void write_file_atomic(const std::string& path, std::string_view s) {
  write_file_atomic(path, s.data(), s.size());
}

}  // namespace tabula
