// What every part of the evaluator shares: profile feature matrices (one row per image / well / spot, float32 as
// stored, float64 for fits) with one metadata row each, metadata columns coded for matching, and rows grouped by
// columns in pandas' groupby order. metrics/ (the scores) and norm/ (the transforms they may run first) both build on
// this file and nothing else of each other's: metrics -> norm -> here.
#pragma once
#include <Eigen/Core>
#include <cstdint>
#include <string>
#include <vector>

#include "util/table.h"

namespace tabula::eval {

using RowMatrixF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Throws naming both files when the row counts differ.
void check_rows_match(const RowMatrixF& x, const Table& meta, const std::string& what);

// Codes of a metadata column for pair matching and grouping. A column whose cells all parse as numbers is compared
// by value ("1" == "1.0"), as pandas would after reading the CSV; otherwise by string. Empty cells are an error:
// copairs refuses null metadata in the columns it matches on.
struct ColumnCodes {
  std::vector<int32_t> code;
  bool numeric = false;
  std::vector<double> value;  // when numeric
};
ColumnCodes column_codes(const Table& meta, const std::string& name);

// Sort order of table rows by the given columns like pandas' groupby(sort=True): a column whose cells all parse
// as numbers compares numerically, otherwise as strings.
std::vector<std::vector<size_t>> group_rows(const Table& meta, const std::vector<std::string>& by,
                                            const std::vector<size_t>& rows);

}  // namespace tabula::eval
