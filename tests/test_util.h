// Helpers shared by every test binary: fixture paths, scratch folders, running the `tabula` binary.
#pragma once
#include <filesystem>
#include <string>

namespace tabula::test {

// tests/fixtures/<rel>
std::filesystem::path fixture(const std::string& rel);
// A fresh empty folder unique to the running test (under TABULA_TEST_TMP or the system temp dir).
std::filesystem::path scratch_dir();

struct RunResult {
  int exit_code = -1;
  std::string out, err;
};
// Runs the built `tabula` binary with `args` (a shell-quoted string), capturing stdout and stderr.
RunResult run_tabula(const std::string& args);

}  // namespace tabula::test
