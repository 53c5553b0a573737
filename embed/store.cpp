#include "embed/store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "engine/fileio.h"
#include "util/npy.h"
#include "util/sha256.h"

namespace tabula {

namespace fs = std::filesystem;

static const char* kJournalMagic = "tabula-journal-v1";

RowRange shard_rows(int64_t rows, int index, int count) {
  if (count < 1 || index < 0 || index >= count)
    throw std::invalid_argument("shard " + std::to_string(index) + "/" + std::to_string(count) +
                                ": expected 0 <= index < count");
  return {rows * index / count, rows * (index + 1) / count};
}

std::string journal_name(int rank) { return rank == 0 ? "journal" : "journal." + std::to_string(rank); }

namespace {

// Journal files in DIR/.partial ("journal", "journal.<rank>"), by rank.
std::vector<std::string> journal_files(const std::string& partial) {
  std::vector<std::pair<long, std::string>> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(partial, ec)) {
    const std::string n = e.path().filename().string();
    if (n == "journal") {
      found.emplace_back(0, e.path().string());
    } else if (n.rfind("journal.", 0) == 0 && n.size() > 8 &&
               n.find_first_not_of("0123456789", 8) == std::string::npos && n.size() < 18) {
      found.emplace_back(std::stol(n.substr(8)), e.path().string());
    }
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

}  // namespace

EmbeddingStore::EmbeddingStore(std::string dir, int64_t rows, int64_t chunk_rows, std::string run_key, Mode mode,
                               int writer, std::function<bool(int64_t)> verify)
    : dir_(std::move(dir)),
      run_key_(std::move(run_key)),
      rows_(rows),
      chunk_rows_(chunk_rows),
      writer_(writer),
      verify_(std::move(verify)) {
  if (rows < 0 || chunk_rows < 1) throw std::invalid_argument("EmbeddingStore: rows >= 0 and chunk_rows >= 1 needed");
  if (writer < 0) throw std::invalid_argument("EmbeddingStore: writer rank must be >= 0");
  if (run_key_.find_first_of(" \n") != std::string::npos)
    throw std::invalid_argument("EmbeddingStore: run key must not contain spaces or newlines");
  for (int64_t b = 0; b < rows; b += chunk_rows) chunks_.push_back({b, std::min(rows, b + chunk_rows)});
  std::string partial = partial_dir(dir_);
  if (mode == Mode::attach) {
    if (!fs::is_directory(partial)) throw std::runtime_error(partial + ": missing (rank 0 did not open the run)");
    return;
  }
  std::vector<std::string> journals = journal_files(partial);
  if (mode == Mode::fresh && !journals.empty())
    throw std::runtime_error(dir_ + ": holds an unfinished run; continue it with --resume or start over with --force");
  std::error_code ec;
  fs::create_directories(partial, ec);
  if (ec) throw std::runtime_error(partial + ": cannot create: " + ec.message());
  if (!journals.empty()) {
    for (const std::string& j : journals) load_journal(j);
  } else {
    write_file_atomic(partial + "/" + journal_name(writer_), header());
    journal_ready_ = true;
  }
}

std::string EmbeddingStore::header() const {
  std::ostringstream h;
  h << kJournalMagic << " key=" << run_key_ << " rows=" << rows_ << " chunk=" << chunk_rows_ << "\n";
  return h.str();
}

std::string EmbeddingStore::chunk_dir(const RowRange& r) const {
  char name[64];
  std::snprintf(name, sizeof name, "%012lld-%012lld", static_cast<long long>(r.begin), static_cast<long long>(r.end));
  return partial_dir(dir_) + "/" + name;
}

bool EmbeddingStore::parse_done(const std::string& line, const std::string& where, bool verify, RowRange* r,
                                Done* d) const {
  std::istringstream w(line);
  std::string tag;
  w >> tag;
  if (tag != "done") throw std::runtime_error(where + ": unexpected '" + tag + "'");
  w >> r->begin >> r->end;
  // Chunk boundaries are multiples of chunk_rows (the last one ends at rows).
  const bool known = w && r->begin >= 0 && r->begin < rows_ && r->begin % chunk_rows_ == 0 &&
                     r->end == std::min(rows_, r->begin + chunk_rows_);
  if (!known) throw std::runtime_error(where + ": unknown chunk");
  std::string item;
  while (w >> item) {
    // layer=dim:sha256 (layer names never contain '=': they are PyTorch module names)
    auto eq = item.rfind('='), colon = item.rfind(':');
    if (eq == std::string::npos || colon == std::string::npos || colon < eq) return false;
    std::string layer = item.substr(0, eq);
    int64_t dim = 0;
    try {
      dim = std::stoll(item.substr(eq + 1, colon - eq - 1));
    } catch (const std::exception&) {
      return false;
    }
    std::string sha = item.substr(colon + 1);
    if (verify) {
      std::string file = chunk_dir(*r) + "/" + layer + ".npy";
      if (!fs::exists(file) || sha256_file(file) != sha) return false;  // lost or damaged: compute it again
    }
    d->layers[layer] = {dim, sha};
    d->order.push_back(layer);
  }
  return !d->order.empty();
}

void EmbeddingStore::load_journal(const std::string& path) {
  std::string text = read_file_text(path);
  std::istringstream in(text);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    bool complete = !in.eof();  // a last line without '\n' was torn by a kill: ignore it
    if (!complete) break;
    if (lineno == 1) {
      std::istringstream w(line);
      std::string tag, key, rows, chunk;
      w >> tag >> key >> rows >> chunk;
      if (tag != kJournalMagic) throw std::runtime_error(path + ":1: not a tabula journal");
      std::string want_key = "key=" + run_key_, want_rows = "rows=" + std::to_string(rows_),
                  want_chunk = "chunk=" + std::to_string(chunk_rows_);
      if (key != want_key || rows != want_rows || chunk != want_chunk)
        throw std::runtime_error(dir_ + ": the unfinished run there was started with different settings (" + key +
                                 " " + rows + " " + chunk + ", now " + want_key + " " + want_rows + " " +
                                 want_chunk + "); use --force to start over");
      continue;
    }
    RowRange r;
    Done d;
    // A line whose files do not match leaves the chunk as another journal's line (or pending) has it: a chunk
    // recomputed after damage has a newer line, possibly in another rank's journal. The chunk index is known
    // before the files are read: parse once without hashing to learn it.
    const std::string where = path + ":" + std::to_string(lineno);
    if (!parse_done(line, where, false, &r, &d)) continue;
    if (!verify_ || verify_(r.begin / chunk_rows_)) {
      Done checked;
      if (!parse_done(line, where, true, &r, &checked)) continue;
    }
    done_[r.begin] = d;
  }
}

void EmbeddingStore::adopt(const std::string& lines) {
  std::istringstream in(lines);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    RowRange r;
    Done d;
    if (!parse_done(line, "journal lines from another rank, line " + std::to_string(lineno), false, &r, &d))
      throw std::runtime_error(dir_ + ": a rank reported a malformed journal line: " + line);
    done_[r.begin] = d;
  }
}

void EmbeddingStore::append_journal(const std::string& line) {
  std::string path = partial_dir(dir_) + "/" + journal_name(writer_);
  if (!journal_ready_) {
    // First append of this process: create the rank's journal, or cut a line torn by an earlier kill so that the
    // new line starts on its own.
    std::error_code ec;
    if (!fs::exists(path, ec)) {
      write_file_atomic(path, header());
    } else {
      std::string text = read_file_text(path);
      if (!text.empty() && text.back() != '\n') {
        auto nl = text.rfind('\n');
        if (nl == std::string::npos) write_file_atomic(path, header());
        else if (::truncate(path.c_str(), static_cast<off_t>(nl + 1)) != 0)
          throw std::runtime_error(path + ": cannot cut a torn last line: " + std::strerror(errno));
      }
    }
    journal_ready_ = true;
  }
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
  const char* p = line.data();
  size_t n = line.size();
  while (n) {
    ssize_t put = ::write(fd, p, n);
    if (put < 0 && errno == EINTR) continue;
    if (put < 0) {
      int e = errno;
      ::close(fd);
      throw std::runtime_error(path + ": write failed: " + std::strerror(e));
    }
    p += put, n -= static_cast<size_t>(put);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) throw std::runtime_error(path + ": fsync failed: " + std::strerror(errno));
  written_ += line;
}

std::vector<RowRange> EmbeddingStore::pending() const {
  std::vector<RowRange> out;
  for (const RowRange& c : chunks_)
    if (!done_.count(c.begin)) out.push_back(c);
  return out;
}

int64_t EmbeddingStore::rows_done() const {
  int64_t n = 0;
  for (const RowRange& c : chunks_)
    if (done_.count(c.begin)) n += c.size();
  return n;
}

void EmbeddingStore::put(const RowRange& r, const std::vector<LayerRows>& layers) {
  const bool known = r.begin >= 0 && r.begin < rows_ && r.begin % chunk_rows_ == 0 &&
                     r.end == std::min(rows_, r.begin + chunk_rows_);
  if (!known) throw std::invalid_argument("EmbeddingStore::put: [" + std::to_string(r.begin) + ", " +
                                          std::to_string(r.end) + ") is not a chunk");
  if (layers.empty()) throw std::invalid_argument("EmbeddingStore::put: no layers");
  std::string cdir = chunk_dir(r);
  std::error_code ec;
  fs::create_directories(cdir, ec);
  if (ec) throw std::runtime_error(cdir + ": cannot create: " + ec.message());
  std::ostringstream line;
  line << "done " << r.begin << " " << r.end;
  Done d;
  for (const LayerRows& l : layers) {
    if (l.dim < 1 || static_cast<int64_t>(l.values.size()) != r.size() * l.dim)
      throw std::invalid_argument("EmbeddingStore::put: layer " + l.layer + " has " + std::to_string(l.values.size()) +
                                  " values for " + std::to_string(r.size()) + " rows x " + std::to_string(l.dim));
    if (l.layer.empty() || l.layer.find_first_of("/ =:\n") != std::string::npos)
      throw std::invalid_argument("EmbeddingStore::put: unusable layer name '" + l.layer + "'");
    std::string file = cdir + "/" + l.layer + ".npy";
    write_npy(file, {r.size(), l.dim}, l.values.data());
    std::string sha = sha256_file(file);
    line << " " << l.layer << "=" << l.dim << ":" << sha;
    d.layers[l.layer] = {l.dim, sha};
    d.order.push_back(l.layer);
  }
  line << "\n";
  append_journal(line.str());
  done_[r.begin] = d;
}

std::vector<std::string> EmbeddingStore::finalize() {
  auto missing = pending();
  if (!missing.empty())
    throw std::runtime_error(dir_ + ": cannot finish: " + std::to_string(missing.size()) + " chunk(s) missing, first rows [" +
                             std::to_string(missing[0].begin) + ", " + std::to_string(missing[0].end) + ")");
  std::vector<std::string> order = chunks_.empty() ? std::vector<std::string>{} : done_.at(0).order;
  for (const RowRange& c : chunks_) {
    const Done& d = done_.at(c.begin);
    if (d.order != order)
      throw std::runtime_error(dir_ + ": chunk [" + std::to_string(c.begin) + ", " + std::to_string(c.end) +
                               ") has different layers than the first chunk");
  }
  for (const std::string& layer : order) {
    int64_t dim = done_.at(0).layers.at(layer).first;
    AtomicFile out(dir_ + "/" + layer + ".npy");
    out.write(npy_header(DType::f32, {rows_, dim}));
    for (const RowRange& c : chunks_) {
      if (done_.at(c.begin).layers.at(layer).first != dim)
        throw std::runtime_error(dir_ + ": layer " + layer + " changes width between chunks");
      NpyArray a = read_npy(chunk_dir(c) + "/" + layer + ".npy");
      if (a.dtype != DType::f32 || a.shape != std::vector<int64_t>{c.size(), dim})
        throw std::runtime_error(chunk_dir(c) + "/" + layer + ".npy: unexpected shape");
      out.write(a.data.data(), a.data.size());
    }
    out.commit();
  }
  std::error_code ec;
  fs::remove_all(partial_dir(dir_), ec);
  return order;
}

}  // namespace tabula
