// Synthetic datasets: byte-identical for a seed whatever the thread count, and the phenotypes are really
// in the pixels (measured here with simple image statistics, not read back from the metadata).
#include <gtest/gtest.h>

#include <chrono>
#include <ctime>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <numeric>

#include "engine/fileio.h"
#include "util/sha256.h"
#include "util/csv.h"
#include "data/manifest.h"
#include "data/pipeline.h"
#include "data/prefetch.h"
#include "data/preprocess.h"
#include "data/synth.h"
#include "tests/test_util.h"

using namespace tabula;
using namespace tabula::data;
namespace fs = std::filesystem;

namespace {

std::map<std::string, std::vector<uint8_t>> all_files(const fs::path& dir) {
  std::map<std::string, std::vector<uint8_t>> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out[fs::relative(e.path(), dir).string()] = read_file_bytes(e.path().string());
  return out;
}

double pearson(const std::vector<double>& a, const std::vector<double>& b) {
  const double n = double(a.size());
  const double ma = std::accumulate(a.begin(), a.end(), 0.0) / n, mb = std::accumulate(b.begin(), b.end(), 0.0) / n;
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < a.size(); ++i) sab += (a[i] - ma) * (b[i] - mb), saa += (a[i] - ma) * (a[i] - ma), sbb += (b[i] - mb) * (b[i] - mb);
  return sab / std::sqrt(saa * sbb);
}

}  // namespace

TEST(DataSynth, RngIsOurOwnAndStable) {
  // Fixed values: a change in the generator (and so in every synthetic dataset) must be deliberate.
  Rng r(42);
  const uint64_t first = r.next();
  Rng again(42);
  EXPECT_EQ(again.next(), first);
  Rng a = Rng::stream(7, 1, 2), b = Rng::stream(7, 1, 3);
  EXPECT_NE(a.next(), b.next());
  double s = 0, ss = 0;
  Rng n(3);
  for (int i = 0; i < 20000; ++i) {
    double v = n.normal_fast();
    s += v, ss += v * v;
  }
  EXPECT_NEAR(s / 20000, 0.0, 0.03);
  EXPECT_NEAR(ss / 20000, 1.0, 0.05);
}

TEST(DataSynth, CellPaintingIsByteIdenticalForASeedAndThreadCount) {
  fs::path dir = test::scratch_dir();
  CellPaintingConfig c;
  c.quick = true;
  c.threads = 1;
  synth_cellpainting((dir / "a").string(), c);
  c.threads = 3;
  synth_cellpainting((dir / "b").string(), c);
  c.seed = 1;
  synth_cellpainting((dir / "c").string(), c);
  auto a = all_files(dir / "a"), b = all_files(dir / "b"), d = all_files(dir / "c");
  ASSERT_EQ(a.size(), 32u * 5 + 5 + 4);  // TIFFs, illum .npy, load_data/compounds/relationships/README
  EXPECT_TRUE(a == b);
  EXPECT_NE(a.at("images/Batch1/SYN-P01/r01c16f01p01-ch1sk1fk1fl1.tiff"), d.begin()->second);
  int differing = 0;
  for (const auto& [k, v] : a)
    if (d.count(k) && d.at(k) != v) ++differing;
  EXPECT_GT(differing, 0);
}

TEST(DataSynth, TissueIsByteIdenticalForASeed) {
  fs::path dir = test::scratch_dir();
  TissueConfig c;
  c.quick = true;
  c.threads = 1;
  synth_tissue((dir / "a").string(), c);
  c.threads = 2;
  synth_tissue((dir / "b").string(), c);
  auto a = all_files(dir / "a"), b = all_files(dir / "b");
  EXPECT_EQ(a.size(), 36u + 3 + 3);  // PNGs, .h5 per patient, metadata/expression/README
  EXPECT_TRUE(a == b);
}

// The phenotypes the README promises, measured after illumination correction with density-independent
// statistics (per nucleus, channel ratios), on one batch of 2 plates x 32 wells of 128 px fields.
TEST(DataSynth, CellPaintingPhenotypesAreInThePixels) {
  fs::path dir = test::scratch_dir();
  CellPaintingConfig c;
  c.batches = 1, c.plates_per_batch = 2, c.sites = 2, c.size = 128;
  synth_cellpainting(dir.string(), c);
  Manifest m = read_manifest(dir.string());
  const int moa_col = int(std::find(m.meta_columns.begin(), m.meta_columns.end(), "Metadata_moa") - m.meta_columns.begin());
  struct Stats { double nuclei = 0, area = 0, dna_per_nucleus = 0, er_dna = 0, mito_dna = 0; int n = 0; };
  std::map<std::string, Stats> by;
  for (size_t i = 0; i < m.samples.size(); ++i) {
    Image img = load_sample(m, i);
    Stats& s = by[m.samples[i].meta[size_t(moa_col)]];
    auto nuclei = detect_nuclei(img, 0, 15);
    if (nuclei.empty()) continue;
    double sum[5];
    for (int ch = 0; ch < 5; ++ch) {
      std::vector<float> v(img.plane(ch), img.plane(ch) + img.plane_size());
      const double bg = percentile_linear(v, 5);
      sum[ch] = 0;
      for (float x : v) sum[ch] += std::max(0.0, double(x) - bg);
    }
    double area = 0;
    for (auto& n : nuclei) area += n.area;
    s.nuclei += double(nuclei.size());
    s.area += area / double(nuclei.size());
    s.dna_per_nucleus += sum[0] / double(nuclei.size());
    s.er_dna += sum[1] / sum[0];
    s.mito_dna += sum[4] / sum[0];
    ++s.n;
  }
  for (auto& [k, s] : by) {
    s.nuclei /= s.n, s.area /= s.n, s.dna_per_nucleus /= s.n, s.er_dna /= s.n, s.mito_dna /= s.n;
    std::printf("  %-15s fields=%2d nuclei/field=%5.1f nuclear area=%5.1f DNA/nucleus=%8.0f ER/DNA=%.3f Mito/DNA=%.3f\n",
                k.c_str(), s.n, s.nuclei, s.area, s.dna_per_nucleus, s.er_dna, s.mito_dna);
  }
  const Stats& dmso = by.at("control");
  EXPECT_LT(by.at("cytotoxic").nuclei, 0.75 * dmso.nuclei);                 // density shortcut: fewer cells
  // ... each cell unchanged (15 %: the 5th-percentile background of a sparse field is measured differently)
  EXPECT_NEAR(by.at("cytotoxic").er_dna, dmso.er_dna, 0.15 * dmso.er_dna);
  EXPECT_GT(by.at("bright").dna_per_nucleus, 1.2 * dmso.dna_per_nucleus);   // intensity shortcut
  EXPECT_NEAR(by.at("bright").er_dna, dmso.er_dna, 0.1 * dmso.er_dna);       // ... same ratios
  EXPECT_GT(by.at("er_stress").er_dna, 1.25 * dmso.er_dna);                  // ER brighter
  EXPECT_LT(by.at("tubulin").area, 0.9 * dmso.area);                         // condensed nuclei
  EXPECT_GT(by.at("nuclear_swell").area, 1.15 * dmso.area);                  // swollen nuclei
  EXPECT_LT(by.at("mito_uncoupler").mito_dna, 0.9 * dmso.mito_dna);          // dimmer mitochondria
  EXPECT_NEAR(by.at("inactive").nuclei, dmso.nuclei, 0.2 * dmso.nuclei);     // inactive = DMSO
  EXPECT_NEAR(by.at("inactive").dna_per_nucleus, dmso.dna_per_nucleus, 0.1 * dmso.dna_per_nucleus);
  EXPECT_NEAR(by.at("inactive").er_dna, dmso.er_dna, 0.1 * dmso.er_dna);
  EXPECT_NEAR(by.at("inactive").area, dmso.area, 0.1 * dmso.area);
}

TEST(DataSynth, TissueExpressionFollowsStructure) {
  fs::path dir = test::scratch_dir();
  TissueConfig c;
  c.quick = true;
  synth_tissue(dir.string(), c);
  CsvTable meta = read_csv_table((dir / "metadata.csv").string()), expr = read_csv_table((dir / "expression.csv").string());
  ASSERT_EQ(meta.rows.size(), 36u);
  ASSERT_EQ(expr.rows.size(), 36u);
  auto col = [](const CsvTable& t, const std::string& name, bool log1p) {
    std::vector<double> v;
    for (size_t r = 0; r < t.rows.size(); ++r) v.push_back(log1p ? std::log1p(std::stod(t.at(r, name))) : std::stod(t.at(r, name)));
    return v;
  };
  const double r_tumour = pearson(col(meta, "tumour_frac", false), col(expr, "EPCAM", true));
  const double r_stroma = pearson(col(meta, "stroma_frac", false), col(expr, "COL1A1", true));
  const double r_actb = pearson(col(meta, "tumour_frac", false), col(expr, "ACTB", true));
  std::printf("  r(tumour, EPCAM)=%.2f r(stroma, COL1A1)=%.2f r(tumour, ACTB)=%.2f\n", r_tumour, r_stroma, r_actb);
  EXPECT_GT(r_tumour, 0.5);
  EXPECT_GT(r_stroma, 0.5);
  EXPECT_LT(std::fabs(r_actb), 0.5);
  // The patches are what the manifest says: the folder reader and the HEST reader give the same pixels.
  Manifest png = read_manifest(dir.string());
  Manifest h5 = read_manifest((dir / "hest").string());
  ASSERT_EQ(png.samples.size(), h5.samples.size());
  EXPECT_EQ(load_sample(png, 5).pixels, load_sample(h5, 5).pixels);
}

// Throughput of decode + preprocess on 5-channel 16-bit 1080 x 1080 fields (the size of JUMP's fields),
// 2 worker threads. Long: run with `make test-long` or --gtest_also_run_disabled_tests style filters.
TEST(LongDataThroughput, FiveChannel16BitFieldsInto224Crops) {
  fs::path dir = test::scratch_dir();
  CellPaintingConfig c;
  c.batches = 1, c.plates_per_batch = 1, c.sites = 1, c.size = 1080, c.dmso_wells = 4;
  c.quick = false;
  auto t0 = std::chrono::steady_clock::now();
  SynthSummary s = synth_cellpainting(dir.string(), c);
  const double synth_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  Manifest m = read_manifest(dir.string());
  for (const char* mode : {"resize", "tiles"}) {
    Transform t = transform_torchvision(224, 224);
    t.intensity = "percentile";
    PipelineOptions o;
    o.threads = 2;
    int64_t inputs = 0;
    auto t1 = std::chrono::steady_clock::now();
    const std::clock_t c1 = std::clock();  // process CPU time: robust to other load on a shared machine
    if (std::string(mode) == "resize") {
      for_each_preprocessed(m, t, parse_channel_strategy("per-channel"), o,
                            [&](size_t, std::vector<Image>& in) { inputs += int64_t(in.size()); });
    } else {
      // Tiling the field into 224 crops (4 x 4 per field) instead of resizing it.
      Transform per_tile = t;  // scaling is per field, before tiling; tiles are then only normalised
      per_tile.intensity = "none", per_tile.resize = 0, per_tile.crop = 0;
      Prefetcher<int64_t> pf(int64_t(m.samples.size()), 2, 8, [&](int64_t i) {
        Image f = percentile_scale(load_sample(m, size_t(i)));
        int64_t k = 0;
        for (Image& tile : tile_field(f, 224, 224))
          k += int64_t(preprocess_image(tile, per_tile, parse_channel_strategy("per-channel")).size());
        return k;
      });
      while (auto k = pf.next()) inputs += *k;
    }
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    const double cpu = double(std::clock() - c1) / CLOCKS_PER_SEC;
    std::printf("  %s: %lld fields (5 x 1080 x 1080 u16) -> %lld inputs of 3x224x224 in %.2f s wall, %.2f s CPU: "
                "%.1f fields/s, %.1f inputs/s (wall); %.1f fields per CPU-second\n",
                mode, (long long)s.images, (long long)inputs, sec, cpu, double(s.images) / sec, double(inputs) / sec,
                double(s.images) / cpu);
  }
  std::printf("  synth of those fields: %.2f s\n", synth_s);
}
