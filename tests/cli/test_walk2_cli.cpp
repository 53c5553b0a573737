// More of a new user's walk through the binary: errors that came late or named too little, and a number printed
// without its reason. Each case runs the built binary as a user types it.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "engine/fileio.h"
#include "util/table.h"
#include "tests/test_util.h"

using tabula::test::run_tabula;
using tabula::test::scratch_dir;
namespace fs = std::filesystem;

namespace {

using tabula::test::has;
using tabula::test::one_line;

const char* kArch = "resnet:layers=1,1,1,1,block=bottleneck,width=8,classes=10";

}  // namespace

// A JUMP load_data.csv row whose image is missing failed at the row's chunk, naming only the image: with 6 M rows
// the user had to search the manifest for it. The error names the manifest, the row's line and the sample.
TEST(CliWalk2, MissingImageNamesTheManifestRow) {
  const fs::path dir = scratch_dir() / "cp";
  ASSERT_EQ(run_tabula("synth cellpainting --quick --out " + dir.string()).exit_code, 0);
  const std::string csv = (dir / "load_data.csv").string();
  const tabula::Table t = tabula::read_csv(csv);
  ASSERT_GT(t.rows(), 5u);
  const size_t row = 5;  // line 7: the header is line 1, sample 0 line 2
  const std::string image =
      (dir / t.at(row, t.index("PathName_OrigDNA")) / t.at(row, t.index("FileName_OrigDNA"))).lexically_normal();
  ASSERT_TRUE(fs::remove(image)) << image;
  const fs::path out = scratch_dir() / "out";
  auto r = run_tabula(std::string("embed --arch '") + kArch + "' --seed 0 --size 32 --quiet --data " + csv +
                      " --out " + out.string());
  EXPECT_EQ(r.exit_code, 1) << r.err;
  // Found up front (before any model is run), not when its chunk is decoded.
  EXPECT_TRUE(has(r.err, csv + ":7 (sample 5): " + image + ": no such file (found before embedding)")) << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;
  EXPECT_FALSE(fs::exists(out));
  // preprocess has no pre-check: its decode names the row.
  const fs::path npy = scratch_dir() / "x.npy";
  r = run_tabula("preprocess --data " + csv + " --out " + npy.string() + " --resize 32 --crop 32");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(has(r.err, csv + ":7 (sample 5): " + image)) << r.err;
  // A file that is there but broken passes the check; embed's decode names the row too.
  tabula::write_file_atomic(image, "not an image");
  r = run_tabula(std::string("embed --arch '") + kArch + "' --seed 0 --size 32 --quiet --data " + csv + " --out " +
                 out.string());
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(has(r.err, csv + ":7 (sample 5): " + image + ": ")) << r.err;
  EXPECT_FALSE(has(r.err, "found before embedding")) << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;
  EXPECT_FALSE(fs::exists(out));
}

// A 1-NN probe whose predictions (or targets) are constant in a fold has an undefined Pearson r there; the study
// printed a bare "nan" in its table as if something had failed. summary.csv keeps the bare nan (pandas reads it);
// the printed table and the report's cell say why.
TEST(CliWalk2, UndefinedPearsonRSaysWhy) {
  const fs::path tissue = scratch_dir() / "tissue";
  ASSERT_EQ(run_tabula("synth tissue --quick --out " + tissue.string()).exit_code, 0);
  // One gene with the same expression in every patch: its r is nan in every fold for every probe (scipy agrees).
  const std::string expr = (tissue / "expression.csv").string();
  tabula::Table e = tabula::read_csv(expr);
  ASSERT_GE(e.cols(), 2u);
  tabula::Table constant(e.columns());
  for (size_t i = 0; i < e.rows(); ++i) {
    std::vector<std::string> row;
    for (size_t c = 0; c < e.cols(); ++c) row.push_back(c + 1 == e.cols() ? "3" : e.at(i, c));
    constant.add_row(row);
  }
  tabula::write_csv(expr, constant);
  const fs::path out = scratch_dir() / "study";
  auto r = run_tabula("study --data " + (tissue / "metadata.csv").string() + " --out " + out.string() +
                      " --models pixels --targets " + expr +
                      " --target-id patch_id --fold-col patient --pca 8 --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(r.out, "nan*")) << r.out;
  EXPECT_TRUE(has(r.out, "* nan: some target's Pearson r is undefined in a fold")) << r.out;
  const tabula::Table sum = tabula::read_csv((out / "summary.csv").string());
  int nan_rows = 0;
  for (size_t i = 0; i < sum.rows(); ++i)
    if (has(sum.at(i, sum.index("metric")), "Pearson r")) {
      EXPECT_EQ(sum.at(i, sum.index("value")), "nan") << "summary.csv stays machine-readable";
      ++nan_rows;
    }
  EXPECT_GT(nan_rows, 0);
  const std::string html = tabula::read_file_text((out / "report.html").string());
  EXPECT_TRUE(has(html, "nan (constant prediction)</span>")) << "the report's cell says why";
}

// `nuclei:dna=3` on 3-channel data failed at the first batch, after decoding, with "nuclei: dna channel 3 but the
// image has 3 channel(s)": no file named. It fails before any work, naming the data and the valid range.
TEST(CliWalk2, NucleiDnaChannelOutOfRangeNamesTheData) {
  const fs::path photos = scratch_dir() / "photos";
  ASSERT_EQ(run_tabula("synth natural --classes 2 --images 3 --size 48 --out " + photos.string()).exit_code, 0);
  const fs::path out = scratch_dir() / "out";
  auto r = run_tabula("embed --arch nuclei:dna=3 --quiet --data " + photos.string() + " --out " + out.string());
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(has(r.err, "arch nuclei:dna=3: dna channel 3, but " + photos.string() +
                             " has 3 channel(s) (dna= takes 0 to 2)"))
      << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;
  EXPECT_FALSE(fs::exists(out));
}
