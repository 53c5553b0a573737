// Metadata tables (index.csv, relationship files, metric outputs): RFC 4180 CSV with a header row. Every cell is
// kept as the string it was written as; typed reads (number(), codes()) happen where a column is used, so an
// error can name the file, line and column of the offending cell.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace tabula {

class Table {
 public:
  Table() = default;
  explicit Table(std::vector<std::string> columns);

  size_t rows() const { return n_rows_; }
  size_t cols() const { return names_.size(); }
  const std::vector<std::string>& columns() const { return names_; }
  const std::string& source() const { return source_; }  // file name (or "<memory>") for messages

  bool has(const std::string& column) const { return find(column) >= 0; }
  // Index of `column`; throws "<source>: no column 'x' (columns: a, b, ...)" when absent.
  size_t index(const std::string& column) const;
  const std::vector<std::string>& column(const std::string& name) const { return cells_[index(name)]; }
  const std::vector<std::string>& column(size_t c) const { return cells_[c]; }
  const std::string& at(size_t row, size_t col) const { return cells_[col][row]; }

  // Appends a column (throws if the name exists or the length differs from rows()).
  void add_column(const std::string& name, std::vector<std::string> values);
  void add_row(const std::vector<std::string>& values);
  // Keeps the given rows, in the given order.
  Table select_rows(const std::vector<size_t>& rows) const;
  Table select_columns(const std::vector<std::string>& names) const;

  // The cell as a number; throws naming source, line (1-based, header = line 1) and column for
  // an empty or non-numeric cell. "nan"/"inf" are accepted as numbers (callers reject them if they must).
  double number(size_t row, size_t col) const;
  std::vector<double> numbers(const std::string& column) const;
  // Where a cell came from, "file:LINE:column 'name'", for messages.
  std::string where(size_t row, size_t col) const;
  // The 1-based source line a row starts on (header = line 1; rows built in memory count from line 2).
  size_t line(size_t row) const { return row < line_.size() ? line_[row] : row + 2; }

  void set_source(std::string s) { source_ = std::move(s); }

 private:
  friend Table parse_csv(const std::string&, const std::string&);
  long find(const std::string& column) const;
  std::vector<std::string> names_;
  std::vector<std::vector<std::string>> cells_;  // column-major
  std::vector<size_t> line_;                     // source line of each row (1-based), for messages
  size_t n_rows_ = 0;
  std::string source_ = "<memory>";
};

// Parses CSV text: comma separated, double-quoted fields may hold commas, quotes ("") and newlines, CRLF or LF
// line ends, a UTF-8 BOM is skipped, blank trailing lines are ignored. A row with a different field count than
// the header, an unterminated quote or a duplicate column name throws "<name>:LINE:COL: ...".
Table parse_csv(const std::string& text, const std::string& name);
Table read_csv(const std::string& path);
// Quotes a field only when it needs it (comma, quote, CR/LF, leading/trailing space). Atomic write.
std::string to_csv(const Table& t);
void write_csv(const std::string& path, const Table& t);
// The same text written row by row (atomically, through a 1 MiB buffer) without building a Table: row(r, fields)
// fills the header.size() fields of row r. For large outputs derived from other data.
void write_csv_rows(const std::string& path, const std::vector<std::string>& header, size_t rows,
                    const std::function<void(size_t, std::vector<std::string>&)>& row);

// Shortest decimal text that reads back to the same double (round-trip), "nan", "inf", "-inf".
std::string format_number(double v);
std::string format_float(float v);  // shortest round-trip for a float32 value

// Dense codes for the distinct values of a column: codes[r] in [0, n_distinct), equal strings get equal codes,
// codes numbered in order of first appearance.
std::vector<int32_t> factorize(const std::vector<std::string>& values, size_t* n_distinct = nullptr);

}  // namespace tabula
