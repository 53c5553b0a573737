// A researcher's walk with data made by the field's tools (a JUMP load_data.csv, profiles and metadata as
// pycytominer/copairs users keep them) through embed -> eval and the HPC path. Each case runs the built binary as
// the user types it; each was a defect found on that walk.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/fileio.h"
#include "util/npy.h"
#include "util/table.h"
#include "tests/test_util.h"

using tabula::test::run_tabula;
using tabula::test::scratch_dir;
namespace fs = std::filesystem;

namespace {

using tabula::test::has;
using tabula::test::one_line;

const char* kArch = "vit:dim=32,depth=1,heads=2,patch=8,img=32";

// A quick synthetic Cell Painting set, embedded, in the test's scratch folder: the embedding folder (LAYER
// head_drop + index.csv); the set is in scratch_dir()/walk3-cp.
fs::path embedded_cellpainting() {
  const fs::path dir = scratch_dir() / "walk3-cp";
  const fs::path out = scratch_dir() / "walk3-emb";
  EXPECT_EQ(run_tabula("synth cellpainting --quick --out " + dir.string()).exit_code, 0);
  auto r = run_tabula(std::string("embed --arch '") + kArch + "' --seed 0 --size 32 --quiet --data " +
                      (dir / "load_data.csv").string() + " --out " + out.string());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return out;
}

}  // namespace

// Two `tabula embed` runs on one --out at once (a Slurm task requeued while its first instance still ran, or a
// user retrying in a second terminal): the second one with --resume joined the first's journal and, finishing
// first, removed .partial under it ("cc/.partial/journal: cannot open"); with --force it emptied the folder the
// first was writing. A run holds a lock on its folder; a second run says so before touching anything.
TEST(CliWalk3, SecondRunOnTheSameOutputFolderIsRefused) {
  const fs::path emb = embedded_cellpainting();
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

// `eval normalize --control Metadata_pert_type=negcn` (a typo) failed naming the first plate ("group 'SYN-P01' has
// no control rows"), as if that plate lacked controls; `--reference-index ...=negcn` said "no row has that value"
// without the file or the value meant; `eval recall --drop DMSO` with no such perturbation kept the controls in the
// map and printed recall as if they had been dropped. Each names the flag, the file, and the closest value.
TEST(CliWalk3, ControlAndDropValuesThatNoRowHasAreNamed) {
  const fs::path emb = embedded_cellpainting();
  const std::string feats = emb.string() + ":head_drop", index = (emb / "index.csv").string();
  auto r = run_tabula("eval normalize --features " + feats + " --method mad --group-col Metadata_Plate "
                      "--control Metadata_pert_type=negcn --out " + (scratch_dir() / "n").string());
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(has(r.err, "--control Metadata_pert_type=negcn: no row of " + index +
                             " has Metadata_pert_type = 'negcn' (did you mean negcon?)")) << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;
  r = run_tabula("eval map --features " + feats + " --pos-sameby Metadata_JCP2022,Metadata_Reference_Index "
                 "--neg-sameby Metadata_Plate --neg-diffby Metadata_pert_type,Metadata_Reference_Index "
                 "--reference-index Metadata_pert_type=negcn --out " + (scratch_dir() / "m").string());
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(has(r.err, "--reference-index Metadata_pert_type=negcn: no row of " + index +
                             " has Metadata_pert_type = 'negcn' (did you mean negcon?)")) << r.err;
  const std::string rel = (scratch_dir() / "walk3-cp" / "relationships.csv").string();
  const std::string recall = "eval recall --features " + feats + " --pert-col Metadata_JCP2022 --relationships " +
                             rel + " --out " + (scratch_dir() / "r").string() + " --drop ";
  r = run_tabula(recall + "JCP2022_SYN999");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(has(r.err, "--drop JCP2022_SYN999: no row of " + index + " has Metadata_JCP2022 = 'JCP2022_SYN999'"))
      << r.err;
  // Values that are there still run.
  r = run_tabula(recall + "JCP2022_SYN001");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = run_tabula("eval normalize --features " + feats + " --method mad --group-col Metadata_Plate "
                 "--control Metadata_pert_type=negcon --out " + (scratch_dir() / "n").string());
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// A pycytominer user's profiles (one CSV/parquet of Metadata_* columns + features) given as --features got "not a
// .npy file, a folder or DIR:LAYER" and no way forward; the error now says how to split the table (README too).
TEST(CliWalk3, ProfilesTableAsFeaturesSaysHowToSplitIt) {
  const fs::path csv = scratch_dir() / "profiles.csv";
  tabula::write_file_atomic(csv.string(), "Metadata_Plate,Metadata_JCP2022,f0,f1\nP1,A,0.5,1.5\nP1,A,0.25,1\n");
  for (const fs::path& f : {csv, scratch_dir() / "profiles.parquet"}) {
    auto r = run_tabula("eval map --features " + f.string() + " --pos-sameby Metadata_JCP2022 --neg-diffby "
                        "Metadata_JCP2022 --out " + (scratch_dir() / "m").string());
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_TRUE(has(r.err, "--features " + f.string() + ": not a .npy file, a folder or DIR:LAYER (a profiles "
                           "table is not read: save its feature columns as a float32 [N, D] .npy and its Metadata_* "
                           "columns as the --meta CSV")) << r.err;
    EXPECT_TRUE(one_line(r.err)) << r.err;
  }
}

// `np.save("X.npy", df.to_numpy("float32"))` on a pandas table of profiles writes a Fortran-order array (pandas
// hands out the column-major block); every eval command refused it ("Fortran-order .npy arrays are not
// supported"). It is read as numpy reads it: eval gives the numbers of the same matrix saved in C order.
TEST(CliWalk3, FortranOrderFeaturesAreReadAsNumpyReadsThem) {
  const fs::path emb = embedded_cellpainting();
  const tabula::NpyArray c = tabula::read_npy((emb / "head_drop.npy").string());
  ASSERT_EQ(c.shape.size(), 2u);
  const int64_t n = c.shape[0], d = c.shape[1];
  std::vector<float> f(static_cast<size_t>(n * d));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) f[static_cast<size_t>(j * n + i)] = c.as<float>()[i * d + j];
  std::string header = tabula::npy_header(tabula::DType::f32, {n, d});
  header.replace(header.find("False"), 5, "True");
  header.insert(header.size() - 1, " ");  // same header length: numpy pads with spaces before the '\n'
  std::string bytes = header + std::string(reinterpret_cast<const char*>(f.data()), f.size() * sizeof(float));
  const fs::path fortran = scratch_dir() / "fortran.npy";
  tabula::write_file_atomic(fortran.string(), bytes);
  const std::string meta = " --meta " + (emb / "index.csv").string();
  const std::string map = " --pos-sameby Metadata_JCP2022 --neg-diffby Metadata_JCP2022 --out ";
  auto r = run_tabula("eval map --features " + fortran.string() + meta + map + (scratch_dir() / "mf").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_tabula("eval map --features " + (emb / "head_drop.npy").string() + meta + map +
                 (scratch_dir() / "mc").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(tabula::read_file_bytes((scratch_dir() / "mf" / "average_precision.csv").string()),
            tabula::read_file_bytes((scratch_dir() / "mc" / "average_precision.csv").string()));
  r = run_tabula("eval normalize --features " + fortran.string() + meta + " --method standardize --out " +
                 (scratch_dir() / "nf").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const tabula::NpyArray z = tabula::read_npy((scratch_dir() / "nf" / "fortran.npy").string());
  EXPECT_EQ(z.shape, c.shape);
}

// `tabula merge` of 32 Slurm shards, one of them embedded with another seed (or manifest, or tabula build), said
// only "comes from a different run than ... (run.json settings differ)": the user had to diff run.json files by
// hand to find out which setting. The message names each differing entry, with both values when short.
TEST(CliWalk3, MergeOfShardsFromDifferentRunsNamesTheSetting) {
  const fs::path dir = scratch_dir() / "cp";
  ASSERT_EQ(run_tabula("synth cellpainting --quick --out " + dir.string()).exit_code, 0);
  const std::string embed = std::string("embed --arch '") + kArch + "' --size 32 --quiet --data " +
                            (dir / "load_data.csv").string() + " --shard ";
  const fs::path s0 = scratch_dir() / "s0", s1 = scratch_dir() / "s1";
  ASSERT_EQ(run_tabula(embed + "0/2 --seed 0 --out " + s0.string()).exit_code, 0);
  ASSERT_EQ(run_tabula(embed + "1/2 --seed 1 --out " + s1.string()).exit_code, 0);
  auto r = run_tabula("merge " + s0.string() + " " + s1.string() + " --out " + (scratch_dir() / "all").string());
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(has(r.err, s1.string() + ": comes from a different run than " + s0.string() +
                             " (run.json differs: weights.seed 0 vs 1)")) << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;
  EXPECT_FALSE(fs::exists(scratch_dir() / "all" / "head_drop.npy"));
}

// `tabula study --targets expression.csv --target-id patch_id` took the targets in row order and only left the id
// column out: an expression table sorted otherwise than the manifest (as exported from an AnnData) gave other,
// wrong Pearson r with exit code 0. With --target-id the rows are matched by id; a missing or repeated id is named.
TEST(CliWalk3, StudyTargetsAreMatchedByTheirId) {
  const fs::path dir = scratch_dir() / "tissue";
  ASSERT_EQ(run_tabula("synth tissue --quick --out " + dir.string()).exit_code, 0);
  const tabula::Table ex = tabula::read_csv((dir / "expression.csv").string());
  std::vector<size_t> reversed(ex.rows());
  for (size_t r = 0; r < ex.rows(); ++r) reversed[r] = ex.rows() - 1 - r;
  const fs::path shuffled = scratch_dir() / "expression_reversed.csv";
  tabula::write_csv(shuffled.string(), ex.select_rows(reversed));
  const std::string study = "study --data " + (dir / "metadata.csv").string() +
                            " --target-id patch_id --fold-col patient --log1p --models pixels --quiet --targets ";
  const fs::path a = scratch_dir() / "a", b = scratch_dir() / "b";
  auto r = run_tabula(study + (dir / "expression.csv").string() + " --out " + a.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_tabula(study + shuffled.string() + " --out " + b.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(tabula::read_file_bytes((a / "summary.csv").string()),
            tabula::read_file_bytes((b / "summary.csv").string()));
  // A repeated id and a missing one.
  std::vector<size_t> rows(ex.rows());
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = i;
  rows.push_back(0);
  const fs::path twice = scratch_dir() / "twice.csv";
  tabula::write_csv(twice.string(), ex.select_rows(rows));
  r = run_tabula(study + twice.string() + " --out " + (scratch_dir() / "c").string());
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(has(r.err, twice.string() + ":" + std::to_string(ex.rows() + 2) + ": patch_id '" + ex.at(0, 0) +
                             "' is given twice (also on line 2)")) << r.err;
  rows.pop_back();
  rows.erase(rows.begin());
  const fs::path missing = scratch_dir() / "missing.csv";
  tabula::write_csv(missing.string(), ex.select_rows(rows));
  r = run_tabula(study + missing.string() + " --out " + (scratch_dir() / "d").string());
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(has(r.err, missing.string() + ": no row with patch_id '" + ex.at(0, 0) + "'")) << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;
}

// `eval regress --targets expr.csv` took the targets in row order; a table with an id column failed on it ("expected
// a number") and, with --target-cols, was matched to the embeddings by position only. --target-id matches by id.
TEST(CliWalk3, EvalRegressTargetsAreMatchedByTheirId) {
  const fs::path emb = embedded_cellpainting();
  tabula::Table meta = tabula::read_csv((emb / "index.csv").string());
  std::vector<std::string> ids;
  for (size_t r = 0; r < meta.rows(); ++r) ids.push_back(std::to_string(r + 1000));  // ids that are not row numbers
  meta.add_column("sample", ids);
  const fs::path meta_csv = scratch_dir() / "meta.csv";
  tabula::write_csv(meta_csv.string(), meta);
  std::vector<std::vector<std::string>> rows;
  for (size_t r = 0; r < meta.rows(); ++r)
    rows.push_back({ids[r], std::to_string(std::sin(0.7 * static_cast<double>(r))), std::to_string((r * 7) % 5)});
  tabula::Table ordered({"sample", "g1", "g2"}), reversed({"sample", "g1", "g2"});
  for (size_t r = 0; r < rows.size(); ++r) ordered.add_row(rows[r]), reversed.add_row(rows[rows.size() - 1 - r]);
  const fs::path a = scratch_dir() / "ordered.csv", b = scratch_dir() / "reversed.csv";
  tabula::write_csv(a.string(), ordered);
  tabula::write_csv(b.string(), reversed);
  const std::string regress = "eval regress --features " + (emb / "head_drop.npy").string() + " --meta " +
                              meta_csv.string() + " --fold-col Metadata_Plate --pca 8 --target-id sample --targets ";
  auto r = run_tabula(regress + a.string() + " --out " + (scratch_dir() / "ra").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_tabula(regress + b.string() + " --out " + (scratch_dir() / "rb").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(tabula::read_file_bytes((scratch_dir() / "ra" / "regress.csv").string()),
            tabula::read_file_bytes((scratch_dir() / "rb" / "regress.csv").string()));
  tabula::Table missing({"sample", "g1", "g2"});
  for (size_t r2 = 1; r2 < rows.size(); ++r2) missing.add_row(rows[r2]);
  const fs::path c = scratch_dir() / "missing.csv";
  tabula::write_csv(c.string(), missing);
  r = run_tabula(regress + c.string() + " --out " + (scratch_dir() / "rc").string());
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(has(r.err, c.string() + ": no row with sample '1000' (" + meta_csv.string() + ":2)")) << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;
}
