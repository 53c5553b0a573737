// "Within noise": a baseline against each network family at the family's best layer, 95 % intervals compared;
// shown as one compact table with the two intervals drawn.
#include <algorithm>
#include <iomanip>

#include "eval/report/internal.h"

namespace tabula::report {

std::vector<NoiseNote> noise_notes(const Study& st, const ReportOptions& opt) {
  std::vector<NoiseNote> notes;
  const auto metrics = metric_list(st);
  auto fams = families(st);
  for (const auto& [ds, metric] : metrics) {
    // Retrieval is a 0/1 per compound: its intervals say little with a dozen compounds; mAP carries it.
    if (metric == "retrieved" || metric.rfind("retrieved ", 0) == 0) continue;
    for (const Model& b : st.models) {
      if (b.kind != "baseline") continue;
      std::string bl = last_layer(st, b.shown, ds);
      std::vector<double> bu = units(st, b, ds, metric, bl);
      if (bu.size() < 2) continue;
      auto bci = bootstrap_mean_ci95(bu, opt.bootstrap, opt.seed);
      double bv = 0;
      for (double x : bu) bv += x;
      bv /= static_cast<double>(bu.size());
      for (const auto& [fam, members] : fams) {
        if (members[0]->kind == "baseline") continue;
        // The family's best layer: highest mean over its seeds (the comparison most favourable to the network).
        std::map<std::string, std::pair<double, int>> by_layer;
        std::vector<std::string> layer_order;
        for (const Row& r : st.rows)
          for (const Model* m : members)
            if (r.model == m->shown && r.dataset == ds && r.metric == metric && std::isfinite(r.value)) {
              if (!by_layer.count(r.layer)) layer_order.push_back(r.layer);
              by_layer[r.layer].first += r.value, by_layer[r.layer].second += 1;
            }
        std::string best;
        double best_v = -INFINITY;
        for (const std::string& l : layer_order) {
          double v = by_layer[l].first / by_layer[l].second;
          if (v > best_v) best_v = v, best = l;
        }
        if (best.empty()) continue;
        double lo = INFINITY, hi = -INFINITY, sum = 0;
        int n = 0;
        for (const Model* m : members) {
          std::vector<double> u = units(st, *m, ds, metric, best);
          if (u.size() < 2) continue;
          auto ci = bootstrap_mean_ci95(u, opt.bootstrap, opt.seed);
          lo = std::min(lo, ci.first), hi = std::max(hi, ci.second);
          for (double x : u) sum += x / static_cast<double>(u.size());
          ++n;
        }
        if (!n) continue;
        NoiseNote note;
        note.metric = ds + ": " + metric;
        note.baseline = b.shown;
        note.family = fam;
        note.family_layer = best;
        note.baseline_value = bv, note.baseline_lo = bci.first, note.baseline_hi = bci.second;
        note.family_value = sum / n, note.family_lo = lo, note.family_hi = hi;
        note.verdict = bci.second < lo ? "below" : bci.first > hi ? "exceeds" : "matches";
        std::ostringstream t;
        t << "<b>" << esc(b.shown) << "</b> "
          << (note.verdict == "matches"   ? "matches"
              : note.verdict == "exceeds" ? "beats"
                                          : "falls below")
          << " <b>" << esc(fam) << "</b> on <i>" << esc(note.metric) << "</i>"
          << (note.verdict == "matches" ? " within noise" : "") << ": " << fmt(bv) << " [" << fmt(bci.first) << ", "
          << fmt(bci.second) << "] vs " << fmt(note.family_value) << " [" << fmt(lo) << ", " << fmt(hi)
          << "] at its best layer (" << esc(best) << ")"
          << (note.verdict == "matches" ? " — the intervals overlap." : " — the intervals do not overlap.");
        note.text = t.str();
        notes.push_back(note);
      }
    }
  }
  return notes;
}

namespace {

// Two intervals on one small axis: the baseline's (top) and the network family's (bottom), overlap shaded.
std::string overlap_svg(const NoiseNote& n, double lo, double hi) {
  const double W = 170, H = 26;
  auto X = [&](double v) { return 4 + (std::clamp(v, lo, hi) - lo) / (hi - lo) * (W - 8); };
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\""
    << H << "\" role=\"img\"><title>" << esc(n.baseline) << " [" << fmt(n.baseline_lo) << ", " << fmt(n.baseline_hi)
    << "] vs " << esc(n.family) << " [" << fmt(n.family_lo) << ", " << fmt(n.family_hi) << "]</title>";
  const double olo = std::max(n.baseline_lo, n.family_lo), ohi = std::min(n.baseline_hi, n.family_hi);
  if (olo <= ohi)
    s << "<rect x=\"" << X(olo) << "\" y=\"2\" width=\"" << std::max(1.0, X(ohi) - X(olo))
      << "\" height=\"22\" fill=\"#fdd\"/>";
  s << "<line x1=\"" << X(n.baseline_lo) << "\" y1=\"8\" x2=\"" << X(n.baseline_hi) << "\" y2=\"8\" stroke=\"#555\" "
    << "stroke-width=\"4\"/><circle cx=\"" << X(n.baseline_value) << "\" cy=\"8\" r=\"3\" fill=\"#000\"/>"
    << "<line x1=\"" << X(n.family_lo) << "\" y1=\"19\" x2=\"" << X(n.family_hi) << "\" y2=\"19\" stroke=\"#1f77b4\" "
    << "stroke-width=\"4\"/><circle cx=\"" << X(n.family_value) << "\" cy=\"19\" r=\"3\" fill=\"#0b3d91\"/></svg>";
  return s.str();
}

}  // namespace

namespace {

std::string rows_html(const std::vector<const NoiseNote*>& rows) {
  std::ostringstream h;
  h << "<table class=\"noise\"><tr><th>metric</th><th>baseline [95 % CI]</th><th>network family at its best layer "
    << "[95 % CI]</th><th>intervals (black: baseline, blue: network; pink: overlap)</th><th>verdict</th></tr>\n";
  for (const NoiseNote* n : rows) {
    const double lo = std::min(n->baseline_lo, n->family_lo), hi = std::max(n->baseline_hi, n->family_hi);
    const double pad = std::max(0.02, 0.08 * (hi - lo));
    h << "<tr class=\"" << n->verdict << "\"><td>" << esc(n->metric) << "</td><td>" << esc(n->baseline) << " "
      << fmt(n->baseline_value) << " [" << fmt(n->baseline_lo) << ", " << fmt(n->baseline_hi) << "]</td><td>"
      << esc(n->family) << " @ " << esc(n->family_layer) << " " << fmt(n->family_value) << " [" << fmt(n->family_lo)
      << ", " << fmt(n->family_hi) << "]</td><td>" << overlap_svg(*n, lo - pad, hi + pad) << "</td><td>"
      << (n->verdict == "matches"   ? "<b>within noise</b>"
          : n->verdict == "exceeds" ? "baseline higher"
                                    : "network higher")
      << "</td></tr>\n";
  }
  h << "</table>\n";
  return h.str();
}

}  // namespace

std::string noise_table(const std::vector<NoiseNote>& notes) {
  if (notes.empty())
    return "<p class=\"note\">No metric here has per-unit values to compare a baseline with a network.</p>\n";
  // The matches are the finding (a baseline the data cannot tell apart from a network); the rest is collapsed.
  std::vector<const NoiseNote*> match, other;
  for (const NoiseNote& n : notes) (n.verdict == "matches" ? match : other).push_back(&n);
  std::ostringstream h;
  h << "<div id=\"noise-table\">";
  if (match.empty())
    h << "<p class=\"note\">No baseline matches a network within noise.</p>\n";
  else
    h << rows_html(match);
  if (!other.empty())
    h << "<details><summary>" << other.size() << " comparisons that are not within noise</summary>\n"
      << rows_html(other) << "</details>\n";
  h << "</div>\n";
  return h.str();
}

}  // namespace tabula::report
