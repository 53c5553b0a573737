#include "util/suggest.h"

#include <algorithm>
#include <cctype>
#include <numeric>
#include <tuple>

namespace tabula {

namespace {
std::string fold(const std::string& s) {
  std::string o;
  for (char c : s) o += c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return o;
}
// The number a name ends with ("layer5" -> 5), or -1.
long long trailing_number(const std::string& s) {
  size_t i = s.size();
  while (i > 0 && std::isdigit(static_cast<unsigned char>(s[i - 1]))) --i;
  if (i == s.size() || s.size() - i > 9) return -1;
  return std::stoll(s.substr(i));
}
}  // namespace

size_t edit_distance(const std::string& a_in, const std::string& b_in) {
  const std::string a = fold(a_in), b = fold(b_in);
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  std::iota(prev.begin(), prev.end(), size_t{0});
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::vector<std::string> closest(const std::string& word, const std::vector<std::string>& candidates,
                                 size_t max_count) {
  const std::string w = fold(word);
  const size_t budget = std::max<size_t>(1, w.size() / 3);
  // (whether the candidate merely continues the word, distance, numeric distance for names that end in numbers:
  // layer5 -> layer4 before layer1, candidate index). A name typed short of its end (Metadata_JCP for
  // Metadata_JCP2022) means the name it starts, not another at a smaller distance (Metadata_moa).
  std::vector<std::tuple<bool, size_t, long long, size_t>> scored;
  const long long wn = trailing_number(w);
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (candidates[i] == word) continue;
    const std::string c = fold(candidates[i]);
    size_t d = edit_distance(w, c);
    const bool prefix = !w.empty() && (c.rfind(w, 0) == 0 || (c.size() >= 3 && w.rfind(c, 0) == 0));
    const long long cn = trailing_number(c);
    const long long nd = wn >= 0 && cn >= 0 ? (wn > cn ? wn - cn : cn - wn) : 0;
    const bool continues = w.size() >= 4 && c.size() > w.size() && c.rfind(w, 0) == 0;
    // A case or '_'/'-' slip of a whole name (distance 0) is that name, before the names it starts (Layer4 ->
    // layer4, not layer4.0).
    if (d <= budget || prefix) scored.push_back({d != 0 && !continues, d, nd, i});
  }
  std::sort(scored.begin(), scored.end());
  // Only the best distance: a case or '_'/'-' slip (distance 0) gets one answer, not its neighbours too.
  std::vector<std::string> out;
  for (const auto& [other, d, nd, i] : scored) {
    if (out.size() >= max_count || other != std::get<0>(scored.front()) || d > std::get<1>(scored.front())) break;
    if (std::find(out.begin(), out.end(), candidates[i]) == out.end()) out.push_back(candidates[i]);
  }
  return out;
}

std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates,
                         const std::string& prefix, size_t max_count) {
  std::vector<std::string> c = closest(word, candidates, max_count);
  if (c.empty()) return "";
  std::string s = " (did you mean ";
  for (size_t i = 0; i < c.size(); ++i) s += (i == 0 ? "" : i + 1 == c.size() ? " or " : ", ") + prefix + c[i];
  return s + "?)";
}

}  // namespace tabula
