// The SVG toolkit of the report: escaping, number formatting, axes, colour scales.
#include <algorithm>
#include <cctype>
#include <iomanip>

#include "eval/report/internal.h"

namespace tabula::report {

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<')
      o += "&lt;";
    else if (c == '>')
      o += "&gt;";
    else if (c == '&')
      o += "&amp;";
    else if (c == '"')
      o += "&quot;";
    else
      o += c;
  }
  return o;
}

std::string fmt(double v, int digits) {
  if (!std::isfinite(v)) return "n/a";
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

std::string slug(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (std::isalnum(static_cast<unsigned char>(c)))
      o += char(std::tolower(static_cast<unsigned char>(c)));
    else if (!o.empty() && o.back() != '-')
      o += '-';
  }
  while (!o.empty() && o.back() == '-') o.pop_back();
  return o;
}

std::string svg_open(const std::string& id, double w, double h, const std::string& title, double title_x) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << "<svg id=\"" << esc(id)
    << "\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" << w << "\" height=\"" << h << "\" viewBox=\"0 0 " << w << " "
    << h << "\" role=\"img\"><title>" << esc(title) << "</title><text x=\"" << title_x
    << "\" y=\"18\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">" << esc(title) << "</text>";
  return s.str();
}

std::vector<double> nice_ticks(double lo, double hi) {
  const double raw = (hi - lo) / 4;
  const double mag = std::pow(10.0, std::floor(std::log10(std::max(raw, 1e-12))));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> t;
  for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + 1e-9 * step; v += step)
    t.push_back(std::abs(v) < 1e-12 ? 0 : v);
  return t;
}

void axes(std::ostringstream& s, double L, double T, double right, double bottom, double lo, double hi,
          const std::function<double(double)>& Y) {
  const std::vector<double> ticks = nice_ticks(lo, hi);
  const double step = ticks.size() > 1 ? ticks[1] - ticks[0] : 1;
  const int digits = step >= 1 ? 0 : step >= 0.1 && std::abs(step * 10 - std::round(step * 10)) < 1e-9 ? 1 : 2;
  for (double v : ticks) {
    s << "<text x=\"" << L - 6 << "\" y=\"" << Y(v) + 4 << "\" text-anchor=\"end\" font-size=\"10\">" << fmt(v, digits)
      << "</text><line x1=\"" << L << "\" y1=\"" << Y(v) << "\" x2=\"" << right << "\" y2=\"" << Y(v)
      << "\" stroke=\"#e4e4e4\"/>";
  }
  s << "<line x1=\"" << L << "\" y1=\"" << bottom << "\" x2=\"" << right << "\" y2=\"" << bottom
    << "\" stroke=\"#333\"/><line x1=\"" << L << "\" y1=\"" << T << "\" x2=\"" << L << "\" y2=\"" << bottom
    << "\" stroke=\"#333\"/>";
}

void ylabel(std::ostringstream& s, double x, double y, const std::string& text) {
  s << "<text transform=\"translate(" << x << "," << y << ") rotate(-90)\" text-anchor=\"middle\" font-size=\"11\">"
    << esc(text) << "</text>";
}

// matplotlib's viridis at 9 evenly spaced points, linearly interpolated: perceptually uniform, so 0.6 and 0.95
// look as different as they are.
std::string viridis(double t) {
  static const double k[9][3] = {{68, 1, 84},    {71, 44, 122}, {59, 81, 139},  {44, 113, 142}, {33, 144, 141},
                                 {39, 173, 129}, {92, 200, 99}, {170, 220, 50}, {253, 231, 37}};
  t = std::clamp(std::isfinite(t) ? t : 0.0, 0.0, 1.0) * 8;
  const int i = std::min(7, static_cast<int>(t));
  const double f = t - i;
  char buf[8];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", int(k[i][0] + f * (k[i + 1][0] - k[i][0]) + 0.5),
                int(k[i][1] + f * (k[i + 1][1] - k[i][1]) + 0.5), int(k[i][2] + f * (k[i + 1][2] - k[i][2]) + 0.5));
  return buf;
}

const char* category_colour(size_t i) {
  static const char* c[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                            "#e377c2", "#17becf", "#bcbd22", "#393b79", "#ad494a", "#637939"};
  return i < 12 ? c[i] : "#999999";
}

std::string line_attrs(const Style& st) {
  std::ostringstream s;
  s << "stroke=\"" << st.colour << "\" stroke-width=\"" << fmt(st.width, 1) << "\"";
  if (!st.dash.empty()) s << " stroke-dasharray=\"" << st.dash << "\"";
  return s.str();
}

std::string base64(const std::string& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8 | (unsigned char)in[i + 2];
    out += t[v >> 18], out += t[(v >> 12) & 63], out += t[(v >> 6) & 63], out += t[v & 63];
  }
  if (i + 1 == in.size()) {
    const unsigned v = (unsigned char)in[i] << 16;
    out += t[v >> 18], out += t[(v >> 12) & 63], out += "==";
  } else if (i + 2 == in.size()) {
    const unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8;
    out += t[v >> 18], out += t[(v >> 12) & 63], out += t[(v >> 6) & 63], out += '=';
  }
  return out;
}

}  // namespace tabula::report
