#include <algorithm>
#include <stdexcept>

#include "eval/norm/normalize.h"

namespace tabula::eval {

RowMatrixF aggregate(const RowMatrixF& x, const Table& meta, const std::vector<std::string>& by,
                     const std::string& method, Table* meta_out) {
  check_rows_match(x, meta, "features");
  if (method != "mean" && method != "median")
    throw std::runtime_error("aggregation method must be mean or median, not '" + method + "'");
  if (by.empty()) throw std::runtime_error("aggregation needs at least one column to group by");
  std::vector<size_t> all(meta.rows());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  auto groups = group_rows(meta, by, all);
  RowMatrixF out(static_cast<int64_t>(groups.size()), x.cols());
  std::vector<float> col;
  for (size_t g = 0; g < groups.size(); ++g) {
    const auto& rows = groups[g];
    for (int64_t d = 0; d < x.cols(); ++d) {
      if (method == "mean") {
        // numpy float32 mean along axis 0: float32 running sum over rows, then one division.
        float s = 0;
        for (size_t r : rows) s += x(r, d);
        out(g, d) = s / static_cast<float>(rows.size());
      } else {
        col.clear();
        for (size_t r : rows) col.push_back(x(r, d));
        std::sort(col.begin(), col.end());
        size_t m = col.size();
        out(g, d) = m % 2 ? col[m / 2] : (col[m / 2 - 1] + col[m / 2]) / 2.0f;
      }
    }
  }
  if (meta_out) {
    *meta_out = Table(by);
    for (const auto& rows : groups) {
      std::vector<std::string> row;
      for (const auto& c : by) row.push_back(meta.column(c)[rows[0]]);
      meta_out->add_row(row);
    }
  }
  return out;
}

}  // namespace tabula::eval
