// Synthetic Cell Painting and tissue datasets. What each phenotype is and why it is there is described in
// the README text written next to the data (kept here as kCellPaintingReadme / kTissueReadme).
#include "data/synth.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "engine/fileio.h"
#include "util/npy.h"
#include "data/hest.h"
#include "data/image.h"

namespace tabula::data {

namespace fs = std::filesystem;

// ---- RNG ------------------------------------------------------------------------------------------------
static uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

Rng::Rng(uint64_t seed) {
  uint64_t x = seed;
  for (uint64_t& s : s_) s = splitmix64(x);
}
Rng Rng::stream(uint64_t seed, uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
  uint64_t x = seed;
  uint64_t h = splitmix64(x);
  for (uint64_t v : {a, b, c, d}) {
    x = h ^ (v + 0x632BE59BD9B4E019ULL);
    h = splitmix64(x);
  }
  return Rng(h);
}
uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}
double Rng::uniform() { return double(next() >> 11) * 0x1.0p-53; }
int64_t Rng::below(int64_t n) { return n <= 0 ? 0 : int64_t(uniform() * double(n)); }
double Rng::normal() {
  double u1 = uniform(), u2 = uniform();
  if (u1 < 1e-300) u1 = 1e-300;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}
double Rng::normal_fast() {
  const uint64_t r = next();
  // Four 16-bit uniforms from one draw: sum - 2 has variance 4/12; times sqrt(3) gives variance 1.
  double s = 0;
  for (int k = 0; k < 4; ++k) s += double((r >> (16 * k)) & 0xFFFF) * (1.0 / 65536.0);
  return (s - 2.0) * 1.7320508075688772;
}
int64_t Rng::poisson(double mean) {
  if (mean <= 0) return 0;
  if (mean >= 30) return std::max<int64_t>(0, int64_t(std::lround(mean + std::sqrt(mean) * normal())));
  const double l = std::exp(-mean);
  int64_t k = 0;
  double p = 1.0;
  do {
    ++k;
    p *= uniform();
  } while (p > l);
  return k - 1;
}

namespace {

// ---- small helpers --------------------------------------------------------------------------------------
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}
std::string csv_row(const std::vector<std::string>& v) {
  std::string r;
  for (size_t i = 0; i < v.size(); ++i) r += (i ? "," : "") + csv_field(v[i]);
  return r + "\n";
}
std::string fmt(double v, int digits = 6) {
  std::ostringstream s;
  s.precision(digits);
  s << v;
  return s.str();
}
std::string pad(int v, int w) {
  std::string s = std::to_string(v);
  return std::string(size_t(std::max(0, w - int(s.size()))), '0') + s;
}

// Dataset files are written with temp + rename but without fsync: thousands of small files, and a dataset
// interrupted half-way is simply generated again (same seed, same bytes).
void write_dataset_file(const fs::path& path, const std::vector<uint8_t>& bytes) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) throw std::runtime_error(path.string() + ": cannot create file");
    const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
    if (std::fclose(f) != 0 || !ok) {
      fs::remove(tmp);
      throw std::runtime_error(path.string() + ": write failed (disk full?)");
    }
  }
  fs::rename(tmp, path);
}

// Runs f(i) for i in [0, n) on `threads` workers; the first exception is rethrown.
void parallel_for(int64_t n, int threads, const std::function<void(int64_t)>& f) {
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  threads = int(std::min<int64_t>(threads, std::max<int64_t>(n, 1)));
  std::atomic<int64_t> next{0};
  std::exception_ptr err;
  std::mutex m;
  auto work = [&] {
    for (int64_t i; (i = next.fetch_add(1)) < n;) {
      try {
        f(i);
      } catch (...) {
        std::lock_guard<std::mutex> g(m);
        if (!err) err = std::current_exception();
        next = n;
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (err) std::rethrow_exception(err);
}

// Smooth value noise in [-1, 1]: a (cells+1)^2 grid of uniforms, bicubic-smoothstep interpolated.
struct ValueNoise {
  int cells;
  std::vector<float> g;
  ValueNoise(Rng& r, int cells_) : cells(cells_), g(size_t((cells_ + 1) * (cells_ + 1))) {
    for (float& v : g) v = float(r.uniform(-1, 1));
  }
  float at(double u, double v) const {  // u, v in [0, 1]
    double x = std::clamp(u, 0.0, 1.0) * cells, y = std::clamp(v, 0.0, 1.0) * cells;
    int x0 = std::min(int(x), cells - 1), y0 = std::min(int(y), cells - 1);
    double fx = x - x0, fy = y - y0;
    fx = fx * fx * (3 - 2 * fx);
    fy = fy * fy * (3 - 2 * fy);
    auto G = [&](int i, int j) { return double(g[size_t(j * (cells + 1) + i)]); };
    double a = G(x0, y0) * (1 - fx) + G(x0 + 1, y0) * fx, b = G(x0, y0 + 1) * (1 - fx) + G(x0 + 1, y0 + 1) * fx;
    return float(a * (1 - fy) + b * fy);
  }
};

inline double smoothstep_edge(double d, double width) {  // 1 inside (d < 0), 0 outside, soft over `width`
  double t = std::clamp(0.5 - d / width, 0.0, 1.0);
  return t * t * (3 - 2 * t);
}

// =========================================================================================================
// Cell Painting
// =========================================================================================================

const char* kCellPaintingReadme = R"(Synthetic Cell Painting dataset written by `tabula synth cellpainting`.

Layout: load_data.csv (JUMP / CellProfiler columns: FileName_Orig<Ch>, PathName_Orig<Ch>, FileName_Illum<Ch>,
PathName_Illum<Ch>, Metadata_Source/Batch/Plate/Well/Site, plus ground-truth Metadata_ columns), one 16-bit TIFF
per channel (DNA, ER, RNA, AGP, Mito) under images/<batch>/<plate>/, the true illumination function of each
batch and channel under illum/<batch>/Illum<Ch>.npy (float32, mean 1), compounds.csv (one row per compound),
relationships.csv (compound pairs sharing a MoA, for relationship recall). Paths are relative to this folder.

Plates: every plate holds DMSO negative controls (Metadata_pert_type = negcon) and every compound once, at
positions shuffled per plate; compounds are therefore in replicate across plates and batches.
Nuisance (what normalisation must remove): per batch an illumination field (vignetting + a linear gradient in
a random direction) and per-channel intensity scales; per plate smaller intensity jitter and background
offset; an edge-well intensity effect; camera noise (Gaussian read noise + shot noise), 16-bit quantisation.
Phenotypes (Metadata_phenotype, strength varying per compound within a MoA):
  morphology  tubulin        mitotic-arrest-like: rounder, smaller cells, condensed bright nuclei, AGP up
              er_stress      ER brighter with coarse granular texture
              mito_uncoupler mitochondria fragmented: more, smaller, dimmer puncta
              nuclear_swell  larger, dimmer nuclei with bigger nucleoli (RNA)
  density     cytotoxic      fewer cells, each cell unchanged: a representation that reads cell count
                             "detects" these (the shortcut the paper warns about)
  intensity   bright         every channel brighter by the same factor, morphology unchanged: the other
                             shortcut (global intensity), which per-image scaling removes
  none        inactive       identical to DMSO in distribution: must not be retrieved
Metadata_expected_active is 1 for morphology, density and intensity compounds and 0 for inactive ones and DMSO.
)";

struct Compound {
  std::string id, moa, phenotype;
  double strength = 0;
  bool expected_active = false;
};

struct Phenotype {  // multiplicative changes relative to DMSO, at strength s
  double nuc_scale = 1, cell_scale = 1, roundness = 0, density = 1, dna = 1, er = 1, er_grain = 0, rna_nucleoli = 1,
         agp = 1, mito_count = 1, mito_sigma = 1, mito = 1, all = 1;
};

Phenotype phenotype_of(const Compound& c) {
  Phenotype p;
  const double s = c.strength;
  if (c.moa == "tubulin") {
    p.cell_scale = 1 - 0.30 * s, p.roundness = 0.8 * s, p.nuc_scale = 1 - 0.18 * s, p.dna = 1 + 0.7 * s, p.agp = 1 + 0.5 * s;
  } else if (c.moa == "er_stress") {
    p.er = 1 + 0.6 * s, p.er_grain = 1.0 * s;
  } else if (c.moa == "mito_uncoupler") {
    p.mito_count = 1 + 1.2 * s, p.mito_sigma = 1 - 0.35 * s, p.mito = 1 - 0.35 * s;
  } else if (c.moa == "nuclear_swell") {
    p.nuc_scale = 1 + 0.35 * s, p.dna = 1 - 0.3 * s, p.rna_nucleoli = 1 + 0.8 * s;
  } else if (c.moa == "cytotoxic") {
    p.density = 1 - 0.55 * s;
  } else if (c.moa == "bright") {
    p.all = 1 + 0.4 * s;
  }
  return p;
}

std::vector<Compound> make_compounds(uint64_t seed, bool quick) {
  struct Group { const char* moa; const char* phenotype; int n; };
  std::vector<Group> groups = quick ? std::vector<Group>{{"tubulin", "morphology", 2}, {"er_stress", "morphology", 2},
                                                         {"mito_uncoupler", "morphology", 2}, {"cytotoxic", "density", 2},
                                                         {"bright", "intensity", 2}, {"inactive", "none", 2}}
                                    : std::vector<Group>{{"tubulin", "morphology", 3}, {"er_stress", "morphology", 3},
                                                         {"mito_uncoupler", "morphology", 3}, {"nuclear_swell", "morphology", 3},
                                                         {"cytotoxic", "density", 3}, {"bright", "intensity", 3},
                                                         {"inactive", "none", 6}};
  Rng r = Rng::stream(seed, 0xC0);
  std::vector<Compound> out;
  int k = 0;
  for (const Group& g : groups)
    for (int i = 0; i < g.n; ++i) {
      Compound c;
      c.id = "JCP2022_SYN" + pad(++k, 3);
      c.moa = g.moa;
      c.phenotype = g.phenotype;
      c.strength = std::string(g.moa) == "inactive" ? 0.0 : r.uniform(0.6, 1.0);
      c.expected_active = std::string(g.moa) != "inactive";
      out.push_back(c);
    }
  return out;
}

constexpr int kChannels = 5;
// Per-channel camera model (ADU): background, read-noise sigma, and the signal level of a typical cell.
constexpr double kBackground[kChannels] = {320, 280, 300, 260, 290};
constexpr double kReadNoise = 12.0;
constexpr double kLevel[kChannels] = {14000, 5200, 4200, 6000, 7000};

struct BatchEffects {
  double scale[kChannels];
  std::vector<std::vector<float>> illum;  // per channel, size*size, mean 1
};

BatchEffects make_batch(uint64_t seed, int batch, int size) {
  Rng r = Rng::stream(seed, 0xBA, uint64_t(batch));
  BatchEffects b;
  const double vignette = r.uniform(0.15, 0.35), grad = r.uniform(0.05, 0.2), theta = r.uniform(0, 6.283185307179586);
  for (int c = 0; c < kChannels; ++c) {
    b.scale[c] = std::exp(0.18 * r.normal());
    const double chan_tilt = 1 + 0.2 * r.normal();
    std::vector<float> f(size_t(size) * size);
    double sum = 0;
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x) {
        const double u = (x + 0.5) / size - 0.5, v = (y + 0.5) / size - 0.5;
        const double val = (1 - vignette * (u * u + v * v) * 2) * (1 + grad * chan_tilt * (u * std::cos(theta) + v * std::sin(theta)));
        f[size_t(y) * size + x] = float(val);
        sum += val;
      }
    const double mean = sum / double(f.size());
    for (float& v : f) v = float(v / mean);
    b.illum.push_back(std::move(f));
  }
  return b;
}

struct Field {
  int batch, plate, row, col, site;  // row/col 0-based in a 16 x 24 (384-well) plate
  int compound;                      // index into compounds, -1 = DMSO
};

std::string well_name(int row, int col) { return std::string(1, char('A' + row)) + pad(col + 1, 2); }

// Renders one field: 5 planes of size x size in ADU (before quantisation).
Image render_field(uint64_t seed, const Field& f, const Phenotype& ph, const BatchEffects& be, double plate_scale[kChannels],
                   double plate_offset, int size) {
  Rng r = Rng::stream(seed, 0xF1, uint64_t(f.plate), uint64_t(f.row * 24 + f.col), uint64_t(f.site));
  const double area_scale = double(size) * size / (256.0 * 256.0);
  std::vector<std::vector<double>> sig(kChannels, std::vector<double>(size_t(size) * size, 0.0));
  auto add = [&](int c, int x, int y, double v) {
    if (x >= 0 && y >= 0 && x < size && y < size) sig[size_t(c)][size_t(y) * size + x] += v;
  };
  const int n_cells = int(r.poisson(30.0 * area_scale * ph.density));
  struct Cell { double x, y, rc; };
  std::vector<Cell> cells;
  for (int i = 0; i < n_cells; ++i) {
    double rc = std::max(8.0, (15.5 + 1.8 * r.normal()) * ph.cell_scale);
    // Rejection keeps cells from piling up (a confluent monolayer, not a heap); bounded attempts.
    double x = 0, y = 0;
    bool placed = false;
    for (int t = 0; t < 30 && !placed; ++t) {
      x = r.uniform(0, size), y = r.uniform(0, size);
      placed = true;
      for (const Cell& o : cells)
        if (std::hypot(o.x - x, o.y - y) < 0.9 * (o.rc + rc)) { placed = false; break; }
    }
    if (!placed) continue;
    cells.push_back({x, y, rc});
    const double rn = std::max(3.5, (6.8 + 0.7 * r.normal()) * ph.nuc_scale);
    const double ecc = std::min(1.0, r.uniform(0.72, 1.0) + ph.roundness * 0.3);
    const double ang = r.uniform(0, 3.141592653589793);
    const double ca = std::cos(ang), sa = std::sin(ang);
    const double ph1 = r.uniform(0, 6.28), ph2 = r.uniform(0, 6.28);
    const double wobble = 0.16 * (1 - ph.roundness);
    const double dna = kLevel[0] * ph.dna * std::exp(0.12 * r.normal());
    const double er = kLevel[1] * ph.er * std::exp(0.15 * r.normal());
    const double rna = kLevel[2] * std::exp(0.15 * r.normal());
    const double agp = kLevel[3] * ph.agp * std::exp(0.15 * r.normal());
    const double fibre = r.uniform(0, 3.141592653589793);
    Rng tex = Rng::stream(seed, 0x7E, r.next());
    ValueNoise er_noise(tex, 6), dna_noise(tex, 4);
    const int R = int(std::ceil(rc * 1.35)) + 2;
    for (int dy = -R; dy <= R; ++dy)
      for (int dx = -R; dx <= R; ++dx) {
        const int px = int(x) + dx, py = int(y) + dy;
        if (px < 0 || py < 0 || px >= size || py >= size) continue;
        const double ux = px + 0.5 - x, uy = py + 0.5 - y;
        const double dist = std::hypot(ux, uy), phi = std::atan2(uy, ux);
        const double rad = rc * (1 + wobble * std::sin(3 * phi + ph1) + 0.6 * wobble * std::sin(5 * phi + ph2));
        const double cell = smoothstep_edge(dist - rad, 2.0);
        if (cell <= 0) continue;
        // Nucleus: an ellipse with axes rn and rn * ecc.
        const double ex = (ux * ca + uy * sa) / rn, ey = (-ux * sa + uy * ca) / (rn * ecc);
        const double dn = (std::sqrt(ex * ex + ey * ey) - 1) * rn;
        const double nuc = smoothstep_edge(dn, 1.6);
        const double u = (dx + R) / (2.0 * R), v = (dy + R) / (2.0 * R);
        const double cyto = cell * (1 - nuc);
        add(0, px, py, nuc * dna * (1 + 0.22 * dna_noise.at(u, v)));
        const double perinuclear = std::exp(-std::max(0.0, dist - rn) / (0.55 * rc));
        const double grain = 1 + (0.25 + 0.9 * ph.er_grain) * er_noise.at(u, v) * (1 + ph.er_grain * std::sin(2.1 * dx) * std::sin(2.3 * dy));
        add(1, px, py, cyto * er * perinuclear * std::max(0.0, grain));
        add(2, px, py, rna * (0.35 * cyto * perinuclear + 0.25 * nuc));
        const double membrane = std::exp(-std::pow((dist - rad) / 1.6, 2));
        const double fibres = 0.5 + 0.5 * std::cos(0.9 * (ux * std::cos(fibre) + uy * std::sin(fibre)));
        add(3, px, py, agp * (0.8 * membrane * cell + 0.25 * cell * fibres));
      }
    // Nucleoli (RNA) as 2-3 Gaussian spots inside the nucleus.
    const int nn = 2 + int(r.below(2));
    for (int k = 0; k < nn; ++k) {
      const double a = r.uniform(0, 6.28), d = r.uniform(0, 0.5) * rn;
      const double cx = x + d * std::cos(a), cy = y + d * std::sin(a), sg = 1.2 * ph.rna_nucleoli;
      const double amp = rna * 1.6;
      const int w = int(std::ceil(3 * sg));
      for (int dy = -w; dy <= w; ++dy)
        for (int dx = -w; dx <= w; ++dx) {
          const int px = int(cx) + dx, py = int(cy) + dy;
          const double ddx = px + 0.5 - cx, ddy = py + 0.5 - cy;
          add(2, px, py, amp * std::exp(-(ddx * ddx + ddy * ddy) / (2 * sg * sg)));
        }
    }
    // Mitochondria as puncta in the cytoplasm, denser near the nucleus.
    const int nm = int(r.poisson(26 * ph.mito_count));
    const double ms = 1.3 * ph.mito_sigma, mamp = kLevel[4] * ph.mito * std::exp(0.15 * r.normal());
    for (int k = 0; k < nm; ++k) {
      const double a = r.uniform(0, 6.28), d = rn + std::fabs(r.normal()) * 0.45 * (rc - rn);
      if (d > rc) continue;
      const double cx = x + d * std::cos(a), cy = y + d * std::sin(a);
      const int w = int(std::ceil(3 * ms));
      for (int dy = -w; dy <= w; ++dy)
        for (int dx = -w; dx <= w; ++dx) {
          const int px = int(cx) + dx, py = int(cy) + dy;
          const double ddx = px + 0.5 - cx, ddy = py + 0.5 - cy;
          add(4, px, py, mamp * std::exp(-(ddx * ddx + ddy * ddy) / (2 * ms * ms)));
        }
    }
  }
  // Edge wells (outer ring of the plate) run slightly brighter: evaporation.
  const bool edge = f.row == 0 || f.row == 15 || f.col == 0 || f.col == 23;
  Image img(kChannels, size, size);
  img.max_value = 65535;
  img.bits = 16;
  for (int c = 0; c < kChannels; ++c) {
    const double gain = be.scale[c] * plate_scale[c] * ph.all * (edge ? 1.08 : 1.0);
    const float* illum = be.illum[size_t(c)].data();
    const std::vector<double>& s = sig[size_t(c)];
    float* out = img.plane(c);
    for (size_t i = 0; i < s.size(); ++i) {
      const double mean = (s[i] * gain + kBackground[c] * 0.35) * illum[i] + kBackground[c] * 0.65 + plate_offset;
      const double noisy = mean + std::sqrt(kReadNoise * kReadNoise + 0.6 * mean) * r.normal_fast();
      out[i] = float(std::clamp(std::nearbyint(noisy), 0.0, 65535.0));
    }
  }
  return img;
}

}  // namespace

const std::vector<std::string>& cellpainting_channels() {
  static const std::vector<std::string> ch = {"DNA", "ER", "RNA", "AGP", "Mito"};
  return ch;
}

SynthSummary synth_cellpainting(const std::string& dir, const CellPaintingConfig& cfg_in) {
  const auto t0 = std::chrono::steady_clock::now();
  CellPaintingConfig cfg = cfg_in;
  if (cfg.quick) cfg.batches = 1, cfg.plates_per_batch = 2, cfg.sites = 1, cfg.size = 128, cfg.dmso_wells = 4;
  if (cfg.batches < 1 || cfg.plates_per_batch < 1 || cfg.sites < 1 || cfg.size < 32 || cfg.size > 4096 || cfg.dmso_wells < 1)
    throw std::invalid_argument("synth cellpainting: batches, plates, sites, DMSO wells must be >= 1 and size in [32, 4096]");
  const std::vector<Compound> compounds = make_compounds(cfg.seed, cfg.quick);
  const int wells_per_plate = int(compounds.size()) + cfg.dmso_wells;
  if (wells_per_plate > 384) throw std::invalid_argument("synth cellpainting: more than 384 wells per plate");
  fs::create_directories(dir);

  // Plate maps: compounds + DMSO shuffled over the wells of a 384-well plate (Fisher-Yates, own RNG).
  std::vector<Field> fields;
  const int n_plates = cfg.batches * cfg.plates_per_batch;
  for (int p = 0; p < n_plates; ++p) {
    Rng r = Rng::stream(cfg.seed, 0x9A, uint64_t(p));
    std::vector<int> slots(384);
    for (int i = 0; i < 384; ++i) slots[size_t(i)] = i;
    for (int i = 383; i > 0; --i) std::swap(slots[size_t(i)], slots[size_t(r.below(i + 1))]);
    std::vector<std::pair<int, int>> placed;  // (slot, compound)
    for (int w = 0; w < wells_per_plate; ++w) placed.push_back({slots[size_t(w)], w < int(compounds.size()) ? w : -1});
    std::sort(placed.begin(), placed.end());
    for (auto [slot, comp] : placed)
      for (int s = 0; s < cfg.sites; ++s) fields.push_back({p / cfg.plates_per_batch, p, slot / 24, slot % 24, s, comp});
  }
  auto batch_name = [](int b) { return "Batch" + std::to_string(b + 1); };
  auto plate_name = [](int p) { return "SYN-P" + pad(p + 1, 2); };

  std::vector<BatchEffects> batches;
  for (int b = 0; b < cfg.batches; ++b) {
    batches.push_back(make_batch(cfg.seed, b, cfg.size));
    fs::create_directories(fs::path(dir) / "illum" / batch_name(b));
    for (int c = 0; c < kChannels; ++c)
      write_npy((fs::path(dir) / "illum" / batch_name(b) / ("Illum" + cellpainting_channels()[size_t(c)] + ".npy")).string(),
                {cfg.size, cfg.size}, batches.back().illum[size_t(c)].data());
  }
  std::vector<std::array<double, kChannels + 1>> plate_fx(static_cast<size_t>(n_plates));
  for (int p = 0; p < n_plates; ++p) {
    Rng r = Rng::stream(cfg.seed, 0x9B, uint64_t(p));
    for (int c = 0; c < kChannels; ++c) plate_fx[size_t(p)][size_t(c)] = std::exp(0.06 * r.normal());
    plate_fx[size_t(p)][kChannels] = 25 * r.normal();
    fs::create_directories(fs::path(dir) / "images" / batch_name(p / cfg.plates_per_batch) / plate_name(p));
  }
  auto file_name = [](const Field& f, int c) {
    // Phenix/Opera naming, as JUMP's images are: r<row>c<col>f<field>p01-ch<channel>sk1fk1fl1.tiff
    return "r" + pad(f.row + 1, 2) + "c" + pad(f.col + 1, 2) + "f" + pad(f.site + 1, 2) + "p01-ch" + std::to_string(c + 1) +
           "sk1fk1fl1.tiff";
  };
  auto rel_dir = [&](const Field& f) {
    return "images/" + batch_name(f.batch) + "/" + plate_name(f.plate);
  };

  parallel_for(int64_t(fields.size()), cfg.threads, [&](int64_t i) {
    const Field& f = fields[size_t(i)];
    const Phenotype ph = f.compound >= 0 ? phenotype_of(compounds[size_t(f.compound)]) : Phenotype{};
    double ps[kChannels];
    for (int c = 0; c < kChannels; ++c) ps[c] = plate_fx[size_t(f.plate)][size_t(c)];
    Image img = render_field(cfg.seed, f, ph, batches[size_t(f.batch)], ps, plate_fx[size_t(f.plate)][kChannels], cfg.size);
    for (int c = 0; c < kChannels; ++c) {
      Image one(1, cfg.size, cfg.size);
      std::copy(img.plane(c), img.plane(c) + img.plane_size(), one.pixels.begin());
      const fs::path p = fs::path(dir) / rel_dir(f) / file_name(f, c);
      write_dataset_file(p, encode_tiff(one, 16, cfg.compress, p.string()));
    }
  });

  // load_data.csv with JUMP's column names.
  std::string csv;
  std::vector<std::string> header;
  for (const auto& ch : cellpainting_channels()) header.push_back("FileName_Orig" + ch), header.push_back("PathName_Orig" + ch);
  for (const auto& ch : cellpainting_channels()) header.push_back("FileName_Illum" + ch), header.push_back("PathName_Illum" + ch);
  for (const char* m : {"Metadata_Source", "Metadata_Batch", "Metadata_Plate", "Metadata_Well", "Metadata_Site",
                        "Metadata_JCP2022", "Metadata_pert_type", "Metadata_moa", "Metadata_phenotype",
                        "Metadata_expected_active"})
    header.push_back(m);
  csv += csv_row(header);
  for (const Field& f : fields) {
    std::vector<std::string> row;
    for (int c = 0; c < kChannels; ++c) row.push_back(file_name(f, c)), row.push_back(rel_dir(f));
    for (const auto& ch : cellpainting_channels()) row.push_back("Illum" + ch + ".npy"), row.push_back("illum/" + batch_name(f.batch));
    const Compound* cp = f.compound >= 0 ? &compounds[size_t(f.compound)] : nullptr;
    row.push_back("synthetic");
    row.push_back(batch_name(f.batch));
    row.push_back(plate_name(f.plate));
    row.push_back(well_name(f.row, f.col));
    row.push_back(std::to_string(f.site + 1));
    row.push_back(cp ? cp->id : "JCP2022_033924");  // DMSO's JUMP identifier
    row.push_back(cp ? "trt" : "negcon");
    row.push_back(cp ? cp->moa : "control");
    row.push_back(cp ? cp->phenotype : "control");
    row.push_back(cp && cp->expected_active ? "1" : "0");
    csv += csv_row(row);
  }
  write_file_atomic((fs::path(dir) / "load_data.csv").string(), csv);

  std::string comp = csv_row({"Metadata_JCP2022", "Metadata_moa", "Metadata_phenotype", "strength", "Metadata_expected_active"});
  for (const Compound& c : compounds)
    comp += csv_row({c.id, c.moa, c.phenotype, fmt(c.strength, 4), c.expected_active ? "1" : "0"});
  write_file_atomic((fs::path(dir) / "compounds.csv").string(), comp);
  std::string rel = csv_row({"compound_a", "compound_b", "moa"});
  for (size_t a = 0; a < compounds.size(); ++a)
    for (size_t b = a + 1; b < compounds.size(); ++b)
      if (compounds[a].moa == compounds[b].moa && compounds[a].moa != "inactive")
        rel += csv_row({compounds[a].id, compounds[b].id, compounds[a].moa});
  write_file_atomic((fs::path(dir) / "relationships.csv").string(), rel);
  std::ostringstream readme;
  readme << kCellPaintingReadme << "\nGenerated with seed " << cfg.seed << ": " << cfg.batches << " batch(es) x "
         << cfg.plates_per_batch << " plate(s), " << wells_per_plate << " wells per plate (" << cfg.dmso_wells
         << " DMSO), " << cfg.sites << " site(s), " << cfg.size << "x" << cfg.size << " px.\n";
  write_file_atomic((fs::path(dir) / "README.txt").string(), readme.str());

  SynthSummary s;
  s.manifest = (fs::path(dir) / "load_data.csv").string();
  s.images = int64_t(fields.size());
  s.files = int64_t(fields.size()) * kChannels + cfg.batches * kChannels + 4;
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

// =========================================================================================================
// Tissue
// =========================================================================================================
namespace {

const char* kTissueReadme = R"(Synthetic H&E-like tissue dataset written by `tabula synth tissue`.

Layout: metadata.csv (path, patch_id, patient, x, y and the structure that generated each patch), expression.csv
(patch_id + one column of counts per gene), patches/<patient>/<patch_id>.png (224 x 224 RGB) and, HEST-style,
hest/<patient>.h5 (datasets img N x 224 x 224 x 3 uint8, barcode N x 1 strings, coords N x 2 int64).
Images: colour from Beer-Lambert stain mixing (Ruifrok & Johnston's haematoxylin and eosin vectors), per-patient
stain strength/hue variation (the batch effect of histology). Tissue classes mix within a patch, following a
smooth class map over each patient's slide: tumour (dense, large, pleomorphic nuclei with nucleoli), stroma
(sparse, elongated nuclei aligned with eosin-rich fibres), lymphocyte aggregates (very dense, small, round, dark
nuclei), and a little background (white space).
Expression: log(1 + mean count) of each gene is a linear function of the patch's measured structure (nuclear
density, mean nuclear area, elongation, tumour / stroma / lymphocyte fractions) plus a per-patient offset and
noise; counts are Poisson. Gene programmes: proliferation/tumour (MKI67, TOP2A, EPCAM, KRT8, KRT18, MYC),
immune (PTPRC, CD3E, CD8A, MS4A1, CXCL13), stroma (COL1A1, COL3A1, DCN, LUM, ACTA2), and controls with no
structural signal (ACTB, GAPDH, and two noise genes NOISE1, NOISE2): a regression that "predicts" those is
fitting patient offsets or noise. Patients are the unit to split folds by.
)";

const char* kGenes[] = {"MKI67", "TOP2A", "EPCAM", "KRT8", "KRT18", "MYC", "PTPRC", "CD3E", "CD8A", "MS4A1",
                        "CXCL13", "COL1A1", "COL3A1", "DCN", "LUM", "ACTA2", "ACTB", "GAPDH", "NOISE1", "NOISE2"};
// Loadings on the standardised structure features
// (density, nuclear_area, elongation, tumour_frac, stroma_frac, lymph_frac).
const double kLoad[20][6] = {
    {0.5, 0.3, 0, 0.9, 0, 0},   {0.4, 0.4, 0, 0.8, 0, 0},  {0, 0, 0, 1.1, -0.2, 0},  {0, 0, 0, 1.0, 0, 0},
    {0, 0.2, 0, 0.9, 0, 0},     {0, 0.8, 0, 0.4, 0, 0},    {0.3, -0.2, 0, 0, 0, 1.1}, {0.2, -0.3, 0, 0, 0, 1.0},
    {0, -0.3, 0, 0, 0, 0.9},    {0.3, 0, 0, 0, 0, 0.8},    {0.5, 0, 0, 0, 0, 0.6},   {-0.3, 0, 0.6, 0, 1.0, 0},
    {-0.3, 0, 0.5, 0, 0.9, 0},  {0, 0, 0.4, 0, 0.9, 0},    {0, 0, 0.3, 0, 0.8, 0},   {0, 0, 0.7, 0, 0.6, 0},
    {0, 0, 0, 0, 0, 0},         {0, 0, 0, 0, 0, 0},        {0, 0, 0, 0, 0, 0},       {0, 0, 0, 0, 0, 0}};
const double kBase[20] = {1.5, 1.2, 2.5, 2.8, 2.7, 1.8, 1.6, 1.2, 0.9, 0.8, 0.6, 2.6, 2.4, 2.2, 2.0, 1.9, 4.0, 3.8, 1.5, 1.5};

struct PatchTruth {
  double density = 0, nuclear_area = 0, elongation = 0, frac[3] = {0, 0, 0};  // tumour, stroma, lymph
};

// Renders one patch; returns the measured structure.
PatchTruth render_patch(uint64_t seed, int patient, int gx, int gy, int size, const double stain[4], Image& img) {
  Rng r = Rng::stream(seed, 0x71, uint64_t(patient), uint64_t(gx), uint64_t(gy));
  // Class map: slide-level fields (a patient's slide) make neighbouring patches similar.
  Rng slide = Rng::stream(seed, 0x72, uint64_t(patient));
  ValueNoise slide_t(slide, 4), slide_s(slide, 4), slide_l(slide, 5);
  ValueNoise local_t(r, 5), local_s(r, 5), local_l(r, 6), fibre_noise(r, 8), tex(r, 14);
  const int grid = 10;  // patches per slide side
  const double theta = r.uniform(0, 3.141592653589793);
  std::vector<uint8_t> cls(size_t(size) * size);
  int count[4] = {0, 0, 0, 0};
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      const double su = (gx + (x + 0.5) / size) / grid, sv = (gy + (y + 0.5) / size) / grid;
      const double u = (x + 0.5) / size, v = (y + 0.5) / size;
      const double t = 1.3 * slide_t.at(su, sv) + 0.8 * local_t.at(u, v) + 0.1;
      const double s = 1.3 * slide_s.at(su, sv) + 0.8 * local_s.at(u, v);
      const double l = 1.5 * slide_l.at(su, sv) + 0.9 * local_l.at(u, v) - 0.3;
      uint8_t k = t >= s && t >= l ? 0 : s >= l ? 1 : 2;
      if (std::max({t, s, l}) < -0.75) k = 3;  // background / lumen
      cls[size_t(y) * size + x] = k;
      ++count[k];
    }
  // Stain concentration maps.
  std::vector<double> H(size_t(size) * size, 0.0), E(size_t(size) * size, 0.0);
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      const size_t i = size_t(y) * size + x;
      const double u = (x + 0.5) / size, v = (y + 0.5) / size;
      const double along = (x * std::cos(theta) + y * std::sin(theta));
      const double fib = 0.5 + 0.5 * std::sin(0.55 * along + 3.0 * fibre_noise.at(u, v));
      switch (cls[i]) {
        case 0: E[i] = 0.35 + 0.08 * tex.at(u, v), H[i] = 0.10; break;               // tumour cytoplasm
        case 1: E[i] = 0.45 + 0.35 * fib * fib, H[i] = 0.03; break;                  // collagen fibres
        case 2: E[i] = 0.18, H[i] = 0.08; break;                                     // lymphoid stroma
        default: E[i] = 0.04 + 0.02 * tex.at(u, v), H[i] = 0.01; break;              // white space
      }
    }
  // Nuclei by dart throwing with class-dependent spacing and shape.
  struct Nucleus { double x, y, a, b; };
  std::vector<Nucleus> nuclei;
  const int attempts = int(size * size / 6);
  double area_sum = 0, elong_sum = 0;
  for (int k = 0; k < attempts; ++k) {
    const double x = r.uniform(0, size), y = r.uniform(0, size);
    const uint8_t c = cls[size_t(int(y)) * size + int(x)];
    if (c == 3) continue;
    double a, b, spacing, ang;
    if (c == 0) { a = r.uniform(4.5, 8.0); b = a * r.uniform(0.65, 1.0); spacing = 1.15; ang = r.uniform(0, 3.14159); }
    else if (c == 1) { a = r.uniform(5.0, 8.0); b = r.uniform(1.5, 2.6); spacing = 4.0; ang = theta + 0.15 * r.normal(); }
    else { a = r.uniform(2.6, 3.5); b = a * r.uniform(0.85, 1.0); spacing = 1.25; ang = r.uniform(0, 3.14159); }
    bool ok = true;
    for (const Nucleus& n : nuclei)
      if (std::hypot(n.x - x, n.y - y) < spacing * (std::max(n.a, n.b) + a) * 0.8) { ok = false; break; }
    if (!ok) continue;
    nuclei.push_back({x, y, a, b});
    area_sum += 3.141592653589793 * a * b;
    elong_sum += 1 - b / a;
    const double darkness = c == 2 ? 1.25 : c == 0 ? 0.75 : 0.95;
    const double ca = std::cos(ang), sa = std::sin(ang);
    const int R = int(std::ceil(a)) + 2;
    for (int dy = -R; dy <= R; ++dy)
      for (int dx = -R; dx <= R; ++dx) {
        const int px = int(x) + dx, py = int(y) + dy;
        if (px < 0 || py < 0 || px >= size || py >= size) continue;
        const double ux = px + 0.5 - x, uy = py + 0.5 - y;
        const double ex = (ux * ca + uy * sa) / a, ey = (-ux * sa + uy * ca) / b;
        const double d = std::sqrt(ex * ex + ey * ey);
        const double m = smoothstep_edge((d - 1) * b, 1.2);
        if (m <= 0) continue;
        // Tumour nuclei are vesicular (paler centre, dark rim) with a nucleolus.
        double h = darkness * (c == 0 ? 0.55 + 0.45 * d * d : 1.0);
        if (c == 0 && std::hypot(ux - 0.25 * a, uy) < 1.3) h += 0.4;
        const size_t i = size_t(py) * size + px;
        H[i] = H[i] * (1 - m) + m * h * 1.0;
        E[i] *= 1 - 0.6 * m;
      }
  }
  // Beer-Lambert: OD = H * h_vec + E * e_vec, RGB = 255 * exp(-OD), per-patient stain strengths.
  const double hv[3] = {0.650, 0.704, 0.286}, ev[3] = {0.072, 0.990, 0.105};
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      const size_t i = size_t(y) * size + x;
      for (int c = 0; c < 3; ++c) {
        const double od = stain[0] * H[i] * (hv[c] + stain[2] * (c == 0 ? 1 : -0.5)) * 1.6 +
                          stain[1] * E[i] * (ev[c] + stain[3] * (c == 2 ? 1 : -0.3)) * 1.2;
        const double val = 255.0 * std::exp(-std::max(0.0, od)) + 2.0 * r.normal_fast();
        img.at(c, y, x) = float(std::clamp(std::nearbyint(val), 0.0, 255.0));
      }
    }
  PatchTruth t;
  const double px_area = double(size) * size;
  t.density = double(nuclei.size()) / px_area * 1000.0;
  t.nuclear_area = nuclei.empty() ? 0 : area_sum / double(nuclei.size());
  t.elongation = nuclei.empty() ? 0 : elong_sum / double(nuclei.size());
  for (int k = 0; k < 3; ++k) t.frac[k] = count[k] / px_area;
  return t;
}

}  // namespace

SynthSummary synth_tissue(const std::string& dir, const TissueConfig& cfg_in) {
  const auto t0 = std::chrono::steady_clock::now();
  TissueConfig cfg = cfg_in;
  if (cfg.quick) cfg.patients = 3, cfg.patches_per_patient = 12;
  if (cfg.patients < 1 || cfg.patches_per_patient < 1 || cfg.patches_per_patient > 100 || cfg.size < 32 || cfg.size > 1024)
    throw std::invalid_argument("synth tissue: patients >= 1, 1..100 patches per patient, size in [32, 1024]");
  const int n_genes = 20;
  fs::create_directories(dir);
  struct Item { int patient, gx, gy; };
  std::vector<Item> items;
  for (int p = 0; p < cfg.patients; ++p) {
    // Patches at distinct positions of the patient's 10 x 10 slide grid.
    Rng r = Rng::stream(cfg.seed, 0x70, uint64_t(p));
    std::vector<int> cellsv(100);
    for (int i = 0; i < 100; ++i) cellsv[size_t(i)] = i;
    for (int i = 99; i > 0; --i) std::swap(cellsv[size_t(i)], cellsv[size_t(r.below(i + 1))]);
    std::vector<int> pick(cellsv.begin(), cellsv.begin() + cfg.patches_per_patient);
    std::sort(pick.begin(), pick.end());
    for (int g : pick) items.push_back({p, g % 10, g / 10});
    fs::create_directories(fs::path(dir) / "patches" / ("P" + pad(p + 1, 2)));
  }
  std::vector<std::array<double, 4>> stain(static_cast<size_t>(cfg.patients));
  for (int p = 0; p < cfg.patients; ++p) {
    Rng r = Rng::stream(cfg.seed, 0x73, uint64_t(p));
    stain[size_t(p)] = {std::exp(0.15 * r.normal()), std::exp(0.15 * r.normal()), 0.04 * r.normal(), 0.04 * r.normal()};
  }
  std::vector<PatchTruth> truth(items.size());
  std::vector<Image> images(items.size());
  auto patch_id = [&](const Item& it) {
    return "P" + pad(it.patient + 1, 2) + "_x" + pad(it.gx, 2) + "_y" + pad(it.gy, 2);
  };
  auto rel_path = [&](const Item& it) { return "patches/P" + pad(it.patient + 1, 2) + "/" + patch_id(it) + ".png"; };
  parallel_for(int64_t(items.size()), cfg.threads, [&](int64_t i) {
    const Item& it = items[size_t(i)];
    Image img(3, cfg.size, cfg.size);
    img.max_value = 255;
    img.bits = 8;
    truth[size_t(i)] = render_patch(cfg.seed, it.patient, it.gx, it.gy, cfg.size, stain[size_t(it.patient)].data(), img);
    const fs::path p = fs::path(dir) / rel_path(it);
    write_dataset_file(p, encode_png(img, p.string()));
    if (cfg.write_h5) images[size_t(i)] = std::move(img);
  });
  // Standardise the structure features over the dataset, then expression.
  const int F = 6;
  std::vector<std::array<double, 6>> z(items.size());
  for (size_t i = 0; i < items.size(); ++i)
    z[i] = {truth[i].density, truth[i].nuclear_area, truth[i].elongation, truth[i].frac[0], truth[i].frac[1], truth[i].frac[2]};
  for (int k = 0; k < F; ++k) {
    double m = 0, s = 0;
    for (auto& v : z) m += v[size_t(k)];
    m /= double(z.size());
    for (auto& v : z) s += (v[size_t(k)] - m) * (v[size_t(k)] - m);
    s = std::sqrt(s / double(z.size()));
    for (auto& v : z) v[size_t(k)] = s > 0 ? (v[size_t(k)] - m) / s : 0;
  }
  std::vector<std::string> gene_cols;
  for (int g = 0; g < n_genes; ++g) gene_cols.push_back(kGenes[g]);
  std::string meta = csv_row({"path", "patch_id", "patient", "x", "y", "nuclei_per_kpx", "nuclear_area", "elongation",
                              "tumour_frac", "stroma_frac", "lymphocyte_frac"});
  std::vector<std::string> hdr = {"patch_id"};
  hdr.insert(hdr.end(), gene_cols.begin(), gene_cols.end());
  std::string expr = csv_row(hdr);
  std::vector<std::vector<double>> patient_fx(static_cast<size_t>(cfg.patients), std::vector<double>(static_cast<size_t>(n_genes)));
  for (int p = 0; p < cfg.patients; ++p) {
    Rng r = Rng::stream(cfg.seed, 0x74, uint64_t(p));
    for (int g = 0; g < n_genes; ++g) patient_fx[size_t(p)][size_t(g)] = 0.25 * r.normal();
  }
  for (size_t i = 0; i < items.size(); ++i) {
    const Item& it = items[i];
    meta += csv_row({rel_path(it), patch_id(it), "P" + pad(it.patient + 1, 2), std::to_string(it.gx * cfg.size),
                     std::to_string(it.gy * cfg.size), fmt(truth[i].density), fmt(truth[i].nuclear_area),
                     fmt(truth[i].elongation), fmt(truth[i].frac[0]), fmt(truth[i].frac[1]), fmt(truth[i].frac[2])});
    Rng r = Rng::stream(cfg.seed, 0x75, i);
    std::vector<std::string> row = {patch_id(it)};
    for (int g = 0; g < n_genes; ++g) {
      double lm = kBase[g] + patient_fx[size_t(it.patient)][size_t(g)] + 0.3 * r.normal();
      for (int k = 0; k < F; ++k) lm += 0.45 * kLoad[g][k] * z[i][size_t(k)];
      row.push_back(std::to_string(r.poisson(std::expm1(std::max(0.0, lm)))));
    }
    expr += csv_row(row);
  }
  write_file_atomic((fs::path(dir) / "metadata.csv").string(), meta);
  write_file_atomic((fs::path(dir) / "expression.csv").string(), expr);
  int64_t files = int64_t(items.size()) + 3;
  if (cfg.write_h5) {
    fs::create_directories(fs::path(dir) / "hest");
    for (int p = 0; p < cfg.patients; ++p) {
      HestPatches h;
      for (size_t i = 0; i < items.size(); ++i) {
        if (items[i].patient != p) continue;
        h.barcodes.push_back(patch_id(items[i]));
        h.coords.push_back({int64_t(items[i].gx) * cfg.size, int64_t(items[i].gy) * cfg.size});
        h.images.push_back(std::move(images[i]));
      }
      write_hest_h5((fs::path(dir) / "hest" / ("P" + pad(p + 1, 2) + ".h5")).string(), h);
      ++files;
    }
  }
  std::ostringstream readme;
  readme << kTissueReadme << "\nGenerated with seed " << cfg.seed << ": " << cfg.patients << " patients x "
         << cfg.patches_per_patient << " patches of " << cfg.size << "x" << cfg.size << " px, " << n_genes << " genes.\n";
  write_file_atomic((fs::path(dir) / "README.txt").string(), readme.str());
  SynthSummary s;
  s.manifest = (fs::path(dir) / "metadata.csv").string();
  s.images = int64_t(items.size());
  s.files = files;
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

}  // namespace tabula::data
