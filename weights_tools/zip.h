// Read-only ZIP archives as torch.save writes them (PyTorch's miniz-based writer): stored (uncompressed)
// entries, ZIP64 when large, each record's data 64-byte aligned. Entries are views into the file mapping.
// Every offset and size is checked against the file before it is used; compressed or encrypted entries are
// refused by name (torch never writes them, and inflating would defeat zero-copy loading).
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "weights_tools/weight_tensor.h"

namespace tabula::weights {

struct ZipEntry {
  std::string name;
  uint64_t data_offset = 0;  // of the entry's bytes within the file
  uint64_t size = 0;
  uint16_t method = 0;       // 0 = stored
};

class ZipArchive {
 public:
  // Throws std::runtime_error("<source>: ...") for anything that is not a well-formed archive.
  ZipArchive(std::shared_ptr<const MappedFile> file);
  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* find(const std::string& name) const;
  // The bytes of a stored entry (throws naming the entry when it is compressed).
  std::span<const uint8_t> data(const ZipEntry& e) const;
  const std::shared_ptr<const MappedFile>& file() const { return file_; }

 private:
  std::shared_ptr<const MappedFile> file_;
  std::vector<ZipEntry> entries_;
};

bool looks_like_zip(const uint8_t* data, size_t size);

}  // namespace tabula::weights
