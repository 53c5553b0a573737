// A researcher's walk with data made by the field's tools (a JUMP load_data.csv, profiles and metadata as
// pycytominer/copairs users keep them) through embed -> eval and the HPC path. Each case runs the built binary as
// the user types it; each was a defect found on that walk.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "engine/fileio.h"
#include "tests/test_util.h"

using tabula::test::run_tabula;
using tabula::test::scratch_dir;
namespace fs = std::filesystem;

namespace {

using tabula::test::has;
using tabula::test::one_line;

const char* kArch = "vit:dim=32,depth=1,heads=2,patch=8,img=32";

// A quick synthetic Cell Painting set embedded once per test binary: the folder (LAYER head_drop + index.csv).
const fs::path& embedded_cellpainting() {
  static const fs::path emb = [] {
    const fs::path dir = scratch_dir() / "walk3-cp";
    const fs::path out = scratch_dir() / "walk3-emb";
    EXPECT_EQ(run_tabula("synth cellpainting --quick --out " + dir.string()).exit_code, 0);
    auto r = run_tabula(std::string("embed --arch '") + kArch + "' --seed 0 --size 32 --quiet --data " +
                        (dir / "load_data.csv").string() + " --out " + out.string());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return out;
  }();
  return emb;
}

}  // namespace

// Two `tabula embed` runs on one --out at once (a Slurm task requeued while its first instance still ran, or a
// user retrying in a second terminal): the second one with --resume joined the first's journal and, finishing
// first, removed .partial under it ("cc/.partial/journal: cannot open"); with --force it emptied the folder the
// first was writing. A run holds a lock on its folder; a second run says so before touching anything.
TEST(CliWalk3, SecondRunOnTheSameOutputFolderIsRefused) {
  const fs::path& emb = embedded_cellpainting();
  const std::string data = (scratch_dir() / "walk3-cp" / "load_data.csv").string();
  const fs::path out = scratch_dir() / "busy";
  fs::create_directories(out);
  const int fd = ::open(out.c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);  // as a running embed holds it
  tabula::write_file_atomic((out / "keep.txt").string(), "the other run's file");
  const std::string cmd = std::string("embed --arch '") + kArch + "' --seed 0 --size 32 --quiet --data " + data +
                          " --out " + out.string();
  for (const char* extra : {"", " --resume", " --force"}) {
    auto r = run_tabula(cmd + extra);
    EXPECT_EQ(r.exit_code, 1) << extra << ": " << r.err;
    EXPECT_TRUE(has(r.err, out.string() + ": another tabula process is writing this folder now")) << r.err;
    EXPECT_TRUE(one_line(r.err)) << r.err;
    EXPECT_TRUE(fs::exists(out / "keep.txt")) << extra << ": the other run's folder was touched";
  }
  ::close(fd);  // the other run ends (a kill -9 drops the lock as well)
  fs::remove(out / "keep.txt");
  auto r = run_tabula(cmd);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(tabula::read_file_bytes((out / "head_drop.npy").string()),
            tabula::read_file_bytes((emb / "head_drop.npy").string()));
}
