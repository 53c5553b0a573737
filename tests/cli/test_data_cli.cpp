// `tabula synth` and `tabula preprocess` as users type them.
#include <gtest/gtest.h>

#include <filesystem>

#include "engine/fileio.h"
#include "util/npy.h"
#include "tests/test_util.h"

using tabula::test::run_tabula;
namespace fs = std::filesystem;

namespace {
// run_tabula() recreates the test's scratch folder on every call, so the data lives beside it.
fs::path data_dir() {
  fs::path d = tabula::test::scratch_dir().string() + "-data";
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}
}  // namespace

TEST(CliData, SynthIsByteIdenticalAndRefusesToOverwrite) {
  fs::path dir = data_dir();
  auto r = run_tabula("synth cellpainting --quick --seed 3 --out '" + (dir / "a").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("32 images"), std::string::npos) << r.out;
  r = run_tabula("synth cellpainting --quick --seed 3 --threads 1 --out '" + (dir / "b").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* f : {"load_data.csv", "images/Batch1/SYN-P02/r05c11f01p01-ch4sk1fk1fl1.tiff", "illum/Batch1/IllumMito.npy"}) {
    if (!fs::exists(dir / "a" / f)) continue;  // a well position that the seed did not use
    EXPECT_EQ(tabula::read_file_bytes((dir / "a" / f).string()), tabula::read_file_bytes((dir / "b" / f).string())) << f;
  }
  EXPECT_EQ(tabula::read_file_bytes((dir / "a" / "load_data.csv").string()),
            tabula::read_file_bytes((dir / "b" / "load_data.csv").string()));
  r = run_tabula("synth cellpainting --quick --out '" + (dir / "a").string() + "'");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("exists and is not empty"), std::string::npos) << r.err;
  r = run_tabula("synth cellpainting --quick --size 64 --out '" + (dir / "d").string() + "'");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("drop --quick to set --size"), std::string::npos) << r.err;
  r = run_tabula("synth retina --out '" + (dir / "c").string() + "'");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown dataset 'retina'"), std::string::npos) << r.err;
}

TEST(CliData, PreprocessWritesModelInputs) {
  fs::path dir = data_dir();
  ASSERT_EQ(run_tabula("synth tissue --quick --out '" + (dir / "t").string() + "'").exit_code, 0);
  auto r = run_tabula("preprocess --data '" + (dir / "t").string() + "' --out '" + (dir / "x.npy").string() +
                      "' --preset dinov2 --channels all --limit 5");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  tabula::NpyArray x = tabula::read_npy((dir / "x.npy").string());
  EXPECT_EQ(x.shape, (std::vector<int64_t>{5, 3, 224, 224}));
  std::string idx = tabula::read_file_text((dir / "x.index.csv").string());
  EXPECT_EQ(idx.substr(0, idx.find('\n')), "patch_id,patient,x,y,nuclei_per_kpx,nuclear_area,elongation,tumour_frac,"
                                           "stroma_frac,lymphocyte_frac,input");
  r = run_tabula("preprocess --data '" + (dir / "t").string() + "' --out '" + (dir / "y.npy").string() + "' --channels rgb:0,1");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--channels"), std::string::npos) << r.err;
  r = run_tabula("preprocess --data '" + (dir / "t").string() + "' --out '" + (dir / "y.npy").string() + "' --resize 2x");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--resize takes N"), std::string::npos) << r.err;
  r = run_tabula("preprocess --data '" + (dir / "missing").string() + "' --out '" + (dir / "y.npy").string() + "'");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("missing: no such file or folder"), std::string::npos) << r.err;
}
