// Per-layer curves (the paper's Figure 2): one panel per architecture with its layer names on the x axis, every
// panel of a metric on one y-range, baselines as horizontal lines, 95 % bootstrap bands, the chance level.
#include <algorithm>
#include <iomanip>

#include "eval/report/internal.h"

namespace tabula::report {

namespace {

struct Point {
  int index = 0;
  double value = NAN, lo = NAN, hi = NAN;
  std::string layer;
};

// The points of one model on one metric, with their intervals where per-unit values exist.
std::vector<Point> points(const Study& st, const ReportOptions& opt, const Model& m, const std::string& dataset,
                          const std::string& metric) {
  std::vector<Point> out;
  for (const Row& r : st.rows) {
    if (r.model != m.shown || r.dataset != dataset || r.metric != metric) continue;
    Point p;
    p.index = r.layer_index, p.value = r.value, p.layer = r.layer;
    std::vector<double> u = units(st, m, dataset, metric, r.layer);
    if (u.size() >= 2) std::tie(p.lo, p.hi) = bootstrap_mean_ci95(u, opt.bootstrap, opt.seed);
    out.push_back(p);
  }
  return out;
}

}  // namespace

std::string layer_curves(const Study& st, const ReportOptions& opt, const std::string& dataset,
                         const std::string& metric, std::pair<double, double> range,
                         std::pair<double, double>* range_out) {
  // Panels: one per architecture (its seeds and trained weights together), in model order.
  std::vector<std::string> archs;
  std::map<std::string, std::vector<Point>> pts;
  std::map<std::string, std::vector<std::string>> layer_names;  // arch -> layer names in order
  double lo = INFINITY, hi = -INFINITY;
  for (const Model& m : st.models) {
    // A baseline's interval is in the within-noise table; across a whole panel it would hide the curves.
    std::vector<Point> p = points(st, opt, m, dataset, metric);
    if (m.kind == "baseline")
      for (Point& q : p) q.lo = q.hi = NAN;
    if (p.empty()) continue;
    for (const Point& q : p)
      for (double v : {q.value, q.lo, q.hi})
        if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
    pts[m.shown] = p;
    if (m.kind == "baseline") continue;
    if (std::find(archs.begin(), archs.end(), m.arch) == archs.end()) archs.push_back(m.arch);
    auto& names = layer_names[m.arch];
    for (const Point& q : p) {
      if (static_cast<int>(names.size()) <= q.index) names.resize(static_cast<size_t>(q.index) + 1);
      names[static_cast<size_t>(q.index)] = q.layer;
    }
  }
  if (!std::isfinite(lo)) return "";
  const double chance = chance_level(st, dataset, metric);
  if (std::isfinite(chance)) lo = std::min(lo, chance), hi = std::max(hi, chance);
  if (range_out) *range_out = {lo, hi};
  if (std::isfinite(range.first)) lo = std::min(lo, range.first), hi = std::max(hi, range.second);
  if (hi - lo < 1e-9) hi = lo + 1;
  const double pad = 0.06 * (hi - lo);
  // Fractions and correlations stay inside their natural bounds: no "-0.06" tick on a fraction axis.
  lo = lo >= 0 ? std::max(0.0, lo - pad) : lo - pad;
  hi = hi <= 1 ? std::min(1.0, hi + pad) : hi + pad;
  if (hi - lo < 1e-9) hi = lo + 1;
  if (archs.empty()) archs.push_back("");  // baselines only: one panel
  size_t max_name = 4;
  for (const auto& [a, names] : layer_names)
    for (const std::string& n : names) max_name = std::max(max_name, n.size());
  const double L = 56, T = 44, B = 30 + 5.2 * static_cast<double>(std::min<size_t>(max_name, 22)), H = 240 + B;
  const double legend_w = 24, gap = 40;
  std::vector<double> widths;
  for (const std::string& a : archs)
    widths.push_back(std::clamp(22.0 * static_cast<double>(std::max<size_t>(layer_names[a].size(), 1)), 140.0, 300.0));
  double W = L + legend_w;
  for (double w : widths) W += w + gap;
  auto Y = [&](double v) { return T + (1 - (v - lo) / (hi - lo)) * (H - T - B); };
  std::ostringstream s;
  const std::string title = metric + (dataset.empty() ? "" : " — " + dataset);
  s << std::fixed << std::setprecision(1) << svg_open("curve-" + slug(dataset + "-" + metric), W, H, title, W / 2);
  double x0 = L;
  for (size_t a = 0; a < archs.size(); ++a) {
    const double pw = widths[a], right = x0 + pw;
    const auto& names = layer_names[archs[a]];
    const size_t n = std::max<size_t>(names.size(), 1);
    auto X = [&](int i) { return x0 + (i + 0.5) / static_cast<double>(n) * pw; };
    axes(s, x0, T, right, H - B, lo, hi, Y);
    s << "<text x=\"" << (x0 + right) / 2 << "\" y=\"" << T - 8 << "\" text-anchor=\"middle\" font-size=\"11\">"
      << esc(archs[a].empty() ? "baselines" : archs[a]) << "</text>";
    for (size_t i = 0; i < names.size(); ++i)
      s << "<text transform=\"translate(" << X(static_cast<int>(i)) + 3 << "," << H - B + 10
        << ") rotate(-50)\" text-anchor=\"end\" font-size=\"9\">" << esc(names[i]) << "</text>";
    if (std::isfinite(chance))
      s << "<line x1=\"" << x0 << "\" y1=\"" << Y(chance) << "\" x2=\"" << right << "\" y2=\"" << Y(chance)
        << "\" stroke=\"#777\" stroke-width=\"1\" stroke-dasharray=\"1,2\"><title>chance: " << fmt(chance, 3)
        << "</title></line>";
    for (const Model& m : st.models) {
      auto it = pts.find(m.shown);
      if (it == pts.end()) continue;
      const std::vector<Point>& p = it->second;
      if (m.kind == "baseline") {
        const Point& q = p.back();
        if (!std::isfinite(q.value)) continue;
        s << "<line x1=\"" << x0 << "\" y1=\"" << Y(q.value) << "\" x2=\"" << right << "\" y2=\"" << Y(q.value) << "\" "
          << line_attrs(m.style) << "><title>" << esc(m.shown) << ": " << fmt(q.value, 4) << "</title></line>";
        continue;
      }
      if (m.arch != archs[a]) continue;
      std::ostringstream band_hi, band_lo;
      bool band = true;
      for (const Point& q : p) band = band && std::isfinite(q.lo);
      if (band && p.size() > 1) {
        s << "<polygon fill=\"" << m.style.colour << "\" fill-opacity=\"0.12\" stroke=\"none\" points=\"";
        for (const Point& q : p) s << X(q.index) << "," << Y(q.hi) << " ";
        for (auto q = p.rbegin(); q != p.rend(); ++q) s << X(q->index) << "," << Y(q->lo) << " ";
        s << "\"/>";
      }
      s << "<polyline fill=\"none\" " << line_attrs(m.style) << " points=\"";
      for (const Point& q : p)
        if (std::isfinite(q.value)) s << X(q.index) << "," << Y(q.value) << " ";
      s << "\"/>";
      for (const Point& q : p)
        if (std::isfinite(q.value))
          s << "<circle cx=\"" << X(q.index) << "\" cy=\"" << Y(q.value) << "\" r=\"2.4\" fill=\"" << m.style.colour
            << "\"><title>" << esc(m.shown + " " + q.layer) << ": " << fmt(q.value, 4)
            << (std::isfinite(q.lo) ? " [" + fmt(q.lo) + ", " + fmt(q.hi) + "]" : "") << "</title></circle>";
    }
    x0 = right + gap;
  }
  ylabel(s, 14, (T + H - B) / 2, metric.rfind("retrieved", 0) == 0 ? "fraction retrieved (BH p < 0.05)" : metric);
  // The models' legend is the report's (the same styles everywhere); here only what is particular to the chart.
  s << "<text x=\"" << L << "\" y=\"" << H - 4 << "\" font-size=\"9\" fill=\"#555\">"
    << (std::isfinite(chance) ? "dotted grey: chance (" + fmt(chance, 2) + "); " : std::string())
    << "bands: 95 % bootstrap CI</text></svg>";
  return s.str();
}

}  // namespace tabula::report
