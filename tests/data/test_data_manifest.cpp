// Manifests, CSV parsing, HEST .h5, prefetching and sample loading.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <thread>

#include "engine/fileio.h"
#include "util/npy.h"
#include "util/csv.h"
#include "data/hest.h"
#include "data/manifest.h"
#include "data/pipeline.h"
#include "data/prefetch.h"
#include "data/synth.h"
#include "tests/test_util.h"

using namespace tabula;
using namespace tabula::data;
namespace fs = std::filesystem;

namespace {
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(DataCsv, QuotesCrlfAndErrorsWithLineNumbers) {
  CsvTable t = parse_csv_table("a,b,c\r\n1,\"x, \"\"y\"\"\",3\r\n\r\n4,\"multi\nline\",6\n", "t.csv");
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0][1], "x, \"y\"");
  EXPECT_EQ(t.rows[1][1], "multi\nline");
  EXPECT_EQ(t.line_of_row[1], 4);
  EXPECT_EQ(t.at(1, "c"), "6");
  EXPECT_NE(error_of([] { parse_csv_table("a,b\n1,2\n3\n", "r.csv"); }).find("r.csv:3: 1 fields, the header has 2"), std::string::npos);
  EXPECT_NE(error_of([] { parse_csv_table("a,b\n1,\"open\n", "q.csv"); }).find("q.csv:2:2: unterminated"), std::string::npos);
  EXPECT_NE(error_of([] { parse_csv_table("a,a\n", "d.csv"); }).find("d.csv:1:2: duplicate column name 'a'"), std::string::npos);
  EXPECT_NE(error_of([] { parse_csv_table("", "e.csv"); }).find("e.csv: empty file (no header row)"), std::string::npos);
}

TEST(DataManifest, JumpLoadDataWithIlluminationFromSynth) {
  fs::path dir = test::scratch_dir() / "cp";
  CellPaintingConfig cfg;
  cfg.quick = true;
  cfg.threads = 2;
  synth_cellpainting(dir.string(), cfg);
  Manifest m = read_manifest(dir.string());
  EXPECT_EQ(m.kind, "jump");
  EXPECT_EQ(m.channel_names, cellpainting_channels());
  ASSERT_EQ(m.samples.size(), 32u);  // 2 plates x (12 compounds + 4 DMSO) x 1 site
  EXPECT_EQ(m.meta_columns.front(), "Metadata_Source");
  EXPECT_EQ(m.meta_columns.size(), 10u);
  ASSERT_EQ(m.samples[0].illum_paths.size(), 5u);
  Image img = load_sample(m, 3);
  EXPECT_EQ(img.channels, 5);
  EXPECT_EQ(img.height, 128);
  EXPECT_EQ(img.channel_names, cellpainting_channels());
  // Illumination divided out: equals the raw TIFF divided by the .npy.
  Image raw = read_image(m.samples[3].channel_paths[2]);
  NpyArray il = read_npy(m.samples[3].illum_paths[2]);
  for (size_t i = 0; i < raw.plane_size(); i += 97) EXPECT_FLOAT_EQ(img.plane(2)[i], raw.pixels[i] / il.as<float>()[i]);
  ManifestOptions no_illum;
  no_illum.illumination = false;
  no_illum.channels = {"Mito", "DNA"};
  Manifest m2 = read_manifest((dir / "load_data.csv").string(), no_illum);
  Image two = load_sample(m2, 3);
  ASSERT_EQ(two.channels, 2);
  EXPECT_EQ(two.plane(1)[5], read_image(m.samples[3].channel_paths[0]).pixels[5]);
  no_illum.channels = {"Brightfield"};
  EXPECT_NE(error_of([&] { read_manifest(dir.string(), no_illum); }).find("no channel 'Brightfield'"), std::string::npos);
  // index.csv carries the metadata untouched.
  std::string idx = index_csv(m, {0, 1});
  EXPECT_EQ(idx.substr(0, idx.find('\n')), "Metadata_Source,Metadata_Batch,Metadata_Plate,Metadata_Well,Metadata_Site,"
                                            "Metadata_JCP2022,Metadata_pert_type,Metadata_moa,Metadata_phenotype,"
                                            "Metadata_expected_active");
}

TEST(DataManifest, JumpUrlColumnsAndBrokenFilesNameTheFile) {
  fs::path dir = test::scratch_dir();
  Image one(1, 6, 7);
  write_tiff((dir / "a.tif").string(), one, 16, false);
  write_file_atomic((dir / "remote.csv").string(), "FileName_OrigDNA,URL_OrigDNA,Metadata_Well\na.tif,s3://bucket/a.tif,A01\n");
  EXPECT_NE(error_of([&] { read_manifest((dir / "remote.csv").string()); }).find("is remote"), std::string::npos);
  write_file_atomic((dir / "local.csv").string(), "FileName_OrigDNA,URL_OrigDNA,Metadata_Well\na.tif,file://" +
                                                      (dir / "a.tif").string() + ",A01\n");
  Manifest m = read_manifest((dir / "local.csv").string());
  EXPECT_EQ(load_sample(m, 0).width, 7);
  // A truncated TIFF in a manifest: the error names that file.
  std::vector<uint8_t> bytes = read_file_bytes((dir / "a.tif").string());
  write_file_atomic((dir / "b.tif").string(), bytes.data(), bytes.size() / 2);
  write_file_atomic((dir / "bad.csv").string(), "FileName_OrigDNA,PathName_OrigDNA,Metadata_Well\nb.tif,.,A01\n");
  Manifest bad = read_manifest((dir / "bad.csv").string());
  EXPECT_NE(error_of([&] { load_sample(bad, 0); }).find("b.tif"), std::string::npos);
}

TEST(DataManifest, RxRxLayoutIsProbed) {
  fs::path dir = test::scratch_dir();
  fs::create_directories(dir / "images" / "HUVEC-01" / "Plate1");
  Image ch(1, 8, 9);
  for (int w = 1; w <= 3; ++w) {
    std::fill(ch.pixels.begin(), ch.pixels.end(), float(10 * w));
    write_png((dir / "images" / "HUVEC-01" / "Plate1" / ("B02_s1_w" + std::to_string(w) + ".png")).string(), ch);
    write_png((dir / "images" / "HUVEC-01" / "Plate1" / ("B02_s2_w" + std::to_string(w) + ".png")).string(), ch);
  }
  write_file_atomic((dir / "metadata.csv").string(),
                    "site_id,well_id,experiment,plate,well,site,well_type,sirna\n"
                    "HUVEC-01_1_B02_1,HUVEC-01_1_B02,HUVEC-01,1,B02,1,treatment,s1\n"
                    "HUVEC-01_1_B02_2,HUVEC-01_1_B02,HUVEC-01,1,B02,2,treatment,s1\n");
  Manifest m = read_manifest(dir.string());
  EXPECT_EQ(m.kind, "rxrx");
  EXPECT_EQ(m.channel_names, (std::vector<std::string>{"w1", "w2", "w3"}));
  EXPECT_EQ(m.meta_columns.size(), 8u);
  Image img = load_sample(m, 1);
  ASSERT_EQ(img.channels, 3);
  EXPECT_EQ(img.at(2, 0, 0), 30.0f);
}

// RxRx3-core as documented (rxrx-datasets/rxrx3-core/README.md): metadata_rxrx3_core.csv (experiment_name, plate,
// address; no site column) and 8-bit <address>_s1_<1..6>.jp2 per well under <experiment_name>/Plate<plate>/.
// Fixtures written by Pillow/OpenJPEG (weights_tools/reference/rxrx3_fixtures.py), one of them lossy; the decoded
// samples must be Pillow's exactly and the metadata (a quoted SMILES with commas) must reach index.csv unchanged.
TEST(DataManifest, RxRx3CoreLayoutLoads) {
  const std::string dir = test::fixture("data/rxrx3_core").string();
  Manifest m = read_manifest(dir);
  EXPECT_EQ(m.kind, "rxrx");
  ASSERT_EQ(m.samples.size(), 3u);
  EXPECT_EQ(m.channel_names, (std::vector<std::string>{"w1", "w2", "w3", "w4", "w5", "w6"}));
  EXPECT_EQ(m.samples[1].channel_paths[2], dir + "/images/compound-001/Plate19/AD20_s1_3.jp2");
  for (size_t i = 0; i < m.samples.size(); ++i) {
    const std::string well_id = m.samples[i].meta[0];
    NpyArray want = read_npy(dir + "/" + well_id + ".npy");
    Image img = load_sample(m, i);
    ASSERT_EQ(img.channels, 6) << well_id;
    ASSERT_EQ((std::vector<int64_t>{img.channels, img.height, img.width}), want.shape) << well_id;
    EXPECT_EQ(img.bits, 8);
    EXPECT_EQ(img.pixels, want.to_f32()) << well_id;
  }
  std::string idx = index_csv(m, {0, 1, 2});
  EXPECT_EQ(idx.rfind("well_id,experiment_name,plate,address,gene,treatment,SMILES,concentration,perturbation_type,cell_type\n", 0), 0u) << idx;
  EXPECT_NE(idx.find("\"CC1=[N+](CCCCCCCCCC[N+]2=C(C)C=C(N)C3=CC=CC=C23)C2=CC=CC=C2C(N)=C1 |c:1,13,21,29,31,35,t:16,19,23,27|\",0.25,COMPOUND"),
            std::string::npos) << idx;
  // The metadata file given directly picks the same layout.
  EXPECT_EQ(read_manifest(dir + "/metadata_rxrx3_core.csv").samples.size(), 3u);
}

TEST(DataManifest, GenericCsvAndFolder) {
  fs::path dir = test::scratch_dir();
  fs::create_directories(dir / "imgs" / "classA");
  Image g(1, 5, 4);
  for (int k = 0; k < 2; ++k) {
    std::fill(g.pixels.begin(), g.pixels.end(), float(k + 1));
    write_png((dir / "imgs" / "classA" / ("c0_" + std::to_string(k) + ".png")).string(), g);
    std::fill(g.pixels.begin(), g.pixels.end(), float(100 + k));
    // 8-bit like the PNGs: channels of one sample must share a sample type (BadInput.MixedDtypes).
    write_tiff((dir / "imgs" / ("c1_" + std::to_string(k) + ".tif")).string(), g, 8, true);
  }
  write_file_atomic((dir / "list.csv").string(),
                    "treatment,path_nuclei,path_actin,dose\n"
                    "ctrl,imgs/classA/c0_0.png,imgs/c1_0.tif,0\n"
                    "drug,imgs/classA/c0_1.png,imgs/c1_1.tif,1.5\n");
  Manifest m = read_manifest((dir / "list.csv").string());
  EXPECT_EQ(m.kind, "csv");
  EXPECT_EQ(m.channel_names, (std::vector<std::string>{"nuclei", "actin"}));
  EXPECT_EQ(m.meta_columns, (std::vector<std::string>{"treatment", "dose"}));
  Image img = load_sample(m, 1);
  ASSERT_EQ(img.channels, 2);
  EXPECT_EQ(img.at(0, 0, 0), 2.0f);
  EXPECT_EQ(img.at(1, 4, 3), 101.0f);
  ManifestOptions o;
  o.channels = {"path_actin"};
  EXPECT_EQ(load_sample(read_manifest((dir / "list.csv").string(), o), 0).at(0, 0, 0), 100.0f);
  Manifest f = read_manifest((dir / "imgs").string());
  EXPECT_EQ(f.kind, "folder");
  ASSERT_EQ(f.samples.size(), 4u);
  EXPECT_EQ(f.samples[0].meta, (std::vector<std::string>{"c1_0.tif", "c1_0", ""}));
  EXPECT_EQ(f.samples[2].meta[2], "classA");
}

TEST(DataManifest, HestH5RoundTripAndErrors) {
  fs::path dir = test::scratch_dir();
  HestPatches h;
  for (int k = 0; k < 3; ++k) {
    Image im(3, 6, 5);
    for (size_t i = 0; i < im.pixels.size(); ++i) im.pixels[i] = float((i * 13 + size_t(k) * 7) % 256);
    h.images.push_back(im);
    h.barcodes.push_back("AAACCTG-" + std::to_string(k));
    h.coords.push_back({100 * k, 200 * k + 1});
  }
  const std::string p = (dir / "s1.h5").string();
  write_hest_h5(p, h);
  HestPatches idx = read_hest_index(p);
  EXPECT_EQ(idx.barcodes, h.barcodes);
  EXPECT_EQ(idx.coords[2][1], 401);
  EXPECT_EQ(read_hest_patch(p, 2).pixels, h.images[2].pixels);
  // Byte-identical rewrite.
  write_hest_h5((dir / "s2.h5").string(), h);
  EXPECT_EQ(read_file_bytes(p), read_file_bytes((dir / "s2.h5").string()));
  Manifest m = read_manifest(p);
  EXPECT_EQ(m.kind, "hest");
  EXPECT_EQ(m.samples[1].meta, (std::vector<std::string>{"s1", "AAACCTG-1", "100", "201"}));
  EXPECT_NE(error_of([&] { read_hest_patch(p, 3); }).find("out of range"), std::string::npos);
  DecodeLimits small;
  small.max_samples = 50;  // a 6 x 5 x 3 patch is 90 samples
  EXPECT_NE(error_of([&] { read_hest_patch(p, 0, small); }).find("exceeds the decode limits"), std::string::npos);
  std::vector<uint8_t> bytes = read_file_bytes(p);
  write_file_atomic((dir / "cut.h5").string(), bytes.data(), bytes.size() / 3);
  std::string e = error_of([&] { read_hest_index((dir / "cut.h5").string()); });
  EXPECT_NE(e.find("cut.h5"), std::string::npos) << e;
  write_file_atomic((dir / "junk.h5").string(), "not hdf5 at all");
  EXPECT_NE(error_of([&] { read_hest_index((dir / "junk.h5").string()); }).find("junk.h5: not a readable HDF5"), std::string::npos);
}

TEST(DataPrefetch, InOrderBoundedAndPropagatesErrors) {
  std::atomic<int> running{0}, peak{0};
  Prefetcher<int> pf(50, 3, 4, [&](int64_t i) {
    int r = ++running;
    int p = peak.load();
    while (r > p && !peak.compare_exchange_weak(p, r)) {}
    std::this_thread::sleep_for(std::chrono::microseconds(200 * ((i * 7) % 5)));
    --running;
    return int(i * i);
  });
  for (int i = 0; i < 50; ++i) {
    auto v = pf.next();
    ASSERT_TRUE(v.has_value());
    EXPECT_EQ(*v, i * i);
  }
  EXPECT_FALSE(pf.next().has_value());
  EXPECT_LE(pf.max_in_flight_seen(), 4);
  EXPECT_LE(peak.load(), 3);
  Prefetcher<int> bad(5, 2, 2, [](int64_t i) -> int {
    if (i == 2) throw std::runtime_error("item 2 failed");
    return int(i);
  });
  EXPECT_EQ(*bad.next(), 0);
  EXPECT_EQ(*bad.next(), 1);
  EXPECT_THROW(bad.next(), std::runtime_error);
}

TEST(DataPipeline, PreprocessToNpyPerChannel) {
  fs::path dir = test::scratch_dir();
  CellPaintingConfig cfg;
  cfg.quick = true;
  synth_cellpainting((dir / "cp").string(), cfg);
  Manifest m = read_manifest((dir / "cp").string());
  Transform t = transform_dinov2();
  t.intensity = "percentile";
  PipelineOptions o;
  o.limit = 3;
  PreprocessSummary s = preprocess_to_npy(m, t, parse_channel_strategy("per-channel"), o, (dir / "x.npy").string());
  EXPECT_EQ(s.shape, (std::vector<int64_t>{15, 3, 224, 224}));
  NpyArray x = read_npy((dir / "x.npy").string());
  // Input 7 is sample 1's channel 2 (RNA): equal to preprocessing that channel alone.
  Image rna = load_sample(m, 1);
  std::vector<Image> ref = preprocess_image(rna, t, parse_channel_strategy("per-channel"));
  const float* got = x.as<float>() + 7 * 3 * 224 * 224;
  for (size_t i = 0; i < ref[2].pixels.size(); i += 101) EXPECT_EQ(got[i], ref[2].pixels[i]);
  std::string idx = read_file_text((dir / "x.index.csv").string());
  EXPECT_NE(idx.find(",input\n"), std::string::npos);
  EXPECT_NE(idx.find(",RNA\n"), std::string::npos);
}
