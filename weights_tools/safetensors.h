// safetensors (https://github.com/huggingface/safetensors): 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the tensor bytes.
// Reading memory-maps the file and hands out views into the mapping (no copy) whenever a tensor's start is
// aligned for its dtype. Every claim of the header is checked against the file before a byte is used, with
// the rules of the reference implementation: offsets inside the data section, tensors neither overlapping nor
// leaving gaps, the data section fully covered, byte sizes = shape product x dtype size (overflow-checked),
// no duplicate names, header at most 100 MB and a JSON object.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/fileio.h"
#include "weights_tools/weight_tensor.h"

namespace tabula::weights {

inline constexpr uint64_t kSafetensorsMaxHeader = 100'000'000;

bool looks_like_safetensors(const uint8_t* data, size_t size);

// Throws std::runtime_error("<path>: ...") naming the tensor and the broken rule.
StateDict read_safetensors(const std::string& path);
// Parses bytes kept alive by `owner` (a mapping or a buffer). `mapped` marks views as zero-copy file views.
StateDict parse_safetensors(const uint8_t* data, size_t size, std::shared_ptr<const void> owner,
                            const std::string& source, bool mapped);

// Writes atomically (past the page cache from 32 MiB of tensor data on). Tensors are laid out as the reference
// writer lays them out (by dtype, largest alignment first, then by name), so every tensor is aligned for its dtype;
// the header is padded with spaces to a multiple of 8 bytes. Duplicate names are refused.
void write_safetensors(const std::string& path, const StateDict& sd);

// "" when `path` may name a safetensors file to write; else why not: a name ending as torch.save / pickle / numpy
// files do (.pth, .pt, .bin, .ckpt, .pkl, .npy, ...) would hold safetensors that torch.load and np.load refuse.
std::string safetensors_out_name_problem(const std::string& path);
// The header JSON the writer produces (for tests).
std::string safetensors_header(const StateDict& sd);

// The file write_safetensors writes, filled tensor by tensor in whatever order the tensors become available (an
// init pass streaming a model too large to hold): the layout (names, dtypes, shapes, metadata; no data) is known
// up front, so the header goes first and each tensor straight to its offset. Atomic as write_safetensors: nothing
// appears at `path` unless commit() succeeds.
class SafetensorsWriter {
 public:
  // hold_limit: bytes of early tensors held before the bypass ends (0: a quarter of the memory).
  SafetensorsWriter(const std::string& path, const StateDict& layout, uint64_t hold_limit = 0);
  // Throws std::runtime_error naming the file and tensor for an unknown name, a size that is not the layout's,
  // or a second write.
  void write(const std::string& name, const void* data, size_t nbytes);
  // The same, taking the bytes over: a tensor that arrives before those in front of it in the file is held (not
  // copied) while the file is written past the page cache (from 32 MiB of tensors, as write_safetensors).
  void write(const std::string& name, std::vector<uint8_t>&& bytes);
  // Throws naming a tensor never written.
  void commit();

 private:
  struct Slot {
    uint64_t offset = 0;
    size_t nbytes = 0;
    bool written = false;
  };
  Slot& slot(const std::string& name, size_t nbytes);  // checks the name and size; refuses a second write
  void write_next(const std::string& name, const void* data, size_t nbytes);  // the next tensor in file order
  AtomicFile file_;
  std::map<std::string, Slot> slots_;
  // While the file bypasses the page cache it is written front to back: tensors in file order, the next one to
  // write, and those that arrived early. Once the early ones would pass a quarter of the memory (a streaming init
  // hands tensors on in forward order, not the file's), the bypass ends and every tensor goes to its offset.
  std::vector<std::string> order_;
  size_t next_ = 0;
  std::map<std::string, std::vector<uint8_t>> early_;
  uint64_t early_bytes_ = 0, early_limit_ = 0;
};

}  // namespace tabula::weights
