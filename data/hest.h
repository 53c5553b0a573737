// HEST-style patch files (HEST-1k's patches/<sample>.h5): datasets `img` (N x H x W x 3 uint8), `barcode`
// (N x 1 strings, fixed or variable length) and `coords` (N x 2 integers, pixel position on the slide), read
// and written with the HDF5 C API. Errors name the file and the dataset.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/image.h"

#include <mutex>

namespace tabula::data {

// Debian's HDF5 is not built thread-safe: every HDF5 call in tabula (HEST patches, .h5ad output) holds this lock.
std::mutex& hdf5_lock();

struct HestPatches {
  std::vector<Image> images;  // 3 x H x W each (empty when only the index was read)
  std::vector<std::string> barcodes;
  std::vector<std::array<int64_t, 2>> coords;
  int height = 0, width = 0;
};

// Barcodes, coords and patch size without reading the pixels; checks that the three datasets agree in N.
HestPatches read_hest_index(const std::string& path);
// One patch (0-based) as an RGB Image, read by hyperslab (the rest of the file is not touched).
Image read_hest_patch(const std::string& path, int64_t index, const DecodeLimits& limits = {});
// Writes the file (atomically: temp + rename); byte-identical for identical input (no object timestamps).
void write_hest_h5(const std::string& path, const HestPatches& patches);

}  // namespace tabula::data
