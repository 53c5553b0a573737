#include <gtest/gtest.h>

#include "cli/commands.h"
#include "tests/test_util.h"

using tabula::test::run_tabula;

TEST(Cli, HelpListsEveryCommandWithOneLine) {
  auto r = run_tabula("--help");
  EXPECT_EQ(r.exit_code, 0);
  for (const auto& c : tabula::cli::commands()) {
    EXPECT_NE(r.out.find(c.name), std::string::npos) << c.name;
    EXPECT_FALSE(c.summary.empty()) << c.name;
    EXPECT_EQ(c.summary.find('\n'), std::string::npos) << c.name;
  }
}

TEST(Cli, EveryCommandHasHelpWithFlagsAndExample) {
  for (const auto& c : tabula::cli::commands()) {
    auto r = run_tabula(c.name + " --help");
    EXPECT_EQ(r.exit_code, 0) << c.name;
    EXPECT_NE(r.out.find("usage: tabula " + c.name), std::string::npos) << c.name;
    EXPECT_NE(r.out.find("example:"), std::string::npos) << c.name;
    for (const auto& f : c.flags) EXPECT_NE(r.out.find("--" + f.name), std::string::npos) << c.name << " " << f.name;
  }
}

TEST(Cli, VersionNamesBuildFacts) {
  auto r = run_tabula("--version");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* word : {"tabula ", "git ", "build", "cpu:", "features:", "cuda:", "mpi:"})
    EXPECT_NE(r.out.find(word), std::string::npos) << word << "\n" << r.out;
}

TEST(Cli, UnknownCommandIsUsageError) {
  auto r = run_tabula("frobnicate");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown command 'frobnicate'"), std::string::npos) << r.err;
}

TEST(Cli, UnknownFlagIsOneLineUsageError) {
  auto r = run_tabula("demo --no-such-flag");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown flag '--no-such-flag'"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line expected: " << r.err;
  EXPECT_TRUE(r.out.empty());
}

TEST(Cli, MissingValueIsUsageError) {
  auto r = run_tabula("demo --out");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--out needs a value"), std::string::npos) << r.err;
}

TEST(Cli, ParserRejectsRepeatedFlagAndStrayArguments) {
  tabula::cli::Command c{"x", "s", "", "", {{"n", "N", "a number", false, "3"}, {"v", "", "switch", false, ""}}, 0, 0,
                         nullptr};
  auto parse = [&](std::vector<std::string> words) {
    std::vector<char*> argv;
    for (auto& w : words) argv.push_back(w.data());
    return tabula::cli::parse_args(c, static_cast<int>(argv.size()), argv.data(), 0);
  };
  EXPECT_EQ(parse({}).get_int("n"), 3);
  EXPECT_EQ(parse({"--n=7"}).get_int("n"), 7);
  EXPECT_EQ(parse({"--n", "-5"}).get_int("n"), -5);
  EXPECT_TRUE(parse({"--v"}).has("v"));
  EXPECT_THROW(parse({"--n", "1", "--n", "2"}), tabula::cli::UsageError);
  EXPECT_THROW(parse({"stray"}), tabula::cli::UsageError);
  EXPECT_THROW(parse({"--v=1"}), tabula::cli::UsageError);
  EXPECT_THROW(parse({"--n", "abc"}).get_int("n"), tabula::cli::UsageError);
}
