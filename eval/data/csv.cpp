#include "eval/data/csv.h"

#include <stdexcept>

#include "engine/fileio.h"

namespace tabula::data {

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
  CsvTable t;
  t.path = name;
  std::vector<std::string> fields;
  std::string field;
  bool quoted = false, field_started = false;
  int line = 1, row_line = 1, col = 1, quote_line = 0, quote_col = 0;
  size_t i = 0;
  if (text.size() >= 3 && uint8_t(text[0]) == 0xEF && uint8_t(text[1]) == 0xBB && uint8_t(text[2]) == 0xBF) i = 3;  // BOM
  auto end_row = [&] {
    fields.push_back(field);
    field.clear();
    field_started = false;
    if (fields.size() == 1 && fields[0].empty()) {  // blank line
      fields.clear();
      return;
    }
    if (t.header.empty()) {
      t.header = fields;
    } else {
      if (fields.size() != t.header.size())
        throw std::runtime_error(name + ":" + std::to_string(row_line) + ": " + std::to_string(fields.size()) +
                                 " fields, the header has " + std::to_string(t.header.size()));
      t.rows.push_back(fields);
      t.line_of_row.push_back(row_line);
    }
    fields.clear();
  };
  for (; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') field += '"', ++i, ++col;
        else quoted = false;
      } else {
        field += c;
        if (c == '\n') ++line, col = 0;
      }
      ++col;
      continue;
    }
    if (c == '"') {
      if (field_started && !field.empty())
        throw std::runtime_error(name + ":" + std::to_string(line) + ":" + std::to_string(col) + ": quote inside an unquoted field");
      quoted = true, field_started = true, quote_line = line, quote_col = col;
    } else if (c == ',') {
      fields.push_back(field);
      field.clear();
      field_started = false;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      end_row();
      ++line;
      row_line = line;
      col = 0;
    } else {
      field += c;
      field_started = true;
    }
    ++col;
  }
  if (quoted)
    throw std::runtime_error(name + ":" + std::to_string(quote_line) + ":" + std::to_string(quote_col) + ": unterminated quoted field");
  if (!field.empty() || !fields.empty()) end_row();
  if (t.header.empty()) throw std::runtime_error(name + ": empty CSV (no header)");
  for (size_t k = 0; k < t.header.size(); ++k)
    for (size_t j = k + 1; j < t.header.size(); ++j)
      if (t.header[k] == t.header[j]) throw std::runtime_error(name + ":1: duplicate column '" + t.header[k] + "'");
  return t;
}

CsvTable read_csv_table(const std::string& path) { return parse_csv_table(read_file_text(path), path); }

}  // namespace tabula::data
