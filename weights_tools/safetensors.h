// safetensors (https://github.com/huggingface/safetensors): 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the tensor bytes.
// Reading memory-maps the file and hands out views into the mapping (no copy) whenever a tensor's start is
// aligned for its dtype. Every claim of the header is checked against the file before a byte is used, with
// the rules of the reference implementation: offsets inside the data section, tensors neither overlapping nor
// leaving gaps, the data section fully covered, byte sizes = shape product x dtype size (overflow-checked),
// no duplicate names, header at most 100 MB and a JSON object.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

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
// The header JSON the writer produces (for tests).
std::string safetensors_header(const StateDict& sd);

}  // namespace tabula::weights
