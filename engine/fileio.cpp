#include "engine/fileio.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "engine/direct_write.h"

namespace tabula {

// ---- temp files of AtomicFiles in flight, removed if the process is interrupted --------------------------------
// The handler may only make async-signal-safe calls, so the paths live in fixed slots (no allocation, no locks):
// state 0 = free, 1 = being filled, 2 = holds a temp file's path.
namespace {
constexpr int kTempSlots = 64;
struct TempSlot {
  std::atomic<int> state{0};
  char path[PATH_MAX];
};
TempSlot g_temp_slots[kTempSlots];
static_assert(std::atomic<int>::is_always_lock_free, "the interrupt handler needs lock-free atomics");

void register_temp(const std::string& p) {
  if (p.size() >= PATH_MAX) return;
  for (TempSlot& s : g_temp_slots) {
    int free_state = 0;
    if (s.state.compare_exchange_strong(free_state, 1)) {
      std::memcpy(s.path, p.c_str(), p.size() + 1);
      s.state.store(2);
      return;
    }
  }
  // More than kTempSlots files in flight at once: this one is not cleaned up on an interrupt (never seen).
}

void unregister_temp(const std::string& p) {
  for (TempSlot& s : g_temp_slots)
    if (s.state.load() == 2 && std::strcmp(s.path, p.c_str()) == 0) {
      s.state.store(0);
      return;
    }
}

extern "C" void remove_temps_and_reraise(int sig) {
  for (TempSlot& s : g_temp_slots)
    if (s.state.load() == 2) ::unlink(s.path);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}
}  // namespace

void install_interrupt_cleanup() {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) != 0 || old.sa_handler == SIG_IGN) continue;  // keep nohup's ignore
    struct sigaction sa {};
    sa.sa_handler = remove_temps_and_reraise;
    sigemptyset(&sa.sa_mask);
    ::sigaction(sig, &sa, nullptr);
  }
}

static std::runtime_error io_error(const std::string& path, const std::string& what) {
  return std::runtime_error(path + ": " + what + ": " + std::strerror(errno));
}

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw io_error(path, "cannot open");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw io_error(path, "cannot stat");
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    throw std::runtime_error(path + ": is a directory, not a file");
  }
  std::vector<uint8_t> out;
  out.reserve(static_cast<size_t>(st.st_size));
  uint8_t buf[1 << 16];
  for (;;) {
    ssize_t got = ::read(fd, buf, sizeof buf);
    if (got < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      throw io_error(path, "read error");
    }
    if (got == 0) break;
    out.insert(out.end(), buf, buf + got);
  }
  ::close(fd);
  return out;
}

std::string read_file_text(const std::string& path) {
  auto b = read_file_bytes(path);
  return std::string(b.begin(), b.end());
}

AtomicFile::AtomicFile(std::string path, PageCache cache) : path_(std::move(path)) {
  tmp_ = path_ + ".tmp." + std::to_string(::getpid());
  // Registered before it exists: a signal at any point after the open must find the name to remove (setting up the
  // O_DIRECT writer takes milliseconds).
  register_temp(tmp_);
  constexpr int kFlags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
  if (cache == PageCache::bypass) {
    fd_ = ::open(tmp_.c_str(), kFlags | O_DIRECT, 0644);  // EINVAL where the file system has no O_DIRECT
    if (fd_ >= 0) {
      try {
        direct_ = std::make_unique<DirectWriter>(fd_, tmp_);
      } catch (...) {  // no destructor runs for a constructor that throws
        ::close(fd_);
        ::unlink(tmp_.c_str());
        unregister_temp(tmp_);
        throw;
      }
    }
  }
  if (fd_ < 0) fd_ = ::open(tmp_.c_str(), kFlags, 0644);
  if (fd_ < 0) {
    const int err = errno;
    unregister_temp(tmp_);
    // Name the file the user asked for, not the temp name; a missing folder is the usual cause, and is not created.
    const size_t slash = path_.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : path_.substr(0, slash == 0 ? 1 : slash);
    struct stat st {};
    if (err == ENOENT && ::stat(dir.c_str(), &st) != 0)
      throw std::runtime_error(path_ + ": cannot create: the folder " + dir + " does not exist");
    errno = err;
    throw io_error(path_, "cannot create");
  }
}

AtomicFile::~AtomicFile() {
  direct_.reset();  // its writer thread stops before the file is closed
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
  unregister_temp(tmp_);
}

void AtomicFile::write(const void* data, size_t n) {
  if (direct_) return direct_->write(data, n);
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t put = ::write(fd_, p, n);
    if (put < 0) {
      if (errno == EINTR) continue;
      throw io_error(path_, "write failed");
    }
    p += put;
    n -= static_cast<size_t>(put);
  }
}

void AtomicFile::write_at(const void* data, size_t n, uint64_t offset) {
  if (direct_) {  // O_DIRECT wants aligned offsets and lengths: finish the sequential part, then write buffered
    direct_->finish();
    direct_.reset();
    const int flags = ::fcntl(fd_, F_GETFL);
    if (flags < 0 || ::fcntl(fd_, F_SETFL, flags & ~O_DIRECT) != 0) throw io_error(tmp_, "cannot end O_DIRECT");
  }
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t put = ::pwrite(fd_, p, n, static_cast<off_t>(offset));
    if (put < 0) {
      if (errno == EINTR) continue;
      throw io_error(path_, "write failed");
    }
    p += put;
    n -= static_cast<size_t>(put);
    offset += static_cast<uint64_t>(put);
  }
}

void AtomicFile::commit() {
  if (direct_) direct_->finish();  // every block written and the length set; the fsync makes them durable
  if (::fsync(fd_) != 0) throw io_error(path_, "fsync failed");
  if (::close(fd_) != 0) {
    fd_ = -1;
    throw io_error(path_, "close failed");
  }
  fd_ = -1;
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) throw io_error(path_, "rename failed");
  committed_ = true;
  unregister_temp(tmp_);
}

void write_file_atomic(const std::string& path, const void* data, size_t n) {
  AtomicFile f(path);
  f.write(data, n);
  f.commit();
}

}  // namespace tabula
