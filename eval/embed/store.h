// Where `tabula embed` puts its numbers while it runs, so that a run killed at any moment (kill -9, node
// pre-emption, disk full) loses nothing already computed and a rerun with --resume finishes with files
// byte-identical to an uninterrupted run.
//
//   DIR/.partial/journal                 header line (run key, rows, chunk size), then one line per finished chunk
//   DIR/.partial/<begin>-<end>/LAYER.npy  features of rows [begin, end) for each tapped layer
//   DIR/LAYER.npy                        written by finalize(): every chunk concatenated, [rows, dim] float32
//
// Chunk boundaries depend only on (rows, chunk_rows), so a resumed run recomputes exactly the missing chunks.
// Every file is written atomically (temp + rename); a journal line is appended (and fsync'ed) only after its
// chunk's files are complete, and a torn last line is ignored. On resume every journalled chunk is re-hashed
// (SHA-256) and recomputed if it does not match.
#pragma once
#include <cstdint>
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
  enum class Mode { fresh, resume };
  // fresh: DIR must not hold a previous run (the caller removes it for --force). resume: DIR/.partial must hold a
  // journal started with the same run_key (else an error says what differs); a DIR with no journal starts fresh.
  // Throws std::runtime_error naming DIR.
  EmbeddingStore(std::string dir, int64_t rows, int64_t chunk_rows, std::string run_key, Mode mode);

  int64_t rows() const { return rows_; }
  const std::vector<RowRange>& chunks() const { return chunks_; }  // all chunks, in row order
  std::vector<RowRange> pending() const;                           // chunks still to compute, in row order
  int64_t rows_done() const;

  // Stores one chunk (must be one of chunks(); every layer with values.size() == rows * dim).
  void put(const RowRange& r, const std::vector<LayerRows>& layers);
  // Writes DIR/LAYER.npy for every layer (in the order first stored) and removes DIR/.partial. Requires every
  // chunk stored, with the same layers and dims. Returns the layer names.
  std::vector<std::string> finalize();

  static std::string partial_dir(const std::string& dir) { return dir + "/.partial"; }

 private:
  struct Done {
    std::map<std::string, std::pair<int64_t, std::string>> layers;  // layer -> (dim, sha256 of its chunk file)
    std::vector<std::string> order;
  };
  std::string chunk_dir(const RowRange& r) const;
  void load_journal();
  void append_journal(const std::string& line);

  std::string dir_, run_key_;
  int64_t rows_, chunk_rows_;
  std::vector<RowRange> chunks_;
  std::map<int64_t, Done> done_;  // by chunk begin
};

// Splits [0, rows) into the contiguous slice shard `index` of `count` owns (index 0-based): rows
// [floor(rows*index/count), floor(rows*(index+1)/count)). Shards of a manifest therefore concatenate in order.
RowRange shard_rows(int64_t rows, int index, int count);

}  // namespace tabula
