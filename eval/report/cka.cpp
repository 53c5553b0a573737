// Layer x layer CKA heatmaps: viridis (perceptually uniform, so 0.6 and 0.95 read as different), the value in
// every cell that has room for it, a colour bar with ticks.
#include <algorithm>
#include <iomanip>

#include "eval/report/internal.h"
#include "util/table.h"

namespace tabula::report {

namespace {

// Two decimals without the leading zero (".95"), so the value fits a small cell; "1.00" stays as it is.
std::string cell_text(double v) {
  std::string t = fmt(v, 2);
  return t.rfind("0.", 0) == 0 ? t.substr(1) : t;
}

}  // namespace

std::string cka_heatmap(const std::string& id, const std::string& title, const std::string& csv_path) {
  tabula::Table t = tabula::read_csv(csv_path);
  std::vector<std::string> la, lb;
  for (size_t r = 0; r < t.rows(); ++r) {
    if (std::find(la.begin(), la.end(), t.at(r, 0)) == la.end()) la.push_back(t.at(r, 0));
    if (std::find(lb.begin(), lb.end(), t.at(r, 1)) == lb.end()) lb.push_back(t.at(r, 1));
  }
  const double cell = std::clamp(480.0 / static_cast<double>(std::max<size_t>({la.size(), lb.size(), 1})), 12.0, 40.0);
  const bool values = cell >= 22;
  size_t longest = 4;
  for (const auto& v : {la, lb})
    for (const std::string& n : v) longest = std::max(longest, n.size());
  const double L = 30 + 5.5 * static_cast<double>(std::min<size_t>(longest, 24)), T = 36;
  const double gw = cell * static_cast<double>(lb.size()), gh = cell * static_cast<double>(la.size());
  const double W = std::max(L + gw + 110, 420.0),
               H = T + gh + 30 + 5.0 * static_cast<double>(std::min<size_t>(longest, 24));
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << svg_open(id, W, H, title, W / 2);
  for (size_t r = 0; r < t.rows(); ++r) {
    const size_t i = std::find(la.begin(), la.end(), t.at(r, 0)) - la.begin();
    const size_t j = std::find(lb.begin(), lb.end(), t.at(r, 1)) - lb.begin();
    const double v = t.number(r, 2);
    const double x = L + cell * static_cast<double>(j), y = T + cell * static_cast<double>(i);
    s << "<rect x=\"" << x << "\" y=\"" << y << "\" width=\"" << cell << "\" height=\"" << cell << "\" fill=\""
      << viridis(v) << "\"><title>" << esc(la[i] + " vs " + lb[j]) << ": " << fmt(v, 3) << "</title></rect>";
    if (values && std::isfinite(v))
      s << "<text x=\"" << x + cell / 2 << "\" y=\"" << y + cell / 2 + 3 << "\" text-anchor=\"middle\" font-size=\""
        << std::min(10.0, cell / 2.6) << "\" fill=\"" << (v > 0.6 ? "#000" : "#fff") << "\">"
        << cell_text(v) << "</text>";
  }
  for (size_t i = 0; i < la.size(); ++i)
    s << "<text x=\"" << L - 4 << "\" y=\"" << T + cell * (static_cast<double>(i) + 0.5) + 3
      << "\" text-anchor=\"end\" font-size=\"9\">" << esc(la[i]) << "</text>";
  for (size_t j = 0; j < lb.size(); ++j)
    s << "<text transform=\"translate(" << L + cell * (static_cast<double>(j) + 0.5) + 3 << "," << T + gh + 6
      << ") rotate(-60)\" text-anchor=\"end\" font-size=\"9\">" << esc(lb[j]) << "</text>";
  // Colour bar: 0 at the bottom, 1 at the top, ticks every 0.2.
  const double bx = L + gw + 24, bh = std::max(gh, 120.0);
  for (int k = 0; k < 50; ++k)
    s << "<rect x=\"" << bx << "\" y=\"" << T + bh * (1 - (k + 1) / 50.0) << "\" width=\"14\" height=\""
      << bh / 50 + 0.3 << "\" fill=\"" << viridis(k / 49.0) << "\"/>";
  for (int k = 0; k <= 5; ++k)
    s << "<text x=\"" << bx + 18 << "\" y=\"" << T + bh * (1 - k / 5.0) + 3 << "\" font-size=\"9\">" << fmt(k / 5.0, 1)
      << "</text>";
  s << "<text x=\"" << bx << "\" y=\"" << T - 6 << "\" font-size=\"10\">CKA</text>";
  // "a vs b" in the title names the models; else the CSV's column names.
  std::string a = t.columns()[0], b = t.columns()[1];
  if (auto p = title.find(" vs "); p != std::string::npos) {
    a = title.substr(0, p), b = title.substr(p + 4);
    if (auto c = a.rfind(": "); c != std::string::npos) a = a.substr(c + 2);
  }
  ylabel(s, 10, T + gh / 2, "layer of " + a);
  s << "<text x=\"" << L + gw / 2 << "\" y=\"" << H - 4 << "\" text-anchor=\"middle\" font-size=\"11\">layer of "
    << esc(b) << "</text></svg>";
  return s.str();
}

}  // namespace tabula::report
