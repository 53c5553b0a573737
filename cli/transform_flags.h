// The transform flags `tabula embed` and `tabula preprocess` share (data/transform.h): one declaration, so both
// commands take the same flags with the same meaning and defaults.
#pragma once
#include <vector>

#include "cli/args.h"
#include "data/transform.h"

namespace tabula::cli {

// --preset, --resize, --crop, --size, --interp, --no-antialias, --mean, --std, --no-normalize, --intensity,
// --percentiles, --channels, --resize-impl; every default is "the card's or arch's".
std::vector<Flag> transform_flags();
// `base` followed by transform_flags().
std::vector<Flag> with_transform_flags(std::vector<Flag> base);
// The flags the user gave (absent ones stay unset).
data::TransformFlags read_transform_flags(const Args& args);

}  // namespace tabula::cli
