#include "tests/test_util.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

namespace tabula::test {

namespace fs = std::filesystem;

// TABULA_FIXTURES / TABULA_BINARY override the build-time paths, so test binaries built here can run from a
// copy of the tree elsewhere (bench/gpu_device.sh on a lent GPU machine).
fs::path fixture(const std::string& rel) {
  const char* dir = std::getenv("TABULA_FIXTURES");
  return fs::path(dir ? dir : TABULA_FIXTURES_DIR) / rel;
}

namespace {

// A passed test's scratch folder is removed when it ends (a failed one's is kept to look at): the folders are named
// by process id, so without this every run of the suite left its files in /tmp (gigabytes after a few runs).
std::string current_scratch;

struct RemoveScratchOfPassedTests : ::testing::EmptyTestEventListener {
  void OnTestEnd(const ::testing::TestInfo& info) override {
    // Only the folder this test made: one made outside a test (a suite's set-up, "no-test") stays for the others.
    std::string name = std::string(info.test_suite_name()) + "." + info.name() + ".";
    for (char& c : name)
      if (c == '/') c = '_';
    if (!info.result()->Passed() || fs::path(current_scratch).filename().string().rfind(name, 0) != 0) return;
    // With the folders some tests name after it (its "-data", ".in" siblings).
    const fs::path dir(current_scratch);
    const std::string stem = dir.filename().string();
    std::error_code ec;
    std::vector<fs::path> made;
    for (fs::directory_iterator d(dir.parent_path(), ec), e; !ec && d != e; d.increment(ec))
      if (const std::string f = d->path().filename().string();
          f.rfind(stem, 0) == 0 &&
          (f.size() == stem.size() || !std::isdigit(static_cast<unsigned char>(f[stem.size()]))))
        made.push_back(d->path());
    for (const fs::path& p : made) fs::remove_all(p, ec);
    current_scratch.clear();
  }
};

}  // namespace

fs::path scratch_dir() {
  const char* base = std::getenv("TABULA_TEST_TMP");
  fs::path root = base ? fs::path(base) : fs::temp_directory_path() / "tabula-tests";
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "no-test";
  for (char& c : name)
    if (c == '/') c = '_';
  fs::path dir = root / (name + "." + std::to_string(::getpid()));
  // Emptied the first time a test asks (left over from an earlier run), then the same folder for the whole test.
  static bool listening = false;
  if (!listening) {
    ::testing::UnitTest::GetInstance()->listeners().Append(new RemoveScratchOfPassedTests);
    listening = true;
  }
  if (current_scratch != dir.string()) {
    current_scratch = dir.string();
    fs::remove_all(dir);
  }
  fs::create_directories(dir);
  return dir;
}

static std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

static RunResult run_command(const std::string& prefix, const std::string& args, long long max_file_bytes) {
  static int calls = 0;
  fs::path dir = scratch_dir() / (".run" + std::to_string(++calls));
  fs::create_directories(dir);
  const char* bin = std::getenv("TABULA_BINARY");
  std::string cmd = prefix + "'" + (bin ? bin : TABULA_BINARY) + "' " + args + " >'" + (dir / "out").string() + "' 2>'" +
                    (dir / "err").string() + "' </dev/null";
  int status = -1;
  if (max_file_bytes < 0) {
    status = std::system(cmd.c_str());
  } else {
    pid_t pid = ::fork();
    if (pid == 0) {
      struct rlimit rl;
      rl.rlim_cur = rl.rlim_max = static_cast<rlim_t>(max_file_bytes);
      ::signal(SIGXFSZ, SIG_IGN);  // ignored dispositions survive exec: writes fail with EFBIG instead
      if (::setrlimit(RLIMIT_FSIZE, &rl) != 0) ::_exit(125);
      ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    if (pid > 0)
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
  }
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(dir / "out");
  r.err = slurp(dir / "err");
  return r;
}

RunResult run_tabula(const std::string& args) { return run_command("", args, -1); }
RunResult run_tabula_file_limit(const std::string& args, long long max_file_bytes) {
  return run_command("", args, max_file_bytes);
}
RunResult run_tabula_prefixed(const std::string& prefix, const std::string& args) { return run_command(prefix + " ", args, -1); }

}  // namespace tabula::test
