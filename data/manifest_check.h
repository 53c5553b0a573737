// An up-front check that a manifest's image files exist, so that a missing one is reported before hours of
// embedding rather than when its chunk is reached.
#pragma once
#include <cstddef>

#include "data/manifest.h"

namespace tabula::data {

// Throws, naming the manifest row (sample_name) and the file, for the first sample in [begin, end) whose channel
// or illumination file does not exist. Gives up silently after about budget_seconds (a slow file system): the
// samples it did not reach are still named with their row when they are decoded.
void check_images_exist(const Manifest& m, size_t begin, size_t end, double budget_seconds = 10.0);

}  // namespace tabula::data
