#include <gtest/gtest.h>

#include "util/table.h"
#include "tests/test_util.h"

using namespace tabula;

TEST(Table, ParsesQuotesNewlinesCrlfAndBom) {
  Table t = parse_csv("\xEF\xBB\xBF" "a,b,c\r\n1,\"x, y\",\"say \"\"hi\"\"\"\r\n2,\"two\nlines\",\r\n\n", "t.csv");
  ASSERT_EQ(t.rows(), 2u);
  ASSERT_EQ(t.cols(), 3u);
  EXPECT_EQ(t.at(0, 1), "x, y");
  EXPECT_EQ(t.at(0, 2), "say \"hi\"");
  EXPECT_EQ(t.at(1, 1), "two\nlines");
  EXPECT_EQ(t.at(1, 2), "");
  EXPECT_EQ(t.number(1, 0), 2.0);
  EXPECT_EQ(parse_csv(to_csv(t), "again").column("b"), t.column("b"));
}

TEST(Table, ErrorsNameFileLineAndColumn) {
  auto msg = [](const std::string& text) {
    try {
      Table t = parse_csv(text, "m.csv");
      t.number(1, 1);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(msg("a,b\n1,2\n3\n"), "m.csv:3: 1 fields, the header has 2");
  EXPECT_EQ(msg("a,b\n1,\"2\n"), "m.csv:2:2: unterminated quoted field");
  EXPECT_EQ(msg("a,a\n1,2\n"), "m.csv:1:2: duplicate column name 'a'");
  EXPECT_EQ(msg("a,b\n1,2\n3,x\n"), "m.csv:3: column 'b': expected a number, found 'x'");
  EXPECT_EQ(msg(""), "m.csv: empty file (no header row)");
  Table t = parse_csv("a,b\n1,2\n", "m.csv");
  try {
    t.index("zz");
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_STREQ(e.what(), "m.csv: no column 'zz' (columns: a, b)");
  }
}

TEST(Table, NumbersRoundTrip) {
  EXPECT_EQ(format_number(0.1), "0.1");
  EXPECT_EQ(format_number(1.0 / 3.0), "0.3333333333333333");
  EXPECT_EQ(format_float(0.1f), "0.1");
  std::vector<int32_t> codes = factorize({"b", "a", "b", "c"});
  EXPECT_EQ(codes, (std::vector<int32_t>{0, 1, 0, 2}));
}
