// Replicate retrieval mean average precision with copairs 0.5.5 semantics (copairs/map/average_precision.py,
// copairs/map/map.py, copairs/compute.py):
//  - a pair (i, j), i < j, is positive when every pos_sameby column is equal and every pos_diffby column differs,
//    negative when every neg_sameby column is equal and every neg_diffby column differs (copairs' find_pairs, a SQL
//    join with `A.x = B.x` / `NOT A.x = B.x`, i.e. "all" semantics); a pair can be both and then counts twice;
//  - each pair enters the rank lists of both its profiles; similarity is cosine in float32 computed with copairs'
//    own operations (x / np.linalg.norm(x), then np.sum(x * y): float32 products, numpy's pairwise summation), so
//    the same bits as copairs (numpy_dot_f32); only the dense path (a rule without sameby) uses a GEMM instead;
//  - a profile's list is ordered by the float32 key 1 - sim ascending, stable with positives before negatives
//    (copairs concatenates positives first and uses np.lexsort), so a positive tied with a negative ranks first;
//  - AP = sum_k (TP_k / k) rel_k / n_pos in float64, summed as np.add.reduceat does (first term + numpy's pairwise
//    sum of the rest): the same bits as copairs; n_total_pairs = list length; no positive -> AP NaN;
//  - normalized AP = (AP - mu0) / (1 - mu0), mu0 the exact expected AP under random ranking, clipped to [-1, 1];
//  - mAP per pos_sameby group over profiles with n_pos > 0; null per (n_pos, n_total) of null_size random AP
//    values in float32; group null = element-wise float32 mean of its members' nulls; mAP = pandas' (Kahan) mean;
//    p = (#{null > mAP} + 1) / (null_size + 1), compared in float32 (numpy casts the Python-float mAP to the
//    null's dtype); Benjamini-Hochberg across groups; below_p = p < threshold.
// Memory: pairs are never materialised; see average_precision() for what is held.
//
// The null (NullRng::copairs, the default) replays copairs 0.5.5's random numbers bit for bit: the sorted list of
// configurations present gets seeds numpy.random.default_rng(seed).integers(8096, size=n_confs); configuration i
// draws null_size rows of Generator(PCG64(seeds[i])).permuted(tile(arange(n_total)), axis=1), keeps the first
// n_pos columns sorted, and sums the precisions in float32 with numpy's pairwise summation. So p-values equal
// copairs' when copairs starts from an empty cache (copairs stores each null vector under ~/.copairs keyed by
// (n_pos, n_total) only and reuses it in later runs, whatever seed it was drawn with: pass it a fresh cache_dir to
// compare). Its cost is null_size x n_total draws per configuration, like copairs. NullRng::floyd draws the same
// distribution with O(n_pos) work per sample (mt19937_64 per configuration, Floyd's sampling), for huge lists.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "eval/metrics/features.h"
#include "util/table.h"

namespace tabula::eval {

enum class NullRng { copairs, floyd };

struct MapOptions {
  std::vector<std::string> pos_sameby, pos_diffby, neg_sameby, neg_diffby;
  int64_t null_size = 10000;  // JUMP default
  uint64_t seed = 0;
  NullRng null_rng = NullRng::copairs;
  double threshold = 0.05;
  int threads = 0;  // 0 = all cores
  // Rows read at a time per thread when profiles are visited bucket by bucket (a larger bucket is tiled).
  int64_t tile_rows = 1024;
  // A tile with at least this many candidates computes its dot products on a DotPanel (16 candidates per AVX-512
  // register; CPUs without AVX-512 never do); with fewer (a compound's replicates) one dot per pair, reused for the
  // symmetric pair. Both give the same bits; tests force each path.
  int64_t panel_min_candidates = 8;
  bool timings = false;  // print each stage's wall time and resident memory to stderr (StageTimer)
  // Groups for mean_average_precision.csv; empty = pos_sameby (what copairs' users pass).
  std::vector<std::string> map_groupby;
  // A distributed run (`tabula eval map` under mpirun/srun): this process computes the queries of part `part` of
  // `parts` (blocks of kQueryBlock query positions, round-robin: block b to part b mod parts) and the null vectors of
  // every parts-th configuration; `allgather` (this part's bytes in, every part's bytes out, in part order) merges
  // them. Each query and each null vector is computed exactly as in one process, so every part ends with the
  // single-process numbers, bit for bit. parts == 1: no allgather needed.
  int part = 0, parts = 1;
  std::function<std::vector<std::string>(const std::string&)> allgather;
};
// Queries per block of the all-pairs loop (the unit of threads and of MPI parts).
inline constexpr int64_t kQueryBlock = 64;

struct AveragePrecision {
  std::vector<double> ap;       // NaN where n_pos == 0
  std::vector<double> nap;      // normalized AP, NaN where ap is NaN
  std::vector<int64_t> n_pos;   // positive pairs of each profile
  std::vector<int64_t> n_total; // positive + negative pairs of each profile
};

// Per-profile AP. Throws for missing/empty metadata cells (naming column and line), a row-count mismatch,
// non-finite or all-zero feature rows, overlapping sameby/diffby, and when no positive or no negative pair exists.
//
// When both rules have sameby columns (JUMP's presets: replicates of a compound, DMSO on the same plate) the rows
// are read bucket by bucket from `features` (a .npy on disk stays on disk) and AP is computed by counting: each
// query's positive similarities are kept, sorted, and the negatives are only counted between them. Memory:
// O(profiles + positive pairs) plus one tile of rows per thread; the features are never all in memory. Without a
// sameby column a rule pairs every profile with every other and average_precision_ranked runs on the whole
// matrix. Both give the same bits.
AveragePrecision average_precision(const FeatureRows& features, const Table& meta, const MapOptions& opt);
AveragePrecision average_precision(const RowMatrixF& features, const Table& meta, const MapOptions& opt);
AveragePrecision average_precision(RowMatrixF&& features, const Table& meta, const MapOptions& opt);
// The reference: each query's full rank list (positives then negatives, stable sort on 1 - sim), as copairs builds
// it; similarities from a blocked GEMM when a rule has no sameby column, else one dot product per pair. Normalises
// the consumed matrix in place (one copy of the features).
AveragePrecision average_precision_ranked(RowMatrixF&& features, const Table& meta, const MapOptions& opt);

struct MeanAveragePrecision {
  Table table;  // group columns, mean_average_precision, mean_normalized_average_precision, p_value,
                // corrected_p_value, below_p, below_corrected_p (groups sorted like pandas' groupby)
  std::vector<double> map, p_value, corrected_p_value;
  std::vector<std::vector<size_t>> members;  // profile rows of each group
};
MeanAveragePrecision mean_average_precision(const Table& meta, const AveragePrecision& ap, const MapOptions& opt);

// copairs' average_precision output: the metadata plus n_pos_pairs, n_total_pairs, average_precision,
// normalized_average_precision.
Table average_precision_table(const Table& meta, const AveragePrecision& ap);
Table average_precision_table(Table&& meta, const AveragePrecision& ap);  // reuses the metadata's cells
// The same table written straight to `path` as CSV (to_csv's text), without building it in memory.
void write_average_precision_csv(const std::string& path, const Table& meta, const AveragePrecision& ap);

// Pieces, exposed for tests and for the benchmark.
double expected_ap(int64_t n_pos, int64_t n_neg);           // copairs.map.normalization.expected_ap
double normalize_ap(double ap, int64_t n_pos, int64_t n_neg);  // clipped to [-1, 1]
// AP of a rank list given as relevance labels in rank order (float64, copairs.compute.ap_contiguous).
double ap_from_ranked(const std::vector<uint8_t>& rel);
// null_size random AP values (float32, like copairs.compute.average_precision) for one configuration, from
// tabula's own stream (NullRng::floyd).
std::vector<float> null_distribution(int64_t n_pos, int64_t n_total, int64_t null_size, uint64_t seed);
// copairs.compute.random_ap(null_size, n_pos, n_total, seed), bit for bit.
std::vector<float> copairs_random_ap(int64_t null_size, int64_t n_pos, int64_t n_total, uint64_t seed);
// The per-configuration seeds copairs.compute.get_null_dists draws: default_rng(seed).integers(8096, size=n).
std::vector<uint64_t> copairs_null_seeds(uint64_t seed, size_t n_confs);

// numpy's Generator(PCG64(seed)) for an integer seed: SeedSequence's entropy mixing, PCG64 (128-bit LCG, XSL-RR
// output) and numpy's 32-bit draws (the low half of a 64-bit output, the high half kept for the next call).
class NumpyPcg64 {
 public:
  explicit NumpyPcg64(uint64_t seed);
  uint64_t next64();
  uint32_t next32();
  // Generator.integers(0, high) for 1 <= high <= 2^32 (Lemire's bounded 32-bit method).
  uint64_t integers(uint64_t high);
  // numpy's random_interval(max): a value in [0, max] by masked rejection (shuffle/permuted use it).
  uint64_t interval(uint64_t max);

 private:
  __extension__ typedef unsigned __int128 u128;
  u128 state_ = 0, inc_ = 0;
  bool has32_ = false;
  uint32_t buf32_ = 0;
};
// p-value of one group's mAP against the element-wise float32 mean of its members' null vectors.
double map_p_value(double map, const std::vector<const float*>& member_nulls, int64_t null_size);
// statsmodels multipletests(method="fdr_bh") corrected p-values.
std::vector<double> benjamini_hochberg(const std::vector<double>& p);

// Sort order of table rows by the given columns like pandas' groupby(sort=True): a column whose cells all parse
// as numbers compares numerically, otherwise as strings.
std::vector<std::vector<size_t>> group_rows(const Table& meta, const std::vector<std::string>& by,
                                            const std::vector<size_t>& rows);

}  // namespace tabula::eval
