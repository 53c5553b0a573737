// The CLI's bad-input matrix (issue #11), each row through the built binary: the command exits with 1 (an
// error, not a crash or a usage message), prints one line "tabula: error: ..." naming the input at fault, leaves
// no partial output (no output folder or file it did not finish, no stray temp file) and leaves earlier outputs
// byte for byte as they were.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "engine/fileio.h"
#include "util/npy.h"
#include "data/image.h"
#include "tests/test_util.h"

using namespace tabula;
namespace fs = std::filesystem;

namespace {

const char* kArch = "resnet:layers=1,1,1,1,block=bottleneck,width=8,classes=10";

// A tiny generic-CSV dataset in `dir`: two samples of two 8-bit grey 40x40 channels.
struct Data {
  fs::path dir;
  std::string csv;
};

data::Image grey(int h, int w, float base) {
  data::Image im(1, h, w);
  for (size_t i = 0; i < im.pixels.size(); ++i) im.pixels[i] = base + float((i * 37) % 50);
  return im;
}

Data make_data(const fs::path& dir) {
  fs::create_directories(dir);
  for (int s = 0; s < 2; ++s)
    for (const char* ch : {"dna", "er"})
      data::write_png((dir / (std::string(ch) + std::to_string(s) + ".png")).string(), grey(40, 40, 20.0f * (s + 1)));
  Data d{dir, (dir / "list.csv").string()};
  write_file_atomic(d.csv, "plate,well,path_dna,path_er\np1,A01,dna0.png,er0.png\np1,A02,dna1.png,er1.png\n");
  return d;
}

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

// Images are resized to 32 px; a .npy is used as is (a transform flag with it is a usage error).
std::string embed(const std::string& data, const fs::path& out, const std::string& extra = "") {
  const bool npy = data.size() > 4 && data.substr(data.size() - 4) == ".npy";
  return std::string("embed --arch '") + kArch + "' --seed 0" + (npy ? "" : " --size 32") +
         " --batch 4 --quiet --data " + q(data) + " --out " + q(out) + " " + extra;
}

// Exit 1, one line "tabula: error: ..." that contains `names`.
void expect_refused(const test::RunResult& r, const std::string& names, const std::string& row) {
  EXPECT_EQ(r.exit_code, 1) << row << ": " << r.err;
  EXPECT_EQ(r.err.rfind("tabula: error: ", 0), 0u) << row << ": " << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << row << ": one message, got: " << r.err;
  EXPECT_NE(r.err.find(names), std::string::npos) << row << ": the message should name " << names << ": " << r.err;
}

// Every file under `dir` with its bytes, to check that earlier outputs stay untouched.
std::vector<std::pair<std::string, std::vector<uint8_t>>> snapshot(const fs::path& dir) {
  std::vector<std::pair<std::string, std::vector<uint8_t>>> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) files.push_back({e.path().string(), read_file_bytes(e.path().string())});
  std::sort(files.begin(), files.end());
  return files;
}

// No `*.tmp.*` (AtomicFile's temp files) anywhere under `dir`.
void expect_no_temp_files(const fs::path& dir, const std::string& row) {
  for (const auto& e : fs::recursive_directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << row << ": stray " << e.path();
}

}  // namespace

TEST(BadInput, MissingFiles) {
  const fs::path root = test::scratch_dir();
  Data d = make_data(root / "d");
  const fs::path out = root / "out";
  expect_refused(test::run_tabula(embed((root / "nope.csv").string(), out)), (root / "nope.csv").string(), "missing manifest");
  EXPECT_FALSE(fs::exists(out));
  fs::remove(d.dir / "er1.png");
  // The manifest's row (line 3: the header is line 1) is named with the file: with millions of rows, the file name
  // alone does not say which row to fix.
  expect_refused(test::run_tabula(embed(d.csv, out)), d.csv + ":3 (sample 1): " + (d.dir / "er1.png").string(),
                 "missing image");
  EXPECT_FALSE(fs::exists(out));
  auto r = test::run_tabula(std::string("embed --arch '") + kArch + "' --weights " + q(root / "nope.safetensors") +
                            " --size 32 --quiet --data " + q(d.csv) + " --out " + q(out));
  expect_refused(r, (root / "nope.safetensors").string(), "missing weights");
  EXPECT_FALSE(fs::exists(out));
}

// chmod 000 does not stop root (the tests run as root in CI), so as root the command runs as `nobody` through
// setpriv: the file's own permissions then refuse the read.
TEST(BadInput, UnreadableFile) {
  const fs::path root = test::scratch_dir();
  Data d = make_data(root / "d");
  ::chmod((d.dir / "dna0.png").c_str(), 0);
  std::string prefix;
  if (::geteuid() == 0) {
    if (!fs::exists("/usr/bin/setpriv")) GTEST_SKIP() << "running as root without setpriv: chmod 000 cannot make a file unreadable";
    prefix = "setpriv --reuid=65534 --regid=65534 --clear-groups";
  }
  const fs::path out = root / "out";
  expect_refused(test::run_tabula_prefixed(prefix, embed(d.csv, out)), (d.dir / "dna0.png").string() + ": cannot open: Permission denied",
                 "unreadable image");
  EXPECT_FALSE(fs::exists(out));
}

TEST(BadInput, EmptyManifest) {
  const fs::path root = test::scratch_dir();
  const fs::path out = root / "out";
  write_file_atomic((root / "header_only.csv").string(), "plate,well,path_dna\n");
  write_file_atomic((root / "empty.csv").string(), "");
  // A header without rows has no column of image names either; both name the file.
  expect_refused(test::run_tabula(embed((root / "header_only.csv").string(), out)), (root / "header_only.csv").string(), "header only");
  expect_refused(test::run_tabula(embed((root / "empty.csv").string(), out)), (root / "empty.csv").string() + ": empty file", "0 bytes");
  EXPECT_FALSE(fs::exists(out));
}

TEST(BadInput, WrongColumnNames) {
  const fs::path root = test::scratch_dir();
  Data d = make_data(root / "d");
  const fs::path out = root / "out";
  // A JUMP load_data.csv whose PathName_ column is misspelt.
  write_file_atomic((d.dir / "load_data.csv").string(),
                    "Metadata_Plate,Metadata_Well,FileName_OrigDNA,PathNme_OrigDNA\np1,A01,dna0.png,.\n");
  expect_refused(test::run_tabula(embed((d.dir / "load_data.csv").string(), out)),
                 (d.dir / "load_data.csv").string() + ": FileName_OrigDNA has neither PathName_OrigDNA nor URL_OrigDNA",
                 "jump columns");
  EXPECT_FALSE(fs::exists(out));
  // A metric asked to group by a column the metadata lacks names the column and the file.
  const fs::path emb = root / "emb";
  ASSERT_EQ(test::run_tabula(embed(d.csv, emb)).exit_code, 0);
  const auto before = snapshot(emb);
  auto r = test::run_tabula("eval map --features " + q(emb) + ":avgpool --pos-sameby Metadata_Compound --neg-diffby plate --out " + q(root / "map"));
  expect_refused(r, "Metadata_Compound", "eval column");
  EXPECT_NE(r.err.find("index.csv"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(root / "map"));
  EXPECT_EQ(snapshot(emb), before);
}

TEST(BadInput, MismatchedChannels) {
  const fs::path root = test::scratch_dir();
  Data d = make_data(root / "d");
  const fs::path out = root / "out";
  data::Image rgb(3, 40, 40);
  data::write_png((d.dir / "er1.png").string(), rgb);  // an RGB file among grey channel files
  expect_refused(test::run_tabula(embed(d.csv, out)), (d.dir / "er1.png").string() + " holds 3 channels", "rgb among grey");
  EXPECT_FALSE(fs::exists(out));
  data::write_png((d.dir / "er1.png").string(), grey(30, 40, 5.0f));  // another size
  expect_refused(test::run_tabula(embed(d.csv, out)), (d.dir / "er1.png").string() + " is 40x30", "size");
  EXPECT_FALSE(fs::exists(out));
}

TEST(BadInput, NanAndInfPixels) {
  const fs::path root = test::scratch_dir();
  Data d = make_data(root / "d");
  const fs::path out = root / "out";
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    data::Image f = grey(40, 40, 0.25f);
    f.at(0, 7, 9) = bad;
    data::write_tiff((d.dir / "f.tif").string(), f, 32, false);
    write_file_atomic(d.csv, "plate,well,path_dna\np1,A01,f.tif\n");
    expect_refused(test::run_tabula(embed(d.csv, out)),
                   (d.dir / "f.tif").string() + ": 1 pixel value is NaN or infinite (the first at channel 0, row 7, column 9)",
                   "float tiff");
    EXPECT_FALSE(fs::exists(out));
  }
  std::vector<float> x(2 * 3 * 8 * 8, 0.5f);
  x[200] = std::numeric_limits<float>::quiet_NaN();
  write_npy((root / "x.npy").string(), {2, 3, 8, 8}, x.data());
  expect_refused(test::run_tabula(embed((root / "x.npy").string(), out)), (root / "x.npy").string() + ": element 200 (row 1)", "npy");
  EXPECT_FALSE(fs::exists(out));
}

TEST(BadInput, ZeroSizedImages) {
  const fs::path root = test::scratch_dir();
  Data d = make_data(root / "d");
  const fs::path out = root / "out";
  write_file_atomic((d.dir / "er0.png").string(), "");
  expect_refused(test::run_tabula(embed(d.csv, out)), (d.dir / "er0.png").string() + ": empty file", "0-byte image");
  EXPECT_FALSE(fs::exists(out));
  for (const std::vector<int64_t>& shape : {std::vector<int64_t>{0, 3, 8, 8}, std::vector<int64_t>{2, 3, 0, 8}}) {
    write_npy((root / "z.npy").string(), shape, static_cast<const float*>(nullptr));
    expect_refused(test::run_tabula(embed((root / "z.npy").string(), out)), (root / "z.npy").string(), "zero-sized npy");
    EXPECT_FALSE(fs::exists(out));
  }
}

TEST(BadInput, ImagesSmallerThanTheCrop) {
  const fs::path root = test::scratch_dir();
  Data d = make_data(root / "d");
  const fs::path out = root / "x.npy";
  auto r = test::run_tabula("preprocess --data " + q(d.csv) + " --out " + q(out) + " --resize 0 --crop 64 --no-normalize");
  expect_refused(r, d.csv + ":2 (sample 0): ", "crop");  // a sample of two channel files: named by row
  EXPECT_NE(r.err.find("40x40 is smaller than the 64x64 crop"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(root / "x.index.csv"));
}

TEST(BadInput, WeightsForTheWrongArch) {
  const fs::path root = test::scratch_dir();
  Data d = make_data(root / "d");
  const fs::path w = root / "w.safetensors", out = root / "out";
  ASSERT_EQ(test::run_tabula("init 'vit:dim=16,depth=1,heads=2,patch=8,img=32,classes=2' --seed 0 --out " + q(w)).exit_code, 0);
  auto r = test::run_tabula(std::string("embed --arch '") + kArch + "' --weights " + q(w) + " --size 32 --quiet --data " +
                            q(d.csv) + " --out " + q(out));
  expect_refused(r, w.string() + ": ", "vit weights for a resnet");
  EXPECT_NE(r.err.find("conv1.weight"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
}

TEST(BadInput, MixedDtypes) {
  const fs::path root = test::scratch_dir();
  Data d = make_data(root / "d");
  const fs::path out = root / "out";
  data::write_tiff((d.dir / "er1.tif").string(), grey(40, 40, 1000.0f), 16, true);
  write_file_atomic(d.csv, "plate,well,path_dna,path_er\np1,A01,dna0.png,er0.png\np1,A02,dna1.png,er1.tif\n");
  auto r = test::run_tabula(embed(d.csv, out));
  expect_refused(r, (d.dir / "er1.tif").string() + " is 16-bit but " + (d.dir / "dna1.png").string() + " is 8-bit", "8 + 16 bit");
  EXPECT_FALSE(fs::exists(out));
  std::vector<double> x(1 * 3 * 8 * 8, 0.5);
  write_npy((root / "f64.npy").string(), DType::f64, {1, 3, 8, 8}, x.data());
  expect_refused(test::run_tabula(embed((root / "f64.npy").string(), out)), (root / "f64.npy").string() + ": --data .npy must be float32",
                 "float64 npy");
  EXPECT_FALSE(fs::exists(out));
}

// A full disk, as a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored): writes fail with EFBIG like ENOSPC. The
// command names the file it could not write; no finished-looking output appears; earlier outputs stay.
TEST(BadInput, DiskFull) {
  const fs::path root = test::scratch_dir();
  Data d = make_data(root / "d");
  const fs::path earlier = root / "earlier";
  ASSERT_EQ(test::run_tabula(embed(d.csv, earlier)).exit_code, 0);
  const auto before = snapshot(earlier);
  // embed: the first journal chunk (2 rows x 2 channels x 2048 features, 32 KiB) does not fit in 512 bytes.
  const fs::path out = root / "out";
  auto r = test::run_tabula_file_limit(embed(d.csv, out), 512);
  expect_refused(r, out.string() + "/", "embed");
  EXPECT_NE(r.err.find("File too large"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out)) << "a run that finished no chunk leaves nothing";
  // preprocess over an earlier output of the same name: the old file survives the failed rewrite.
  const fs::path x = root / "x.npy";
  ASSERT_EQ(test::run_tabula("preprocess --data " + q(d.csv) + " --out " + q(x) + " --resize 16 --crop 16").exit_code, 0);
  const auto x_before = read_file_bytes(x.string());
  r = test::run_tabula_file_limit("preprocess --data " + q(d.csv) + " --out " + q(x) + " --resize 32 --crop 32", 4096);
  expect_refused(r, x.string(), "preprocess");
  EXPECT_EQ(read_file_bytes(x.string()), x_before);
  EXPECT_EQ(snapshot(earlier), before);
  expect_no_temp_files(root, "disk full");
}

// SIGTERM / SIGINT at any moment of a write: the output is the earlier file or the complete new one, never a
// prefix, and the interrupt handler removes the temp file (kill -9 of `embed` + --resume: test_embed.cpp).
TEST(BadInput, InterruptedWrites) {
  const fs::path root = test::scratch_dir();
  const fs::path w = root / "w.safetensors", ref = root / "ref.safetensors";
  const std::string arch = "resnet18";
  ASSERT_EQ(test::run_tabula("init " + arch + " --seed 0 --out " + q(w)).exit_code, 0);
  ASSERT_EQ(test::run_tabula("init " + arch + " --seed 1 --out " + q(ref)).exit_code, 0);
  const auto seed0 = read_file_bytes(w.string()), seed1 = read_file_bytes(ref.string());
  int interrupted = 0;
  for (int delay_ms : {20, 80, 200, 400, 800, 1500}) {
    for (int sig : {SIGTERM, SIGINT}) {
      write_file_atomic(w.string(), seed0.data(), seed0.size());
      pid_t pid = ::fork();
      if (pid == 0) {
        const int devnull = ::open("/dev/null", O_WRONLY);
        if (devnull >= 0) ::dup2(devnull, 1);  // the summary line of the runs that finish
        ::execl(TABULA_BINARY, "tabula", "init", arch.c_str(), "--seed", "1", "--force", "--out", w.c_str(),
                static_cast<char*>(nullptr));
        ::_exit(127);
      }
      ASSERT_GT(pid, 0);
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      ::kill(pid, sig);
      int status = 0;
      ::waitpid(pid, &status, 0);
      if (WIFSIGNALED(status)) {
        ++interrupted;
        EXPECT_EQ(WTERMSIG(status), sig) << "the handler re-raises the signal";
      }
      const auto now = read_file_bytes(w.string());
      EXPECT_TRUE(now == seed0 || now == seed1) << "after " << delay_ms << " ms: " << now.size() << " bytes";
      expect_no_temp_files(root, "interrupted after " + std::to_string(delay_ms) + " ms");
    }
  }
  EXPECT_GT(interrupted, 0) << "no run was interrupted mid-way: the delays are too long for this machine";
}
