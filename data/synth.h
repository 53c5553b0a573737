// Synthetic datasets, generated deterministically from a seed and written as ordinary files (16-bit TIFF +
// a JUMP-style load_data.csv for Cell Painting; PNG + CSV + HEST-style .h5 for tissue), so every other command
// reads them exactly as it reads real data. Same seed + same binary -> byte-identical files, whatever the
// thread count (each field/patch draws from its own counter-based stream).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tabula::data {

// splitmix64-seeded xoshiro256**: our own generator, so output does not depend on the C++ library's
// distributions (which differ between libstdc++ versions).
class Rng {
 public:
  explicit Rng(uint64_t seed);
  // A stream keyed by (seed, a, b, c, d): independent fields regardless of generation order.
  static Rng stream(uint64_t seed, uint64_t a, uint64_t b = 0, uint64_t c = 0, uint64_t d = 0);
  uint64_t next();
  double uniform();                       // [0, 1), 53 bits
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  int64_t below(int64_t n);               // [0, n)
  double normal();                        // Box-Muller (libm log/cos/sin)
  double normal_fast();                   // Irwin-Hall(4), variance 1: pixel noise, no libm
  int64_t poisson(double mean);           // Knuth for mean < 30, rounded normal above

 private:
  uint64_t s_[4];
};

struct CellPaintingConfig {
  uint64_t seed = 0;
  int batches = 3, plates_per_batch = 2;
  int sites = 2;
  int size = 256;          // field side in pixels
  int dmso_wells = 8;      // negative-control wells per plate
  bool quick = false;      // 1 batch x 2 plates, 1 site, 128 px, 12 compounds: a CI-sized run
  int threads = 0;         // 0: hardware concurrency
  bool compress = true;    // deflate + predictor inside the TIFFs
};
struct TissueConfig {
  uint64_t seed = 0;
  int patients = 6;
  int patches_per_patient = 60;
  int size = 224;
  bool quick = false;      // 3 patients x 12 patches
  int threads = 0;
  bool write_h5 = true;    // HEST-style <patient>.h5 (img, barcode, coords) besides the PNGs
};

struct SynthSummary {
  std::string manifest;    // the file `tabula embed --data` takes
  int64_t images = 0, files = 0;
  double seconds = 0;
};

// Writes DIR/load_data.csv (JUMP/CellProfiler columns, paths relative to DIR), DIR/images/<batch>/<plate>/
// *.tiff (one 16-bit file per channel), DIR/illum/<batch>/Illum<Ch>.npy, DIR/compounds.csv (ground truth),
// DIR/relationships.csv (compound pairs sharing a MoA) and DIR/README.txt.
SynthSummary synth_cellpainting(const std::string& dir, const CellPaintingConfig& cfg);
// Writes DIR/metadata.csv (path + patient/coords/structure columns), DIR/expression.csv (counts per gene),
// DIR/patches/<patient>/<id>.png, DIR/hest/<patient>.h5 and DIR/README.txt.
SynthSummary synth_tissue(const std::string& dir, const TissueConfig& cfg);

// The Cell Painting channel names in JUMP order.
const std::vector<std::string>& cellpainting_channels();

}  // namespace tabula::data
