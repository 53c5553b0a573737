// Manifests as rows of strings: a row-major view of the one CSV parser, tabula::parse_csv (util/table.h: RFC 4180,
// quoted fields, doubled quotes, CRLF, BOM; errors name the file, line and column).
#pragma once
#include <string>
#include <vector>

namespace tabula {

struct CsvTable {
  std::string path;
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;  // every row has header.size() fields
  std::vector<int> line_of_row;                // 1-based line where each row starts

  int column(const std::string& name) const;  // -1 when absent
  bool has(const std::string& name) const { return column(name) >= 0; }
  // The value, or a runtime_error naming file, line and column when the column is missing.
  const std::string& at(size_t row, const std::string& name) const;
};

CsvTable read_csv_table(const std::string& path);
CsvTable parse_csv_table(const std::string& text, const std::string& name);

}  // namespace tabula
