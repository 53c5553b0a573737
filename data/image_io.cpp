// Image decoders and writers. Everything decodes from memory (the file is read once, its size known), so a
// header's claims can be checked against both the limits and the bytes actually present.
#include <openjpeg.h>
#include <png.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

#include "data/decode_common.h"
#include "data/image.h"
#include "engine/fileio.h"

// libjpeg's headers need FILE and size_t declared first (cstdio above).
#include <jpeglib.h>
#include <jerror.h>
namespace tabula::data {

using detail::check_shape;
using detail::clamp_sample;
using detail::fail;

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
