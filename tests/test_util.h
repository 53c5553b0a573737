// Helpers shared by every test binary: fixture paths, scratch folders, running the `tabula` binary.
#pragma once
#include <filesystem>
#include <string>

namespace tabula::test {

// tests/fixtures/<rel>
std::filesystem::path fixture(const std::string& rel);
// A folder unique to the running test (under TABULA_TEST_TMP or the system temp dir): empty at the test's first
// call, the same folder (with what the test put there) at later calls.
std::filesystem::path scratch_dir();

// What the tests ask of a command's output: does it contain `what`; is it exactly one line (an error message).
inline bool has(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }
inline bool one_line(const std::string& text) { return !text.empty() && text.find('\n') == text.size() - 1; }

struct RunResult {
  int exit_code = -1;
  std::string out, err;
};
// Runs the built `tabula` binary with `args` (a shell-quoted string), capturing stdout and stderr.
RunResult run_tabula(const std::string& args);
// The same with RLIMIT_FSIZE = max_file_bytes and SIGXFSZ ignored: a write past the limit fails with EFBIG, as
// on a full disk, instead of killing the process.
RunResult run_tabula_file_limit(const std::string& args, long long max_file_bytes);
// `prefix` (a shell command that execs its arguments, e.g. "setpriv --reuid=65534 ...") runs the binary.
RunResult run_tabula_prefixed(const std::string& prefix, const std::string& args);

}  // namespace tabula::test
