// Where `tabula embed` puts its numbers while it runs, so that a run killed at any moment (kill -9, node
// pre-emption, disk full) loses nothing already computed and a rerun with --resume finishes with files
// byte-identical to an uninterrupted run.
//
//   DIR/.partial/journal                 header line (run key, rows, chunk size), then one line per finished chunk
//   DIR/.partial/journal.<rank>          the same, written by MPI rank <rank> > 0 of a distributed run: every
//                                        process appends only to its own journal, so ranks never share a file
//   DIR/.partial/<begin>-<end>/LAYER.npy  features of rows [begin, end) for each tapped layer
//   DIR/LAYER.npy                        written by finalize(): every chunk concatenated, [rows, dim] float32
//
// Chunk boundaries depend only on (rows, chunk_rows), so a resumed run recomputes exactly the missing chunks.
// Every file is written atomically (temp + rename); a journal line is appended (and fsync'ed) only after its
// chunk's files are complete, and a torn last line is ignored. On resume every journalled chunk is re-hashed
// (SHA-256) and recomputed if it does not match. A chunk counts as done when any journal's line for it matches
// the file on disk, so a run resumed with a different number of ranks (or none) reads every journal there.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace tabula {

struct RowRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
  bool operator==(const RowRange&) const = default;
};

struct LayerRows {
  std::string layer;
  int64_t dim = 0;
  std::vector<float> values;  // rows x dim, row-major
};

class EmbeddingStore {
 public:
  enum class Mode { fresh, resume, attach };
  // fresh: DIR must not hold a previous run (the caller removes it for --force). resume: DIR/.partial must hold a
  // journal started with the same run_key (else an error says what differs); a DIR with no journal starts fresh.
  // attach: another process (MPI rank 0) opened the run in DIR and decides which chunks are pending; this store
  // reads no journal and only put()s chunks. `writer` is the rank whose journal put() appends to (0: "journal").
  // `verify` (resume): which journalled chunks (by index in chunks()) this store re-hashes; the others are taken as
  // their journal says. Ranks resuming together each verify a share and agree on the union of what failed.
  // Throws std::runtime_error naming DIR.
  EmbeddingStore(std::string dir, int64_t rows, int64_t chunk_rows, std::string run_key, Mode mode, int writer = 0,
                 std::function<bool(int64_t chunk_index)> verify = nullptr);

  int64_t rows() const { return rows_; }
  const std::vector<RowRange>& chunks() const { return chunks_; }  // all chunks, in row order
  std::vector<RowRange> pending() const;                           // chunks still to compute, in row order
  int64_t rows_done() const;

  // Stores one chunk (must be one of chunks(); every layer with values.size() == rows * dim).
  void put(const RowRange& r, const std::vector<LayerRows>& layers);
  // Writes DIR/LAYER.npy for every layer (in the order first stored) and removes DIR/.partial. Requires every
  // chunk stored, with the same layers and dims. Returns the layer names.
  std::vector<std::string> finalize();
  // The journal lines this store appended (what a rank sends to rank 0), and their adoption on rank 0: the chunks
  // count as done without re-hashing (their writer hashed them). Throws on a line that names no chunk.
  const std::string& written() const { return written_; }
  void adopt(const std::string& lines);

  static std::string partial_dir(const std::string& dir) { return dir + "/.partial"; }

 private:
  struct Done {
    std::map<std::string, std::pair<int64_t, std::string>> layers;  // layer -> (dim, sha256 of its chunk file)
    std::vector<std::string> order;
  };
  std::string chunk_dir(const RowRange& r) const;
  std::string header() const;
  void load_journal(const std::string& path);
  // Parses a "done" line; verify: re-hash the chunk files. Returns false for a line naming damaged/missing files.
  bool parse_done(const std::string& line, const std::string& where, bool verify, RowRange* r, Done* d) const;
  void append_journal(const std::string& line);

  std::string dir_, run_key_;
  int64_t rows_, chunk_rows_;
  int writer_ = 0;
  std::function<bool(int64_t)> verify_;
  bool journal_ready_ = false;  // this writer's journal exists and ends with a complete line
  std::string written_;
  std::vector<RowRange> chunks_;
  std::map<int64_t, Done> done_;  // by chunk begin
};

// Splits [0, rows) into the contiguous slice shard `index` of `count` owns (index 0-based): rows
// [floor(rows*index/count), floor(rows*(index+1)/count)). Shards of a manifest therefore concatenate in order.
RowRange shard_rows(int64_t rows, int index, int count);

// The journal file MPI rank `rank` appends to: "journal" for rank 0 (and single-process runs), "journal.<rank>".
std::string journal_name(int rank);

}  // namespace tabula
