#include "tests/test_util.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace tabula::test {

namespace fs = std::filesystem;

// TABULA_FIXTURES / TABULA_BINARY override the build-time paths, so test binaries built here can run from a
// copy of the tree elsewhere (bench/gpu_device.sh on a lent GPU machine).
fs::path fixture(const std::string& rel) {
  const char* dir = std::getenv("TABULA_FIXTURES");
  return fs::path(dir ? dir : TABULA_FIXTURES_DIR) / rel;
}

fs::path scratch_dir() {
  const char* base = std::getenv("TABULA_TEST_TMP");
  fs::path root = base ? fs::path(base) : fs::temp_directory_path() / "tabula-tests";
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "no-test";
  for (char& c : name)
    if (c == '/') c = '_';
  fs::path dir = root / (name + "." + std::to_string(::getpid()));
  // Emptied the first time a test asks (left over from an earlier run), then the same folder for the whole test.
  static std::string current;
  if (current != dir.string()) {
    current = dir.string();
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

RunResult run_tabula(const std::string& args) {
  static int calls = 0;
  fs::path dir = scratch_dir() / (".run" + std::to_string(++calls));
  fs::create_directories(dir);
  const char* bin = std::getenv("TABULA_BINARY");
  std::string cmd = std::string("'") + (bin ? bin : TABULA_BINARY) + "' " + args + " >'" + (dir / "out").string() + "' 2>'" +
                    (dir / "err").string() + "' </dev/null";
  int status = std::system(cmd.c_str());
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(dir / "out");
  r.err = slurp(dir / "err");
  return r;
}

}  // namespace tabula::test
