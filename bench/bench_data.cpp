// Decode and preprocessing cost of JUMP-like fields (issue #22: "decode at the I/O limit"): 5 single-channel
// 1080 x 1080 uint16 TIFFs per field plus one illumination .npy per channel, as `tabula synth cellpainting
// --size 1080` writes them, stored four ways (codec 0 uncompressed, 1 deflate + predictor, 2 LZW + predictor, 3 deflate
// without predictor). Each benchmark handles one
// field per iteration and reports process CPU time, so `cpu_s_per_field` is robust to other load on a shared
// machine; `fields_per_cpu_s` is its inverse (fields/s of one core).
//
//   DataDecodeField/<codec>      the 5 files' bytes already in memory -> decode_image (decode only)
//   DataLoadField/<codec>        load_sample: read the 5 files, decode, stack, divide the illumination out
//   DataPreprocessField/<codec>  load_sample + preprocess_image with the cpg0016-style transform (percentile 1/99
//                                per channel, Resize(224) bilinear antialias, CenterCrop(224), per-channel, Normalize)
//   DataPercentileScale/<kind>   percentile_scale of one 5 x 1080 x 1080 field: u16 integers or illumination-divided
//   DataDecodeFieldThreads/<codec>/threads:<T>   decode only, the strips of each file shared by T threads (wall time:
//                                the latency of one field when fewer fields than cores are in flight)
//   DataStageField/<codec>/path:<P>  what the CPU does per field with `embed --preprocess device`: the 5 files into one
//                                5-plane uint16 staging buffer; P 0: float decode + conversion back (the way before
//                                decode_tiff_native), 1: decode_tiff_native from memory, 2: as load_and_submit, from
//                                the files (TiffFile: each file opened once, its header read, then its samples;
//                                uncompressed strips pread straight into the buffer, compressed files read whole once)
//
// Apart from DataDecodeFieldThreads and DataStageField (issue #22), only data-layer API older than issue #22 is
// used, so the same file measures an older build (compiled there with -DTABULA_BENCH_DATA_BEFORE_22; a build with
// decode_tiff_into but without decode_tiff_native: #define TABULA_BENCH_DATA_BEFORE_NATIVE, runs path 0 only; one
// with read_tiff_header_file + read_tiff_native instead of TiffFile: #define TABULA_BENCH_DATA_BEFORE_TIFFFILE);
// bench/data_decode.sh runs a before and an after binary alternately in one run. Files go to $BENCH_DATA_DIR
// (default /tmp/tabula-bench-data).
#include <benchmark/benchmark.h>
#include <tiffio.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "data/device_preprocess.h"
#include "data/image.h"
#include "data/manifest.h"
#include "data/preprocess.h"
#include "data/synth.h"
#include "engine/fileio.h"

using namespace tabula;
using namespace tabula::data;
namespace fs = std::filesystem;

namespace {

constexpr int kFields = 8;  // fields cycled through (the folder holds 32)
const char* kCodecs[] = {"none", "deflate", "lzw", "deflate_nopred"};

// One page per channel, as tifffile / CellProfiler write single-channel fields: 16-bit, 8 KiB strips.
void write_tiff_codec(const std::string& path, const Image& img, uint16_t compression, bool predictor) {
  TIFF* t = TIFFOpen(path.c_str(), "w");
  if (!t) throw std::runtime_error(path + ": cannot create");
  TIFFSetField(t, TIFFTAG_IMAGEWIDTH, uint32_t(img.width));
  TIFFSetField(t, TIFFTAG_IMAGELENGTH, uint32_t(img.height));
  TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, uint16_t(16));
  TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, uint16_t(1));
  TIFFSetField(t, TIFFTAG_PHOTOMETRIC, uint16_t(PHOTOMETRIC_MINISBLACK));
  TIFFSetField(t, TIFFTAG_PLANARCONFIG, uint16_t(PLANARCONFIG_CONTIG));
  TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, uint32_t(std::max(1, 8192 / (2 * img.width))));
  TIFFSetField(t, TIFFTAG_COMPRESSION, compression);
  if (predictor) TIFFSetField(t, TIFFTAG_PREDICTOR, uint16_t(PREDICTOR_HORIZONTAL));
  std::vector<uint16_t> row(size_t(img.width));
  for (int y = 0; y < img.height; ++y) {
    for (int x = 0; x < img.width; ++x) row[size_t(x)] = uint16_t(img.at(0, y, x));
    if (TIFFWriteScanline(t, row.data(), uint32_t(y), 0) != 1) throw std::runtime_error(path + ": write failed");
  }
  TIFFClose(t);
}

// The folder of one codec, written on first use: synth once (deflate), then every TIFF re-encoded for the others.
std::string field_folder(const std::string& codec) {
  static std::mutex m;
  std::lock_guard<std::mutex> g(m);
  const char* env = std::getenv("BENCH_DATA_DIR");
  const fs::path root = env ? env : "/tmp/tabula-bench-data";
  const fs::path deflate = root / "deflate";
  if (!fs::exists(deflate / "load_data.csv")) {
    CellPaintingConfig c;
    c.batches = 1, c.plates_per_batch = 1, c.sites = 1, c.size = 1080;
    fs::remove_all(deflate);
    synth_cellpainting(deflate.string(), c);
  }
  const fs::path dir = root / codec;
  if (codec == "deflate" || fs::exists(dir / "load_data.csv")) return dir.string();
  const fs::path tmp = root / (codec + ".tmp");
  fs::remove_all(tmp);
  fs::copy(deflate, tmp, fs::copy_options::recursive);
  for (const auto& e : fs::recursive_directory_iterator(tmp))
    if (e.path().extension() == ".tif" || e.path().extension() == ".tiff")
      write_tiff_codec(e.path().string(), read_image(e.path().string()),
                       codec == "none"  ? COMPRESSION_NONE
                       : codec == "lzw" ? COMPRESSION_LZW
                                        : COMPRESSION_ADOBE_DEFLATE,
                       codec == "lzw");
  fs::rename(tmp, dir);
  return dir.string();
}

const Manifest& manifest_of(const std::string& codec) {
  static std::mutex m;
  static std::map<std::string, Manifest> cache;
  const std::string dir = field_folder(codec);
  std::lock_guard<std::mutex> g(m);
  auto it = cache.find(codec);
  if (it == cache.end()) it = cache.emplace(codec, read_manifest(dir)).first;
  return it->second;
}

void report(benchmark::State& state) {
  state.counters["cpu_s_per_field"] =
      benchmark::Counter(double(state.iterations()), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["fields_per_cpu_s"] = benchmark::Counter(double(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_DataDecodeField(benchmark::State& state) {
  const Manifest& m = manifest_of(kCodecs[state.range(0)]);
  std::vector<std::vector<std::vector<uint8_t>>> bytes;  // [field][channel]
  for (int f = 0; f < kFields; ++f) {
    bytes.emplace_back();
    for (const std::string& p : m.samples[size_t(f)].channel_paths) bytes.back().push_back(read_file_bytes(p));
  }
  int f = 0;
  for (auto _ : state) {
    for (const auto& b : bytes[size_t(f)])
      benchmark::DoNotOptimize(decode_image(b.data(), b.size(), "field").pixels.data());
    f = (f + 1) % kFields;
  }
  report(state);
}

#ifndef TABULA_BENCH_DATA_BEFORE_22
void BM_DataDecodeFieldThreads(benchmark::State& state) {
  const Manifest& m = manifest_of(kCodecs[state.range(0)]);
  std::vector<std::vector<std::vector<uint8_t>>> bytes;
  for (int f = 0; f < kFields; ++f) {
    bytes.emplace_back();
    for (const std::string& p : m.samples[size_t(f)].channel_paths) bytes.back().push_back(read_file_bytes(p));
  }
  DecodeLimits lim;
  lim.threads = int(state.range(1));
  int f = 0;
  for (auto _ : state) {
    for (const auto& b : bytes[size_t(f)])
      benchmark::DoNotOptimize(decode_image(b.data(), b.size(), "field", lim).pixels.data());
    f = (f + 1) % kFields;
  }
  state.counters["fields_per_s"] = benchmark::Counter(double(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_DataDecodeFieldThreads)->ArgNames({"codec", "threads"})->ArgsProduct({{1, 2}, {1, 2}})
    ->UseRealTime()->Unit(benchmark::kMillisecond);

#endif

#ifndef TABULA_BENCH_DATA_BEFORE_22
// What the CPU does per field with `embed --preprocess device`: the 5 files' samples into one 5-plane uint16 staging
// buffer. path 0: as before issue #22's native decode (decode into float planes, convert back to uint16, as
// load_sample + write_raw_planes did); 1: decode_tiff_native from the bytes in memory; 2: the same with the files read
// (from the page cache) inside the loop, i.e. all the CPU work of load_and_submit but the job.
void BM_DataStageField(benchmark::State& state) {
  const Manifest& m = manifest_of(kCodecs[state.range(0)]);
  const int path = int(state.range(1));
  std::vector<std::vector<std::vector<uint8_t>>> bytes;
  for (int f = 0; f < kFields; ++f) {
    bytes.emplace_back();
    for (const std::string& p : m.samples[size_t(f)].channel_paths) bytes.back().push_back(read_file_bytes(p));
  }
  const Image h = read_tiff_header(bytes[0][0].data(), bytes[0][0].size(), "field");
  const size_t plane_bytes = h.plane_size() * 2;
  std::vector<uint8_t> staging(5 * plane_bytes);
  int f = 0;
  for (auto _ : state) {
    if (path == 0) {
      Image field(5, h.height, h.width);
      field.bits = 16, field.max_value = 65535.0f;
      for (int c = 0; c < 5; ++c) {
        const auto& b = bytes[size_t(f)][size_t(c)];
        decode_tiff_into(b.data(), b.size(), "field", field, c);
      }
      write_raw_planes(field, RawSample::u16, staging.data());
    } else {
#ifdef TABULA_BENCH_DATA_BEFORE_NATIVE
      state.SkipWithError("decode_tiff_native is newer than this build");
      break;
#else
      for (int c = 0; c < 5; ++c) {
        uint8_t* dst = staging.data() + size_t(c) * plane_bytes;
        if (path == 2) {  // as load_and_submit: the header first (to plan the job), then the samples
          const std::string& p = m.samples[size_t(f)].channel_paths[size_t(c)];
#ifdef TABULA_BENCH_DATA_BEFORE_TIFFFILE
          benchmark::DoNotOptimize(read_tiff_header_file(p));
          read_tiff_native(p, dst, plane_bytes);
#else
          std::optional<TiffFile> file = TiffFile::open(p);
          benchmark::DoNotOptimize(file->header().channels);
          file->read_native(dst, plane_bytes);
#endif
        } else {
          const auto& b = bytes[size_t(f)][size_t(c)];
          decode_tiff_native(b.data(), b.size(), "field", dst, plane_bytes);
        }
      }
#endif
    }
    benchmark::DoNotOptimize(staging.data());
    f = (f + 1) % kFields;
  }
  report(state);
}
BENCHMARK(BM_DataStageField)->ArgNames({"codec", "path"})->ArgsProduct({{0, 1, 2, 3}, {0, 1, 2}})
    ->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond);

#endif

void BM_DataLoadField(benchmark::State& state) {
  const Manifest& m = manifest_of(kCodecs[state.range(0)]);
  int f = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(load_sample(m, size_t(f)).pixels.data());
    f = (f + 1) % kFields;
  }
  report(state);
}

void BM_DataPreprocessField(benchmark::State& state) {
  const Manifest& m = manifest_of(kCodecs[state.range(0)]);
  Transform t = transform_torchvision(224, 224);
  t.intensity = "percentile";
  const ChannelStrategy s = parse_channel_strategy("per-channel");
  int f = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(preprocess_image(load_sample(m, size_t(f)), t, s).data());
    f = (f + 1) % kFields;
  }
  report(state);
}

void BM_DataPercentileScale(benchmark::State& state) {
  const Manifest& m = manifest_of("deflate");
  Image field = load_sample(m, 0);  // illumination divided: non-integer floats
  if (state.range(0) == 0) {
    Manifest raw = m;
    for (Sample& s : raw.samples) s.illum_paths.clear();
    field = load_sample(raw, 0);  // the u16 samples as decoded
  }
  for (auto _ : state) benchmark::DoNotOptimize(percentile_scale(field).pixels.data());
  report(state);
}

void codec_args(benchmark::internal::Benchmark* b) {
  b->ArgName("codec")->Arg(0)->Arg(1)->Arg(2)->Arg(3)->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

// Arg: 0 none, 1 deflate + predictor, 2 lzw + predictor, 3 deflate without predictor.
BENCHMARK(BM_DataDecodeField)->Apply(codec_args);
BENCHMARK(BM_DataLoadField)->Apply(codec_args);
BENCHMARK(BM_DataPreprocessField)->Apply(codec_args);
// Arg: 0 the u16 integers as decoded, 1 illumination-divided floats.
BENCHMARK(BM_DataPercentileScale)->ArgName("illum")->Arg(0)->Arg(1)->MeasureProcessCPUTime()
    ->Unit(benchmark::kMillisecond);
