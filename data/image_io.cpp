// Image decoders and writers. Everything decodes from memory (the file is read once, its size known), so a
// header's claims can be checked against both the limits and the bytes actually present.
#include <openjpeg.h>
#include <png.h>
#include <tiffio.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "engine/fileio.h"
#include "data/image.h"

// libjpeg's headers need FILE and size_t declared first (cstdio above).
#include <jpeglib.h>
#include <jerror.h>


namespace tabula::data {

namespace {

[[noreturn]] void fail(const std::string& name, const std::string& what) {
  throw std::runtime_error(name + ": " + what);
}

// A sample clamped to [0, hi] for an integer writer; NaN becomes 0 (std::clamp would pass it through, and
// converting NaN to an integer is undefined behaviour).
float clamp_sample(float v, float hi) { return v > 0.0f ? std::min(v, hi) : 0.0f; }

void check_shape(const std::string& name, int64_t c, int64_t h, int64_t w, const DecodeLimits& lim) {
  if (w <= 0 || h <= 0 || c <= 0)
    fail(name, "invalid image size " + std::to_string(w) + "x" + std::to_string(h) + "x" + std::to_string(c));
  if (w > lim.max_side || h > lim.max_side)
    fail(name, "image size " + std::to_string(w) + "x" + std::to_string(h) + " exceeds the limit of " +
                   std::to_string(lim.max_side) + " pixels per side");
  if (c > lim.max_channels)
    fail(name, std::to_string(c) + " channels exceed the limit of " + std::to_string(lim.max_channels));
  if (c * h * w > lim.max_samples)
    fail(name, "image of " + std::to_string(c * h * w) + " samples exceeds the limit of " +
                   std::to_string(lim.max_samples));
}

// ---- TIFF ---------------------------------------------------------------------------------------------
// libtiff reports through process-wide handlers; the message is kept per thread so that concurrent decodes
// (prefetch workers) each see their own.
thread_local std::string tiff_error;
void tiff_error_handler(const char* module, const char* fmt, va_list ap) {
  char buf[512];
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  if (tiff_error.empty()) tiff_error = buf;  // the first message is the cause; later ones are consequences
}
void install_tiff_handlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    TIFFSetErrorHandler(tiff_error_handler);
    TIFFSetWarningHandler(nullptr);  // unknown private tags (OME, ImageJ, MetaMorph) are normal
  });
}

struct MemFile {
  std::vector<uint8_t>* out = nullptr;  // writing
  const uint8_t* in = nullptr;          // reading
  size_t size = 0, pos = 0;
};
tmsize_t mem_read(thandle_t h, void* buf, tmsize_t n) {
  auto* f = static_cast<MemFile*>(h);
  // While writing, libtiff reads back what it wrote (to link directories), so reads come from the output.
  const uint8_t* base = f->out ? f->out->data() : f->in;
  size_t k = f->pos >= f->size ? 0 : std::min<size_t>(size_t(n), f->size - f->pos);
  if (k) std::memcpy(buf, base + f->pos, k);
  f->pos += k;
  return tmsize_t(k);
}
tmsize_t mem_write(thandle_t h, void* buf, tmsize_t n) {
  auto* f = static_cast<MemFile*>(h);
  if (!f->out) return 0;
  if (f->pos + size_t(n) > f->out->size()) f->out->resize(f->pos + size_t(n));
  std::memcpy(f->out->data() + f->pos, buf, size_t(n));
  f->pos += size_t(n);
  f->size = f->out->size();
  return n;
}
toff_t mem_seek(thandle_t h, toff_t off, int whence) {
  auto* f = static_cast<MemFile*>(h);
  int64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? int64_t(f->pos) : int64_t(f->size);
  int64_t p = base + int64_t(off);
  if (p < 0) return toff_t(-1);
  f->pos = size_t(p);
  return toff_t(p);
}
int mem_close(thandle_t) { return 0; }
toff_t mem_size(thandle_t h) { return static_cast<MemFile*>(h)->size; }
// Reading, the bytes are already in memory: handing them to libtiff as a "mapped file" lets it decode strips and
// tiles from them in place instead of first copying each into its own raw-data buffer.
int mem_map(thandle_t h, void** base, toff_t* size) {
  auto* f = static_cast<MemFile*>(h);
  if (f->out || !f->in) return 0;
  *base = const_cast<uint8_t*>(f->in);
  *size = f->size;
  return 1;
}
void mem_unmap(thandle_t, void*, toff_t) {}

struct TiffCloser {
  TIFF* t;
  ~TiffCloser() {
    if (t) TIFFClose(t);
  }
};

struct PageInfo {
  uint32_t width = 0, height = 0;
  uint16_t spp = 1, bps = 0, format = SAMPLEFORMAT_UINT, planar = PLANARCONFIG_CONTIG, photometric = 0;
  uint16_t compression = COMPRESSION_NONE;
  uint32_t subfile = 0;  // NewSubfileType: bit 0 = reduced-resolution copy (thumbnail, pyramid level)
};

PageInfo page_info(TIFF* t) {
  PageInfo p;
  TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &p.width);
  TIFFGetField(t, TIFFTAG_IMAGELENGTH, &p.height);
  TIFFGetFieldDefaulted(t, TIFFTAG_SAMPLESPERPIXEL, &p.spp);
  TIFFGetFieldDefaulted(t, TIFFTAG_BITSPERSAMPLE, &p.bps);
  TIFFGetFieldDefaulted(t, TIFFTAG_SAMPLEFORMAT, &p.format);
  TIFFGetFieldDefaulted(t, TIFFTAG_PLANARCONFIG, &p.planar);
  TIFFGetFieldDefaulted(t, TIFFTAG_COMPRESSION, &p.compression);
  if (!TIFFGetField(t, TIFFTAG_PHOTOMETRIC, &p.photometric)) p.photometric = PHOTOMETRIC_MINISBLACK;
  TIFFGetFieldDefaulted(t, TIFFTAG_SUBFILETYPE, &p.subfile);
  return p;
}

// Converts n samples of one type, `stride` samples apart, to float (libtiff has already swapped them to host byte
// order). One loop per sample type, so that the common case (stride 1) vectorises: a per-sample switch on the type
// cost more than libtiff's inflate on a 16-bit field.
template <class T>
void convert_samples(const uint8_t* src, size_t n, size_t stride, float* dst) {
  if (stride == 1) {
    for (size_t i = 0; i < n; ++i) {
      T v;
      std::memcpy(&v, src + sizeof(T) * i, sizeof(T));
      dst[i] = float(v);
    }
    return;
  }
  for (size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, src + sizeof(T) * i * stride, sizeof(T));
    dst[i] = float(v);
  }
}
using ConvertFn = void (*)(const uint8_t*, size_t, size_t, float*);
ConvertFn converter_of(const PageInfo& p) {
  switch (p.format) {
    case SAMPLEFORMAT_IEEEFP: return p.bps == 32 ? convert_samples<float> : convert_samples<double>;
    case SAMPLEFORMAT_INT:
      return p.bps == 8 ? convert_samples<int8_t> : p.bps == 16 ? convert_samples<int16_t> : convert_samples<int32_t>;
    default:
      return p.bps == 8    ? convert_samples<uint8_t>
             : p.bps == 16 ? convert_samples<uint16_t>
                           : convert_samples<uint32_t>;
  }
}

// Reads the current directory into channels [c0, c0 + spp) of `img`. Strips and tiles are decoded by libtiff into
// one strip/tile buffer and converted from there straight into the destination planes' rows; with the
// input mapped (decode_tiff), an uncompressed strip is copied once, from the file's bytes into that buffer.
// One strip or tile of a page: where its decoded rows go.
struct Block {
  uint32_t id = 0;
  int plane = 0;                  // sample plane (planar "separate"), else 0
  uint32_t y0 = 0, x0 = 0, rows = 0, cols = 0;
};

struct TiffBytes {
  const uint8_t* bytes = nullptr;
  size_t n = 0;
};

// Reads the current directory into channels [c0, c0 + spp) of `img`. Strips and tiles are decoded by libtiff into
// one strip/tile buffer and converted from there straight into the destination planes' rows; with the input mapped
// (decode_tiff), an uncompressed strip is copied once, from the file's bytes into that buffer.
// divisors: null, or one plane of height * width values per channel of the page, divided out row by row right after
// the conversion (while the row is in cache; the same single float division as divide_illumination).
// threads > 1: the compressed blocks of the page are shared among that many threads, each with its own TIFF handle
// on the same bytes (libtiff's codec state is per handle); every block is written by one thread to its own rows.
void read_tiff_page(TIFF* t, const TiffBytes& file, const PageInfo& p, Image& img, int c0, const std::string& name,
                    int page, const float* const* divisors, int threads) {
  const std::string where = name + ": page " + std::to_string(page);
  const size_t bytes_per_sample = p.bps / 8;
  const bool separate = p.planar == PLANARCONFIG_SEPARATE && p.spp > 1;
  const int spb = separate ? 1 : p.spp;  // samples per pixel inside one strip/tile
  const int planes = separate ? p.spp : 1;
  const ConvertFn convert = converter_of(p);
  auto decode_error = [&](const char* what) -> std::runtime_error {
    std::string msg = where + ": " + what + (tiff_error.empty() ? "" : " (" + tiff_error + ")");
    return std::runtime_error(msg);
  };
  const bool tiled = TIFFIsTiled(t);
  std::vector<Block> blocks;
  size_t block_bytes = 0, pitch = p.width;  // pitch: pixels per row of a decoded block
  if (tiled) {
    uint32_t tw = 0, th = 0;
    TIFFGetField(t, TIFFTAG_TILEWIDTH, &tw);
    TIFFGetField(t, TIFFTAG_TILELENGTH, &th);
    if (tw == 0 || th == 0 || tw > (1u << 16) || th > (1u << 16)) throw decode_error("invalid tile size");
    block_bytes = size_t(tw) * th * spb * bytes_per_sample;
    if (TIFFTileSize64(t) < block_bytes) throw decode_error("tile size disagrees with the tile dimensions");
    pitch = tw;
    for (int pl = 0; pl < planes; ++pl)
      for (uint32_t y0 = 0; y0 < p.height; y0 += th)
        for (uint32_t x0 = 0; x0 < p.width; x0 += tw)
          blocks.push_back({TIFFComputeTile(t, x0, y0, 0, uint16_t(pl)), pl, y0, x0, std::min(th, p.height - y0),
                            std::min(tw, p.width - x0)});
  } else {
    uint32_t rps = 0;
    TIFFGetFieldDefaulted(t, TIFFTAG_ROWSPERSTRIP, &rps);
    rps = std::min(rps == 0 ? p.height : rps, p.height);
    block_bytes = size_t(p.width) * spb * bytes_per_sample * rps;
    for (int pl = 0; pl < planes; ++pl)
      for (uint32_t y0 = 0; y0 < p.height; y0 += rps)
        blocks.push_back({TIFFComputeStrip(t, y0, uint16_t(pl)), pl, y0, 0, std::min(rps, p.height - y0), p.width});
  }
  // Blocks first, first + step, ... through handle tt.
  auto decode_blocks = [&](TIFF* tt, size_t first, size_t step) {
    std::vector<uint8_t> buf(block_bytes);
    for (size_t k = first; k < blocks.size(); k += step) {
      const Block& b = blocks[k];
      if (tiled) {
        if (TIFFReadEncodedTile(tt, b.id, buf.data(), tmsize_t(block_bytes)) < tmsize_t(block_bytes))
          throw decode_error("truncated or corrupt tile");
      } else {
        const tmsize_t want = tmsize_t(size_t(p.width) * spb * bytes_per_sample * b.rows);
        if (TIFFReadEncodedStrip(tt, b.id, buf.data(), want) < want) throw decode_error("truncated or corrupt strip");
      }
      for (uint32_t y = 0; y < b.rows; ++y)
        for (int s = 0; s < spb; ++s) {
          const size_t at = size_t(b.y0 + y) * img.width + b.x0;
          float* dst = img.plane(c0 + b.plane + s) + at;
          convert(buf.data() + (size_t(y) * pitch * spb + size_t(s)) * bytes_per_sample, b.cols, size_t(spb), dst);
          if (divisors && divisors[b.plane + s])
            for (uint32_t x = 0; x < b.cols; ++x) dst[x] /= divisors[b.plane + s][at + x];
        }
    }
  };
  const size_t workers =
      p.compression == COMPRESSION_NONE ? 1 : std::min(size_t(std::max(threads, 1)), blocks.size() / 2);
  if (workers <= 1) return decode_blocks(t, 0, 1);
  std::vector<std::exception_ptr> errors(workers);
  std::vector<std::thread> pool;
  for (size_t w = 1; w < workers; ++w)
    pool.emplace_back([&, w] {
      try {
        MemFile mf;
        mf.in = file.bytes;
        mf.size = file.n;
        TIFF* tt = TIFFClientOpen(name.c_str(), "r", &mf, mem_read, mem_write, mem_seek, mem_close, mem_size, mem_map,
                                  mem_unmap);
        if (!tt) throw decode_error("cannot reopen for a decoding thread");
        TiffCloser closer{tt};
        if (!TIFFSetDirectory(tt, tdir_t(page))) throw decode_error("cannot reopen the page for a decoding thread");
        decode_blocks(tt, w, workers);
      } catch (...) {
        errors[w] = std::current_exception();
      }
    });
  try {
    decode_blocks(t, 0, workers);
  } catch (...) {
    errors[0] = std::current_exception();
  }
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

// ---- OME-XML: just what decides channel order (Pixels DimensionOrder/SizeC/Z/T, TiffData, Channel names) ---
std::string xml_attr(const std::string& tag, const std::string& key) {
  size_t at = 0;
  while ((at = tag.find(key + "=", at)) != std::string::npos) {
    if (at > 0 && !std::isspace(static_cast<unsigned char>(tag[at - 1]))) { at += key.size(); continue; }
    size_t q = at + key.size() + 1;
    if (q >= tag.size() || (tag[q] != '"' && tag[q] != '\'')) return "";
    size_t end = tag.find(tag[q], q + 1);
    return end == std::string::npos ? "" : tag.substr(q + 1, end - q - 1);
  }
  return "";
}
// Start tags named `name` (with or without a namespace prefix), as their text up to '>'.
std::vector<std::string> xml_tags(const std::string& xml, const std::string& name, size_t from = 0, size_t to = std::string::npos) {
  std::vector<std::string> out;
  size_t at = from;
  to = std::min(to, xml.size());
  while ((at = xml.find('<', at)) != std::string::npos && at < to) {
    size_t end = xml.find('>', at);
    if (end == std::string::npos) break;
    size_t n0 = at + 1, n1 = n0;
    while (n1 < end && !std::isspace(static_cast<unsigned char>(xml[n1])) && xml[n1] != '/' ) ++n1;
    std::string tag = xml.substr(n0, n1 - n0);
    size_t colon = tag.find(':');
    if (colon != std::string::npos) tag = tag.substr(colon + 1);
    if (tag == name) out.push_back(xml.substr(at, end - at + 1));
    at = end;
  }
  return out;
}
int to_int(const std::string& s, int dflt) {
  if (s.empty()) return dflt;
  try { return std::stoi(s); } catch (...) { return dflt; }
}

struct OmeLayout {
  std::vector<int> channel_ifd;  // IFD holding channel c at Z=0, T=0
  std::vector<std::string> names;
};

// Returns an empty layout when the description is not OME-XML or does not describe these pages.
OmeLayout ome_layout(const std::string& xml, int n_pages, const std::string& name) {
  OmeLayout L;
  if (xml.find("<OME") == std::string::npos && xml.find(":OME") == std::string::npos) return L;
  auto pixels = xml_tags(xml, "Pixels");
  if (pixels.empty()) return L;
  const std::string& px = pixels[0];
  int C = to_int(xml_attr(px, "SizeC"), 1), Z = to_int(xml_attr(px, "SizeZ"), 1), T = to_int(xml_attr(px, "SizeT"), 1);
  std::string order = xml_attr(px, "DimensionOrder");
  if (order.size() != 5 || order.substr(0, 2) != "XY" || C <= 0 || Z <= 0 || T <= 0) return L;
  // Restrict the search for channels/TiffData to the first image (first Pixels element .. its end).
  size_t p0 = xml.find(px), p1 = xml.find("Pixels>", p0 + px.size());
  std::vector<std::string> chans = xml_tags(xml, "Channel", p0, p1);
  // An RGB channel (SamplesPerPixel 3) is one OME channel stored as one page of 3 samples; the caller turns
  // samples into channels, so names are kept only when they match the channel count.
  int64_t n_planes = int64_t(C) * Z * T;
  // Plane index of (c, z, t) in DimensionOrder: the first letter after XY varies fastest.
  std::map<char, int64_t> size{{'C', C}, {'Z', Z}, {'T', T}}, stride;
  int64_t s = 1;
  for (int i = 2; i < 5; ++i) { stride[order[i]] = s; s *= size[order[i]]; }
  std::vector<int64_t> plane_ifd(size_t(n_planes), -1);
  auto tiffdata = xml_tags(xml, "TiffData", p0, p1);
  if (tiffdata.empty()) {
    for (int64_t i = 0; i < n_planes; ++i) plane_ifd[size_t(i)] = i;
  } else {
    for (const auto& td : tiffdata) {
      int ifd = to_int(xml_attr(td, "IFD"), 0);
      int fc = to_int(xml_attr(td, "FirstC"), 0), fz = to_int(xml_attr(td, "FirstZ"), 0), ft = to_int(xml_attr(td, "FirstT"), 0);
      std::string pc = xml_attr(td, "PlaneCount");
      int64_t count = pc.empty() ? (xml_attr(td, "IFD").empty() ? n_planes : 1) : to_int(pc, 1);
      int64_t first = fc * stride['C'] + fz * stride['Z'] + ft * stride['T'];
      for (int64_t k = 0; k < count && first + k < n_planes; ++k) plane_ifd[size_t(first + k)] = ifd + k;
    }
  }
  for (int c = 0; c < C; ++c) {
    int64_t ifd = plane_ifd[size_t(c * stride['C'])];
    if (ifd < 0 || ifd >= n_pages)
      fail(name, "OME-XML places channel " + std::to_string(c) + " in IFD " + std::to_string(ifd) + " but the file has " +
                     std::to_string(n_pages) + " pages");
    L.channel_ifd.push_back(int(ifd));
  }
  for (size_t c = 0; c < chans.size() && c < size_t(C); ++c) L.names.push_back(xml_attr(chans[c], "Name"));
  if (!L.names.empty() && L.names.size() != size_t(C)) L.names.clear();
  return L;
}

}  // namespace

namespace {

// decode_tiff, or with `into`: the pixels go to channels [c0, c0 + channels) of *into (which must have the file's
// height and width), divided by divisors[k] when given, and the returned image holds the header only; with
// header_only nothing is decoded.
Image decode_tiff_impl(const uint8_t* bytes, size_t n, const std::string& name, const DecodeLimits& lim, Image* into,
                       int c0, const float* const* divisors, bool header_only = false) {
  install_tiff_handlers();
  tiff_error.clear();
  MemFile mf;
  mf.in = bytes;
  mf.size = n;
  // No "m": libtiff reads strips straight from the bytes through mem_map.
  TIFF* t =
      TIFFClientOpen(name.c_str(), "r", &mf, mem_read, mem_write, mem_seek, mem_close, mem_size, mem_map, mem_unmap);
  if (!t) fail(name, "not a readable TIFF" + (tiff_error.empty() ? std::string() : " (" + tiff_error + ")"));
  TiffCloser closer{t};

  // Pass 1: every page's header, checked before any pixel allocation.
  std::vector<PageInfo> pages;
  do {
    if (int(pages.size()) >= lim.max_channels) fail(name, "more than " + std::to_string(lim.max_channels) + " pages");
    PageInfo p = page_info(t);
    int page = int(pages.size());
    std::string where = "page " + std::to_string(page) + ": ";
    check_shape(name, p.spp, p.height, p.width, lim);
    if (p.photometric == PHOTOMETRIC_PALETTE) fail(name, where + "palette (colour-mapped) TIFFs are not supported");
    if (p.photometric == PHOTOMETRIC_YCBCR || p.compression == COMPRESSION_OJPEG || p.compression == COMPRESSION_JPEG)
      fail(name, where + "JPEG/YCbCr-compressed TIFFs are not supported");
    bool ok_bits = (p.format == SAMPLEFORMAT_IEEEFP && (p.bps == 32 || p.bps == 64)) ||
                   ((p.format == SAMPLEFORMAT_UINT || p.format == SAMPLEFORMAT_INT) && (p.bps == 8 || p.bps == 16 || p.bps == 32));
    if (!ok_bits)
      fail(name, where + "unsupported sample type (" + std::to_string(p.bps) + " bits, SampleFormat " +
                     std::to_string(p.format) + "); 8/16/32-bit integers and 32/64-bit floats are read");
    if (!TIFFIsCODECConfigured(p.compression))
      fail(name, where + "compression scheme " + std::to_string(p.compression) + " is not available in this libtiff");
    pages.push_back(p);
  } while (TIFFReadDirectory(t));
  // TIFFReadDirectory returns 0 both at the last page and on a broken directory chain; only the error
  // handler tells them apart. A file with pages missing is an error, not a file with fewer channels.
  if (!tiff_error.empty()) fail(name, "corrupt or truncated page directory after page " + std::to_string(pages.size() - 1) + " (" + tiff_error + ")");

  std::string description;
  {
    TIFFSetDirectory(t, 0);
    char* desc = nullptr;
    if (TIFFGetField(t, TIFFTAG_IMAGEDESCRIPTION, &desc) && desc) description = desc;
  }
  OmeLayout ome = ome_layout(description, int(pages.size()), name);
  std::vector<int> use;  // pages that become channels, in channel order
  if (!ome.channel_ifd.empty()) use = ome.channel_ifd;
  else
    for (int i = 0; i < int(pages.size()); ++i)
      if (!(pages[size_t(i)].subfile & FILETYPE_REDUCEDIMAGE)) use.push_back(i);  // thumbnails are not channels
  if (use.empty()) fail(name, "every page is marked as a reduced-resolution copy");

  const PageInfo& first = pages[size_t(use[0])];
  int64_t channels = 0;
  for (int i : use) {
    const PageInfo& p = pages[size_t(i)];
    if (p.width != first.width || p.height != first.height || p.bps != first.bps || p.format != first.format)
      fail(name, "page " + std::to_string(i) + " is " + std::to_string(p.width) + "x" + std::to_string(p.height) + " " +
                     std::to_string(p.bps) + "-bit but page " + std::to_string(use[0]) + " is " + std::to_string(first.width) +
                     "x" + std::to_string(first.height) + " " + std::to_string(first.bps) +
                     "-bit; pages stacked as channels must agree");
    channels += p.spp;
  }
  check_shape(name, channels, first.height, first.width, lim);

  if (into && (int64_t(first.height) != into->height || int64_t(first.width) != into->width ||
               c0 + channels > into->channels))
    fail(name, std::to_string(first.width) + "x" + std::to_string(first.height) + "x" + std::to_string(channels) +
                   " does not fit channels " + std::to_string(c0) + ".. of a " + std::to_string(into->width) + "x" +
                   std::to_string(into->height) + "x" + std::to_string(into->channels) + " image");
  Image img = into || header_only ? Image() : Image(int(channels), int(first.height), int(first.width));
  img.channels = int(channels), img.height = int(first.height), img.width = int(first.width);
  img.source = name;
  img.bits = first.bps == 64 ? 32 : first.bps;
  img.is_float = first.format == SAMPLEFORMAT_IEEEFP;
  img.max_value = img.is_float ? 1.0f
                  : first.format == SAMPLEFORMAT_INT ? float((uint64_t(1) << (first.bps - 1)) - 1)
                                                      : float((uint64_t(1) << first.bps) - 1);
  if (header_only) return img;
  int c = 0;
  for (int i : use) {
    if (!TIFFSetDirectory(t, tdir_t(i))) fail(name, "cannot read page " + std::to_string(i) + " (" + tiff_error + ")");
    read_tiff_page(t, TiffBytes{bytes, n}, pages[size_t(i)], into ? *into : img, (into ? c0 : 0) + c, name, i,
                   divisors ? divisors + c : nullptr, lim.threads);
    c += pages[size_t(i)].spp;
  }
  if (!ome.names.empty() && int(ome.names.size()) == img.channels) img.channel_names = ome.names;
  return img;
}

}  // namespace

Image decode_tiff(const uint8_t* bytes, size_t n, const std::string& name, const DecodeLimits& lim) {
  return decode_tiff_impl(bytes, n, name, lim, nullptr, 0, nullptr);
}

Image decode_tiff_into(const uint8_t* bytes, size_t n, const std::string& name, Image& dst, int c0,
                       const float* const* divisors, const DecodeLimits& lim) {
  return decode_tiff_impl(bytes, n, name, lim, &dst, c0, divisors);
}

Image read_tiff_header(const uint8_t* bytes, size_t n, const std::string& name, const DecodeLimits& lim) {
  return decode_tiff_impl(bytes, n, name, lim, nullptr, 0, nullptr, true);
}

bool is_tiff(const uint8_t* b, size_t n) {
  return n >= 4 && ((b[0] == 'I' && b[1] == 'I' && (b[2] == 42 || b[2] == 43) && b[3] == 0) ||
                    (b[0] == 'M' && b[1] == 'M' && b[2] == 0 && (b[3] == 42 || b[3] == 43)));
}

// ---- PNG (libpng) ----------------------------------------------------------------------------------------
// libpng reports fatal errors through an error function that must not return; as for libjpeg below, the way
// out is a longjmp back to the setjmp in png_decode_into, so everything with a destructor lives in PngState
// (owned by the caller) and png_decode_into holds only trivially destructible locals. (stb_image, used before,
// has undefined behaviour on corrupt PNGs in Debian's 2.27: tests/fuzz/corpus/image/stb_png_getn_memcpy_null.bin.)
//
// Samples as Pillow/stb give them: grey and RGB at 8 or 16 bits as stored; palette expanded to RGB; 1/2/4-bit
// grey scaled to 8 bits (x255, x85, x17, as Pillow's "L;1/2/4" unpackers); alpha (an alpha channel or a tRNS
// transparency entry) dropped, as convert("RGB") / convert("L"); gAMA/sBIT/iCCP are not applied.
namespace {
struct PngState {
  png_structp png = nullptr;
  png_infop info = nullptr;
  const uint8_t* bytes = nullptr;
  size_t n = 0, pos = 0;
  bool truncated = false;
  char message[256] = {};
  const DecodeLimits* lim = nullptr;
  const std::string* name = nullptr;
  Image* img = nullptr;
  std::vector<uint8_t> buf;          // the decoded rows, height * rowbytes
  std::vector<png_bytep> rows;
  ~PngState() {
    if (png) png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
  }
};

void png_error_fn(png_structp png, png_const_charp msg) {
  auto* st = static_cast<PngState*>(png_get_error_ptr(png));
  std::snprintf(st->message, sizeof st->message, "%s", msg ? msg : "unknown error");
  png_longjmp(png, 1);
}
void png_warning_fn(png_structp, png_const_charp) {}  // ancillary-chunk problems: libpng skips the chunk and goes on

void png_read_fn(png_structp png, png_bytep out, size_t k) {
  auto* st = static_cast<PngState*>(png_get_io_ptr(png));
  if (k > st->n - st->pos) {
    st->truncated = true;
    png_error(png, "unexpected end of file");
  }
  std::memcpy(out, st->bytes + st->pos, k);
  st->pos += k;
}

// Decodes st.bytes into *st.img; returns false when libpng reported an error (message in st.message). A C++
// exception (limits, allocation) may propagate: nothing here needs unwinding, and ~PngState cleans up.
bool png_decode_into(PngState& st) {
  st.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &st, png_error_fn, png_warning_fn);
  if (!st.png) throw std::bad_alloc();
  st.info = png_create_info_struct(st.png);
  if (!st.info) throw std::bad_alloc();
  if (setjmp(png_jmpbuf(st.png))) return false;
  png_set_read_fn(st.png, &st, png_read_fn);
  // png_read_info allocates nothing per pixel; the header's size is checked against our limits right after
  // (libpng's own default limit, 1000000 pixels per side, is above ours).
  png_read_info(st.png, st.info);
  png_uint_32 w = 0, h = 0;
  int depth = 0, color = 0, interlace = 0;
  png_get_IHDR(st.png, st.info, &w, &h, &depth, &color, &interlace, nullptr, nullptr);
  const int c = (color & PNG_COLOR_MASK_COLOR) ? 3 : 1;  // palette -> RGB; alpha dropped
  check_shape(*st.name, c, int64_t(h), int64_t(w), *st.lim);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(st.png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(st.png);
  // Transparency, as an alpha channel or a tRNS chunk (which libpng's palette expansion turns into alpha
  // anyway), becomes alpha and is then stripped.
  if (png_get_valid(st.png, st.info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(st.png);
  if ((color & PNG_COLOR_MASK_ALPHA) || png_get_valid(st.png, st.info, PNG_INFO_tRNS)) png_set_strip_alpha(st.png);
  png_set_interlace_handling(st.png);
  png_read_update_info(st.png, st.info);
  const int channels = png_get_channels(st.png, st.info);
  const int bits = png_get_bit_depth(st.png, st.info);
  const size_t rowbytes = png_get_rowbytes(st.png, st.info);
  if (channels != c || (bits != 8 && bits != 16) || rowbytes != size_t(w) * c * size_t(bits / 8))
    png_error(st.png, "unexpected row layout after the transformations");
  *st.img = Image(c, int(h), int(w));
  st.buf.resize(rowbytes * h);
  st.rows.resize(h);
  for (png_uint_32 y = 0; y < h; ++y) st.rows[y] = st.buf.data() + size_t(y) * rowbytes;
  png_read_image(st.png, st.rows.data());
  png_read_end(st.png, nullptr);  // checks the CRCs and zlib stream of the chunks after the image data
  st.img->bits = bits;
  st.img->max_value = bits == 16 ? 65535.0f : 255.0f;
  const size_t hw = size_t(h) * w;
  for (int k = 0; k < c; ++k) {
    float* dst = st.img->plane(k);
    if (bits == 16)
      for (size_t i = 0; i < hw; ++i) {
        const uint8_t* s = st.buf.data() + 2 * (i * size_t(c) + size_t(k));
        dst[i] = float((unsigned(s[0]) << 8) | s[1]);  // PNG stores 16-bit samples big-endian
      }
    else
      for (size_t i = 0; i < hw; ++i) dst[i] = st.buf[i * size_t(c) + size_t(k)];
  }
  return true;
}
}  // namespace

Image decode_png(const uint8_t* bytes, size_t n, const std::string& name, const DecodeLimits& lim) {
  Image img;
  PngState st;
  st.bytes = bytes;
  st.n = n;
  st.lim = &lim;
  st.name = &name;
  st.img = &img;
  if (!png_decode_into(st))
    fail(name, std::string(st.truncated ? "truncated PNG" : "corrupt PNG") + " (" + st.message + ")");
  img.source = name;
  return img;
}

// ---- JPEG (libjpeg-turbo) --------------------------------------------------------------------------------
// libjpeg-turbo is what Pillow decodes JPEG with, so with the same settings (islow IDCT, fancy upsampling:
// both libjpeg's and Pillow's defaults) the samples are Pillow's. (stb_image, used before, differed by up to
// 3 levels, and Debian's 2.27 has undefined behaviour on corrupt entropy data: tests/fuzz/corpus/image/
// stb_jpeg_grow_buffer_shift_ub.bin.)
//
// libjpeg reports fatal errors by calling error_exit, which must not return; the standard way out is longjmp
// back to a setjmp. A longjmp must not skip C++ destructors, so everything with one lives in JpegState (owned
// by the caller of jpeg_decode_into) and jpeg_decode_into itself holds only trivially destructible locals.
namespace {
struct JpegError {
  jpeg_error_mgr pub;  // first member: libjpeg hands back a jpeg_error_mgr* that is cast to JpegError*
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool truncated;
};

// Pillow refuses a truncated JPEG ("image file is truncated") while libjpeg only warns and pads the rest
// with grey; a truncated file is an error here too. Other corrupt-data warnings are left as libjpeg (and
// Pillow) treat them: the decoder resynchronises and goes on.
void jpeg_error_exit(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->message);
  std::longjmp(e->jump, 1);
}
void jpeg_emit_message(j_common_ptr cinfo, int level) {
  auto* e = reinterpret_cast<JpegError*>(cinfo->err);
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
    e->truncated = true;
    (*cinfo->err->format_message)(cinfo, e->message);
    std::longjmp(e->jump, 1);
  }
  if (level < 0) ++cinfo->err->num_warnings;
}

// A progressive JPEG may hold thousands of tiny scans, each a full pass over the coefficients (a known
// decompression-time bomb); libjpeg-turbo's own tools cap them the same way (djpeg -maxscans).
constexpr int kMaxJpegScans = 1000;
void jpeg_progress(j_common_ptr cinfo) {
  if (cinfo->is_decompressor) {
    auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
    if (d->inputctl && d->input_scan_number > kMaxJpegScans) {
      auto* e = reinterpret_cast<JpegError*>(cinfo->err);
      std::snprintf(e->message, sizeof e->message, "more than %d progressive scans", kMaxJpegScans);
      std::longjmp(e->jump, 1);
    }
  }
}

struct JpegState {
  jpeg_decompress_struct cinfo;
  JpegError err;
  jpeg_progress_mgr progress;
  bool created = false;
  const uint8_t* bytes = nullptr;
  size_t n = 0;
  const DecodeLimits* lim = nullptr;
  const std::string* name = nullptr;
  Image* img = nullptr;
  std::vector<uint8_t> row;
  ~JpegState() {
    if (created) jpeg_destroy_decompress(&cinfo);
  }
};

// Decodes st.bytes into *st.img; returns false when libjpeg reported an error (message in st.err). A C++
// exception (limits, allocation) may propagate: nothing here needs unwinding, and ~JpegState cleans up.
bool jpeg_decode_into(JpegState& st) {
  jpeg_decompress_struct& ci = st.cinfo;
  ci.err = jpeg_std_error(&st.err.pub);
  st.err.pub.error_exit = jpeg_error_exit;
  st.err.pub.emit_message = jpeg_emit_message;
  st.err.message[0] = 0;
  st.err.truncated = false;
  if (setjmp(st.err.jump)) return false;
  jpeg_create_decompress(&ci);
  st.created = true;
  st.progress.progress_monitor = jpeg_progress;
  ci.progress = &st.progress;
  jpeg_mem_src(&ci, st.bytes, static_cast<unsigned long>(st.n));
  jpeg_read_header(&ci, TRUE);
  if (ci.num_components == 1) ci.out_color_space = JCS_GRAYSCALE;
  else if (ci.num_components == 3) ci.out_color_space = JCS_RGB;  // YCbCr (or RGB) -> RGB, as Pillow
  else
    fail(*st.name, "JPEG with " + std::to_string(ci.num_components) +
                       " components (CMYK/YCCK) is not supported; 1 (grey) and 3 (RGB) are read");
  check_shape(*st.name, ci.num_components, ci.image_height, ci.image_width, *st.lim);
  jpeg_start_decompress(&ci);
  const int c = ci.output_components, h = int(ci.output_height), w = int(ci.output_width);
  check_shape(*st.name, c, h, w, *st.lim);
  *st.img = Image(c, h, w);
  st.row.resize(size_t(w) * c);
  const size_t hw = size_t(h) * w;
  while (ci.output_scanline < ci.output_height) {
    const size_t y = ci.output_scanline;
    JSAMPROW rows[1] = {st.row.data()};
    if (jpeg_read_scanlines(&ci, rows, 1) != 1) break;
    float* dst = st.img->pixels.data() + y * size_t(w);
    for (int k = 0; k < c; ++k)
      for (int x = 0; x < w; ++x) dst[size_t(k) * hw + size_t(x)] = st.row[size_t(x) * c + k];
  }
  jpeg_finish_decompress(&ci);
  return true;
}
}  // namespace

Image decode_jpeg(const uint8_t* bytes, size_t n, const std::string& name, const DecodeLimits& lim) {
  Image img;
  JpegState st;
  st.bytes = bytes;
  st.n = n;
  st.lim = &lim;
  st.name = &name;
  st.img = &img;
  if (!jpeg_decode_into(st))
    fail(name, std::string(st.err.truncated ? "truncated JPEG" : "corrupt JPEG") + " (" + st.err.message + ")");
  img.source = name;
  img.bits = 8;
  img.max_value = 255.0f;
  return img;
}

// ---- JPEG 2000 (OpenJPEG) -------------------------------------------------------------------------------
namespace {
struct OpjMem {
  const uint8_t* p;
  size_t n, pos;
};
OPJ_SIZE_T opj_mem_read(void* buf, OPJ_SIZE_T k, void* u) {
  auto* m = static_cast<OpjMem*>(u);
  if (m->pos >= m->n) return OPJ_SIZE_T(-1);
  size_t take = std::min<size_t>(k, m->n - m->pos);
  std::memcpy(buf, m->p + m->pos, take);
  m->pos += take;
  return take;
}
OPJ_OFF_T opj_mem_skip(OPJ_OFF_T k, void* u) {
  auto* m = static_cast<OpjMem*>(u);
  if (k < 0) {
    if (size_t(-k) > m->pos) return -1;
    m->pos -= size_t(-k);
  } else {
    m->pos = std::min(m->n, m->pos + size_t(k));
  }
  return k;
}
OPJ_BOOL opj_mem_seek(OPJ_OFF_T k, void* u) {
  auto* m = static_cast<OpjMem*>(u);
  if (k < 0 || size_t(k) > m->n) return OPJ_FALSE;
  m->pos = size_t(k);
  return OPJ_TRUE;
}
void opj_msg(const char* msg, void* u) {
  auto* s = static_cast<std::string*>(u);
  if (s->empty()) {
    *s = msg;
    while (!s->empty() && (s->back() == '\n' || s->back() == ' ')) s->pop_back();
  }
}
void opj_quiet(const char*, void*) {}
}  // namespace

Image decode_jp2(const uint8_t* bytes, size_t n, const std::string& name, const DecodeLimits& lim) {
  static const uint8_t jp2_magic[12] = {0, 0, 0, 0x0C, 'j', 'P', ' ', ' ', 0x0D, 0x0A, 0x87, 0x0A};
  OPJ_CODEC_FORMAT fmt;
  if (n >= 12 && std::memcmp(bytes, jp2_magic, 12) == 0) fmt = OPJ_CODEC_JP2;
  else if (n >= 4 && bytes[0] == 0xFF && bytes[1] == 0x4F && bytes[2] == 0xFF && bytes[3] == 0x51) fmt = OPJ_CODEC_J2K;
  else fail(name, "not a JPEG 2000 file");
  std::string err;
  opj_codec_t* codec = opj_create_decompress(fmt);
  opj_set_error_handler(codec, opj_msg, &err);
  opj_set_warning_handler(codec, opj_quiet, nullptr);
  opj_set_info_handler(codec, opj_quiet, nullptr);
  OpjMem mem{bytes, n, 0};
  opj_stream_t* stream = opj_stream_create(1 << 16, OPJ_TRUE);
  opj_stream_set_user_data(stream, &mem, nullptr);
  opj_stream_set_user_data_length(stream, n);
  opj_stream_set_read_function(stream, opj_mem_read);
  opj_stream_set_skip_function(stream, opj_mem_skip);
  opj_stream_set_seek_function(stream, opj_mem_seek);
  opj_image_t* image = nullptr;
  struct Cleanup {
    opj_codec_t* c; opj_stream_t* s; opj_image_t** i;
    ~Cleanup() { if (*i) opj_image_destroy(*i); opj_stream_destroy(s); opj_destroy_codec(c); }
  } cleanup{codec, stream, &image};
  opj_dparameters_t params;
  opj_set_default_decoder_parameters(&params);
  if (!opj_setup_decoder(codec, &params)) fail(name, "cannot set up the JPEG 2000 decoder");
  if (!opj_read_header(stream, codec, &image) || !image)
    fail(name, "corrupt JPEG 2000 header" + (err.empty() ? std::string() : " (" + err + ")"));
  int64_t w = int64_t(image->x1) - image->x0, h = int64_t(image->y1) - image->y0;
  check_shape(name, image->numcomps, h, w, lim);
  for (OPJ_UINT32 c = 0; c < image->numcomps; ++c) {
    const opj_image_comp_t& cp = image->comps[c];
    if (cp.dx != 1 || cp.dy != 1) fail(name, "subsampled JPEG 2000 components are not supported");
    if (cp.prec == 0 || cp.prec > 16) fail(name, "JPEG 2000 precision of " + std::to_string(cp.prec) + " bits is not supported");
  }
  if (!opj_decode(codec, stream, image) || !opj_end_decompress(codec, stream))
    fail(name, "corrupt or truncated JPEG 2000 data" + (err.empty() ? std::string() : " (" + err + ")"));
  Image img(int(image->numcomps), int(h), int(w));
  img.source = name;
  unsigned prec = image->comps[0].prec;
  img.bits = prec <= 8 ? 8 : 16;
  img.max_value = float((1u << prec) - 1);
  for (OPJ_UINT32 c = 0; c < image->numcomps; ++c) {
    const opj_image_comp_t& cp = image->comps[c];
    if (!cp.data || int64_t(cp.w) != w || int64_t(cp.h) != h) fail(name, "JPEG 2000 component " + std::to_string(c) + " was not decoded");
    float* dst = img.plane(int(c));
    for (size_t i = 0; i < img.plane_size(); ++i) dst[i] = float(cp.data[i]);
  }
  return img;
}

Image decode_image(const uint8_t* b, size_t n, const std::string& name, const DecodeLimits& lim) {
  if (n == 0) fail(name, "empty file");
  if (is_tiff(b, n)) return decode_tiff(b, n, name, lim);
  if (n >= 8 && std::memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0) return decode_png(b, n, name, lim);
  if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return decode_jpeg(b, n, name, lim);
  if (n >= 4 && ((b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] == 0x0C) || (b[0] == 0xFF && b[1] == 0x4F)))
    return decode_jp2(b, n, name, lim);
  fail(name, "unrecognised image format (TIFF, PNG, JPEG and JPEG 2000 are read)");
}

Image read_image(const std::string& path, const DecodeLimits& lim) {
  std::vector<uint8_t> bytes = read_file_bytes(path);
  return decode_image(bytes.data(), bytes.size(), path, lim);
}

// ---- writers --------------------------------------------------------------------------------------------
void write_tiff(const std::string& path, const Image& img, int bits, bool compress) {
  std::vector<uint8_t> out = encode_tiff(img, bits, compress, path);
  write_file_atomic(path, out.data(), out.size());
}

std::vector<uint8_t> encode_tiff(const Image& img, int bits, bool compress, const std::string& path) {
  if (bits != 8 && bits != 16 && bits != 32) throw std::runtime_error(path + ": TIFF writer supports 8, 16 or 32 (float) bits");
  install_tiff_handlers();
  tiff_error.clear();
  std::vector<uint8_t> out;
  MemFile mf;
  mf.out = &out;
  TIFF* t = TIFFClientOpen(path.c_str(), "w", &mf, mem_read, mem_write, mem_seek, mem_close, mem_size, mem_map, mem_unmap);
  if (!t) throw std::runtime_error(path + ": cannot create TIFF (" + tiff_error + ")");
  const float maxv = bits == 32 ? 0.0f : float((1u << bits) - 1);
  const uint32_t rows_per_strip = std::max(1, 8192 / std::max(1, img.width * bits / 8));
  std::vector<uint8_t> row(size_t(img.width) * bits / 8);
  bool ok = true;
  for (int c = 0; c < img.channels && ok; ++c) {
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, uint32_t(img.width));
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, uint32_t(img.height));
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, uint16_t(bits));
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, uint16_t(1));
    TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, uint16_t(bits == 32 ? SAMPLEFORMAT_IEEEFP : SAMPLEFORMAT_UINT));
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, uint16_t(PHOTOMETRIC_MINISBLACK));
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, uint16_t(PLANARCONFIG_CONTIG));
    TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, rows_per_strip);
    if (compress) {
      TIFFSetField(t, TIFFTAG_COMPRESSION, uint16_t(COMPRESSION_ADOBE_DEFLATE));
      TIFFSetField(t, TIFFTAG_PREDICTOR, uint16_t(PREDICTOR_HORIZONTAL));
    } else {
      TIFFSetField(t, TIFFTAG_COMPRESSION, uint16_t(COMPRESSION_NONE));
    }
    if (img.channels > 1) {
      TIFFSetField(t, TIFFTAG_SUBFILETYPE, uint32_t(FILETYPE_PAGE));
      TIFFSetField(t, TIFFTAG_PAGENUMBER, uint16_t(c), uint16_t(img.channels));
    }
    for (int y = 0; y < img.height && ok; ++y) {
      const float* src = img.plane(c) + size_t(y) * img.width;
      for (int x = 0; x < img.width; ++x) {
        if (bits == 32) {  // float samples as they are (NaN and Inf included)
          std::memcpy(&row[4 * size_t(x)], &src[x], 4);
          continue;
        }
        float v = std::nearbyint(clamp_sample(src[x], maxv));
        if (bits == 8) row[size_t(x)] = uint8_t(v);
        else { uint16_t u = uint16_t(v); std::memcpy(&row[2 * size_t(x)], &u, 2); }
      }
      ok = TIFFWriteScanline(t, row.data(), uint32_t(y), 0) == 1;
    }
    ok = ok && TIFFWriteDirectory(t);
  }
  TIFFClose(t);
  if (!ok) throw std::runtime_error(path + ": TIFF encoding failed (" + tiff_error + ")");
  return out;
}

void write_png(const std::string& path, const Image& img) {
  std::vector<uint8_t> out = encode_png(img, path);
  write_file_atomic(path, out.data(), out.size());
}

namespace {
// The writer's side of the same longjmp discipline as png_decode_into: objects with destructors live in
// PngWriteState, png_encode_into holds trivially destructible locals only.
struct PngWriteState {
  png_structp png = nullptr;
  png_infop info = nullptr;
  char message[256] = {};
  const Image* img = nullptr;
  std::vector<uint8_t> hwc;
  std::vector<png_bytep> rows;
  std::vector<uint8_t>* out = nullptr;
  ~PngWriteState() {
    if (png) png_destroy_write_struct(&png, info ? &info : nullptr);
  }
};
void png_write_error_fn(png_structp png, png_const_charp msg) {
  auto* st = static_cast<PngWriteState*>(png_get_error_ptr(png));
  std::snprintf(st->message, sizeof st->message, "%s", msg ? msg : "unknown error");
  png_longjmp(png, 1);
}
void png_write_fn(png_structp png, png_bytep data, size_t k) {
  auto* o = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(png));
  o->insert(o->end(), data, data + k);
}
void png_flush_fn(png_structp) {}

bool png_encode_into(PngWriteState& st) {
  st.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &st, png_write_error_fn, png_warning_fn);
  if (!st.png) throw std::bad_alloc();
  st.info = png_create_info_struct(st.png);
  if (!st.info) throw std::bad_alloc();
  if (setjmp(png_jmpbuf(st.png))) return false;
  png_set_write_fn(st.png, st.out, png_write_fn, png_flush_fn);
  const Image& img = *st.img;
  png_set_IHDR(st.png, st.info, png_uint_32(img.width), png_uint_32(img.height), 8,
               img.channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(st.png, st.info);  // no tIME chunk: the same image gives the same bytes
  png_write_image(st.png, st.rows.data());
  png_write_end(st.png, nullptr);
  return true;
}
}  // namespace

std::vector<uint8_t> encode_png(const Image& img, const std::string& path) {
  if (img.channels != 1 && img.channels != 3) throw std::runtime_error(path + ": PNG writer takes 1 or 3 channels");
  if (img.width <= 0 || img.height <= 0) throw std::runtime_error(path + ": PNG writer needs a non-empty image");
  std::vector<uint8_t> out;
  PngWriteState st;
  st.img = &img;
  st.out = &out;
  st.hwc.resize(img.plane_size() * img.channels);
  for (int c = 0; c < img.channels; ++c) {
    const float* p = img.plane(c);
    for (size_t i = 0; i < img.plane_size(); ++i) st.hwc[i * img.channels + c] = uint8_t(std::nearbyint(clamp_sample(p[i], 255.0f)));
  }
  st.rows.resize(size_t(img.height));
  for (int y = 0; y < img.height; ++y) st.rows[size_t(y)] = st.hwc.data() + size_t(y) * img.width * img.channels;
  if (!png_encode_into(st)) throw std::runtime_error(path + ": PNG encoding failed (" + st.message + ")");
  return out;
}

}  // namespace tabula::data
