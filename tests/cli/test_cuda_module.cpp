// The CUDA backend as a module (engine/cuda_module.h), through the binary: the `tabula` binary links no CUDA
// library, a cpu run never loads libtabula_cuda.so, and a CUDA device asked for without a loadable module fails
// with a message that names what is missing (an error exit, not a crash).
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "tests/test_util.h"

using tabula::test::run_tabula;
using tabula::test::run_tabula_prefixed;

namespace {

std::string command_output(const std::string& cmd) {
  std::unique_ptr<FILE, int (*)(FILE*)> p(popen(cmd.c_str(), "r"), pclose);
  std::string out;
  std::array<char, 4096> buf{};
  while (p && std::fgets(buf.data(), buf.size(), p.get())) out += buf.data();
  return out;
}

// A tiny synthetic set and the embed command line on it (--device appended by the caller).
std::string tiny_embed(const std::string& out) {
  const auto dir = tabula::test::scratch_dir();
  if (!std::filesystem::exists(dir / "synth" / "load_data.csv")) {
    auto s = run_tabula("synth cellpainting --quick --out " + (dir / "synth").string());
    EXPECT_EQ(s.exit_code, 0) << s.err;
  }
  return "embed --arch resnet:layers=1,1,1,1,block=basic --seed 0 --data " +
         (dir / "synth" / "load_data.csv").string() + " --size 32 --quiet --out " + (dir / out).string();
}

}  // namespace

TEST(CudaModule, TheBinaryLinksNoCudaLibrary) {
  const std::string dyn = command_output("readelf -d " TABULA_BINARY " 2>&1");
  ASSERT_NE(dyn.find("(NEEDED)"), std::string::npos) << "readelf failed: " << dyn;
  for (const char* lib : {"libcudart", "libcublas", "libcudnn", "libcuda."})
    EXPECT_EQ(dyn.find(lib), std::string::npos) << lib << "\n" << dyn;
}

TEST(CudaModule, ACpuRunNeverLoadsIt) {
  // LD_DEBUG=files: the dynamic loader reports every object it opens, dlopen'd modules included.
  auto r = run_tabula_prefixed("LD_DEBUG=files", tiny_embed("cpu") + " --device cpu");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("libtabula_cuda"), std::string::npos) << r.err.substr(0, 4000);
  EXPECT_EQ(r.err.find("libcublas"), std::string::npos);
}

TEST(CudaModule, AMissingModuleIsNamedWhenCudaIsAskedFor) {
  const std::string missing = "TABULA_CUDA_MODULE=/nonexistent/libtabula_cuda.so";
  auto r = run_tabula_prefixed(missing, tiny_embed("gpu") + " --device cuda");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  if (TABULA_HAVE_CUDA) {
    EXPECT_NE(r.err.find("--device cuda: the CUDA backend libtabula_cuda.so is not installed (looked for "
                         "/nonexistent/libtabula_cuda.so"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("needs CUDA "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("cuDNN "), std::string::npos) << r.err;
  } else {
    EXPECT_NE(r.err.find("built without the CUDA backend"), std::string::npos) << r.err;
  }
  // --version and doctor say the same instead of failing.
  auto v = run_tabula_prefixed(missing, "--version");
  EXPECT_EQ(v.exit_code, 0) << v.err;
  EXPECT_NE(v.out.find(TABULA_HAVE_CUDA ? "cuda: built, unavailable: the CUDA backend libtabula_cuda.so is not "
                                          "installed"
                                        : "cuda: not built"),
            std::string::npos) << v.out;
}

TEST(CudaModule, AModuleTheLoaderRejectsGivesItsMessage) {
  if (!TABULA_HAVE_CUDA) GTEST_SKIP() << "built without the CUDA backend";
  const auto bogus = tabula::test::scratch_dir() / "libtabula_cuda.so";
  std::ofstream(bogus) << "not an ELF file\n";
  auto r = run_tabula_prefixed("TABULA_CUDA_MODULE=" + bogus.string(), tiny_embed("bogus") + " --device cuda:0");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  // dlerror's own text names the file; then what the backend needs.
  EXPECT_NE(r.err.find("--device cuda:0: cannot load the CUDA backend: " + bogus.string() + ": "), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("--device cpu works without them"), std::string::npos) << r.err;
  auto d = run_tabula_prefixed("TABULA_CUDA_MODULE=" + bogus.string(), "doctor --no-check");
  EXPECT_EQ(d.exit_code, 0) << d.err;
  EXPECT_NE(d.out.find("cuda:     unavailable: cannot load the CUDA backend: " + bogus.string()), std::string::npos)
      << d.out;
}

TEST(CudaModule, TheBuildTreesModuleLoadsFromBesideTheBinary) {
  if (!TABULA_HAVE_CUDA) GTEST_SKIP() << "built without the CUDA backend";
  auto v = run_tabula("--version");
  EXPECT_EQ(v.exit_code, 0) << v.err;
  // The module loaded (RTLD_NOW: every symbol it takes from the binary resolved) and reports its libraries.
  EXPECT_NE(v.out.find("cuda: built (runtime "), std::string::npos) << v.out;
  EXPECT_NE(v.out.find(", cuDNN "), std::string::npos) << v.out;
}
