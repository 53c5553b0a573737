#include "util/table.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <unordered_map>

#include "engine/fileio.h"
#include "util/suggest.h"

namespace tabula {

Table::Table(std::vector<std::string> columns) : names_(std::move(columns)), cells_(names_.size()) {
  for (size_t i = 0; i < names_.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (names_[i] == names_[j]) throw std::runtime_error("duplicate column name '" + names_[i] + "'");
}

long Table::find(const std::string& column) const {
  for (size_t i = 0; i < names_.size(); ++i)
    if (names_[i] == column) return static_cast<long>(i);
  return -1;
}

size_t Table::index(const std::string& column) const {
  long i = find(column);
  if (i < 0) {
    std::string all;
    for (const auto& n : names_) all += (all.empty() ? "" : ", ") + n;
    throw std::runtime_error(source_ + ": no column '" + column + "'" + did_you_mean(column, names_) +
                             " (columns: " + all + ")");
  }
  return static_cast<size_t>(i);
}

void Table::add_column(const std::string& name, std::vector<std::string> values) {
  if (has(name)) throw std::runtime_error(source_ + ": column '" + name + "' already exists");
  if (!names_.empty() && values.size() != n_rows_)
    throw std::runtime_error(source_ + ": column '" + name + "' has " + std::to_string(values.size()) +
                             " values for " + std::to_string(n_rows_) + " rows");
  if (names_.empty()) {
    n_rows_ = values.size();
    line_.resize(n_rows_);
    for (size_t r = 0; r < n_rows_; ++r) line_[r] = r + 2;
  }
  names_.push_back(name);
  cells_.push_back(std::move(values));
}

void Table::add_row(const std::vector<std::string>& values) {
  if (values.size() != names_.size())
    throw std::runtime_error(source_ + ": row of " + std::to_string(values.size()) + " fields for " +
                             std::to_string(names_.size()) + " columns");
  for (size_t c = 0; c < values.size(); ++c) cells_[c].push_back(values[c]);
  line_.push_back(n_rows_ + 2);
  ++n_rows_;
}

Table Table::select_rows(const std::vector<size_t>& rows) const {
  Table t(names_);
  t.source_ = source_;
  for (size_t c = 0; c < names_.size(); ++c) {
    t.cells_[c].reserve(rows.size());
    for (size_t r : rows) t.cells_[c].push_back(cells_[c].at(r));
  }
  for (size_t r : rows) t.line_.push_back(line_.at(r));
  t.n_rows_ = rows.size();
  return t;
}

Table Table::select_columns(const std::vector<std::string>& names) const {
  Table t(names);
  t.source_ = source_;
  for (size_t c = 0; c < names.size(); ++c) t.cells_[c] = column(names[c]);
  t.line_ = line_;
  t.n_rows_ = n_rows_;
  return t;
}

std::string Table::where(size_t row, size_t col) const {
  return source_ + ":" + std::to_string(line(row)) + ": column '" + (col < names_.size() ? names_[col] : "?") + "'";
}

static bool parse_double(const std::string& s, double* out) {
  if (s.empty()) return false;
  const char* b = s.data();
  const char* e = b + s.size();
  while (b < e && (*b == ' ' || *b == '\t')) ++b;
  while (e > b && (e[-1] == ' ' || e[-1] == '\t')) --e;
  if (b == e) return false;
  if (*b == '+') ++b;
  auto [p, ec] = std::from_chars(b, e, *out);
  return ec == std::errc() && p == e;
}

double Table::number(size_t row, size_t col) const {
  double v;
  const std::string& s = cells_.at(col).at(row);
  if (!parse_double(s, &v))
    throw std::runtime_error(where(row, col) + ": expected a number, found '" + s + "'");
  return v;
}

std::vector<double> Table::numbers(const std::string& column) const {
  size_t c = index(column);
  std::vector<double> v(n_rows_);
  for (size_t r = 0; r < n_rows_; ++r) v[r] = number(r, c);
  return v;
}

Table parse_csv(const std::string& text, const std::string& name) {
  Table t;
  t.source_ = name;
  size_t i = 0, n = text.size();
  if (n >= 3 && static_cast<unsigned char>(text[0]) == 0xEF && static_cast<unsigned char>(text[1]) == 0xBB &&
      static_cast<unsigned char>(text[2]) == 0xBF)
    i = 3;
  size_t line = 1;
  bool header = true;
  std::vector<std::string> fields;
  while (i < n) {
    size_t row_line = line;
    fields.clear();
    // One record: fields until an unquoted newline or the end of the text.
    bool end_of_record = false;
    while (!end_of_record) {
      std::string f;
      size_t field_col = fields.size() + 1;
      if (i < n && text[i] == '"') {
        size_t quote_line = line;
        ++i;
        for (;;) {
          if (i >= n)
            throw std::runtime_error(name + ":" + std::to_string(quote_line) + ":" + std::to_string(field_col) +
                                     ": unterminated quoted field");
          char ch = text[i++];
          if (ch == '"') {
            if (i < n && text[i] == '"') {
              f += '"';
              ++i;
            } else {
              break;
            }
          } else {
            if (ch == '\n') ++line;
            f += ch;
          }
        }
        if (i < n && text[i] != ',' && text[i] != '\n' && text[i] != '\r')
          throw std::runtime_error(name + ":" + std::to_string(line) + ":" + std::to_string(field_col) +
                                   ": text after a closing quote");
      } else {
        while (i < n && text[i] != ',' && text[i] != '\n' && text[i] != '\r') {
          if (text[i] == '"')
            throw std::runtime_error(name + ":" + std::to_string(line) + ":" + std::to_string(field_col) +
                                     ": quote inside an unquoted field");
          f += text[i++];
        }
      }
      fields.push_back(std::move(f));
      if (i >= n) {
        end_of_record = true;
      } else if (text[i] == ',') {
        ++i;
      } else {
        if (text[i] == '\r') ++i;
        if (i < n && text[i] == '\n') ++i;
        ++line;
        end_of_record = true;
      }
    }
    if (fields.size() == 1 && fields[0].empty()) continue;  // blank line
    if (header) {
      for (size_t c = 0; c < fields.size(); ++c)
        for (size_t d = 0; d < c; ++d)
          if (fields[c] == fields[d])
            throw std::runtime_error(name + ":" + std::to_string(row_line) + ":" + std::to_string(c + 1) +
                                     ": duplicate column name '" + fields[c] + "'");
      t.names_ = fields;
      t.cells_.assign(fields.size(), {});
      header = false;
      continue;
    }
    if (fields.size() != t.names_.size())
      throw std::runtime_error(name + ":" + std::to_string(row_line) + ": " + std::to_string(fields.size()) +
                               " fields, the header has " + std::to_string(t.names_.size()));
    for (size_t c = 0; c < fields.size(); ++c) t.cells_[c].push_back(std::move(fields[c]));
    t.line_.push_back(row_line);
    ++t.n_rows_;
  }
  if (header) throw std::runtime_error(name + ": empty file (no header row)");
  return t;
}

Table read_csv(const std::string& path) { return parse_csv(read_file_text(path), path); }

static void append_field(std::string& out, const std::string& f) {
  bool quote = f.find_first_of(",\"\r\n") != std::string::npos ||
               (!f.empty() && (f.front() == ' ' || f.back() == ' '));
  if (!quote) {
    out += f;
    return;
  }
  out += '"';
  for (char c : f) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
}

std::string to_csv(const Table& t) {
  std::string out;
  for (size_t c = 0; c < t.cols(); ++c) {
    if (c) out += ',';
    append_field(out, t.columns()[c]);
  }
  out += '\n';
  for (size_t r = 0; r < t.rows(); ++r) {
    for (size_t c = 0; c < t.cols(); ++c) {
      if (c) out += ',';
      append_field(out, t.at(r, c));
    }
    out += '\n';
  }
  return out;
}

void write_csv(const std::string& path, const Table& t) { write_file_atomic(path, to_csv(t)); }

void write_csv_rows(const std::string& path, const std::vector<std::string>& header, size_t rows,
                    const std::function<void(size_t, std::vector<std::string>&)>& row) {
  AtomicFile f(path);
  std::string out;
  for (size_t c = 0; c < header.size(); ++c) {
    if (c) out += ',';
    append_field(out, header[c]);
  }
  out += '\n';
  std::vector<std::string> fields(header.size());
  for (size_t r = 0; r < rows; ++r) {
    row(r, fields);
    for (size_t c = 0; c < fields.size(); ++c) {
      if (c) out += ',';
      append_field(out, fields[c]);
    }
    out += '\n';
    if (out.size() > (1u << 20)) {
      f.write(out);
      out.clear();
    }
  }
  f.write(out);
  f.commit();
}

std::string format_number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, p);
}

std::string format_float(float v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, p);
}

std::vector<int32_t> factorize(const std::vector<std::string>& values, size_t* n_distinct) {
  std::unordered_map<std::string, int32_t> code;
  code.reserve(values.size() / 2 + 1);
  std::vector<int32_t> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    auto [it, inserted] = code.emplace(values[i], static_cast<int32_t>(code.size()));
    out[i] = it->second;
  }
  if (n_distinct) *n_distinct = code.size();
  return out;
}

}  // namespace tabula
