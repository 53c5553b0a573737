// Known-relationship recall with EFAAR semantics (recursionpharma/EFAAR_benchmarking, benchmarking.py
// known_relationship_benchmark + compute_recall): on a map with one row per perturbation, the null is every
// upper-triangle cosine similarity (i < j); each annotated pair's similarity q is ranked in it with
// searchsorted: left = #{null < q} / n, right = #{null <= q} / n; recall at (lo, hi) is the fraction of pairs
// with right <= lo or left >= hi. Relationship pairs are filtered as EFAAR does: each pair sorted, self pairs
// and duplicates dropped, pairs whose entities are not both in the map dropped.
//
// The null is never materialised. The upper triangle is streamed in row blocks (AVX-512 tile kernel or Eigen GEMM):
// for maps with >= 2^20 null values, one pass counts the values below a band around each needed order statistic
// (the band from a 1,024-row sample's quantiles, +-1 %) and keeps the values inside it; counts prove the rank is
// inside, else (and for small maps) two passes resolve it exactly: a histogram of each float's order-preserving bit
// pattern, then only the bins holding the needed ranks. Memory is O(N x D + block + bands) for any map size.
#pragma once
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "eval/metrics/features.h"
#include "util/table.h"

namespace tabula::eval {

struct RecallResult {
  int64_t null_size = 0, query_size = 0;
  std::vector<std::pair<double, double>> thresholds;  // (lo, hi) as given, sorted within the pair
  std::vector<double> recall;                         // one per threshold pair
  std::vector<float> query_similarity;                // per kept relationship, in the order of `pairs`
  std::vector<std::pair<int64_t, int64_t>> pairs;     // kept relationships as map rows (i < j)
};

// Keeps relationships whose entities are labels of the map, EFAAR's filter_relationships order rules.
std::vector<std::pair<int64_t, int64_t>> relationship_pairs(const std::vector<std::string>& labels,
                                                            const std::vector<std::pair<std::string, std::string>>& rels);
// Reads a relationship file: the first two columns of a CSV (EFAAR's entity1,entity2) or a TSV.
std::vector<std::pair<std::string, std::string>> read_relationships(const std::string& path);

// A distributed run (`tabula eval recall` under mpirun/srun): this process sweeps the row blocks b with
// b mod parts == part; `allgather` (this part's bytes in, every part's bytes out, in part order) sums the counts and
// histograms and joins the collected similarities and the annotated pairs' values. Every similarity is computed by
// the same operations as in one process and order statistics do not depend on the order values arrive in, so every
// part ends with the single-process result, bit for bit.
struct RecallParts {
  int part = 0, parts = 1;
  std::function<std::vector<std::string>(const std::string&)> allgather;
};

RecallResult relationship_recall(const RowMatrixF& map, const std::vector<std::pair<int64_t, int64_t>>& pairs,
                                 const std::vector<std::pair<double, double>>& thresholds = {{0.05, 0.95}, {0.1, 0.9}},
                                 int threads = 0, int64_t collect_limit = int64_t(1) << 24,
                                 const RecallParts& parts = {});
// collect_limit: a histogram bin holding more similarities than this is resolved by a second histogram instead of
// being collected (bounds memory when a map has many equal similarities; tests lower it to cover that path).

// Dot products of rows [r0, r1) of xn with rows [c0, N) into out ((r1 - r0) x (N - c0)): an AVX-512 FMA tile
// kernel where the CPU has it (the library's Eigen is compiled for SSE2), Eigen's GEMM otherwise. Each pair's value
// is computed by the same operation sequence wherever it sits in a block.
void similarity_rows(const RowMatrixF& xn, int64_t r0, int64_t r1, int64_t c0, RowMatrixF& out);

// EFAAR's column name for a threshold pair: recall_0.05_0.95 (Python's repr of the floats).
std::string recall_column_name(double lo, double hi);
std::string python_float_repr(double v);

}  // namespace tabula::eval
