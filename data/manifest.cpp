#include "data/manifest.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>

#include "engine/fileio.h"
#include "util/npy.h"
#include "util/csv.h"
#include "data/hest.h"
#include "data/image_folder.h"
#include "data/preprocess.h"

namespace tabula::data {

namespace fs = std::filesystem;

namespace {

bool is_image_name(const std::string& s) {
  std::string e = fs::path(s).extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return e == ".tif" || e == ".tiff" || e == ".png" || e == ".jpg" || e == ".jpeg" || e == ".jp2" || e == ".j2k";
}

std::string resolve(const fs::path& base, const std::string& dir, const std::string& file) {
  fs::path p = dir.empty() ? fs::path(file) : fs::path(dir) / file;
  if (p.is_relative()) p = base / p;
  return p.lexically_normal().string();
}

std::string where(const CsvTable& t, size_t row) { return t.path + ":" + std::to_string(t.line_of_row[row]); }

// Metadata columns in file order, minus the ones that became paths.
void keep_meta(Manifest& m, const CsvTable& t, const std::vector<int>& used, bool only_metadata_prefix) {
  std::vector<int> keep;
  for (size_t c = 0; c < t.header.size(); ++c) {
    if (std::find(used.begin(), used.end(), int(c)) != used.end()) continue;
    if (only_metadata_prefix && t.header[c].rfind("Metadata_", 0) != 0) continue;
    keep.push_back(int(c));
    m.meta_columns.push_back(t.header[c]);
  }
  for (size_t r = 0; r < t.rows.size(); ++r) {
    for (int c : keep) m.samples[r].meta.push_back(t.rows[r][size_t(c)]);
    m.samples[r].line = t.line_of_row[r];  // so that a decode error hours later still names the row
  }
}

}  // namespace

Manifest read_jump_manifest(const std::string& csv, const ManifestOptions& opt) {
  CsvTable t = read_csv_table(csv);
  const fs::path base = fs::path(csv).parent_path();
  Manifest m;
  m.kind = "jump";
  m.source = csv;
  std::vector<std::string> all;
  for (const auto& h : t.header)
    if (h.rfind("FileName_Orig", 0) == 0) all.push_back(h.substr(13));
  if (all.empty()) throw std::runtime_error(csv + ": no FileName_Orig<Channel> columns (not a CellProfiler load_data.csv)");
  m.channel_names = opt.channels.empty() ? all : opt.channels;
  for (const auto& ch : m.channel_names)
    if (std::find(all.begin(), all.end(), ch) == all.end())
      throw std::runtime_error(csv + ": no channel '" + ch + "' (FileName_Orig" + ch + ")");
  bool illum = opt.illumination;
  for (const auto& ch : m.channel_names) illum = illum && t.has("FileName_Illum" + ch) && t.has("PathName_Illum" + ch);
  std::vector<int> used;
  for (size_t c = 0; c < t.header.size(); ++c) {
    const std::string& h = t.header[c];
    if (h.rfind("FileName_", 0) == 0 || h.rfind("PathName_", 0) == 0 || h.rfind("URL_", 0) == 0) used.push_back(int(c));
  }
  m.samples.resize(t.rows.size());
  for (size_t r = 0; r < t.rows.size(); ++r) {
    Sample& s = m.samples[r];
    for (const auto& ch : m.channel_names) {
      const std::string& file = t.at(r, "FileName_Orig" + ch);
      if (file.empty()) throw std::runtime_error(where(t, r) + ": empty FileName_Orig" + ch);
      if (t.has("PathName_Orig" + ch)) {
        s.channel_paths.push_back(resolve(base, t.at(r, "PathName_Orig" + ch), file));
      } else if (t.has("URL_Orig" + ch)) {
        std::string url = t.at(r, "URL_Orig" + ch);
        if (url.rfind("file://", 0) == 0) url = url.substr(7);
        if (url.find("://") != std::string::npos)
          throw std::runtime_error(where(t, r) + ": URL_Orig" + ch + " '" + url +
                                   "' is remote; tabula reads local files only (download, then give PathName_Orig" + ch + ")");
        s.channel_paths.push_back(resolve(base, "", url));
      } else {
        throw std::runtime_error(csv + ": FileName_Orig" + ch + " has neither PathName_Orig" + ch + " nor URL_Orig" + ch);
      }
      if (illum) s.illum_paths.push_back(resolve(base, t.at(r, "PathName_Illum" + ch), t.at(r, "FileName_Illum" + ch)));
    }
  }
  keep_meta(m, t, used, true);
  return m;
}

Manifest read_rxrx_manifest(const std::string& csv, const ManifestOptions& opt) {
  CsvTable t = read_csv_table(csv);
  const fs::path base = fs::path(csv).parent_path();
  const fs::path root = opt.images_root.empty() ? base / "images" : fs::path(opt.images_root);
  // RxRx1/2/3 metadata.csv name the columns experiment/plate/well; RxRx3-core's metadata_rxrx3_core.csv names
  // them experiment_name/plate/address (and has no site: one site per well, files `_s1_`).
  const std::string well_col = t.has("well") ? "well" : "address";
  const std::string exp_col = t.has("experiment") ? "experiment" : "experiment_name";
  if (!t.has(exp_col)) throw std::runtime_error(csv + ": RxRx metadata needs column 'experiment' or 'experiment_name'");
  if (!t.has("plate")) throw std::runtime_error(csv + ": RxRx metadata needs column 'plate'");
  if (!t.has(well_col)) throw std::runtime_error(csv + ": RxRx metadata needs column 'well' or 'address'");
  Manifest m;
  m.kind = "rxrx";
  m.source = csv;
  m.samples.resize(t.rows.size());
  // The file pattern and channel count are probed on the first row and then required for every row.
  struct Pattern { std::string sep, ext; };
  const Pattern patterns[] = {{"_w", ".png"}, {"_", ".jp2"}, {"_", ".png"}, {"_w", ".jp2"}};
  const Pattern* pat = nullptr;
  int channels = 0;
  auto path_of = [&](size_t r, const Pattern& p, int ch) {
    std::string plate = t.at(r, "plate");
    std::string site = t.has("site") ? t.at(r, "site") : "1";
    return (root / t.at(r, exp_col) / ("Plate" + plate) / (t.at(r, well_col) + "_s" + site + p.sep + std::to_string(ch) + p.ext)).string();
  };
  if (!t.rows.empty()) {
    for (const Pattern& p : patterns)
      if (fs::exists(path_of(0, p, 1))) { pat = &p; break; }
    if (!pat)
      throw std::runtime_error(where(t, 0) + ": no image found for the first row (tried " + path_of(0, patterns[0], 1) + " and " +
                               path_of(0, patterns[1], 1) + ")");
    while (channels < 16 && fs::exists(path_of(0, *pat, channels + 1))) ++channels;
  }
  for (int c = 1; c <= channels; ++c) m.channel_names.push_back("w" + std::to_string(c));
  for (size_t r = 0; r < t.rows.size(); ++r)
    for (int c = 1; c <= channels; ++c) m.samples[r].channel_paths.push_back(path_of(r, *pat, c));
  keep_meta(m, t, {}, false);
  return m;
}

Manifest read_csv_manifest(const std::string& csv, const ManifestOptions& opt) {
  CsvTable t = read_csv_table(csv);
  const fs::path base = fs::path(csv).parent_path();
  Manifest m;
  m.kind = "csv";
  m.source = csv;
  std::vector<int> cols;
  if (!opt.channels.empty()) {
    for (const auto& c : opt.channels) {
      int k = t.column(c);
      if (k < 0) throw std::runtime_error(csv + ": no column '" + c + "' for a channel");
      cols.push_back(k);
    }
  } else {
    for (size_t c = 0; c < t.header.size(); ++c) {
      bool all = !t.rows.empty();
      for (const auto& row : t.rows) all = all && is_image_name(row[c]);
      if (all) cols.push_back(int(c));
    }
    if (cols.empty())
      throw std::runtime_error(csv + ": no column holds image file names in every row; name the channel columns explicitly");
  }
  for (int c : cols) {
    std::string n = t.header[size_t(c)];
    if (n.rfind("path_", 0) == 0) n = n.substr(5);
    m.channel_names.push_back(n);
  }
  m.samples.resize(t.rows.size());
  for (size_t r = 0; r < t.rows.size(); ++r)
    for (int c : cols) {
      if (t.rows[r][size_t(c)].empty()) throw std::runtime_error(where(t, r) + ": empty path in column '" + t.header[size_t(c)] + "'");
      m.samples[r].channel_paths.push_back(resolve(base, "", t.rows[r][size_t(c)]));
    }
  // The path columns stay in index.csv too: they are how a user finds the image behind a row.
  keep_meta(m, t, {}, false);
  return m;
}

Manifest read_folder_manifest(const std::string& dir) {
  if (!fs::is_directory(dir)) throw std::runtime_error(dir + ": not a folder");
  Manifest m;
  m.kind = "folder";
  m.source = dir;
  m.channel_names = {"image"};
  m.meta_columns = {"path", "name", "folder"};
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file() && is_image_name(e.path().string())) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  if (files.empty()) throw std::runtime_error(dir + ": no image files (.tif, .tiff, .png, .jpg, .jpeg, .jp2, .j2k)");
  for (const auto& f : files) {
    Sample s;
    s.channel_paths = {f.string()};
    fs::path rel = fs::relative(f, dir);
    s.meta = {rel.string(), f.stem().string(), rel.parent_path().string()};
    m.samples.push_back(std::move(s));
  }
  return m;
}

Manifest read_hest_manifest(const std::string& p) {
  std::vector<fs::path> files;
  if (fs::is_directory(p)) {
    for (const auto& e : fs::directory_iterator(p))
      if (e.is_regular_file() && e.path().extension() == ".h5") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    if (files.empty()) throw std::runtime_error(p + ": no .h5 files");
  } else {
    files.push_back(p);
  }
  Manifest m;
  m.kind = "hest";
  m.source = p;
  m.channel_names = {"R", "G", "B"};
  m.meta_columns = {"sample", "barcode", "x", "y"};
  for (const auto& f : files) {
    HestPatches h = read_hest_index(f.string());
    for (size_t i = 0; i < h.barcodes.size(); ++i) {
      Sample s;
      s.h5_path = f.string();
      s.h5_index = int64_t(i);
      s.meta = {f.stem().string(), h.barcodes[i], std::to_string(h.coords[i][0]), std::to_string(h.coords[i][1])};
      m.samples.push_back(std::move(s));
    }
  }
  return m;
}

Manifest read_manifest(const std::string& path, const ManifestOptions& opt) {
  if (!fs::exists(path)) throw std::runtime_error(path + ": no such file or folder");
  if (fs::is_directory(path)) {
    const fs::path d(path);
    if (fs::exists(d / "load_data.csv")) return read_jump_manifest((d / "load_data.csv").string(), opt);
    if (fs::exists(d / "metadata.csv")) return read_manifest((d / "metadata.csv").string(), opt);
    if (fs::exists(d / "metadata_rxrx3_core.csv")) return read_manifest((d / "metadata_rxrx3_core.csv").string(), opt);
    bool h5 = false, other = false;
    for (const auto& e : fs::directory_iterator(d)) {
      if (!e.is_regular_file()) continue;
      (e.path().extension() == ".h5" ? h5 : other) = true;
    }
    if (h5 && !other) return read_hest_manifest(path);
    if (is_imagefolder(path)) return read_imagefolder_manifest(path);
    return read_folder_manifest(path);
  }
  const std::string ext = fs::path(path).extension().string();
  if (ext == ".h5" || ext == ".hdf5") return read_hest_manifest(path);
  if (ext != ".csv") throw std::runtime_error(path + ": a manifest is a .csv, a .h5 or a folder");
  CsvTable t = read_csv_table(path);
  for (const auto& h : t.header)
    if (h.rfind("FileName_Orig", 0) == 0) return read_jump_manifest(path, opt);
  if ((t.has("experiment") || t.has("experiment_name")) && t.has("plate") && (t.has("well") || t.has("address")))
    return read_rxrx_manifest(path, opt);
  return read_csv_manifest(path, opt);
}

namespace {
// Illumination functions are shared by every image of a plate or batch: read each file once (and hand out the one
// copy: a field-sized vector per channel per sample was a noticeable part of decoding).
struct IllumFunction {
  std::vector<float> values;
  bool positive = true;  // every value > 0 (divide_illumination refuses the others, naming the pixel)
};
std::shared_ptr<const IllumFunction> illum_cached(const std::string& path) {
  static std::mutex m;
  static std::map<std::string, std::shared_ptr<const IllumFunction>> cache;
  {
    std::lock_guard<std::mutex> g(m);
    auto it = cache.find(path);
    if (it != cache.end()) return it->second;
  }
  NpyArray a = read_npy(path);
  if (a.shape.size() != 2) throw std::runtime_error(path + ": an illumination function must be a 2-D array (H x W)");
  auto f = std::make_shared<IllumFunction>();
  f->values = a.to_f32();
  for (float x : f->values) f->positive &= x > 0.0f;
  std::shared_ptr<const IllumFunction> v = std::move(f);
  std::lock_guard<std::mutex> g(m);
  if (cache.size() > 256) cache.clear();
  cache[path] = v;
  return v;
}

// One-channel TIFF files decoded straight into the planes of the stacked image, the illumination divided out in the
// same pass (the same values as the general path below, without a copy per channel or a second pass). Returns
// nothing for whatever this does not handle (another format, a multi-channel file, channels of different sizes or
// sample types, an illumination function that does not fit or is not positive everywhere): the general path then
// decodes the sample and says what is wrong.
std::optional<Image> load_tiff_channels(const Sample& s, const DecodeLimits& limits) {
  const size_t n = s.channel_paths.size();
  std::vector<std::shared_ptr<const IllumFunction>> illum;
  for (const auto& p : s.illum_paths) illum.push_back(illum_cached(p));
  if (!illum.empty() && illum.size() != n) return std::nullopt;
  for (const auto& f : illum)
    if (!f->positive) return std::nullopt;
  Image out;
  for (size_t c = 0; c < n; ++c) {
    const std::vector<uint8_t> bytes = read_file_bytes(s.channel_paths[c]);
    if (!is_tiff(bytes.data(), bytes.size())) return std::nullopt;
    const Image h = read_tiff_header(bytes.data(), bytes.size(), s.channel_paths[c], limits);
    if (h.channels != 1) return std::nullopt;
    if (c == 0) {
      if (int64_t(n) * h.height * h.width > limits.max_samples) return std::nullopt;
      out = Image(int(n), h.height, h.width);
      out.bits = h.bits, out.is_float = h.is_float, out.max_value = h.max_value;
    }
    if (h.height != out.height || h.width != out.width || h.bits != out.bits || h.is_float != out.is_float ||
        h.max_value != out.max_value)
      return std::nullopt;
    if (!illum.empty() && illum[c]->values.size() != out.plane_size()) return std::nullopt;
    const float* divisor = illum.empty() ? nullptr : illum[c]->values.data();
    decode_tiff_into(bytes.data(), bytes.size(), s.channel_paths[c], out, int(c), &divisor, limits);
  }
  return out;
}

// The image files of one sample (not HEST), decoded and stacked; `row` names the sample in errors.
Image load_channel_files(const Manifest& m, const Sample& s, const std::string& row, const DecodeLimits& limits) {
  if (s.channel_paths.size() > 1)
    if (std::optional<Image> img = load_tiff_channels(s, limits)) {
      if (int(m.channel_names.size()) == img->channels) img->channel_names = m.channel_names;
      img->source = row;
      return std::move(*img);
    }
  Image out;
  // Channels of one sample stacked from one file each must each be one plane of the same sample type: an RGB
  // file among grey ones would shift every later channel, and an 8-bit channel stacked with 16-bit ones would
  // be scaled by the wrong full-scale value (unit intensity divides by the type's maximum).
  auto type_of = [](const Image& im) {
    return im.is_float ? std::string("floating-point") : std::to_string(im.bits) + "-bit";
  };
  for (size_t c = 0; c < s.channel_paths.size(); ++c) {
    Image one = read_image(s.channel_paths[c], limits);
    if (s.channel_paths.size() > 1 && one.channels != 1)
      throw std::runtime_error(row + ": " + s.channel_paths[c] + " holds " + std::to_string(one.channels) +
                               " channels; each channel file of a multi-channel sample must hold one");
    if (c > 0 && (one.bits != out.bits || one.is_float != out.is_float || one.max_value != out.max_value))
      throw std::runtime_error(row + ": " + s.channel_paths[c] + " is " + type_of(one) + " but " + s.channel_paths[0] +
                               " is " + type_of(out) + "; the channels of one sample must share a sample type");
    if (c == 0) {
      out = std::move(one);
      if (s.channel_paths.size() > 1) {
        out.channel_names.clear();
        out.pixels.reserve(out.pixels.size() * s.channel_paths.size());  // one allocation for all channels
      }
      continue;
    }
    if (one.height != out.height || one.width != out.width)
      throw std::runtime_error(row + ": " + s.channel_paths[c] + " is " + std::to_string(one.width) + "x" +
                               std::to_string(one.height) + " but " + s.channel_paths[0] + " is " +
                               std::to_string(out.width) + "x" + std::to_string(out.height));
    out.pixels.insert(out.pixels.end(), one.pixels.begin(), one.pixels.end());
    out.channels += one.channels;
  }
  if (s.channel_paths.size() > 1 && int(m.channel_names.size()) == out.channels) out.channel_names = m.channel_names;
  out.source = s.channel_paths.size() == 1 ? s.channel_paths[0] : row;
  if (!s.illum_paths.empty()) {
    std::vector<std::vector<float>> illum;
    for (const auto& p : s.illum_paths) illum.push_back(illum_cached(p)->values);
    divide_illumination(out, illum, m.channel_names);
  }
  return out;
}
}  // namespace

std::string sample_name(const Manifest& m, size_t i) {
  const int line = i < m.samples.size() ? m.samples[i].line : 0;
  return m.source + (line > 0 ? ":" + std::to_string(line) : std::string()) + " (sample " + std::to_string(i) + ")";
}

Image load_sample(const Manifest& m, size_t i, const DecodeLimits& limits) {
  if (i >= m.samples.size()) throw std::out_of_range(m.source + ": sample " + std::to_string(i) + " out of range");
  const Sample& s = m.samples[i];
  const std::string row = sample_name(m, i);
  if (!s.h5_path.empty()) return read_hest_patch(s.h5_path, s.h5_index, limits);
  // A missing or broken image is often found hours into a run: the error names the manifest row it came from.
  try {
    return load_channel_files(m, s, row, limits);
  } catch (const std::exception& e) {
    const std::string what = e.what();
    if (what.rfind(row, 0) == 0) throw;
    throw std::runtime_error(row + ": " + what);
  }
}

std::string index_csv(const Manifest& m, const std::vector<size_t>& rows) {
  auto q = [](const std::string& s) {
    if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
    std::string o = "\"";
    for (char c : s) {
      if (c == '"') o += '"';
      o += c;
    }
    o += '"';
    return o;
  };
  std::string out;
  // (Appending piecewise: GCC 12 reports a false -Wrestrict for `const char* + std::string&&`.)
  for (size_t c = 0; c < m.meta_columns.size(); ++c) {
    if (c) out += ',';
    out += q(m.meta_columns[c]);
  }
  out += "\n";
  for (size_t r : rows) {
    const Sample& s = m.samples.at(r);
    for (size_t c = 0; c < s.meta.size(); ++c) {
      if (c) out += ',';
      out += q(s.meta[c]);
    }
    out += "\n";
  }
  return out;
}

}  // namespace tabula::data
