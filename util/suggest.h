// "Did you mean ...?": the closest valid spellings of a mistyped name (a command, flag, arch, layer, pooling), by
// edit distance with '_' and '-' treated alike and case ignored, so a message can offer one short suggestion
// instead of a list of every valid name.
#pragma once
#include <string>
#include <vector>

namespace tabula {

// Levenshtein distance between a and b after lower-casing and mapping '_' to '-'.
size_t edit_distance(const std::string& a, const std::string& b);

// The candidates closest to `word`: those at the smallest edit distance (at most `max_count`; among equals, names
// ending in the nearest number first, then candidate order), if that distance is one a typo explains: max(1,
// |word| / 3) edits, or a candidate that starts with `word` or that `word` starts with. Empty when nothing is close.
std::vector<std::string> closest(const std::string& word, const std::vector<std::string>& candidates,
                                 size_t max_count = 3);

// " (did you mean X?)" / " (did you mean X or Y?)" with `prefix` before each name (e.g. "--"), or "" when nothing
// is close.
std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates,
                         const std::string& prefix = "", size_t max_count = 2);

}  // namespace tabula
