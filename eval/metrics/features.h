// Feature matrices for the evaluator: float32, one row per profile (image, well, spot), row-major, as written by
// `tabula embed` (LAYER.npy) or any numpy array [N, D]. Everything in eval/metrics works on these plain matrices
// plus a metadata Table with one row per profile.
#pragma once
#include <Eigen/Core>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "util/table.h"

namespace tabula::eval {

using RowMatrixF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Where `--features` and `--meta` point: "DIR:LAYER" reads DIR/LAYER.npy with DIR/index.csv as the default
// metadata, "DIR" alone works when DIR holds exactly one .npy, "X.npy" needs --meta.
struct FeatureSource {
  std::string npy_path;
  std::string meta_path;  // empty when none was given and none could be inferred
  std::string layer;      // the LAYER part (or the .npy stem)
};
FeatureSource resolve_features(const std::string& features_arg, const std::string& meta_arg);

// Reads a 2-D numeric .npy as float32. Throws naming the file for a wrong rank and naming the first NaN/Inf
// cell ("X.npy: row 12, column 3 is NaN") so bad embeddings are caught before any metric runs.
RowMatrixF load_features(const std::string& npy_path);
// Rows of a feature matrix read on demand, so a metric that visits profiles group by group never holds the whole
// matrix: a little-endian float32 C-order .npy is read with pread() (its pages stay in the OS page cache, shared and
// evictable, not in this process's resident set); any other .npy is loaded with load_features() and served from
// memory; a matrix already in memory is borrowed (no copy). Reads are thread-safe.
class FeatureRows {
 public:
  static FeatureRows open_npy(const std::string& npy_path);
  static FeatureRows borrow(const RowMatrixF& x, std::string name = "features");
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  const std::string& name() const { return name_; }
  bool in_memory() const { return mem_ != nullptr; }
  // Copies rows ids[0..k) into dst (k x cols, row-major); runs of consecutive ids are read in one call.
  void read(const int32_t* ids, int64_t k, float* dst) const;
  void read_range(int64_t r0, int64_t r1, float* dst) const;
  // The whole matrix (for metrics that need every row at once).
  RowMatrixF load_all() const;

 private:
  std::string name_;
  int64_t rows_ = 0, cols_ = 0;
  std::shared_ptr<const int> fd_;    // open .npy (closed with the last copy)
  int64_t data_offset_ = 0;
  std::shared_ptr<RowMatrixF> owned_;  // a non-f32 .npy converted on load
  const RowMatrixF* mem_ = nullptr;
};

// np.sum(a * b) and np.linalg.norm(a) of float32 vectors, bit for bit: each product rounded to float32, then
// numpy's pairwise summation (loops_utils.h.src: plain below 8 terms, 8 accumulators in blocks of up to 128, halves
// above). copairs' cosine (compute.pairwise_cosine) is numpy_dot_f32(a / |a|, b / |b|) with |.| = numpy_norm_f32.
// Vectorised (AVX2, no FMA: numpy rounds the product) after a runtime check; the portable path gives the same bits.
float numpy_dot_f32(const float* a, const float* b, int64_t n);
float numpy_dot_f32_reference(const float* a, const float* b, int64_t n);  // portable scalar code, same bits
float numpy_norm_f32(const float* x, int64_t n);

// numpy_dot_f32 of query vectors against a panel of up to 16 candidate vectors, the same bits as numpy_dot_f32 for
// every pair. The candidates are stored term-major (term i of the 16 lanes contiguous), so each SIMD lane carries one
// candidate through numpy's exact order (8 accumulators per block, the block's tree, the tail, the halves) while the
// query's term is broadcast: one multiply and one add per term for 16 pairs, instead of a horizontal reduction per
// pair. AVX-512 after a runtime check (mul and add kept separate: numpy rounds the product); a portable loop with the
// same operations otherwise. A panel is not thread-safe to fill; dot2() may run concurrently on a filled panel.
class DotPanel {
 public:
  static constexpr int kLanes = 16;
  // n: the vector length; simd = false forces the portable loop (tests compare the two).
  explicit DotPanel(int64_t n, bool simd = true);
  int64_t length() const { return n_; }
  // Whether dot2() runs the AVX-512 kernel. The portable loop gives the same bits but is slower than one
  // numpy_dot_f32 (AVX2) per pair, so callers without it compute pairs one at a time.
  bool simd() const { return simd_; }
  // Lane `lane` holds row[0, n) from now on (lanes never set hold zeros).
  void set(int lane, const float* row);
  // out0[c] = numpy_dot_f32(q0, lane c), out1[c] = numpy_dot_f32(q1, lane c) for all kLanes lanes.
  void dot2(const float* q0, const float* q1, float* out0, float* out1) const;

 private:
  int64_t n_;
  bool simd_;
  std::vector<float> t_;  // n x kLanes, term-major
};

// numpy_norm_f32 of every row, computed in one streaming pass that also rejects bad input: the first non-finite
// cell ("X.npy: row 12, column 3 is NaN") and the first all-zero row are named. The result does not depend on the
// thread count.
std::vector<float> checked_row_norms(const FeatureRows& x, int threads = 0);
// The norm l2_normalize_rows divides by (the float of a float64 sum of squares).
float row_l2_norm(const float* x, int64_t n);

// Throws naming both files when the row counts differ.
void check_rows_match(const RowMatrixF& x, const Table& meta, const std::string& what);
// First non-finite cell, as "row R, column C is NaN|inf"; empty when all are finite.
std::string find_non_finite(const RowMatrixF& x);

// Rows scaled to unit L2 norm in float32 (as numpy's x / np.linalg.norm(x, axis=1)). A zero row throws naming it,
// since its cosine similarity to anything is undefined.
RowMatrixF l2_normalize_rows(const RowMatrixF& x, const std::string& what = "features");
void l2_normalize_rows_inplace(RowMatrixF& x, const std::string& what = "features");

// Deterministic float32 dot product with a fixed accumulation order (16 lanes then a fixed tree): the same pair of
// vectors gives the same bits wherever it is called from, so exact ties stay ties.
float dot_f32(const float* a, const float* b, int64_t n);

// Cosine (or plain dot, for pre-normalised rows) similarity of rows [q0, q1) of A against all rows of B, computed
// as a blocked Eigen GEMM into `out` ((q1-q0) x B.rows()).
void similarity_block(const RowMatrixF& a_normed, int64_t q0, int64_t q1, const RowMatrixF& b_normed, RowMatrixF& out);

// `--timings`: prints the wall and CPU (user + system, all threads) seconds of each stage and the process's resident
// memory after it (VmRSS, and VmHWM = the peak so far) to stderr. Does nothing when off.
class StageTimer {
 public:
  explicit StageTimer(bool on);
  void stage(const char* name);

 private:
  bool on_;
  double t_ = 0, cpu_ = 0;
};

// Runs fn(i) for i in [0, n) on `threads` std::threads (0 = hardware concurrency) with a static contiguous split;
// fn must write only to its own outputs, so results never depend on the thread count.
void parallel_for(int64_t n, int threads, const std::function<void(int64_t begin, int64_t end)>& fn);
int default_threads();

}  // namespace tabula::eval
