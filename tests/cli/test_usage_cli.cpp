// Mistyped commands, flags and names as a new user types them: one line, the closest valid spelling, exit code 2
// for every usage error (missing, unknown and conflicting flags alike), 1 for a failure while working.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "cli/args.h"
#include "tests/test_util.h"

using tabula::test::run_tabula;
namespace fs = std::filesystem;

namespace {
using tabula::test::has;
using tabula::test::one_line;
}  // namespace

TEST(CliUsage, UnknownCommandSuggestsTheClosest) {
  auto r = run_tabula("embd --arch resnet18");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(has(r.err, "unknown command 'embd'")) << r.err;
  EXPECT_TRUE(has(r.err, "did you mean 'embed'?")) << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;
}

TEST(CliUsage, UnknownSubcommandFailsAndSuggests) {
  auto r = run_tabula("eval mAP --features x");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(has(r.err, "unknown command 'eval mAP'")) << r.err;
  EXPECT_TRUE(has(r.err, "did you mean 'eval map'?")) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  // The group alone still lists its members, successfully.
  auto g = run_tabula("eval");
  EXPECT_EQ(g.exit_code, 0) << g.err;
  EXPECT_TRUE(has(g.out, "eval map")) << g.out;
}

TEST(CliUsage, UnknownFlagSuggestsTheClosest) {
  auto r = run_tabula("eval map --features x --pos_sameby Metadata_JCP2022 --out y");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(has(r.err, "unknown flag '--pos_sameby'")) << r.err;
  EXPECT_TRUE(has(r.err, "did you mean --pos-sameby?")) << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;
  r = run_tabula("embed --arch resnet18 --seed 0 --data x --out y --layer layer4");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(has(r.err, "did you mean --layers?")) << r.err;
  // Nothing close: no suggestion, still one line.
  r = run_tabula("embed --arch resnet18 --seed 0 --data x --out y --zzzzzzzz 1");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_FALSE(has(r.err, "did you mean")) << r.err;
}

TEST(CliUsage, UnknownArchIsAShortSuggestion) {
  auto r = run_tabula("embed --arch resnet5 --seed 0 --data x --out y");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(has(r.err, "unknown arch 'resnet5'")) << r.err;
  EXPECT_TRUE(has(r.err, "resnet50")) << r.err;
  EXPECT_TRUE(has(r.err, "tabula models")) << r.err;
  EXPECT_LT(r.err.size(), 300u) << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;
  for (const char* cmd : {"hooks resnet5", "init resnet5 --seed 0 --out w.safetensors", "bench resnet5"}) {
    r = run_tabula(cmd);
    EXPECT_EQ(r.exit_code, 2) << cmd;
    EXPECT_TRUE(has(r.err, "did you mean")) << cmd << ": " << r.err;
    EXPECT_LT(r.err.size(), 300u) << cmd << ": " << r.err;
  }
  // The key=value forms and baselines are not names to check.
  r = run_tabula("hooks resnet:layers=1,1,1,1,block=basic");
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(CliUsage, MissingAndConflictingFlagsShareExitCode2) {
  auto missing = run_tabula("embed --arch resnet18 --data x --out y");
  EXPECT_EQ(missing.exit_code, 2) << missing.err;
  EXPECT_TRUE(has(missing.err, "--weights") && has(missing.err, "--seed")) << missing.err;
  auto both = run_tabula("embed --arch resnet18 --seed 0 --weights w.safetensors --data x --out y");
  EXPECT_EQ(both.exit_code, 2) << both.err;
  auto required = run_tabula("embed --arch resnet18 --seed 0 --out y");
  EXPECT_EQ(required.exit_code, 2) << required.err;
  // A failure while working (a missing file) is exit code 1.
  auto work = run_tabula("embed --arch resnet18 --seed 0 --data /nonexistent/load_data.csv --out " +
                         (tabula::test::scratch_dir() / "e").string());
  EXPECT_EQ(work.exit_code, 1) << work.err;
}

TEST(CliUsage, ListWithSpacesIsAcceptedOrExplained) {
  // `--layers "layer3, layer4"` (one argument with a space) reads as the list layer3,layer4: see CliEmbed tests.
  // `--layers layer3, layer4` (the shell splits it): the stray word is explained.
  auto r = run_tabula("embed --arch resnet18 --seed 0 --data x --out y --layers layer3, layer4");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(has(r.err, "unexpected argument 'layer4'")) << r.err;
  EXPECT_TRUE(has(r.err, "--layers layer3,layer4")) << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;
}

TEST(CliUsage, SplitListTrimsSpaces) {
  EXPECT_EQ(tabula::cli::split_list("layer3, layer4 ,, layer2"),
            (std::vector<std::string>{"layer3", "layer4", "layer2"}));
}
