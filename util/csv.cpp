#include "util/csv.h"

#include <stdexcept>

#include "engine/fileio.h"
#include "util/table.h"

namespace tabula {

int CsvTable::column(const std::string& name) const {
  for (size_t i = 0; i < header.size(); ++i)
    if (header[i] == name) return int(i);
  return -1;
}

const std::string& CsvTable::at(size_t row, const std::string& name) const {
  int c = column(name);
  if (c < 0) throw std::runtime_error(path + ": no column '" + name + "'");
  return rows.at(row)[size_t(c)];
}

CsvTable parse_csv_table(const std::string& text, const std::string& name) {
  const tabula::Table t = tabula::parse_csv(text, name);
  CsvTable out;
  out.path = name;
  out.header = t.columns();
  out.rows.assign(t.rows(), std::vector<std::string>(t.cols()));
  for (size_t c = 0; c < t.cols(); ++c) {
    const std::vector<std::string>& col = t.column(c);
    for (size_t r = 0; r < t.rows(); ++r) out.rows[r][c] = col[r];
  }
  out.line_of_row.resize(t.rows());
  for (size_t r = 0; r < t.rows(); ++r) out.line_of_row[r] = int(t.line(r));
  return out;
}

CsvTable read_csv_table(const std::string& path) { return parse_csv_table(read_file_text(path), path); }

}  // namespace tabula
