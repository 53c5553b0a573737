#include "data/manifest_check.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace tabula::data {

namespace fs = std::filesystem;

void check_images_exist(const Manifest& m, size_t begin, size_t end, double budget_seconds) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  // Each folder is listed once instead of one stat per file: a listing comes back in a few large replies from a
  // network file system, where a stat per file of a 6 M-row manifest costs minutes. The listings held are bounded.
  constexpr size_t kMaxNames = 1u << 20;
  std::unordered_map<std::string, std::unordered_set<std::string>> listed;
  std::unordered_set<std::string> unlistable;  // such a folder's files are stat'ed one by one
  size_t names = 0;
  auto exists = [&](const std::string& path) {
    const fs::path p(path);
    const std::string dir = p.parent_path().string();
    // A file whose status cannot be read (other than "not found") counts as there: its decode says what is wrong.
    auto stat = [&] {
      std::error_code ec;
      return fs::status(p, ec).type() != fs::file_type::not_found;
    };
    if (unlistable.count(dir)) return stat();
    auto it = listed.find(dir);
    if (it == listed.end()) {
      if (names > kMaxNames) listed.clear(), names = 0;
      std::unordered_set<std::string> files;
      std::error_code ec;
      for (fs::directory_iterator d(dir.empty() ? "." : dir, ec), e; !ec && d != e; d.increment(ec))
        files.insert(d->path().filename().string());
      if (ec) {
        unlistable.insert(dir);
        return stat();
      }
      names += files.size();
      it = listed.emplace(dir, std::move(files)).first;
    }
    return it->second.count(p.filename().string()) > 0;
  };
  end = std::min(end, m.samples.size());
  for (size_t i = begin; i < end; ++i) {
    const Sample& s = m.samples[i];
    for (const std::vector<std::string>* paths : {&s.channel_paths, &s.illum_paths})
      for (const std::string& path : *paths)
        if (!exists(path))
          throw std::runtime_error(sample_name(m, i) + ": " + path + ": no such file (found before embedding)");
    // A check that takes long stops early: the rest are still named with their row when they are read.
    if (i % 1024 == 1023 && std::chrono::duration<double>(Clock::now() - t0).count() > budget_seconds) return;
  }
}

}  // namespace tabula::data
