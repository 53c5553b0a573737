// A new user's walk through the binary: the mistakes found by following README.md top to bottom, each typed as a
// user types it. Every one must fail at once (before any model is built or image embedded) with one line naming
// the flag, file or column, the closest valid spelling where there is one, and exit code 2 for a usage error.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "data/image.h"
#include "engine/fileio.h"
#include "tests/test_util.h"

using tabula::test::run_tabula;
using tabula::test::scratch_dir;
namespace fs = std::filesystem;

namespace {

using tabula::test::has;
using tabula::test::one_line;
std::string read_text(const fs::path& p) { return tabula::read_file_text(p.string()); }

// A quick synthetic Cell Painting set (32 fields) in the test's scratch folder: its load_data.csv.
std::string cellpainting() {
  const fs::path dir = scratch_dir() / "cp";
  if (!fs::exists(dir / "load_data.csv")) {
    auto r = run_tabula("synth cellpainting --quick --out " + dir.string());
    EXPECT_EQ(r.exit_code, 0) << r.err;
  }
  return (dir / "load_data.csv").string();
}

}  // namespace

// `tabula study` embedded every model before it read a column flag: a typo'd column or control value failed after
// minutes to hours, naming an internal file (study/eval/.../filtered/index.csv), without a suggestion.
TEST(CliWalk, StudyColumnTyposFailBeforeAnyWork) {
  const std::string data = cellpainting();
  const fs::path out = scratch_dir() / "study";
  const std::string base = "study --data " + data + " --out " + out.string() + " --models 'resnet18@0;pixels' --quiet";
  struct Case {
    std::string flags, expect;
  };
  for (const Case& c : {
           Case{"--plate-col Metadata_plate", "--plate-col: " + data +
                                                  " has no column 'Metadata_plate' (did you mean "
                                                  "Metadata_Plate?)"},
           Case{"--plate-col Metadata_Plate --control Metadata_pert_type=negcon --compound-col Metadata_JCP",
                "no column 'Metadata_JCP' (did you mean Metadata_JCP2022?)"},
           Case{"--control Metadata_pert_type=negcontrol --compound-col Metadata_JCP2022",
                "no row of " + data + " has Metadata_pert_type = 'negcontrol' (did you mean negcon?)"},
           Case{"--control Metadata_perttype=negcon --compound-col Metadata_JCP2022",
                "--control: " + data + " has no column 'Metadata_perttype' (did you mean Metadata_pert_type?)"},
           Case{"--label-col xyz", "--label-col: " + data + " has no column 'xyz' (its columns: Metadata_Source"},
           Case{"--label-col Metadata_moa --group-col Plate", "--group-col: " + data + " has no column 'Plate'"},
           Case{"--batch-col Metadata_batch", "did you mean Metadata_Batch?"},
           Case{"--label-col Metadata_moa --split-col split", "--split-col: " + data + " has no column 'split'"},
       }) {
    auto r = run_tabula(base + " " + c.flags);
    EXPECT_EQ(r.exit_code, 2) << c.flags << ": " << r.err;
    EXPECT_TRUE(has(r.err, c.expect)) << c.flags << ": " << r.err;
    EXPECT_TRUE(one_line(r.err)) << r.err;
    EXPECT_FALSE(fs::exists(out)) << c.flags << ": the study started before the check";
  }
  // --fold-col on a tissue manifest: the same check.
  const fs::path tissue = scratch_dir() / "tissue";
  ASSERT_EQ(run_tabula("synth tissue --quick --out " + tissue.string()).exit_code, 0);
  auto r = run_tabula("study --data " + (tissue / "metadata.csv").string() + " --out " + out.string() +
                      " --models pixels --targets " + (tissue / "expression.csv").string() +
                      " --target-id patch_id --fold-col patients --quiet");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(has(r.err, "--fold-col: ") && has(r.err, "did you mean patient?")) << r.err;
  EXPECT_FALSE(fs::exists(out));
}

// `--models 'resnet18@0;pixel'` said "give exactly one of --weights FILE and --seed N" (the typo'd baseline was
// taken for an arch without a seed), and `resnet5@0` printed all ~100 arch names with exit code 1.
TEST(CliWalk, StudyModelTyposSuggestTheClosestName) {
  const std::string data = cellpainting();
  const fs::path out = scratch_dir() / "study";
  for (const auto& [models, expect] : {std::pair<std::string, std::string>{"resnet18@0;pixel", "did you mean pixels?"},
                                       {"resnet5@0", "did you mean resnet50?"},
                                       {"nucleii", "did you mean nuclei?"},
                                       {"vit_smal_patch16_224=w.safetensors", "vit_small_patch16_224"}}) {
    auto r = run_tabula("study --data " + data + " --out " + out.string() + " --models '" + models + "' --quiet");
    EXPECT_EQ(r.exit_code, 2) << models << ": " << r.err;
    EXPECT_TRUE(has(r.err, "tabula study: unknown arch")) << models << ": " << r.err;
    EXPECT_TRUE(has(r.err, expect)) << models << ": " << r.err;
    EXPECT_LT(r.err.size(), 300u) << r.err;
    EXPECT_FALSE(fs::exists(out));
  }
}

// An unknown --model card printed all 34 card names with exit code 1 (an unknown --arch: the closest name, exit 2);
// `preprocess --arch` did not check the name at all before reading the data.
TEST(CliWalk, ModelCardTyposSuggestTheClosestCard) {
  const fs::path photos = scratch_dir() / "photos";
  ASSERT_EQ(run_tabula("synth natural --classes 2 --images 2 --size 48 --out " + photos.string()).exit_code, 0);
  const std::string out = (scratch_dir() / "out").string();
  for (const auto& [cmd, expect] : {
           std::pair<std::string, std::string>{"embed --model phikonv2 --seed 0",
                                               "tabula embed: unknown model card 'phikonv2' (did you mean phikon-v2?)"},
           {"embed --model uni2h:depth=1 --seed 0", "unknown model card 'uni2h' (did you mean uni2-h?)"},
           {"preprocess --model hoptimus0x",
            "tabula preprocess: unknown model card 'hoptimus0x' (did you mean "
            "h-optimus-0?)"},
           {"embed --model zzzzzzzz --seed 0", "unknown model card 'zzzzzzzz' (cards: dinov2-vits14, "},
           {"preprocess --arch resnet5", "tabula preprocess: unknown arch 'resnet5' (did you mean resnet50?)"},
       }) {
    auto r = run_tabula(cmd + " --data " + photos.string() + " --out " + out);
    EXPECT_EQ(r.exit_code, 2) << cmd << ": " << r.err;
    EXPECT_TRUE(has(r.err, expect)) << cmd << ": " << r.err;
    EXPECT_TRUE(one_line(r.err)) << r.err;
    EXPECT_FALSE(fs::exists(out));
  }
  // Card names are matched whatever their case, hub ids too, as the README says.
  for (const char* card : {"UNI2-h", "MahmoodLab/UNI2-h"}) {
    auto r =
        run_tabula(std::string("preprocess --model ") + card + " --data " + photos.string() + " --out " + out + ".npy");
    EXPECT_EQ(r.exit_code, 0) << card << ": " << r.err;
    EXPECT_TRUE(has(r.out + r.err, "transform (card uni2-h)")) << r.out << r.err;
  }
}

// `--device gpu` (or cuda:x) was an error while working (exit code 1), found after the data was read; it is a
// mistyped value like --pool's, so a usage error before any work, in every command that takes --device.
TEST(CliWalk, MistypedDeviceIsAUsageError) {
  const std::string data = cellpainting();
  const std::string out = (scratch_dir() / "out").string();
  for (const std::string& cmd :
       {"embed --arch resnet18 --seed 0 --data " + data + " --out " + out + " --device gpu",
        "embed --arch pixels --data " + data + " --out " + out + " --device cuda:x",
        "study --data " + data + " --out " + out + " --models pixels --device GPU",
        "demo --quick --out " + out + " --device cuda0", std::string("bench resnet18 --device gpu:0")}) {
    auto r = run_tabula(cmd);
    EXPECT_EQ(r.exit_code, 2) << cmd << ": " << r.err;
    EXPECT_TRUE(has(r.err, "--device: expected cpu, cuda or cuda:N, got")) << cmd << ": " << r.err;
    EXPECT_TRUE(one_line(r.err)) << r.err;
    EXPECT_FALSE(fs::exists(out)) << cmd;
  }
}

// `tabula init ... --out weights/r18.safetensors` (and preprocess, weights convert) failed on a missing folder with
// "weights/r18.safetensors.tmp.12071: cannot create", naming the temp file; embed, eval and report make their folder.
TEST(CliWalk, OutputFileFolderIsMadeOrNamed) {
  const fs::path dir = scratch_dir();
  const fs::path w = dir / "weights" / "tiny" / "r.safetensors";
  const std::string arch = "'resnet:layers=1,1,1,1,block=basic,classes=4'";
  auto r = run_tabula("init " + arch + " --seed 0 --out " + w.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(w));
  r = run_tabula("weights convert " + w.string() + " --arch " + arch + " --out " +
                 (dir / "conv" / "r.safetensors").string());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir / "conv" / "r.safetensors"));
  const fs::path photos = dir / "photos";
  ASSERT_EQ(run_tabula("synth natural --classes 2 --images 2 --size 48 --out " + photos.string()).exit_code, 0);
  r = run_tabula("preprocess --data " + photos.string() + " --resize 32 --crop 32 --out " +
                 (dir / "pp" / "x.npy").string());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir / "pp" / "x.npy"));
  EXPECT_TRUE(fs::exists(dir / "pp" / "x.index.csv"));
  // --out naming a folder (`report study --out study`) was "study: rename failed: Is a directory" after the work.
  r = run_tabula("init " + arch + " --seed 0 --out " + (dir / "weights").string());
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(has(r.err, "tabula init: --out " + (dir / "weights").string() + " is a folder; name the file to write (" +
                             (dir / "weights" / "weights.safetensors").string() + ", say)"))
      << r.err;
  r = run_tabula("report " + dir.string() + " --out " + dir.string());
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(has(r.err, (dir / "report.html").string() + ", say)")) << r.err;
  // A folder that cannot be made (not writable): one line naming the file asked for and the folder, exit 1.
  std::string prefix;
  if (::geteuid() == 0) {
    if (!fs::exists("/usr/bin/setpriv")) GTEST_SKIP() << "running as root without setpriv";
    prefix = "setpriv --reuid=65534 --regid=65534 --clear-groups";
  }
  const fs::path ro = dir / "ro";
  fs::create_directories(ro);
  fs::permissions(dir, fs::perms::all, fs::perm_options::add);  // the unprivileged user reaches ro/ ...
  fs::permissions(ro, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec | fs::perms::others_read |
                          fs::perms::others_exec);  // ... but cannot write there
  const std::string target = (ro / "sub" / "r.safetensors").string();
  r = tabula::test::run_tabula_prefixed(prefix, "init " + arch + " --seed 0 --out " + target);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(has(r.err, target + ": cannot create: the folder " + (ro / "sub").string() + " does not exist")) << r.err;
  EXPECT_FALSE(has(r.err, ".tmp.")) << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;
  r = tabula::test::run_tabula_prefixed(prefix, "init " + arch + " --seed 0 --out " + (ro / "r.safetensors").string());
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(has(r.err, (ro / "r.safetensors").string() + ": cannot create: Permission denied")) << r.err;
  EXPECT_FALSE(has(r.err, ".tmp.")) << r.err;
}

// A card without a resize (phikon, h-optimus-0: "none (224 tiles)") on other tiles failed with only the arch's
// 200-character key=value string and "add dynamic_img_size=1", a model edit: now the input file, the transform and
// the flags that set the size. Checked before any image is embedded.
TEST(CliWalk, FixedSizeModelOnOtherSizesNamesTheInputAndTheFlags) {
  const fs::path photos = scratch_dir() / "photos";
  ASSERT_EQ(run_tabula("synth natural --classes 2 --images 2 --size 48 --out " + photos.string()).exit_code, 0);
  const std::string arch = "'vit:dim=32,depth=1,heads=2,patch=16,img=64,classes=0'";
  const fs::path out = scratch_dir() / "emb";
  auto r = run_tabula("embed --arch " + arch + " --seed 0 --preset none --data " + photos.string() + " --out " +
                      out.string() + " --quiet");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(has(r.err, (photos / "disc" / "disc_0000.png").string() + ": its model input is 3x48x48")) << r.err;
  EXPECT_TRUE(has(r.err, "input must be 64x64")) << r.err;
  EXPECT_TRUE(has(r.err, "set the size with --resize N --crop N")) << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;
  EXPECT_FALSE(fs::exists(out)) << "an empty or partial folder was left behind";
  // Following the advice works.
  r = run_tabula("embed --arch " + arch + " --seed 0 --preset none --resize 64 --crop 64 --data " + photos.string() +
                 " --out " + out.string() + " --quiet");
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// eval: `--method madd` was "unknown normalisation method 'madd'" with exit code 1 and no list; a mistyped column
// listed every column without a suggestion, and a column typed short of its end (Metadata_JCP) was offered a closer
// but other name (Metadata_moa) by the shared suggester (util/suggest.cpp).
TEST(CliWalk, EvalTyposSuggestMethodsAndColumns) {
  const std::string data = cellpainting();
  const fs::path emb = scratch_dir() / "emb";
  auto r = run_tabula("embed --arch pixels --data " + data + " --out " + emb.string() + " --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string features = " --features " + emb.string() + ":pixels";
  const fs::path out = scratch_dir() / "out";
  r = run_tabula("eval normalize" + features +
                 " --method madd --group-col Metadata_Plate --control "
                 "Metadata_pert_type=negcon --out " +
                 out.string());
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(has(r.err, "unknown --method 'madd' (did you mean mad?) (standardize|mad|")) << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;
  for (const auto& [flags, expect] : {
           std::pair<std::string, std::string>{"--pos-sameby Metadata_JCP --neg-sameby Metadata_Plate",
                                               "no column 'Metadata_JCP' (did you mean Metadata_JCP2022?)"},
           {"--pos-sameby Metadata_JCP2022 --neg-sameby Metadata_plate",
            "no column 'Metadata_plate' (did you mean Metadata_Plate?) (columns: Metadata_Source"},
       }) {
    r = run_tabula("eval map" + features + " " + flags + " --out " + out.string());
    EXPECT_EQ(r.exit_code, 1) << flags << ": " << r.err;
    EXPECT_TRUE(has(r.err, (emb / "index.csv").string() + ": " + expect)) << flags << ": " << r.err;
    EXPECT_TRUE(one_line(r.err)) << r.err;
  }
  EXPECT_FALSE(fs::exists(out));
}

// A study folder rerun with another --size, --pca, --log1p or --dark-nuclei reused every finished step (the
// markers) and reported the old numbers as the new settings' (study.json kept the columns and null size only).
TEST(CliWalk, StudyRerunWithOtherSettingsIsRefused) {
  const fs::path tissue = scratch_dir() / "tissue";
  ASSERT_EQ(run_tabula("synth tissue --quick --out " + tissue.string()).exit_code, 0);
  const fs::path out = scratch_dir() / "study";
  const std::string base = "study --data " + (tissue / "metadata.csv").string() + " --out " + out.string() +
                           " --models pixels --targets " + (tissue / "expression.csv").string() +
                           " --target-id patch_id --fold-col patient --pca 8 --quiet";
  auto r = run_tabula(base);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const fs::path summary = out / "summary.csv";
  const auto stamp = fs::last_write_time(summary);
  for (const auto& [flags, expect] : {std::pair<std::string, std::string>{"--size 64", "size: 0 there, 64 now"},
                                      {"--log1p", "datasets[0].log1p: false there, true now"},
                                      {"--dark-nuclei", "datasets[0].dark_nuclei: false there, true now"}}) {
    r = run_tabula(base + " " + flags);
    EXPECT_EQ(r.exit_code, 1) << flags;
    EXPECT_TRUE(has(r.err, (out / "study.json").string() + ": this folder holds a study with other settings (" +
                               expect + "); use another --out"))
        << flags << ": " << r.err;
    EXPECT_EQ(fs::last_write_time(summary), stamp) << flags;
  }
  r = run_tabula(base.substr(0, base.find(" --pca 8")) + " --pca 4 --quiet");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has(r.err, "datasets[0].pca: 8 there, 4 now")) << r.err;
  // The same command still resumes (nothing to do).
  r = run_tabula(base);
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// `study --size 64` also set the baselines' crop (they have no resize): on 48-px images the pixels baseline failed
// ("48x48 is smaller than the 64x64 crop") although --size is the networks' input size; at the default size the
// baselines read whole images.
TEST(CliWalk, StudySizeIsTheNetworksInputSizeOnly) {
  const fs::path photos = scratch_dir() / "photos";
  ASSERT_EQ(run_tabula("synth natural --classes 2 --images 5 --size 48 --out " + photos.string()).exit_code, 0);
  const fs::path out = scratch_dir() / "study";
  auto r = run_tabula("study --data " + photos.string() + " --out " + out.string() +
                      " --models 'resnet:layers=1,1,1,1,block=basic@0;pixels' --size 64 --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(has(read_text(out / "embed" / "data" / "pixels" / "run.json"), "\"crop\":0")) << "baseline cropped";
  EXPECT_TRUE(has(read_text(out / "embed" / "data" / "resnet-s0" / "run.json"), "\"crop\":64"));
}

// The study's ridge probe asked for PCA(256) clipped to the feature width only: a tissue set whose training folds
// hold fewer rows than that (here 24) failed after every model was embedded, with "PCA: n_components=64 exceeds
// min(n_fit_rows=24, n_features=64)" naming no model, layer or flag. It keeps what the smallest fold can hold.
TEST(CliWalk, StudyRidgeOnFewRowsKeepsWhatTheFoldsHold) {
  const fs::path tissue = scratch_dir() / "tissue";
  ASSERT_EQ(run_tabula("synth tissue --quick --out " + tissue.string()).exit_code, 0);
  const fs::path out = scratch_dir() / "study";
  auto r = run_tabula("study --data " + (tissue / "metadata.csv").string() + " --out " + out.string() +
                      " --models 'resnet:layers=1,1,1,1,block=basic@0' --size 32 --targets " +
                      (tissue / "expression.csv").string() + " --target-id patch_id --fold-col patient --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string summary = read_text(out / "summary.csv");
  EXPECT_TRUE(has(summary, "resnet-s0,avgpool,3,4,target Pearson r (ridge),0.")) << summary;
  EXPECT_FALSE(has(summary, "Pearson r (ridge),nan")) << summary;
}

// A folder of a grey image and then an RGB one: "DIR: a sample gave 3 model inputs, expected 1", naming no file.
TEST(CliWalk, FolderMixingChannelCountsNamesTheImage) {
  const fs::path dir = scratch_dir() / "mixed";
  fs::create_directories(dir);
  tabula::data::Image grey(1, 40, 40), rgb(3, 40, 40);
  for (size_t i = 0; i < grey.pixels.size(); ++i) grey.pixels[i] = float(i % 251);
  for (size_t i = 0; i < rgb.pixels.size(); ++i) rgb.pixels[i] = float(i % 241);
  tabula::data::write_png((dir / "a.png").string(), grey);
  tabula::data::write_png((dir / "b.png").string(), rgb);
  const fs::path out = scratch_dir() / "emb";
  auto r = run_tabula("embed --arch 'resnet:layers=1,1,1,1,block=basic' --seed 0 --resize 32 --crop 32 --data " +
                      dir.string() + " --out " + out.string() + " --quiet");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(has(r.err, (dir / "b.png").string() + " gave 3 model inputs, the first sample 1 (all images need the "
                                                    "same channels)"))
      << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;
  EXPECT_FALSE(fs::exists(out));
  // RGB first, then grey: the strategy taken from the first image (rgb:0,1,2) is named, and where it came from.
  tabula::data::write_png((dir / "a.png").string(), rgb);
  tabula::data::write_png((dir / "b.png").string(), grey);
  r = run_tabula("embed --arch 'resnet:layers=1,1,1,1,block=basic' --seed 0 --resize 32 --crop 32 --data " +
                 dir.string() + " --out " + out.string() + " --quiet");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(has(r.err, (dir / "b.png").string() + ": channel strategy rgb:0,1,2 names channel 1 but the image has 1 "
                                                    "(without --channels the strategy comes from the first image"))
      << r.err;
  EXPECT_FALSE(fs::exists(out));
}

// `--precision bf17` exited 1 after the data was read ("cpu forwards are fp32 or bf16"), like a failure while
// working; `--threads -1` was taken silently. Both are usage errors now, in every command that has the flag.
TEST(CliWalk, MistypedPrecisionAndNegativeThreadsAreUsageErrors) {
  const std::string data = cellpainting();
  const std::string out = (scratch_dir() / "out").string();
  for (const auto& [cmd, expect] : {
           std::pair<std::string, std::string>{
               "embed --arch resnet18 --seed 0 --data " + data + " --out " + out + " --precision bf17",
               "tabula embed: --precision: expected fp32, tf32, bf16 or fp16, got "
               "'bf17' (did you mean bf16?)"},
           {"study --data " + data + " --out " + out + " --models pixels --precision FP32", "(did you mean fp32?)"},
           {"bench resnet18 --precision half", "tabula bench: --precision: expected fp32, tf32, bf16 or fp16"},
           {"embed --arch pixels --data " + data + " --out " + out + " --threads -1",
            "tabula embed: --threads must be >= 0 (0: all cores), got -1"},
           {"eval knn --features x.npy --meta m.csv --label-col c --out " + out + " --threads -2",
            "tabula eval knn: --threads must be >= 0"},
       }) {
    auto r = run_tabula(cmd);
    EXPECT_EQ(r.exit_code, 2) << cmd << ": " << r.err;
    EXPECT_TRUE(has(r.err, expect)) << cmd << ": " << r.err;
    EXPECT_TRUE(one_line(r.err)) << r.err;
    EXPECT_FALSE(fs::exists(out)) << cmd;
  }
}

// `embed --data X.npy --resize 100` embedded the arrays as they were and exited 0: a .npy is used as is, so the
// flag did nothing, silently. Every transform flag is refused with a .npy now.
TEST(CliWalk, TransformFlagsWithANpyInputAreRefused) {
  const fs::path photos = scratch_dir() / "photos";
  ASSERT_EQ(run_tabula("synth natural --classes 2 --images 2 --size 48 --out " + photos.string()).exit_code, 0);
  const fs::path x = scratch_dir() / "x.npy";
  ASSERT_EQ(run_tabula("preprocess --data " + photos.string() + " --resize 32 --crop 32 --out " + x.string()).exit_code,
            0);
  const std::string base = "embed --arch 'resnet:layers=1,1,1,1,block=basic' --seed 0 --data " + x.string() +
                           " --quiet --out " + (scratch_dir() / "emb").string();
  for (const std::string flags : {"--resize 100", "--size 64", "--mean 0.5", "--no-normalize", "--channels mean"}) {
    auto r = run_tabula(base + " " + flags);
    EXPECT_EQ(r.exit_code, 2) << flags << ": " << r.err;
    EXPECT_TRUE(has(r.err, flags.substr(0, flags.find(' ')) + " does nothing with --data " + x.string() +
                               ": a .npy holds model inputs already preprocessed and is used as is"))
        << r.err;
    EXPECT_FALSE(fs::exists(scratch_dir() / "emb"));
  }
  auto r = run_tabula(base);
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// A folder of an 8-bit PNG and then a float TIFF: "--resize-impl pil resamples 8-bit images" named a flag the user
// never gave (auto chose pil from the first image); the message now says so. --resize-impl tensor embeds both.
TEST(CliWalk, FolderMixingSampleTypesExplainsTheResizePath) {
  const fs::path dir = scratch_dir() / "mixed";
  fs::create_directories(dir);
  tabula::data::Image grey(1, 40, 40);
  for (size_t i = 0; i < grey.pixels.size(); ++i) grey.pixels[i] = float(i % 251);
  tabula::data::write_png((dir / "a.png").string(), grey);
  for (float& v : grey.pixels) v /= 255.0f;
  tabula::data::write_tiff((dir / "b.tif").string(), grey, 32, false);
  const fs::path out = scratch_dir() / "emb";
  const std::string base = "embed --arch 'resnet:layers=1,1,1,1,block=basic' --seed 0 --resize 32 --crop 32 --data " +
                           dir.string() + " --out " + out.string() + " --quiet";
  auto r = run_tabula(base);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(has(r.err, (dir / "b.tif").string() + ": --resize-impl pil resamples 8-bit images; this image has "
                                                    "32-bit float samples (use --resize-impl tensor; without it the "
                                                    "first image's type chooses"))
      << r.err;
  EXPECT_FALSE(fs::exists(out));
  r = run_tabula(base + " --resize-impl tensor");
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// An output folder that cannot be made read "filesystem error: cannot create directories: Permission denied [DIR]"
// (std::filesystem's wording); now "DIR: cannot create directories: Permission denied", as every other error.
TEST(CliWalk, UnwritableOutputFolderIsNamedFirst) {
  std::string prefix;
  if (::geteuid() == 0) {
    if (!fs::exists("/usr/bin/setpriv")) GTEST_SKIP() << "running as root without setpriv";
    prefix = "setpriv --reuid=65534 --regid=65534 --clear-groups";
  }
  const fs::path dir = scratch_dir();
  const fs::path ro = dir / "ro";
  fs::create_directories(ro);
  fs::permissions(dir, fs::perms::all, fs::perm_options::add);
  fs::permissions(ro, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec | fs::perms::others_read |
                          fs::perms::others_exec);
  for (const std::string cmd : {"synth natural --quick --out ", "demo --quick --out "}) {
    auto r = tabula::test::run_tabula_prefixed(prefix, cmd + (ro / "x").string());
    EXPECT_EQ(r.exit_code, 1) << cmd << r.err;
    EXPECT_TRUE(has(r.err, "tabula: error: " + (ro / "x").string() + ": cannot create directories: Permission denied"))
        << cmd << r.err;
    EXPECT_TRUE(one_line(r.err)) << r.err;
  }
}

// `tabula init resnet18 --seed 0 --out trained.pth` replaced a downloaded checkpoint with random weights, and
// `weights convert W.pth --out W.pth` rewrote a torch file as safetensors under its name, both silently. A weights
// file that exists is kept unless --force.
TEST(CliWalk, WeightsFilesAreNotOverwrittenWithoutForce) {
  const fs::path dir = scratch_dir();
  const std::string arch = "'resnet:layers=1,1,1,1,block=basic,classes=4'";
  const fs::path w = dir / "trained.safetensors";
  ASSERT_EQ(run_tabula("init " + arch + " --seed 7 --out " + w.string()).exit_code, 0);
  const std::string before = read_text(w);
  for (const std::string& cmd : {"init " + arch + " --seed 0 --out " + w.string(),
                                 "weights convert " + w.string() + " --arch " + arch + " --out " + w.string()}) {
    auto r = run_tabula(cmd);
    EXPECT_EQ(r.exit_code, 1) << cmd;
    EXPECT_TRUE(has(r.err, w.string() + ": exists; use --force to overwrite it, or another --out")) << r.err;
    EXPECT_EQ(read_text(w), before) << cmd;
  }
  auto r = run_tabula("init " + arch + " --seed 0 --out " + w.string() + " --force");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(read_text(w), before);
}

// A study rerun skipped every finished embedding by its run.json alone: with `--weights ARCH=FILE` where FILE now
// held other weights (same path), the old embedding and its numbers were kept, silently.
TEST(CliWalk, StudyRerunNoticesOtherWeightsUnderTheSameFile) {
  const std::string data = cellpainting();
  const std::string arch = "resnet:layers=1,1,1,1,block=basic";
  const fs::path w = scratch_dir() / "w.safetensors";
  ASSERT_EQ(run_tabula("init '" + arch + "' --seed 1 --out " + w.string()).exit_code, 0);
  const fs::path out = scratch_dir() / "study";
  const std::string cmd = "study --data " + data + " --out " + out.string() + " --models pixels --weights '" + arch +
                          "=" + w.string() + "' --size 32 --null-size 100 --quiet";
  ASSERT_EQ(run_tabula(cmd).exit_code, 0);
  const std::string summary = read_text(out / "summary.csv");
  EXPECT_EQ(run_tabula(cmd).exit_code, 0);  // the same weights: resumes, nothing to do
  EXPECT_EQ(read_text(out / "summary.csv"), summary);
  ASSERT_EQ(run_tabula("init '" + arch + "' --seed 2 --force --out " + w.string()).exit_code, 0);
  auto r = run_tabula(cmd);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(has(r.err, "the finished embedding there was made with other settings: --weights (file contents)"))
      << r.err;
  EXPECT_EQ(read_text(out / "summary.csv"), summary);
}

// `embed --aggregate Metadata_Plate,Metadata_wel` named the missing column without the one meant.
TEST(CliWalk, AggregateColumnTypoSuggests) {
  const std::string data = cellpainting();
  const fs::path out = scratch_dir() / "emb";
  auto r = run_tabula("embed --arch pixels --data " + data + " --out " + out.string() +
                      " --aggregate Metadata_Plate,Metadata_wel --quiet");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(has(r.err, "no metadata column 'Metadata_wel' (did you mean Metadata_Well?)")) << r.err;
  EXPECT_FALSE(fs::exists(out));
}
