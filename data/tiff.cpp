// TIFF decoding (libtiff) and writing. Everything decodes from bytes whose size is known (in memory, or a file through
// its descriptor: TiffFile), so a header's claims can be checked against both the limits and the bytes present.
#include <fcntl.h>
#include <sys/stat.h>
#include <tiffio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "data/decode_common.h"
#include "data/image.h"
#include "data/tiff_predictor.h"
#include "engine/fileio.h"

namespace tabula::data {

using detail::check_shape;
using detail::clamp_sample;
using detail::fail;

namespace {

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
  int fd = -1;                          // or reading the file itself (TiffFile): pread, nothing mapped
  size_t size = 0, pos = 0;
};
tmsize_t mem_read(thandle_t h, void* buf, tmsize_t n) {
  auto* f = static_cast<MemFile*>(h);
  if (f->fd >= 0) {
    size_t done = 0;
    while (done < size_t(n) && f->pos + done < f->size) {
      const ssize_t k = ::pread(f->fd, static_cast<uint8_t*>(buf) + done, size_t(n) - done, off_t(f->pos + done));
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) break;
      done += size_t(k);
    }
    f->pos += done;
    return tmsize_t(done);
  }
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
  uint16_t predictor = PREDICTOR_NONE;
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
  // Only the codecs that take a predictor know the tag (another codec's state is not a predictor's).
  if (p.compression == COMPRESSION_LZW || p.compression == COMPRESSION_ADOBE_DEFLATE ||
      p.compression == COMPRESSION_DEFLATE)
    TIFFGetField(t, TIFFTAG_PREDICTOR, &p.predictor);
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

// Native samples: n samples of T, `stride` apart (interleaved pixels), gathered into a plane's row.
template <class T>
void gather_samples(const uint8_t* src, size_t n, size_t stride, uint8_t* dst) {
  for (size_t i = 0; i < n; ++i) std::memcpy(dst + sizeof(T) * i, src + sizeof(T) * i * stride, sizeof(T));
}
using GatherFn = void (*)(const uint8_t*, size_t, size_t, uint8_t*);
GatherFn gatherer_of(size_t bytes_per_sample) {
  return bytes_per_sample == 1   ? gather_samples<uint8_t>
         : bytes_per_sample == 2 ? gather_samples<uint16_t>
         : bytes_per_sample == 4 ? gather_samples<uint32_t>
                                 : gather_samples<uint64_t>;
}

// Predictor=2 on integer samples is undone here (tiff_predictor.h), one row at a time before its conversion;
// libtiff's own pass is switched off on the handle (PREDICTOR_NONE before the first strip is read: libtiff sets up
// its decoder, and the predictor with it, on the first read of a directory). Floating-point predictors stay
// libtiff's.
bool own_predictor(const PageInfo& p) {
  return p.predictor == PREDICTOR_HORIZONTAL && p.format != SAMPLEFORMAT_IEEEFP &&
         (p.bps == 8 || p.bps == 16 || p.bps == 32);
}
void undo_predictor(uint8_t* row, size_t n, int stride, int bps) {
  if (bps == 8) undo_horizontal_predictor(row, n, stride);
  else if (bps == 16) undo_horizontal_predictor(reinterpret_cast<uint16_t*>(row), n, stride);
  else undo_horizontal_predictor(reinterpret_cast<uint32_t*>(row), n, stride);
}

// One strip or tile of a page: where its decoded rows go.
struct Block {
  uint32_t id = 0;
  int plane = 0;                  // sample plane (planar "separate"), else 0
  uint32_t y0 = 0, x0 = 0, rows = 0, cols = 0;
};

// The file as decode_tiff_impl reads it: its bytes in memory, or (fd >= 0) the file itself, n bytes long.
struct TiffBytes {
  const uint8_t* bytes = nullptr;
  size_t n = 0;
  int fd = -1;
};

// Where a page's samples go: float planes, channels [c0, c0 + spp) of *img, each divided by divisors[k] when
// divisors and divisors[k] are not null (row by row right after the conversion, while the row is in cache; the same
// single float division as divide_illumination); or, with `native`, the samples as the file stores them (host byte
// order), sample plane k of the page at native + k * height * width * bytes per sample.
struct PageDest {
  Image* img = nullptr;
  int c0 = 0;
  const float* const* divisors = nullptr;
  uint8_t* native = nullptr;
};

// Reading the file itself (TiffFile::read_native), an uncompressed page whose strips lie back to back in the file, each
// exactly its rows, is read with one pread per plane straight into the destination (one read per strip costs a
// system call per 8 KiB strip, more than the copy). Returns false for any other layout (libtiff's path then reads it).
bool read_planes_at_once(TIFF* t, const TiffBytes& file, const PageInfo& p, const std::vector<Block>& blocks,
                         const PageDest& dest) {
  uint16_t fill = FILLORDER_MSB2LSB;
  TIFFGetFieldDefaulted(t, TIFFTAG_FILLORDER, &fill);
  if (fill != FILLORDER_MSB2LSB || (p.bps != 8 && p.bps != 16 && p.bps != 32)) return false;
  const size_t bytes_per_sample = p.bps / 8, row_bytes = size_t(p.width) * bytes_per_sample;
  const size_t plane_bytes = row_bytes * p.height;
  // Every plane's blocks: contiguous in the file, each of exactly its rows, inside the file.
  std::vector<uint64_t> plane_start(size_t(p.spp), 0);
  uint64_t next = 0;
  for (size_t k = 0; k < blocks.size(); ++k) {
    const Block& b = blocks[k];
    int err = 0;
    const uint64_t off = TIFFGetStrileOffsetWithErr(t, b.id, &err);
    const uint64_t count = TIFFGetStrileByteCountWithErr(t, b.id, &err);
    if (err || count != row_bytes * b.rows || off > file.n || count > file.n - off) return false;
    if (b.y0 == 0) plane_start[size_t(b.plane)] = off;
    else if (off != next) return false;
    next = off + count;
  }
  for (int pl = 0; pl < (p.planar == PLANARCONFIG_SEPARATE ? int(p.spp) : 1); ++pl) {
    uint8_t* out = dest.native + size_t(pl) * plane_bytes;
    size_t done = 0;
    while (done < plane_bytes) {
      const ssize_t k = ::pread(file.fd, out + done, plane_bytes - done, off_t(plane_start[size_t(pl)] + done));
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) return false;  // the file shrank: libtiff's path says what is wrong
      done += size_t(k);
    }
    if (TIFFIsByteSwapped(t)) {
      if (p.bps == 16) TIFFSwabArrayOfShort(reinterpret_cast<uint16_t*>(out), tmsize_t(plane_bytes / 2));
      if (p.bps == 32) TIFFSwabArrayOfLong(reinterpret_cast<uint32_t*>(out), tmsize_t(plane_bytes / 4));
    }
  }
  return true;
}

// Reads the current directory into `dest`. Strips and tiles are decoded by libtiff into one strip/tile buffer and
// converted from there straight into the destination's rows; with the input mapped (decode_tiff), an uncompressed
// strip is copied once, from the file's bytes into that buffer. Native one-sample-per-block strips skip the buffer:
// libtiff decodes (or, uncompressed, copies) them straight into the destination rows.
// threads > 1: the compressed blocks of the page are shared among that many threads, each with its own TIFF handle
// on the same bytes (libtiff's codec state is per handle); every block is written by one thread to its own rows.
void read_tiff_page(TIFF* t, const TiffBytes& file, const PageInfo& p, const PageDest& dest, const std::string& name,
                    int page, int threads) {
  const std::string where = name + ": page " + std::to_string(page);
  const size_t bytes_per_sample = p.bps / 8;
  const bool separate = p.planar == PLANARCONFIG_SEPARATE && p.spp > 1;
  const int spb = separate ? 1 : p.spp;  // samples per pixel inside one strip/tile
  const int planes = separate ? p.spp : 1;
  const ConvertFn convert = converter_of(p);
  const GatherFn gather = gatherer_of(bytes_per_sample);
  const bool predictor = own_predictor(p);
  const size_t plane_bytes = size_t(p.width) * p.height * bytes_per_sample;
  auto decode_error = [&](const char* what) -> std::runtime_error {
    std::string msg = where + ": " + what + (tiff_error.empty() ? "" : " (" + tiff_error + ")");
    return std::runtime_error(msg);
  };
  const bool tiled = TIFFIsTiled(t);
  const bool direct = dest.native && !tiled && spb == 1;
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
  const size_t row_bytes = pitch * spb * bytes_per_sample;
  if (direct && file.fd >= 0 && p.compression == COMPRESSION_NONE && read_planes_at_once(t, file, p, blocks, dest))
    return;
  // Blocks first, first + step, ... through handle tt.
  auto decode_blocks = [&](TIFF* tt, size_t first, size_t step) {
    if (predictor && !TIFFSetField(tt, TIFFTAG_PREDICTOR, uint16_t(PREDICTOR_NONE)))
      throw decode_error("cannot take over the horizontal predictor");
    std::vector<uint8_t> buf(direct ? 0 : block_bytes);
    for (size_t k = first; k < blocks.size(); k += step) {
      const Block& b = blocks[k];
      uint8_t* out = direct ? dest.native + b.plane * plane_bytes + size_t(b.y0) * row_bytes : buf.data();
      if (tiled) {
        if (TIFFReadEncodedTile(tt, b.id, out, tmsize_t(block_bytes)) < tmsize_t(block_bytes))
          throw decode_error("truncated or corrupt tile");
      } else {
        const tmsize_t want = tmsize_t(row_bytes * b.rows);
        if (TIFFReadEncodedStrip(tt, b.id, out, want) < want) throw decode_error("truncated or corrupt strip");
      }
      for (uint32_t y = 0; y < b.rows; ++y) {
        uint8_t* row = out + size_t(y) * row_bytes;
        if (predictor) undo_predictor(row, size_t(b.cols) * spb, spb, p.bps);
        if (direct) continue;
        for (int s = 0; s < spb; ++s) {
          const size_t at = size_t(b.y0 + y) * p.width + b.x0;
          const uint8_t* src = row + size_t(s) * bytes_per_sample;
          if (dest.native) {
            gather(src, b.cols, size_t(spb), dest.native + (b.plane + s) * plane_bytes + at * bytes_per_sample);
            continue;
          }
          float* dst = dest.img->plane(dest.c0 + b.plane + s) + at;
          convert(src, b.cols, size_t(spb), dst);
          const float* div = dest.divisors ? dest.divisors[b.plane + s] : nullptr;
          if (div)
            for (uint32_t x = 0; x < b.cols; ++x) dst[x] /= div[at + x];
        }
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
        mf.fd = file.fd;
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

// A TIFF opened and its directories read: every page's header checked before any pixel is allocated, the pages that
// become channels, and the image's header (decode_tiff's, without pixels). The handle stays open for the pixels.
struct OpenTiff {
  struct Close {
    void operator()(TIFF* t) const { TIFFClose(t); }
  };
  std::unique_ptr<MemFile> mf;  // the handle reads through it (so it must not move); closed after the handle
  std::unique_ptr<TIFF, Close> t;
  std::vector<PageInfo> pages;
  std::vector<int> use;  // pages that become channels, in channel order
  Image header;
};

OpenTiff open_tiff(const TiffBytes& file, const std::string& name, const DecodeLimits& lim) {
  install_tiff_handlers();
  tiff_error.clear();
  OpenTiff o;
  o.mf = std::make_unique<MemFile>();
  o.mf->in = file.bytes;
  o.mf->fd = file.fd;
  o.mf->size = file.n;
  // No "m": libtiff reads strips straight from the bytes through mem_map.
  o.t.reset(TIFFClientOpen(name.c_str(), "r", o.mf.get(), mem_read, mem_write, mem_seek, mem_close, mem_size, mem_map,
                           mem_unmap));
  if (!o.t) fail(name, "not a readable TIFF" + (tiff_error.empty() ? std::string() : " (" + tiff_error + ")"));
  TIFF* t = o.t.get();
  std::vector<PageInfo>& pages = o.pages;
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
  const OmeLayout ome = ome_layout(description, int(pages.size()), name);
  std::vector<int>& use = o.use;
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
  Image& img = o.header;
  img.channels = int(channels), img.height = int(first.height), img.width = int(first.width);
  img.source = name;
  img.bits = first.bps == 64 ? 32 : first.bps;
  img.is_float = first.format == SAMPLEFORMAT_IEEEFP;
  img.max_value = img.is_float ? 1.0f
                  : first.format == SAMPLEFORMAT_INT ? float((uint64_t(1) << (first.bps - 1)) - 1)
                                                      : float((uint64_t(1) << first.bps) - 1);
  if (!ome.names.empty() && int(ome.names.size()) == img.channels) img.channel_names = ome.names;
  return o;
}

// Where open_tiff's pixels go: decode_tiff's own image (nothing set), or with `into` channels [c0, c0 + channels) of
// *into (which must have the file's height and width), divided by divisors[k] when given; or with `native` the
// samples as stored, to native[0, native_bytes) (decode_tiff_native). The returned image holds the header only
// unless it is decode_tiff's.
struct TiffTarget {
  Image* into = nullptr;
  int c0 = 0;
  const float* const* divisors = nullptr;
  uint8_t* native = nullptr;
  size_t native_bytes = 0;
};
Image read_tiff_pixels(OpenTiff& o, const TiffBytes& file, const std::string& name, const DecodeLimits& lim,
                       const TiffTarget& target) {
  Image* into = target.into;
  const Image& h = o.header;
  const PageInfo& first = o.pages[size_t(o.use[0])];
  if (into && (h.height != into->height || h.width != into->width || target.c0 + h.channels > into->channels))
    fail(name, std::to_string(h.width) + "x" + std::to_string(h.height) + "x" + std::to_string(h.channels) +
                   " does not fit channels " + std::to_string(target.c0) + ".. of a " + std::to_string(into->width) +
                   "x" + std::to_string(into->height) + "x" + std::to_string(into->channels) + " image");
  const size_t sample_bytes = first.bps / 8, plane_bytes = h.plane_size() * sample_bytes;
  if (target.native && size_t(h.channels) * plane_bytes > target.native_bytes)
    fail(name, std::to_string(h.width) + "x" + std::to_string(h.height) + "x" + std::to_string(h.channels) + " " +
                   std::to_string(first.bps) + "-bit samples need " + std::to_string(size_t(h.channels) * plane_bytes) +
                   " bytes, the destination holds " + std::to_string(target.native_bytes));
  Image img = h;
  if (!into && !target.native) img.pixels.assign(size_t(h.channels) * h.plane_size(), 0.0f);
  TIFF* t = o.t.get();
  int c = 0;
  for (int i : o.use) {
    if (!TIFFSetDirectory(t, tdir_t(i))) fail(name, "cannot read page " + std::to_string(i) + " (" + tiff_error + ")");
    PageDest dest;
    if (target.native) {
      dest.native = target.native + size_t(c) * plane_bytes;
    } else {
      dest.img = into ? into : &img;
      dest.c0 = (into ? target.c0 : 0) + c;
      dest.divisors = target.divisors ? target.divisors + c : nullptr;
    }
    read_tiff_page(t, file, o.pages[size_t(i)], dest, name, i, lim.threads);
    c += o.pages[size_t(i)].spp;
  }
  return img;
}

Image decode_tiff_impl(const TiffBytes& file, const std::string& name, const DecodeLimits& lim,
                       const TiffTarget& target) {
  OpenTiff o = open_tiff(file, name, lim);
  return read_tiff_pixels(o, file, name, lim, target);
}

}  // namespace

Image decode_tiff(const uint8_t* bytes, size_t n, const std::string& name, const DecodeLimits& lim) {
  return decode_tiff_impl(TiffBytes{bytes, n}, name, lim, TiffTarget{});
}

Image decode_tiff_native(const uint8_t* bytes, size_t n, const std::string& name, void* dst, size_t dst_bytes,
                         const DecodeLimits& lim) {
  TiffTarget target;
  target.native = static_cast<uint8_t*>(dst);
  target.native_bytes = dst_bytes;
  return decode_tiff_impl(TiffBytes{bytes, n}, name, lim, target);
}

Image decode_tiff_into(const uint8_t* bytes, size_t n, const std::string& name, Image& dst, int c0,
                       const float* const* divisors, const DecodeLimits& lim) {
  TiffTarget target;
  target.into = &dst;
  target.c0 = c0;
  target.divisors = divisors;
  return decode_tiff_impl(TiffBytes{bytes, n}, name, lim, target);
}

namespace {

struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

// The descriptor, then the handle on it: the handle closes first (members are destroyed in reverse order).
struct TiffFile::State {
  Fd fd{-1};
  std::string path;
  size_t size = 0;
  DecodeLimits limits;
  OpenTiff tiff;
};

TiffFile::TiffFile(std::unique_ptr<State> s) : s_(std::move(s)) {}
TiffFile::TiffFile(TiffFile&&) noexcept = default;
TiffFile& TiffFile::operator=(TiffFile&&) noexcept = default;
TiffFile::~TiffFile() = default;

std::optional<TiffFile> TiffFile::open(const std::string& path, const DecodeLimits& lim) {
  auto s = std::make_unique<State>();
  s->fd.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (s->fd.fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  uint8_t magic[4] = {};
  if (::fstat(s->fd.fd, &st) != 0 || ::pread(s->fd.fd, magic, 4, 0) != 4 || !is_tiff(magic, 4)) return std::nullopt;
  s->path = path;
  s->size = size_t(st.st_size);
  s->limits = lim;
  s->tiff = open_tiff(TiffBytes{nullptr, s->size, s->fd.fd}, path, lim);
  return TiffFile(std::move(s));
}

const Image& TiffFile::header() const { return s_->tiff.header; }

Image TiffFile::read_native(void* dst, size_t dst_bytes) {
  State& s = *s_;
  TiffTarget target;
  target.native = static_cast<uint8_t*>(dst);
  target.native_bytes = dst_bytes;
  bool compressed = false;
  for (int i : s.tiff.use) compressed = compressed || s.tiff.pages[size_t(i)].compression != COMPRESSION_NONE;
  if (!compressed) {
    tiff_error.clear();
    return read_tiff_pixels(s.tiff, TiffBytes{nullptr, s.size, s.fd.fd}, s.path, s.limits, target);
  }
  // A compressed file is read whole, with one read, and decoded from memory: libtiff reading each strip through the
  // descriptor would cost a system call per strip, and decoding from mapped bytes spares it a copy per strip. The
  // directories are parsed again, from memory.
  std::vector<uint8_t> bytes(s.size);
  size_t done = 0;
  while (done < s.size) {
    const ssize_t k = ::pread(s.fd.fd, bytes.data() + done, s.size - done, off_t(done));
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) fail(s.path, std::string("cannot read: ") + std::strerror(errno));
    if (k == 0) break;
    done += size_t(k);
  }
  bytes.resize(done);  // the file shrank since it was opened: the decode says what is missing
  return decode_tiff_impl(TiffBytes{bytes.data(), bytes.size()}, s.path, s.limits, target);
}

Image read_tiff_header(const uint8_t* bytes, size_t n, const std::string& name, const DecodeLimits& lim) {
  return open_tiff(TiffBytes{bytes, n}, name, lim).header;
}

bool is_tiff(const uint8_t* b, size_t n) {
  return n >= 4 && ((b[0] == 'I' && b[1] == 'I' && (b[2] == 42 || b[2] == 43) && b[3] == 0) ||
                    (b[0] == 'M' && b[1] == 'M' && b[2] == 0 && (b[3] == 42 || b[3] == 43)));
}

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


}  // namespace tabula::data
