#include "embed/progress.h"

#include <unistd.h>

#include <cmath>
#include <sstream>

namespace tabula {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  long t = std::lround(s);
  char buf[32];
  if (t < 60) std::snprintf(buf, sizeof buf, "%lds", t);
  else if (t < 3600) std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
  return buf;
}

Progress::Progress(std::string what, int64_t total, std::string unit, bool quiet, double log_every)
    : what_(std::move(what)), unit_(std::move(unit)), total_(total), quiet_(quiet), tty_(isatty(STDERR_FILENO)),
      log_every_(log_every), start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

Progress::~Progress() {
  if (!finished_ && !quiet_ && tty_) std::fputc('\n', stderr);
}

void Progress::skip(int64_t n) {
  skipped_ += n;
  done_ += n;
  draw(true);
}

void Progress::advance(int64_t n) {
  done_ += n;
  draw(false);
}

std::string Progress::line() const {
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  int64_t fresh = done_ - skipped_;
  double rate = elapsed > 0 ? static_cast<double>(fresh) / elapsed : 0.0;
  std::ostringstream o;
  o << what_ << ": ";
  if (tty_ && total_ > 0) {
    const int width = 24;
    int filled = static_cast<int>(static_cast<double>(width) * static_cast<double>(done_) / static_cast<double>(total_));
    o << '[' << std::string(static_cast<size_t>(std::min(filled, width)), '#')
      << std::string(static_cast<size_t>(width - std::min(filled, width)), '.') << "] ";
  }
  o << done_ << '/' << total_ << ' ' << unit_;
  if (total_ > 0) o << " (" << (100 * done_ / total_) << "%)";
  char r[32];
  std::snprintf(r, sizeof r, "%.1f", rate);
  o << ", " << r << ' ' << unit_ << "/s";
  if (finished_) {
    o << ", done in " << format_duration(elapsed);
  } else if (rate > 0 && total_ > done_) {
    o << ", ETA " << format_duration(static_cast<double>(total_ - done_) / rate);
  }
  if (skipped_) o << ", " << skipped_ << " from an earlier run";
  if (!note_.empty()) o << ", " << note_;
  return o.str();
}

void Progress::draw(bool force) {
  if (quiet_) return;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_draw_).count();
  if (tty_) {
    if (!force && since < 0.1 && done_ < total_) return;
    std::fprintf(stderr, "\r%s\033[K", line().c_str());
  } else {
    if (!force && since < log_every_) return;
    std::fprintf(stderr, "%s\n", line().c_str());
  }
  std::fflush(stderr);
  last_draw_ = now;
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (quiet_) return;
  if (tty_) std::fprintf(stderr, "\r%s\033[K\n", line().c_str());
  else std::fprintf(stderr, "%s\n", line().c_str());
  std::fflush(stderr);
}

}  // namespace tabula
