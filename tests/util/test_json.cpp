#include <gtest/gtest.h>

#include "util/json.h"

using tabula::json::parse;
using tabula::json::ParseError;
using tabula::json::Value;

static std::string error_of(const std::string& text, tabula::json::Limits limits = {}) {
  try {
    parse(text, "t.json", limits);
  } catch (const ParseError& e) {
    return e.what();
  }
  return "";
}

TEST(Json, ParsesValuesAndKeepsMemberOrder) {
  Value v = parse(R"( {"b": [1, -2.5e3, true, false, null], "a": {"x": "y\n\u00e9\ud83d\ude00"}, "n": 9007199254740993} )");
  ASSERT_TRUE(v.is_object());
  EXPECT_EQ(v.as_object()[0].first, "b");
  EXPECT_EQ(v.as_object()[1].first, "a");
  const auto& arr = v.find("b")->as_array();
  EXPECT_EQ(arr[0].as_int64(), 1);
  EXPECT_DOUBLE_EQ(arr[1].as_double(), -2500.0);
  EXPECT_TRUE(arr[2].as_bool());
  EXPECT_TRUE(arr[4].is_null());
  EXPECT_EQ(v.find("a")->find("x")->as_string(), "y\n\xc3\xa9\xf0\x9f\x98\x80");
  // Integers keep their exact text: 2^53 + 1 is not representable as a double.
  EXPECT_EQ(v.find("n")->as_int64(), 9007199254740993LL);
  EXPECT_THROW(arr[1].as_int64(), std::runtime_error);  // not an integer
  EXPECT_THROW(v.find("b")->as_string(), std::runtime_error);
}

TEST(Json, DumpRoundTripsAndEscapesLikeSerdeJson) {
  std::string text = R"({"k":[1,2.5,"a\"b\\c\n\u0001é"],"e":{},"l":[]})";
  Value v = parse(text);
  EXPECT_EQ(tabula::json::dump(v), text);
}

TEST(Json, RejectsMalformedInputWithLineAndColumn) {
  EXPECT_NE(error_of("{\"a\": 1,}").find("line 1, column 9"), std::string::npos) << error_of("{\"a\": 1,}");
  EXPECT_NE(error_of("{\n  \"a\": 01\n}").find("line 2, column 9: leading zeros"), std::string::npos)
      << error_of("{\n  \"a\": 01\n}");
  EXPECT_NE(error_of("[1 2]").find("expected ',' or ']'"), std::string::npos);
  EXPECT_NE(error_of("{\"a\":1}{").find("after the JSON value"), std::string::npos);
  EXPECT_NE(error_of("\"abc").find("unterminated string"), std::string::npos);
  EXPECT_NE(error_of("\"a\tb\"").find("control character"), std::string::npos);
  EXPECT_NE(error_of("\"\\x\"").find("invalid escape"), std::string::npos);
  EXPECT_NE(error_of("\"\\ud800\"").find("surrogate"), std::string::npos);
  EXPECT_NE(error_of("\"\xc3\x28\"").find("invalid UTF-8"), std::string::npos);
  EXPECT_NE(error_of("\"\xc0\xaf\"").find("invalid UTF-8"), std::string::npos);  // overlong '/'
  EXPECT_NE(error_of("NaN").find("unexpected character"), std::string::npos);
  EXPECT_NE(error_of("[1.]").find("digit after '.'"), std::string::npos);
  EXPECT_NE(error_of("tru").find("invalid literal"), std::string::npos);
  EXPECT_NE(error_of("").find("unexpected end"), std::string::npos);
  EXPECT_NE(error_of("// c\n{}").find("unexpected character"), std::string::npos);
}

TEST(Json, RejectsDuplicateKeys) {
  std::string e = error_of(R"({"w": 1, "x": 2, "w": 3})");
  EXPECT_NE(e.find("duplicate key \"w\""), std::string::npos) << e;
  EXPECT_NE(e.find("column 18"), std::string::npos) << e;
  // the same key in different objects is fine
  EXPECT_NO_THROW(parse(R"({"a": {"w": 1}, "b": {"w": 2}})"));
}

TEST(Json, EnforcesDepthAndSizeLimits) {
  std::string deep(65, '[');
  deep += std::string(65, ']');
  EXPECT_NE(error_of(deep).find("nesting deeper than 64"), std::string::npos);
  std::string ok(64, '[');
  ok += std::string(64, ']');
  EXPECT_NO_THROW(parse(ok));
  // a very deep document fails on the limit, not on the stack
  std::string abyss(1'000'000, '[');
  EXPECT_NE(error_of(abyss).find("nesting deeper"), std::string::npos);
  EXPECT_NE(error_of("[1, 2, 3]", {4, 64}).find("exceeds the limit of 4"), std::string::npos);
}
