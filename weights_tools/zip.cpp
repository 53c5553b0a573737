#include "weights_tools/zip.h"

#include <stdexcept>

namespace tabula::weights {

namespace {

uint16_t u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t u32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t u64(const uint8_t* p) { return static_cast<uint64_t>(u32(p)) | (static_cast<uint64_t>(u32(p + 4)) << 32); }

constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEndSig = 0x06054b50;
constexpr uint32_t kZip64EndSig = 0x06064b50, kZip64LocatorSig = 0x07064b50;

}  // namespace

bool looks_like_zip(const uint8_t* data, size_t size) { return size >= 4 && u32(data) == kLocalSig; }

ZipArchive::ZipArchive(std::shared_ptr<const MappedFile> file) : file_(std::move(file)) {
  const uint8_t* d = file_->data();
  const uint64_t n = file_->size();
  const std::string& src = file_->path();
  auto fail = [&](const std::string& msg) -> void { throw std::runtime_error(src + ": zip archive: " + msg); };
  if (n < 22) fail("file of " + std::to_string(n) + " bytes is too short (truncated?)");

  // End of central directory: the last 22 bytes plus an optional comment of at most 64 KiB.
  uint64_t eocd = UINT64_MAX;
  uint64_t lowest = n > 22 + 65535 ? n - 22 - 65535 : 0;
  for (uint64_t p = n - 22 + 1; p-- > lowest;) {
    if (u32(d + p) == kEndSig && p + 22 + u16(d + p + 20) == n) {
      eocd = p;
      break;
    }
  }
  if (eocd == UINT64_MAX) fail("no end-of-central-directory record (truncated file?)");
  uint64_t count = u16(d + eocd + 10);
  uint64_t cd_size = u32(d + eocd + 12);
  uint64_t cd_offset = u32(d + eocd + 16);
  if (count == 0xFFFF || cd_size == 0xFFFFFFFF || cd_offset == 0xFFFFFFFF) {
    if (eocd < 20 || u32(d + eocd - 20) != kZip64LocatorSig) fail("ZIP64 end-of-central-directory locator missing");
    uint64_t z64 = u64(d + eocd - 20 + 8);
    // (n < 56 first: n - 56 would wrap around -- found by fuzz_checkpoint, corpus regression)
    if (n < 56 || z64 > n - 56 || u32(d + z64) != kZip64EndSig) fail("ZIP64 end-of-central-directory record out of place");
    count = u64(d + z64 + 32);
    cd_size = u64(d + z64 + 40);
    cd_offset = u64(d + z64 + 48);
  }
  if (cd_offset > n || cd_size > n - cd_offset) fail("central directory lies outside the file (truncated?)");
  if (count > cd_size / 46) fail("central directory claims " + std::to_string(count) + " entries in " + std::to_string(cd_size) + " bytes");

  uint64_t p = cd_offset;
  const uint64_t cd_end = cd_offset + cd_size;
  for (uint64_t i = 0; i < count; ++i) {
    if (p + 46 > cd_end || u32(d + p) != kCentralSig) fail("central directory entry " + std::to_string(i) + " is corrupt");
    uint16_t flags = u16(d + p + 8);
    uint16_t method = u16(d + p + 10);
    uint64_t csize = u32(d + p + 20);
    uint64_t usize = u32(d + p + 24);
    uint16_t name_len = u16(d + p + 28), extra_len = u16(d + p + 30), comment_len = u16(d + p + 32);
    uint64_t local = u32(d + p + 42);
    if (p + 46 + name_len + extra_len + comment_len > cd_end) fail("central directory entry " + std::to_string(i) + " runs past its end");
    ZipEntry e;
    e.name.assign(reinterpret_cast<const char*>(d + p + 46), name_len);
    e.method = method;
    // ZIP64 extended information: the 64-bit values, present only for fields that were 0xFFFFFFFF, in order.
    const uint8_t* x = d + p + 46 + name_len;
    const uint8_t* x_end = x + extra_len;
    while (x + 4 <= x_end) {
      uint16_t id = u16(x), len = u16(x + 2);
      if (x + 4 + len > x_end) fail("entry '" + e.name + "': corrupt extra field");
      if (id == 0x0001) {
        const uint8_t* q = x + 4;
        const uint8_t* q_end = q + len;
        auto take = [&](uint64_t& v) {
          if (v != 0xFFFFFFFF) return;
          if (q + 8 > q_end) fail("entry '" + e.name + "': short ZIP64 extra field");
          v = u64(q);
          q += 8;
        };
        take(usize);
        take(csize);
        take(local);
      }
      x += 4 + len;
    }
    if (flags & 1) fail("entry '" + e.name + "' is encrypted");
    if (n < 30 || local > n - 30 || u32(d + local) != kLocalSig) fail("entry '" + e.name + "': local header out of place (truncated?)");
    uint64_t data_off = local + 30 + u16(d + local + 26) + u16(d + local + 28);
    if (data_off > n || csize > n - data_off)
      fail("entry '" + e.name + "' (" + std::to_string(csize) + " bytes) runs past the end of the file (truncated?)");
    if (method == 0 && csize != usize) fail("stored entry '" + e.name + "' has different compressed and plain sizes");
    e.data_offset = data_off;
    e.size = csize;
    entries_.push_back(std::move(e));
    p += 46 + name_len + extra_len + comment_len;
  }
}

const ZipEntry* ZipArchive::find(const std::string& name) const {
  for (const ZipEntry& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

std::span<const uint8_t> ZipArchive::data(const ZipEntry& e) const {
  if (e.method != 0)
    throw std::runtime_error(file_->path() + ": zip entry '" + e.name + "' is compressed (method " +
                             std::to_string(e.method) + "); torch.save writes stored entries only");
  return {file_->data() + e.data_offset, e.size};
}

}  // namespace tabula::weights
