// Progress on stderr for long work: a bar with count, rate and ETA redrawn in place on a terminal, and a plain
// log line every `log_every` seconds when stderr is a file or a pipe (batch jobs, CI), so logs stay readable.
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace tabula {

class Progress {
 public:
  // `what` names the work ("embed resnet50"), `unit` the items ("images"). quiet: print nothing.
  Progress(std::string what, int64_t total, std::string unit = "images", bool quiet = false, double log_every = 10.0);
  ~Progress();
  void set_total(int64_t total) { total_ = total; }
  void set_note(std::string note) { note_ = std::move(note); }  // e.g. "shard 2/8"
  void advance(int64_t n);   // n more items done (also counts skipped/resumed items: see skip())
  void skip(int64_t n);      // items already done by an earlier run: counted as done, not in the rate
  void finish();             // final line with the total time
  // The text of the current line (also what tests check).
  std::string line() const;

 private:
  void draw(bool force);
  std::string what_, unit_, note_;
  int64_t total_ = 0, done_ = 0, skipped_ = 0;
  bool quiet_, tty_, finished_ = false;
  double log_every_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

std::string format_duration(double seconds);  // "42s", "3m07s", "1h02m"

}  // namespace tabula
