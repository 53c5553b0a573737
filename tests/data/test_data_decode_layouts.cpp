// The TIFF decoder's typed conversion paths against tifffile (weights_tools/reference/decode_layout_fixtures.py):
// every sample type in both byte orders, short last strips, partial edge tiles, planar and contiguous pixels,
// uncompressed / deflate / LZW / PackBits; values must be identical. Also through the binary (`tabula preprocess`
// and `tabula embed` on the same fields stored uncompressed and deflate-compressed).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "data/image.h"
#include "data/manifest.h"
#include "data/preprocess.h"
#include "data/synth.h"
#include "engine/fileio.h"
#include "tests/test_util.h"
#include "util/npy.h"

using namespace tabula;
using namespace tabula::data;
using tabula::test::fixture;
using tabula::test::run_tabula;
namespace fs = std::filesystem;

namespace {

std::vector<fs::path> layout_files() {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(fixture("data/decode_layouts")))
    if (e.path().extension() == ".tif") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// Bitwise equality of the decoded planes with tifffile's array (CHW float32).
void expect_same_as_tifffile(const Image& img, const fs::path& tif) {
  NpyArray want = read_npy(tif.string() + ".npy");
  ASSERT_EQ(want.shape, (std::vector<int64_t>{img.channels, img.height, img.width})) << tif;
  ASSERT_EQ(want.dtype, DType::f32);
  size_t differ = 0, first = 0;
  for (size_t i = 0; i < img.pixels.size(); ++i)
    if (std::memcmp(&img.pixels[i], want.as<float>() + i, 4) != 0 && differ++ == 0) first = i;
  EXPECT_EQ(differ, 0u) << tif.filename() << ": first at " << first << ": " << img.pixels[first] << " vs "
                        << want.as<float>()[first];
}

// The file's sample type, from its name (u8_..., i16_..., f64_...): decode_tiff_native's output, converted to float.
std::vector<float> native_as_float(const std::vector<uint8_t>& raw, const std::string& file) {
  const std::string type = file.substr(0, file.find('_'));
  std::vector<float> out;
  auto as = [&](auto zero) {
    using T = decltype(zero);
    for (size_t i = 0; i + sizeof(T) <= raw.size(); i += sizeof(T)) {
      T v;
      std::memcpy(&v, raw.data() + i, sizeof(T));
      out.push_back(float(v));
    }
  };
  if (type == "u8") as(uint8_t());
  else if (type == "i8") as(int8_t());
  else if (type == "u16") as(uint16_t());
  else if (type == "i16") as(int16_t());
  else if (type == "u32") as(uint32_t());
  else if (type == "i32") as(int32_t());
  else if (type == "f32") as(float());
  else if (type == "f64") as(double());
  else ADD_FAILURE() << file << ": unknown sample type " << type;
  return out;
}

size_t sample_bytes_of(const std::string& file) {
  const std::string type = file.substr(0, file.find('_'));
  return type == "u8" || type == "i8" ? 1 : type == "u16" || type == "i16" ? 2 : type == "f64" ? 8 : 4;
}

std::string q(const fs::path& p) {
  std::string s = "'";  // (appended piecewise: GCC 12 reports a false -Wrestrict for "'" + std::string)
  s += p.string();
  s += "'";
  return s;
}

}  // namespace

TEST(DataDecodeLayouts, EveryLayoutMatchesTifffile) {
  const std::vector<fs::path> files = layout_files();
  ASSERT_GE(files.size(), 33u);
  for (const fs::path& f : files) {
    SCOPED_TRACE(f.filename().string());
    expect_same_as_tifffile(read_image(f.string()), f);
  }
}

TEST(DataDecodeLayouts, TruncatedFilesAreErrorsNamingTheFile) {
  // The decoder reads strips from the file's bytes in place; a file cut anywhere must fail cleanly (or, cut in
  // bytes no strip uses, still decode to the same values).
  int failed = 0;
  for (const fs::path& f : layout_files()) {
    const std::vector<uint8_t> bytes = read_file_bytes(f.string());
    for (size_t keep : {size_t(8), bytes.size() / 3, bytes.size() / 2, bytes.size() - 9}) {
      try {
        expect_same_as_tifffile(decode_image(bytes.data(), keep, "cut.tif"), f);
      } catch (const std::runtime_error& e) {
        ++failed;
        EXPECT_EQ(std::string(e.what()).rfind("cut.tif: ", 0), 0u) << e.what();
      }
    }
  }
  EXPECT_GT(failed, 0);
}

TEST(DataDecodeLayouts, PreprocessThroughTheBinaryGivesTifffileValues) {
  fs::path dir = tabula::test::scratch_dir().string() + "-layouts";
  fs::remove_all(dir);
  fs::create_directories(dir);
  // One grey image per row (the single-sample layouts, all 29 x 37), values as decoded: no scaling, no resize.
  std::vector<fs::path> grey;
  for (const fs::path& f : layout_files()) {
    const std::string name = f.filename().string();
    if (name.find("rgb") == std::string::npos && name.find("separate") == std::string::npos) grey.push_back(f);
  }
  ASSERT_GE(grey.size(), 20u);
  std::string csv = "image\n";
  for (const fs::path& f : grey) csv += f.string() + "\n";
  write_file_atomic((dir / "list.csv").string(), csv);
  auto r = run_tabula("preprocess --data " + q(dir / "list.csv") + " --out " + q(dir / "x.npy") +
                      " --channels all --intensity none --resize 0 --crop 0 --no-normalize");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  NpyArray x = read_npy((dir / "x.npy").string());
  ASSERT_EQ(x.shape, (std::vector<int64_t>{int64_t(grey.size()), 1, 29, 37}));
  for (size_t i = 0; i < grey.size(); ++i) {
    Image row(1, 29, 37);
    std::memcpy(row.pixels.data(), x.as<float>() + i * row.pixels.size(), row.pixels.size() * 4);
    SCOPED_TRACE(grey[i].filename().string());
    expect_same_as_tifffile(row, grey[i]);
  }
}

TEST(DataDecodeLayouts, EmbedGivesTheSameFeaturesForUncompressedAndDeflateFields) {
  fs::path dir = tabula::test::scratch_dir().string() + "-fields";
  fs::remove_all(dir);
  CellPaintingConfig c;
  c.quick = true;
  synth_cellpainting((dir / "deflate").string(), c);
  // The same fields re-encoded without compression (the illumination files and load_data.csv copied as they are).
  fs::copy(dir / "deflate", dir / "none", fs::copy_options::recursive);
  int rewritten = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir / "none"))
    if (e.path().extension() == ".tiff" || e.path().extension() == ".tif") {
      write_tiff(e.path().string(), read_image(e.path().string()), 16, false);
      ++rewritten;
    }
  ASSERT_GT(rewritten, 0);
  // The first 6 fields are enough.
  for (const char* codec : {"deflate", "none"}) {
    const fs::path csv = dir / codec / "load_data.csv";
    const std::string text = read_file_text(csv.string());
    size_t at = 0;
    for (int line = 0; line < 7 && at != std::string::npos; ++line) at = text.find('\n', at + (line > 0));
    write_file_atomic(csv.string(), text.substr(0, at + 1));
  }
  for (const char* codec : {"deflate", "none"}) {
    auto r = run_tabula("embed --arch vit:dim=32,depth=1,heads=2,patch=16,img=64 --seed 0 --size 64 "
                        "--intensity percentile --data " + q(dir / codec / "load_data.csv") + " --out " +
                        q(dir / (std::string("e-") + codec)));
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  const std::string index = read_file_text((dir / "e-none" / "index.csv").string());
  EXPECT_EQ(std::count(index.begin(), index.end(), '\n'), 7) << index;  // header + 6 fields
  int compared = 0;
  for (const auto& e : fs::directory_iterator(dir / "e-deflate"))
    if (e.path().extension() == ".npy") {
      EXPECT_EQ(read_file_bytes(e.path().string()), read_file_bytes((dir / "e-none" / e.path().filename()).string()))
          << e.path().filename();
      ++compared;
    }
  EXPECT_GT(compared, 0);
}

TEST(DataDecodeLayouts, StackedTiffChannelsWithIlluminationEqualTheGeneralPath) {
  fs::path dir = tabula::test::scratch_dir().string() + "-stack";
  fs::remove_all(dir);
  CellPaintingConfig c;
  c.quick = true;
  synth_cellpainting(dir.string(), c);
  const Manifest m = read_manifest(dir.string());
  ASSERT_GT(m.samples.size(), 2u);
  ASSERT_EQ(m.samples[0].illum_paths.size(), m.samples[0].channel_paths.size());
  for (size_t i : {size_t(0), m.samples.size() - 1}) {
    const Sample& s = m.samples[i];
    // The general path by hand: decode each file, stack, divide.
    Image want = read_image(s.channel_paths[0]);
    for (size_t k = 1; k < s.channel_paths.size(); ++k) {
      Image one = read_image(s.channel_paths[k]);
      want.pixels.insert(want.pixels.end(), one.pixels.begin(), one.pixels.end());
      ++want.channels;
    }
    std::vector<std::vector<float>> illum;
    for (const auto& p : s.illum_paths) illum.push_back(read_npy(p).to_f32());
    divide_illumination(want, illum, m.channel_names);
    const Image got = load_sample(m, i);
    ASSERT_EQ(got.channels, want.channels);
    EXPECT_EQ(std::memcmp(got.pixels.data(), want.pixels.data(), want.pixels.size() * 4), 0) << "sample " << i;
    EXPECT_EQ(got.bits, 16);
    EXPECT_EQ(got.max_value, 65535.0f);
    EXPECT_EQ(got.channel_names, m.channel_names);
  }
  // A zero in an illumination function: the sample is still refused, naming the channel and the pixel. (A new file:
  // illumination functions are cached by path.)
  NpyArray a = read_npy(m.samples[0].illum_paths[1]);
  std::vector<float> v = a.to_f32();
  v[5] = 0.0f;
  const std::string bad = (dir / "illum_with_a_zero.npy").string();
  write_npy(bad, a.shape, v.data());
  Manifest broken = m;
  broken.samples[0].illum_paths[1] = bad;
  try {
    load_sample(broken, 0);
    ADD_FAILURE() << "a zero illumination value was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("is not positive at pixel 5"), std::string::npos) << e.what();
  }
}

TEST(DataDecodeLayouts, StripsDecodedBySeveralThreadsGiveTheSameValues) {
  DecodeLimits lim;
  int threaded = 0;
  for (int threads : {2, 3, 8}) {
    lim.threads = threads;
    for (const fs::path& f : layout_files()) {
      SCOPED_TRACE(f.filename().string() + " threads " + std::to_string(threads));
      const std::vector<uint8_t> bytes = read_file_bytes(f.string());
      expect_same_as_tifffile(decode_image(bytes.data(), bytes.size(), f.string(), lim), f);
      threaded += f.filename().string().find("deflate") != std::string::npos ||
                  f.filename().string().find("lzw") != std::string::npos;
    }
  }
  EXPECT_GE(threaded, 3 * 8);  // compressed files, several strips or tiles each: the threaded path ran
  // A corrupt strip in a thread other than the first is still an error naming the file.
  const fs::path f = fixture("data/decode_layouts/u16_le_deflate_strip5.tif");
  std::vector<uint8_t> bytes = read_file_bytes(f.string());
  const Image clean = decode_image(bytes.data(), bytes.size(), "x.tif");
  // Overwrite the middle of the file (strip data: the IFD is at the start or the end) with zeros.
  std::fill(bytes.begin() + long(bytes.size() / 2), bytes.begin() + long(bytes.size() / 2) + 64, uint8_t(0));
  lim.threads = 4;
  try {
    const Image broken = decode_image(bytes.data(), bytes.size(), "broken.tif", lim);
    EXPECT_NE(broken.pixels, clean.pixels);  // zlib may not notice every change, but the values must
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("broken.tif: ", 0), 0u) << e.what();
  }
}

// What `--preprocess device` uploads: the samples as stored, decoded straight into a buffer (strips of one sample per
// pixel without an intermediate copy), with one thread and several; the same values as tifffile's.
TEST(DataDecodeLayouts, NativeSamplesMatchTifffile) {
  for (int threads : {1, 3}) {
    DecodeLimits lim;
    lim.threads = threads;
    for (const fs::path& f : layout_files()) {
      const std::string file = f.filename().string();
      SCOPED_TRACE(file + " threads " + std::to_string(threads));
      const std::vector<uint8_t> bytes = read_file_bytes(f.string());
      const Image h = read_tiff_header(bytes.data(), bytes.size(), file, lim);
      std::vector<uint8_t> raw(size_t(h.channels) * h.plane_size() * sample_bytes_of(file), 0xA5);
      const Image got = decode_tiff_native(bytes.data(), bytes.size(), file, raw.data(), raw.size(), lim);
      EXPECT_TRUE(got.pixels.empty());
      EXPECT_EQ(got.channels, h.channels);
      EXPECT_EQ(got.bits, h.bits);
      NpyArray want = read_npy(f.string() + ".npy");
      const std::vector<float> values = native_as_float(raw, file);
      ASSERT_EQ(values.size(), size_t(want.numel()));
      size_t differ = 0;
      for (size_t i = 0; i < values.size(); ++i) differ += std::memcmp(&values[i], want.as<float>() + i, 4) != 0;
      EXPECT_EQ(differ, 0u);
    }
  }
}

TEST(DataDecodeLayouts, NativeDestinationTooSmallIsAnErrorNamingTheFile) {
  const fs::path f = fixture("data/decode_layouts/u16_le_deflate_strip5.tif");
  const std::vector<uint8_t> bytes = read_file_bytes(f.string());
  std::vector<uint8_t> raw(29 * 37 * 2 - 1);
  try {
    decode_tiff_native(bytes.data(), bytes.size(), "short.tif", raw.data(), raw.size());
    ADD_FAILURE() << "a destination one byte short was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("short.tif: ", 0), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find("need 2146 bytes"), std::string::npos) << e.what();
  }
}

TEST(DataDecodeLayouts, DecodeThreadsGoToPagesOnlyWhenWorkersWouldIdle) {
  EXPECT_EQ(decode_threads_per_image(2, 100), 1);
  EXPECT_EQ(decode_threads_per_image(16, 16), 1);
  EXPECT_EQ(decode_threads_per_image(16, 5), 3);
  EXPECT_EQ(decode_threads_per_image(16, 1), 16);
  EXPECT_EQ(decode_threads_per_image(4, 0), 1);
}

// Fewer fields than --threads: `tabula preprocess` decodes each page with several threads (decode_threads_per_image);
// the model inputs are the same bytes as with one thread (synth's deflate + predictor fields of 300 x 300).
TEST(DataDecodeLayouts, PreprocessWithSpareThreadsGivesTheSameInputs) {
  fs::path dir = tabula::test::scratch_dir().string() + "-threads";
  fs::remove_all(dir);
  CellPaintingConfig c;
  c.batches = 1, c.plates_per_batch = 1, c.sites = 1, c.size = 300, c.threads = 1;
  synth_cellpainting((dir / "deflate").string(), c);
  // Two fields only: 6 workers, 3 decoding threads per page.
  const fs::path csv = dir / "deflate" / "load_data.csv";
  const std::string text = read_file_text(csv.string());
  size_t at = 0;
  for (int line = 0; line < 3 && at != std::string::npos; ++line) at = text.find('\n', at + (line > 0));
  write_file_atomic((dir / "deflate" / "two.csv").string(), text.substr(0, at + 1));
  Manifest m = read_manifest((dir / "deflate" / "two.csv").string());
  ASSERT_EQ(m.samples.size(), 2u);
  const std::string base = "preprocess --data " + q(dir / "deflate" / "two.csv") +
                           " --preset torchvision --resize 224 --crop 224 --intensity percentile";
  auto one = run_tabula(base + " --threads 1 --out " + q(dir / "one.npy"));
  ASSERT_EQ(one.exit_code, 0) << one.err;
  auto many = run_tabula(base + " --threads 6 --out " + q(dir / "many.npy"));
  ASSERT_EQ(many.exit_code, 0) << many.err;
  EXPECT_EQ(read_file_bytes((dir / "one.npy").string()), read_file_bytes((dir / "many.npy").string()));
}

// TiffFile reads uncompressed files' strips from the file straight into the destination (compressed files through
// their bytes, read once): the same samples as decode_tiff_native for every layout, byte order, codec and BigTIFF;
// its header is read_tiff_header's; a file that is not a TIFF has none; a truncated file is an error naming it.
TEST(DataDecodeLayouts, NativeSamplesReadFromTheFileEqualTheDecodedBytes) {
  int uncompressed = 0, bigtiff = 0;
  for (const fs::path& f : layout_files()) {
    const std::string file = f.filename().string();
    SCOPED_TRACE(file);
    const std::vector<uint8_t> bytes = read_file_bytes(f.string());
    const Image h = read_tiff_header(bytes.data(), bytes.size(), file);
    std::optional<TiffFile> tf = TiffFile::open(f.string());
    ASSERT_TRUE(tf.has_value());
    const Image& hf = tf->header();
    EXPECT_EQ(hf.channels, h.channels);
    EXPECT_EQ(hf.height, h.height);
    EXPECT_EQ(hf.width, h.width);
    EXPECT_EQ(hf.bits, h.bits);
    EXPECT_EQ(hf.max_value, h.max_value);
    EXPECT_EQ(hf.is_float, h.is_float);
    EXPECT_TRUE(hf.pixels.empty());
    const size_t n = size_t(h.channels) * h.plane_size() * sample_bytes_of(file);
    std::vector<uint8_t> want(n, 0x5A), got(n, 0xA5);
    decode_tiff_native(bytes.data(), bytes.size(), file, want.data(), n);
    const Image r = tf->read_native(got.data(), n);
    EXPECT_EQ(got, want);
    EXPECT_EQ(r.channels, h.channels);
    EXPECT_TRUE(r.pixels.empty());
    // And tifffile's values, not only decode_tiff_native's.
    const NpyArray oracle = read_npy(f.string() + ".npy");
    EXPECT_EQ(native_as_float(got, file), std::vector<float>(oracle.as<float>(), oracle.as<float>() + oracle.numel()));
    // A destination one byte short is an error naming the file, before anything is read.
    std::optional<TiffFile> again = TiffFile::open(f.string());
    try {
      again->read_native(got.data(), n - 1);
      ADD_FAILURE() << "a short destination was accepted";
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()).rfind(f.string() + ": ", 0), 0u) << e.what();
    }
    uncompressed += file.find("strip7") != std::string::npos || file.find("tiled16.tif") != std::string::npos;
    bigtiff += file.find("bigtiff") != std::string::npos;
  }
  EXPECT_GE(uncompressed, 18);
  EXPECT_EQ(bigtiff, 2);
  EXPECT_FALSE(TiffFile::open(fixture("data/decode_layouts/cases.json").string()).has_value());
  try {
    TiffFile::open(fixture("data/decode_layouts/missing.tif").string());
    ADD_FAILURE() << "a missing file was opened";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.tif: cannot open"), std::string::npos) << e.what();
  }
  // An uncompressed file written by tabula (its strips back to back: one read per plane).
  const fs::path dir = tabula::test::scratch_dir().string() + "-native-file";
  fs::create_directories(dir);
  Image img(1, 64, 50);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = float(i % 60000);
  write_tiff((dir / "full.tif").string(), img, 16, false);
  std::vector<uint8_t> got(64 * 50 * 2);
  TiffFile::open((dir / "full.tif").string())->read_native(got.data(), got.size());
  for (size_t i = 0; i < img.pixels.size(); ++i) {
    uint16_t v;
    std::memcpy(&v, got.data() + 2 * i, 2);
    ASSERT_EQ(float(v), img.pixels[i]) << i;
  }
  // tifffile writes the directory first (offset 8): a file cut short keeps it, and loses its last strips; the header
  // still opens, the samples are an error naming the file (uncompressed, compressed, BigTIFF).
  for (const char* name : {"u16_le_strip7.tif", "u16_le_deflate_strip5.tif", "u16_le_tiled16_deflate_pred.tif",
                           "u16_be_bigtiff_deflate_pred_strip5.tif", "u16_le_bigtiff_strip7.tif"}) {
    SCOPED_TRACE(name);
    const std::vector<uint8_t> tf = read_file_bytes(fixture(std::string("data/decode_layouts/") + name).string());
    const fs::path cut = dir / (std::string("cut_") + name);
    write_file_atomic(cut.string(), tf.data(), tf.size() * 3 / 4);
    std::optional<TiffFile> file = TiffFile::open(cut.string());
    ASSERT_TRUE(file.has_value());
    std::vector<uint8_t> dst(size_t(file->header().channels) * file->header().plane_size() * 2);
    try {
      file->read_native(dst.data(), dst.size());
      ADD_FAILURE() << "a truncated file was accepted";
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()).rfind(cut.string() + ": ", 0), 0u) << e.what();
    }
  }
}

// A TiffFile is opened once: its samples are read through the descriptor it opened with its header, so a file
// replaced on disk between the two (a new file renamed over it) still gives the opened file's samples, for
// uncompressed and compressed files alike (the old way opened the path again for the samples, and read the new one).
TEST(DataDecodeLayouts, TiffFileReadsTheFileItOpened) {
  const fs::path dir = tabula::test::scratch_dir().string() + "-opened-once";
  fs::create_directories(dir);
  Image a(2, 30, 41), b(2, 30, 41);
  for (size_t i = 0; i < a.pixels.size(); ++i) a.pixels[i] = float(i % 50000), b.pixels[i] = float(7 + i % 3);
  for (bool compress : {false, true}) {
    SCOPED_TRACE(compress ? "deflate" : "uncompressed");
    const std::string path = (dir / (compress ? "z.tif" : "u.tif")).string();
    write_tiff(path, a, 16, compress);
    std::optional<TiffFile> file = TiffFile::open(path);
    ASSERT_TRUE(file.has_value());
    write_tiff(path, b, 16, compress);  // atomically: a new file under the same name
    std::vector<uint8_t> got(a.pixels.size() * 2);
    file->read_native(got.data(), got.size());
    for (size_t i = 0; i < a.pixels.size(); ++i) {
      uint16_t v;
      std::memcpy(&v, got.data() + 2 * i, 2);
      ASSERT_EQ(float(v), a.pixels[i]) << i;
    }
    // Opened anew, the name gives the new file.
    TiffFile::open(path)->read_native(got.data(), got.size());
    uint16_t v;
    std::memcpy(&v, got.data() + 2, 2);
    EXPECT_EQ(float(v), b.pixels[1]);
  }
}
