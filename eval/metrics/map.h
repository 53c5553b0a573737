// Replicate retrieval mean average precision with copairs 0.5.5 semantics (copairs/map/average_precision.py,
// copairs/map/map.py, copairs/compute.py):
//  - a pair (i, j), i < j, is positive when every pos_sameby column is equal and every pos_diffby column differs,
//    negative when every neg_sameby column is equal and every neg_diffby column differs (copairs' find_pairs, a SQL
//    join with `A.x = B.x` / `NOT A.x = B.x`, i.e. "all" semantics); a pair can be both and then counts twice;
//  - each pair enters the rank lists of both its profiles; similarity is cosine in float32;
//  - a profile's list is ordered by the float32 key 1 - sim ascending, stable with positives before negatives
//    (copairs concatenates positives first and uses np.lexsort), so a positive tied with a negative ranks first;
//  - AP = sum_k (TP_k / k) rel_k / n_pos in float64; n_total_pairs = list length; no positive -> AP NaN;
//  - normalized AP = (AP - mu0) / (1 - mu0), mu0 the exact expected AP under random ranking, clipped to [-1, 1];
//  - mAP per pos_sameby group over profiles with n_pos > 0; null per (n_pos, n_total) of null_size random AP
//    values in float32; group null = element-wise float32 mean of its members' nulls; p = (#{null > mAP} + 1) /
//    (null_size + 1); Benjamini-Hochberg across groups; below_p = p < threshold.
// Memory is O(profiles x dims + one query's rank list per thread): pairs are never materialised.
//
// The null's random numbers are not numpy's PCG64 stream (copairs seeds numpy.random.default_rng per
// configuration from a seed drawn for the sorted list of configurations present, then caches the vectors on
// disk under ~/.copairs, so its p-values even depend on earlier runs). Here each (n_pos, n_total) configuration
// has its own stream: mt19937_64 seeded with splitmix64(seed ^ splitmix64(n_pos << 32 | n_total)), positives
// placed by Floyd's sampling with unbiased bounded integers. p-values are therefore equal to copairs' in
// distribution, not bitwise; the formula is the same and tested with copairs' own null vectors.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "eval/metrics/features.h"
#include "eval/table.h"

namespace tabula::eval {

struct MapOptions {
  std::vector<std::string> pos_sameby, pos_diffby, neg_sameby, neg_diffby;
  int64_t null_size = 10000;  // JUMP default
  uint64_t seed = 0;
  double threshold = 0.05;
  int threads = 0;  // 0 = all cores
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
AveragePrecision average_precision(const RowMatrixF& features, const Table& meta, const MapOptions& opt);
// Same, consuming the matrix (normalised in place: peak memory is one copy of the features).
AveragePrecision average_precision(RowMatrixF&& features, const Table& meta, const MapOptions& opt);

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

// Pieces, exposed for tests and for the benchmark.
double expected_ap(int64_t n_pos, int64_t n_neg);           // copairs.map.normalization.expected_ap
double normalize_ap(double ap, int64_t n_pos, int64_t n_neg);  // clipped to [-1, 1]
// AP of a rank list given as relevance labels in rank order (float64, copairs.compute.ap_contiguous).
double ap_from_ranked(const std::vector<uint8_t>& rel);
// null_size random AP values (float32, like copairs.compute.average_precision) for one configuration.
std::vector<float> null_distribution(int64_t n_pos, int64_t n_total, int64_t null_size, uint64_t seed);
// p-value of one group's mAP against the element-wise float32 mean of its members' null vectors.
double map_p_value(double map, const std::vector<const float*>& member_nulls, int64_t null_size);
// statsmodels multipletests(method="fdr_bh") corrected p-values.
std::vector<double> benjamini_hochberg(const std::vector<double>& p);

// Sort order of table rows by the given columns like pandas' groupby(sort=True): a column whose cells all parse
// as numbers compares numerically, otherwise as strings.
std::vector<std::vector<size_t>> group_rows(const Table& meta, const std::vector<std::string>& by,
                                            const std::vector<size_t>& rows);

}  // namespace tabula::eval
