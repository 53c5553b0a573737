// Images as tabula's data layer sees them: float planes (CHW, row-major) holding the file's sample values
// unchanged (a 16-bit 40000 stays 40000.0f: every u16 is exact in float), plus what the file said about them.
// Decoders for TIFF (libtiff), PNG (libpng), JPEG (libjpeg-turbo, as Pillow), JPEG 2000 (OpenJPEG); every header is checked against
// limits before anything is allocated, and every failure is a std::runtime_error that names the file.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tabula::data {

struct Image {
  int channels = 0, height = 0, width = 0;
  std::vector<float> pixels;          // channels * height * width, plane after plane
  float max_value = 1.0f;             // full scale of the source type: 255, 65535, 1 (float data)
  int bits = 32;                      // bits per sample in the file (8, 16, 32; 32 also for float)
  bool is_float = false;              // the file stored floating-point samples
  std::vector<std::string> channel_names;  // from OME-XML when present, else empty
  std::string source;                 // where it came from (file path), for error messages

  Image() = default;
  Image(int c, int h, int w) : channels(c), height(h), width(w), pixels(size_t(c) * h * w, 0.0f) {}
  size_t plane_size() const { return size_t(height) * width; }
  float* plane(int c) { return pixels.data() + c * plane_size(); }
  const float* plane(int c) const { return pixels.data() + c * plane_size(); }
  float& at(int c, int y, int x) { return pixels[c * plane_size() + size_t(y) * width + x]; }
  const float& at(int c, int y, int x) const { return pixels[c * plane_size() + size_t(y) * width + x]; }
};

// What a decoder accepts before it allocates: a header claiming more is an error, not an allocation.
struct DecodeLimits {
  int64_t max_side = 1 << 17;             // pixels per side
  int64_t max_samples = int64_t(1) << 31;  // channels * height * width of the decoded image
  int max_channels = 4096;                // pages * samples per pixel
  // Not a limit, but read with them: threads decoding the strips/tiles of one compressed TIFF page (deflate, LZW,
  // ...) at once. Workers decoding different images (the pipeline's prefetch) use the cores already; more threads
  // per image shorten the latency of one image when there are fewer images in flight than cores.
  int threads = 1;
};

// DecodeLimits::threads for `workers` threads decoding at most `images` images at a time, one each (the pipelines'
// prefetch: its samples, or its capacity when that is fewer): workers that never get an image of their own (`tabula
// preprocess` or `embed` on a few fields, or a capacity below the worker count) lend their cores to the pages of the
// others; otherwise every worker has an image and 1 is best (more threads per page only add handles and hand-offs;
// bench/RESULTS_data.md).
inline int decode_threads_per_image(int workers, int64_t images) {
  return images > 0 && images < workers ? int(workers / images) : 1;
}

// Decodes by content (magic bytes), not by extension: TIFF (II*/MM*), PNG, JPEG, JPEG 2000 (JP2 box or raw
// J2K codestream). Multi-page TIFFs become one channel per page (OME-TIFF: the Z=0, T=0 plane of each
// channel, in the OME-XML's channel order); multi-sample pixels (RGB) become channels.
Image read_image(const std::string& path, const DecodeLimits& limits = {});
Image decode_image(const uint8_t* bytes, size_t n, const std::string& name, const DecodeLimits& limits = {});

Image decode_tiff(const uint8_t* bytes, size_t n, const std::string& name, const DecodeLimits& limits = {});
// A TIFF decoded straight into channels [c0, c0 + its channels) of dst, whose height and width it must have (else an
// error naming the file); each channel k of the file is divided by divisors[k] (height * width values) when divisors
// and divisors[k] are not null, in the same pass as the sample conversion and with the same single float division
// as divide_illumination. Returns the file's header (channels, size, bits, max_value, is_float) without pixels.
// Stacks one-channel files into one image without a copy per channel.
Image decode_tiff_into(const uint8_t* bytes, size_t n, const std::string& name, Image& dst, int c0,
                       const float* const* divisors = nullptr, const DecodeLimits& limits = {});
// The samples as the file stores them, in host byte order (8/16/32-bit integers, 32/64-bit floats: 1, 2, 4 or 8
// bytes each), channel after channel in decode_tiff's order, written to dst, which holds dst_bytes (fewer than the
// image needs is an error naming the file). No float conversion, and one-sample-per-pixel strips are decoded (or,
// uncompressed, copied from `bytes`) straight into dst: what `--preprocess device` uploads as it is. Returns the
// header (as read_tiff_header) without pixels.
Image decode_tiff_native(const uint8_t* bytes, size_t n, const std::string& name, void* dst, size_t dst_bytes,
                         const DecodeLimits& limits = {});
// A TIFF file opened for `--preprocess device`: opened, and its header and directories read, once; the header plans
// the job, then read_native reads the samples through the same descriptor and libtiff handle (the file is opened
// and read once per field, not once for the header and again for the samples).
class TiffFile {
 public:
  // Nothing when the file is not a TIFF (its magic); a missing file or a bad header is an error naming the file.
  static std::optional<TiffFile> open(const std::string& path, const DecodeLimits& limits = {});
  // What read_tiff_header returns for the file's bytes (no pixels).
  const Image& header() const;
  // decode_tiff_native's samples, written to dst (dst_bytes; fewer than the image needs is an error naming the
  // file). Uncompressed strips and tiles go from the file straight into dst (one pread per plane where the strips
  // lie back to back; no buffer of the file's bytes); a compressed file is read whole, with one read, and decoded
  // from memory. A file cut short is an error naming it.
  Image read_native(void* dst, size_t dst_bytes);

  TiffFile(TiffFile&&) noexcept;
  TiffFile& operator=(TiffFile&&) noexcept;
  ~TiffFile();

 private:
  struct State;
  explicit TiffFile(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};
// What decode_tiff would return, without the pixels (the headers are checked as decode_tiff checks them).
Image read_tiff_header(const uint8_t* bytes, size_t n, const std::string& name, const DecodeLimits& limits = {});
bool is_tiff(const uint8_t* bytes, size_t n);  // the TIFF / BigTIFF magic, either byte order
Image decode_png(const uint8_t* bytes, size_t n, const std::string& name, const DecodeLimits& limits = {});
Image decode_jpeg(const uint8_t* bytes, size_t n, const std::string& name, const DecodeLimits& limits = {});
Image decode_jp2(const uint8_t* bytes, size_t n, const std::string& name, const DecodeLimits& limits = {});

// Writers used by `tabula synth` and the tests. Deterministic: the same image gives the same bytes.
// TIFF: one page per channel, samples rounded and clamped to the type (bits 8 or 16; 32 = float32 as is), deflate-compressed
// with the horizontal predictor when `compress`.
void write_tiff(const std::string& path, const Image& img, int bits, bool compress);
std::vector<uint8_t> encode_tiff(const Image& img, int bits, bool compress, const std::string& name);
// PNG (8-bit): 1 channel = grey, 3 = RGB; samples rounded and clamped to 0..255.
void write_png(const std::string& path, const Image& img);
std::vector<uint8_t> encode_png(const Image& img, const std::string& name);

}  // namespace tabula::data
