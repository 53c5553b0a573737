#include "eval/profiles.h"

#include <algorithm>
#include <stdexcept>

namespace tabula::eval {

void check_rows_match(const RowMatrixF& x, const Table& meta, const std::string& what) {
  if (static_cast<size_t>(x.rows()) != meta.rows())
    throw std::runtime_error(what + " has " + std::to_string(x.rows()) + " rows but " + meta.source() + " has " +
                             std::to_string(meta.rows()) + " (one metadata row per feature row is needed)");
}

ColumnCodes column_codes(const Table& meta, const std::string& name) {
  size_t c = meta.index(name);
  const auto& cells = meta.column(c);
  ColumnCodes out;
  for (size_t r = 0; r < cells.size(); ++r)
    if (cells[r].empty() || cells[r] == "NA" || cells[r] == "NaN" || cells[r] == "nan")
      throw std::runtime_error(meta.where(r, c) + ": empty/NA value in a column used to build pairs");
  out.numeric = !cells.empty();
  out.value.resize(cells.size());
  for (size_t r = 0; r < cells.size() && out.numeric; ++r) {
    try {
      out.value[r] = meta.number(r, c);
    } catch (const std::exception&) {
      out.numeric = false;
    }
  }
  if (out.numeric) {
    std::vector<std::string> canon(cells.size());
    for (size_t r = 0; r < cells.size(); ++r) canon[r] = format_number(out.value[r]);
    out.code = factorize(canon);
  } else {
    out.value.clear();
    out.code = factorize(cells);
  }
  return out;
}

std::vector<std::vector<size_t>> group_rows(const Table& meta, const std::vector<std::string>& by,
                                            const std::vector<size_t>& rows) {
  // Each column's distinct values are ordered once (numbers by value, text by bytes) and every row compares by the
  // ranks of its values: integer comparisons instead of string ones in the row sort.
  std::vector<std::vector<uint32_t>> rank_of_row;
  for (const auto& c : by) {
    const ColumnCodes cc = column_codes(meta, c);
    const std::vector<std::string>& text = meta.column(c);
    int32_t n_codes = 0;
    for (int32_t v : cc.code) n_codes = std::max(n_codes, v + 1);
    std::vector<size_t> rep(static_cast<size_t>(n_codes));  // a row holding each code
    for (size_t r = cc.code.size(); r-- > 0;) rep[static_cast<size_t>(cc.code[r])] = r;
    auto value_less = [&](int32_t x, int32_t y) {
      const size_t rx = rep[static_cast<size_t>(x)], ry = rep[static_cast<size_t>(y)];
      return cc.numeric ? cc.value[rx] < cc.value[ry] : text[rx] < text[ry];
    };
    std::vector<int32_t> order(static_cast<size_t>(n_codes));
    for (int32_t k = 0; k < n_codes; ++k) order[static_cast<size_t>(k)] = k;
    std::sort(order.begin(), order.end(), value_less);
    std::vector<uint32_t> rank(static_cast<size_t>(n_codes));
    uint32_t at = 0;
    for (size_t k = 0; k < order.size(); ++k) {
      if (k > 0 && value_less(order[k - 1], order[k])) ++at;  // equal values (0 and -0) share a rank
      rank[static_cast<size_t>(order[k])] = at;
    }
    std::vector<uint32_t> per_row(cc.code.size());
    for (size_t r = 0; r < per_row.size(); ++r) per_row[r] = rank[static_cast<size_t>(cc.code[r])];
    rank_of_row.push_back(std::move(per_row));
  }
  auto less = [&](size_t a, size_t b) {
    for (const auto& rk : rank_of_row)
      if (rk[a] != rk[b]) return rk[a] < rk[b];
    return false;
  };
  std::vector<size_t> sorted = rows;
  std::stable_sort(sorted.begin(), sorted.end(), less);
  std::vector<std::vector<size_t>> groups;
  for (size_t k = 0; k < sorted.size(); ++k) {
    if (k == 0 || less(sorted[k - 1], sorted[k])) groups.emplace_back();
    groups.back().push_back(sorted[k]);
  }
  return groups;
}

}  // namespace tabula::eval
