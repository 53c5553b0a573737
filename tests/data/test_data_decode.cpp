// Decoders against files written by tifffile / Pillow (libtiff, libpng, libjpeg, OpenJPEG): the decoded values
// must equal what those libraries decode (weights_tools/reference/data_fixtures.py), and broken files must
// give an error naming the file, never a crash.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "engine/fileio.h"
#include "util/npy.h"
#include "data/image.h"
#include "tests/test_util.h"

using namespace tabula;
using namespace tabula::data;
using tabula::test::fixture;

namespace {

struct Case {
  const char* file;
  int bits;
  float tolerance;  // 0: exact
  float max_value;
};

void expect_matches(const Case& c) {
  const std::string path = fixture(std::string("data/decode/") + c.file).string();
  Image img = read_image(path);
  NpyArray want = read_npy(path + ".npy");
  ASSERT_EQ(want.shape.size(), 3u);
  ASSERT_EQ(img.channels, want.shape[0]) << c.file;
  ASSERT_EQ(img.height, want.shape[1]) << c.file;
  ASSERT_EQ(img.width, want.shape[2]) << c.file;
  EXPECT_EQ(img.bits, c.bits) << c.file;
  EXPECT_EQ(img.max_value, c.max_value) << c.file;
  const float* w = want.as<float>();
  float worst = 0;
  for (size_t i = 0; i < img.pixels.size(); ++i) worst = std::max(worst, std::fabs(img.pixels[i] - w[i]));
  EXPECT_LE(worst, c.tolerance) << c.file;
}

}  // namespace

TEST(DataDecode, TiffVariantsMatchTifffileAndLibtiff) {
  for (const Case& c : {Case{"u8_strip.tif", 8, 0, 255}, Case{"u16_strip.tif", 16, 0, 65535},
                        Case{"u16_bigendian.tif", 16, 0, 65535}, Case{"u16_deflate.tif", 16, 0, 65535},
                        Case{"u16_lzw.tif", 16, 0, 65535}, Case{"u8_packbits.tif", 8, 0, 255},
                        Case{"u16_tiled.tif", 16, 0, 65535}, Case{"u16_tiled_deflate.tif", 16, 0, 65535},
                        Case{"f32.tif", 32, 0, 1}, Case{"i16.tif", 16, 0, 32767},
                        Case{"u16_multipage.tif", 16, 0, 65535}, Case{"u16_with_thumbnail.tif", 16, 0, 65535},
                        Case{"rgb_contig.tif", 8, 0, 255},
                        Case{"rgb_separate.tif", 8, 0, 255}})
    expect_matches(c);
}

TEST(DataDecode, SixteenBitValuesSurviveExactly) {
  Image img = read_image(fixture("data/decode/u16_strip.tif").string());
  float mx = 0;
  for (float v : img.pixels) {
    EXPECT_EQ(v, std::floor(v));
    mx = std::max(mx, v);
  }
  EXPECT_GT(mx, 60000.0f);  // the fixture spans the full 16-bit range
}

TEST(DataDecode, OmeTiffChannelOrderAndNamesFromOmeXml) {
  expect_matches({"ome_zcyx.ome.tif", 16, 0, 65535});
  expect_matches({"ome_czyx.ome.tif", 16, 0, 65535});
  Image a = read_image(fixture("data/decode/ome_zcyx.ome.tif").string());
  EXPECT_EQ(a.channel_names, (std::vector<std::string>{"DNA", "AGP", "Mito"}));
  Image b = read_image(fixture("data/decode/ome_czyx.ome.tif").string());
  EXPECT_EQ(b.channel_names, (std::vector<std::string>{"ER", "RNA", "DNA"}));
}

TEST(DataDecode, PngJpegJpeg2000MatchPillow) {
  for (const Case& c : {Case{"grey8.png", 8, 0, 255}, Case{"grey16.png", 16, 0, 65535}, Case{"rgb8.png", 8, 0, 255},
                        Case{"rgba8.png", 8, 0, 255}, Case{"grey8.jp2", 8, 0, 255},
                        Case{"grey16.jp2", 16, 0, 65535}, Case{"grey8.j2k", 8, 0, 255}})
    expect_matches(c);
}

// PNG is decoded with libpng: the variants decoders treat differently (weights_tools/reference/png_fixtures.py).
// Palette -> RGB, 1/2/4-bit grey scaled to 8 bits and alpha/tRNS dropped, as Pillow's convert("RGB"/"L"); 16-bit
// samples kept whole (also for grey+alpha and RGB(A), where Pillow would keep only the high byte); Adam7.
TEST(DataDecode, PngVariantsMatchPillow) {
  for (const Case& c : {Case{"palette8.png", 8, 0, 255}, Case{"palette8_trns.png", 8, 0, 255},
                        Case{"palette4.png", 8, 0, 255}, Case{"grey1.png", 8, 0, 255}, Case{"grey2.png", 8, 0, 255},
                        Case{"grey4.png", 8, 0, 255}, Case{"grey8_trns.png", 8, 0, 255},
                        Case{"greyalpha16.png", 16, 0, 65535}, Case{"rgb16.png", 16, 0, 65535},
                        Case{"rgba16.png", 16, 0, 65535}, Case{"rgb8_interlaced.png", 8, 0, 255},
                        Case{"grey16_interlaced.png", 16, 0, 65535}})
    expect_matches(c);
}

// libpng's errors become one message naming the file: a cut file says "truncated PNG", a damaged image-data
// CRC "corrupt PNG" with libpng's reason.
TEST(DataDecode, TruncatedOrCorruptPngIsAnErrorNamingTheFile) {
  std::vector<uint8_t> bytes = read_file_bytes(fixture("data/decode/rgb8_interlaced.png").string());
  auto message = [](const std::vector<uint8_t>& b, size_t n) -> std::string {
    try {
      (void)decode_image(b.data(), n, "cut/x.png");
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "decoded";
  };
  for (size_t cut : {size_t(12), size_t(40), bytes.size() / 2, bytes.size() - 13})
    EXPECT_EQ(message(bytes, cut).rfind("cut/x.png: truncated PNG (", 0), 0u) << cut << ": " << message(bytes, cut);
  // The IDAT chunk starts after the 8-byte signature and the 25-byte IHDR chunk; flip a byte of its data.
  std::vector<uint8_t> bad = bytes;
  ASSERT_EQ(std::memcmp(bad.data() + 37, "IDAT", 4), 0);
  bad[45] ^= 0x5A;
  EXPECT_EQ(message(bad, bad.size()).rfind("cut/x.png: corrupt PNG (", 0), 0u) << message(bad, bad.size());
  // A header claim beyond the limits is refused before decoding.
  DecodeLimits lim;
  lim.max_side = 10;  // the fixture is 19 x 13
  try {
    (void)decode_image(bytes.data(), bytes.size(), "big.png", lim);
    ADD_FAILURE() << "limit not enforced";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("big.png: image size 19x13 exceeds the limit", 0), 0u) << e.what();
  }
}

// The UBSan finding in stb_image's PNG path (tests/fuzz/corpus/image/stb_png_getn_memcpy_null.bin: a zero-length
// chunk made stbi__getn call memcpy(NULL, p, 0)): libpng names the file; the sanitizer build checks there is no
// undefined behaviour on the way.
TEST(DataDecode, FormerStbPngFindingIsHandled) {
  const auto path = fixture("../fuzz/corpus/image/stb_png_getn_memcpy_null.bin");
  std::vector<uint8_t> bytes = read_file_bytes(path.string());
  try {
    Image img = decode_image(bytes.data(), bytes.size(), "finding.png");
    EXPECT_GT(img.pixels.size(), 0u);
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("finding.png: ", 0), 0u) << e.what();
  }
}

// JPEG is decoded with libjpeg-turbo at Pillow's settings, so the samples are Pillow's exactly: 4:4:4 and
// 4:2:0 chroma (fancy upsampling) at sizes that are not a multiple of the MCU, progressive, greyscale.
TEST(DataDecode, JpegMatchesPillowExactly) {
  for (const Case& c : {Case{"rgb.jpg", 8, 0, 255}, Case{"grey.jpg", 8, 0, 255}, Case{"rgb_420.jpg", 8, 0, 255},
                        Case{"rgb_progressive.jpg", 8, 0, 255}})
    expect_matches(c);
}

// Pillow refuses a truncated JPEG ("image file is truncated"); libjpeg alone would pad it with grey.
TEST(DataDecode, TruncatedJpegIsAnErrorNamingTheFile) {
  std::vector<uint8_t> bytes = read_file_bytes(fixture("data/decode/rgb_progressive.jpg").string());
  for (size_t cut : {bytes.size() / 2, bytes.size() - 2}) {
    try {
      (void)decode_image(bytes.data(), cut, "cut/rgb_progressive.jpg");
      ADD_FAILURE() << "a JPEG cut at " << cut << " of " << bytes.size() << " bytes decoded";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("cut/rgb_progressive.jpg: truncated JPEG"), std::string::npos) << e.what();
    }
  }
}

// The UBSan finding in stb_image's JPEG decoder (tests/fuzz/corpus/image/stb_jpeg_grow_buffer_shift_ub.bin):
// libjpeg-turbo decodes it (corrupt entropy data is resynchronised, as Pillow does) or names it; the
// sanitizer build checks there is no undefined behaviour on the way.
TEST(DataDecode, FormerStbJpegFindingIsHandled) {
  const auto path = fixture("../fuzz/corpus/image/stb_jpeg_grow_buffer_shift_ub.bin");
  std::vector<uint8_t> bytes = read_file_bytes(path.string());
  try {
    Image img = decode_image(bytes.data(), bytes.size(), "finding.jpg");
    EXPECT_GT(img.pixels.size(), 0u);
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("finding.jpg: ", 0), 0u) << e.what();
  }
}

TEST(DataDecode, WritersRoundTrip) {
  auto dir = tabula::test::scratch_dir();
  Image img(2, 9, 13);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = float((i * 7919) % 65536);
  for (bool compress : {false, true}) {
    std::string p = (dir / (compress ? "c.tif" : "u.tif")).string();
    write_tiff(p, img, 16, compress);
    Image back = read_image(p);
    ASSERT_EQ(back.channels, 2);
    EXPECT_EQ(back.pixels, img.pixels);
  }
  Image rgb(3, 5, 6);
  for (size_t i = 0; i < rgb.pixels.size(); ++i) rgb.pixels[i] = float((i * 37) % 256);
  write_png((dir / "x.png").string(), rgb);
  EXPECT_EQ(read_image((dir / "x.png").string()).pixels, rgb.pixels);
  // Grey; out-of-range samples clamp and NaN writes as 0 (an integer conversion of NaN would be undefined).
  Image grey(1, 3, 4);
  for (size_t i = 0; i < grey.pixels.size(); ++i) grey.pixels[i] = float(i * 20);
  grey.pixels[1] = -5.0f, grey.pixels[2] = 300.0f, grey.pixels[3] = std::nanf("");
  const std::vector<uint8_t> a = encode_png(grey, "g.png"), b = encode_png(grey, "g.png");
  EXPECT_EQ(a, b);  // deterministic bytes (no time stamp)
  std::vector<float> want = grey.pixels;
  want[1] = 0, want[2] = 255, want[3] = 0;
  EXPECT_EQ(decode_image(a.data(), a.size(), "g.png").pixels, want);
  write_tiff((dir / "n.tif").string(), grey, 8, false);
  EXPECT_EQ(read_image((dir / "n.tif").string()).pixels, want);
}

// Every prefix of a valid file, and files with bytes flipped in the header, must fail with an error that
// names the file (or, for flips that happen to stay valid, decode) — never crash or allocate wildly.
TEST(DataDecode, TruncatedAndCorruptFilesGiveErrorsNamingTheFile) {
  for (const char* f : {"u16_deflate.tif", "u16_tiled.tif", "u16_lzw.tif", "grey16.png", "palette8.png", "rgb.jpg",
                        "grey8.jp2", "ome_zcyx.ome.tif"}) {
    std::vector<uint8_t> bytes = read_file_bytes(fixture(std::string("data/decode/") + f).string());
    const std::string name = std::string("broken/") + f;
    int errors = 0;
    for (size_t cut : {size_t(0), size_t(3), size_t(8), size_t(16), bytes.size() / 4, bytes.size() / 2,
                       bytes.size() - 40, bytes.size() - 1}) {
      if (cut >= bytes.size()) continue;
      try {
        Image img = decode_image(bytes.data(), cut, name);
        // A decoder may legitimately recover a short image only if the cut spared all pixel data; it must
        // then have the full size.
        EXPECT_GT(img.pixels.size(), 0u);
      } catch (const std::runtime_error& e) {
        ++errors;
        EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
      }
    }
    EXPECT_GE(errors, 5) << f;
    // Deterministic pseudo-random byte corruption across the whole file.
    uint64_t s = 12345;
    for (int trial = 0; trial < 40; ++trial) {
      std::vector<uint8_t> bad = bytes;
      for (int k = 0; k < 4; ++k) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        bad[size_t((s >> 33) % bad.size())] ^= uint8_t(1 + (s >> 20) % 255);
      }
      try {
        decode_image(bad.data(), bad.size(), name);
      } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
      }
    }
  }
}

TEST(DataDecode, HeaderClaimsAreCheckedBeforeAllocation) {
  // A TIFF that claims 100000 x 100000 pixels of 16 bits (20 GB): refused from the header alone.
  auto dir = tabula::test::scratch_dir();
  Image img(1, 4, 4);
  std::string p = (dir / "small.tif").string();
  write_tiff(p, img, 16, false);
  std::vector<uint8_t> bytes = read_file_bytes(p);
  DecodeLimits lim;
  lim.max_samples = 8;  // the 4x4 image is 16 samples
  try {
    decode_image(bytes.data(), bytes.size(), "small.tif", lim);
    FAIL() << "limit not enforced";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("exceeds the limit"), std::string::npos) << e.what();
  }
  // Patch ImageWidth/ImageLength in the IFD to 100000 (little-endian SHORT/LONG entries written by libtiff).
  uint32_t ifd;
  std::memcpy(&ifd, bytes.data() + 4, 4);
  uint16_t n;
  std::memcpy(&n, bytes.data() + ifd, 2);
  for (uint16_t k = 0; k < n; ++k) {
    uint8_t* e = bytes.data() + ifd + 2 + 12 * k;
    uint16_t tag, type;
    std::memcpy(&tag, e, 2);
    std::memcpy(&type, e + 2, 2);
    if (tag == 256 || tag == 257) {
      uint32_t big = 100000;
      if (type == 3) { uint16_t v = 60000; std::memcpy(e + 8, &v, 2); }
      else std::memcpy(e + 8, &big, 4);
    }
  }
  EXPECT_THROW(decode_image(bytes.data(), bytes.size(), "huge.tif"), std::runtime_error);
  EXPECT_THROW(read_image((dir / "missing.tif").string()), std::runtime_error);
  std::vector<uint8_t> junk = {'n', 'o', 't', ' ', 'a', 'n', ' ', 'i', 'm', 'a', 'g', 'e'};
  try {
    decode_image(junk.data(), junk.size(), "junk.bin");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("junk.bin: unrecognised image format"), std::string::npos);
  }
}

// The same corruption at scale (run under `make sanitize` to catch memory errors, not only crashes):
// 1500 mutated copies of every fixture format (byte flips, truncations, header-region damage).
TEST(LongDataDecode, MutationFuzzNeverCrashes) {
  int errors = 0, decoded = 0;
  for (const char* f : {"u8_strip.tif", "u16_deflate.tif", "u16_tiled.tif", "u16_lzw.tif", "u8_packbits.tif",
                        "rgb_separate.tif", "ome_zcyx.ome.tif", "f32.tif", "grey16.png", "rgba8.png", "palette8_trns.png",
                        "grey2.png", "rgb8_interlaced.png", "rgb.jpg",
                        "grey8.jp2", "grey16.jp2", "grey8.j2k"}) {
    std::vector<uint8_t> bytes = read_file_bytes(fixture(std::string("data/decode/") + f).string());
    uint64_t s = 0x9E3779B97F4A7C15ULL ^ bytes.size();
    auto next = [&] { return s = s * 6364136223846793005ULL + 1442695040888963407ULL, s >> 17; };
    for (int trial = 0; trial < 1500; ++trial) {
      std::vector<uint8_t> bad = bytes;
      const int kind = int(next() % 3);
      const size_t region = kind == 2 ? std::min<size_t>(bad.size(), 512) : bad.size();
      for (int k = 0, flips = 1 + int(next() % 8); k < flips; ++k) bad[size_t(next() % region)] ^= uint8_t(1 + next() % 255);
      if (kind == 1) bad.resize(size_t(next() % bad.size()) + 1);
      try {
        Image img = decode_image(bad.data(), bad.size(), f);
        ++decoded;
        EXPECT_EQ(img.pixels.size(), size_t(img.channels) * img.height * img.width);
      } catch (const std::runtime_error& e) {
        ++errors;
        ASSERT_NE(std::string(e.what()).find(f), std::string::npos) << e.what();
      }
    }
  }
  std::printf("  %d mutated files rejected with an error, %d decoded\n", errors, decoded);
}
