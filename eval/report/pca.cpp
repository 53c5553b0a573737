// Per-layer PCA scatters coloured by label, plate, batch or fold: where the images of one class gather, and
// whether plates or batches separate (a batch effect the metrics would reward or punish).
#include <Eigen/Dense>
#include <algorithm>
#include <filesystem>
#include <iomanip>
#include <set>

#include "eval/report/internal.h"
#include "util/npy.h"
#include "util/table.h"

namespace tabula::report {

namespace fs = std::filesystem;

namespace {

struct Projection {
  std::vector<double> x, y;
  std::vector<size_t> rows;   // which rows of the table they are
  double var1 = 0, var2 = 0;  // fraction of the variance on each axis
};

// The first two principal components (from the Gram matrix: cheap when rows << features), at most 1500 rows.
std::optional<Projection> project(const std::string& npy) {
  NpyArray a = read_npy(npy);
  if (a.shape.size() != 2 || a.shape[0] < 3) return std::nullopt;
  const int64_t n_all = a.shape[0], d = a.shape[1];
  const std::vector<float> v = a.to_f32();
  const int64_t step = std::max<int64_t>(1, (n_all + 1499) / 1500);
  Projection p;
  for (int64_t r = 0; r < n_all; r += step) p.rows.push_back(static_cast<size_t>(r));
  const auto n = static_cast<int64_t>(p.rows.size());
  Eigen::MatrixXd x(n, d);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) {
      const double e = v[static_cast<size_t>(static_cast<int64_t>(p.rows[size_t(i)]) * d + j)];
      x(i, j) = std::isfinite(e) ? e : 0.0;
    }
  x.rowwise() -= x.colwise().mean();
  Eigen::MatrixXd g = x * x.transpose();
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(g);
  const double total = std::max(g.trace(), 1e-30);
  for (int k = 0; k < 2; ++k) {
    Eigen::VectorXd u = es.eigenvectors().col(n - 1 - k) * std::sqrt(std::max(0.0, es.eigenvalues()(n - 1 - k)));
    Eigen::Index at;
    u.cwiseAbs().maxCoeff(&at);
    if (u(at) < 0) u = -u;  // a fixed sign: the same data gives the same picture
    (k ? p.y : p.x).assign(u.data(), u.data() + n);
    (k ? p.var2 : p.var1) = es.eigenvalues()(n - 1 - k) / total;
  }
  return p;
}

// One colouring of a projection as an SVG group, and the group's height.
std::pair<std::string, double> panel(const Projection& p, const std::vector<std::string>& cats, const std::string& by) {
  std::vector<std::string> levels;
  for (size_t i : p.rows)
    if (std::find(levels.begin(), levels.end(), cats[i]) == levels.end()) levels.push_back(cats[i]);
  std::sort(levels.begin(), levels.end());
  const double S = 196, M = 8;
  const size_t shown = std::min<size_t>(levels.size(), 12);
  const double H = S + 22 + 13 * static_cast<double>((shown + 1) / 2);
  // The 2nd to 98th percentile fills the panel (a few outlying wells would squeeze everything else into a corner);
  // points beyond it sit on the edge.
  auto range = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const double lo = v[v.size() / 50], hi = v[v.size() - 1 - v.size() / 50];
    const double pad = 0.05 * std::max(hi - lo, 1e-12);
    return std::make_pair(lo - pad, hi + pad);
  };
  const auto [x0, x1] = range(p.x);
  const auto [y0, y1] = range(p.y);
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << "<g><text x=\"" << S / 2 << "\" y=\"12\" text-anchor=\"middle\" "
    << "font-size=\"11\">by " << esc(by) << "</text><rect x=\"" << M << "\" y=\"18\" width=\"" << S - 2 * M
    << "\" height=\"" << S - 2 * M << "\" fill=\"none\" stroke=\"#ccc\"/>";
  for (size_t i = 0; i < p.rows.size(); ++i) {
    const size_t c = std::find(levels.begin(), levels.end(), cats[p.rows[i]]) - levels.begin();
    const double u = std::clamp((p.x[i] - x0) / (x1 - x0), 0.0, 1.0),
                 v = std::clamp((p.y[i] - y0) / (y1 - y0), 0.0, 1.0);
    s << "<circle cx=\"" << M + 4 + u * (S - 2 * M - 8) << "\" cy=\"" << 18 + 4 + (1 - v) * (S - 2 * M - 8)
      << "\" r=\"2.3\" fill=\"" << category_colour(c) << "\" fill-opacity=\"0.75\"><title>" << esc(cats[p.rows[i]])
      << "</title></circle>";
  }
  for (size_t c = 0; c < shown; ++c) {
    const double lx = M + static_cast<double>(c % 2) * (S / 2), ly = S + 10 + 13 * static_cast<double>(c / 2);
    std::ostringstream name;
    if (c + 1 == shown && levels.size() > shown)
      name << "+" << levels.size() - shown + 1 << " more (grey)";
    else if (levels[c].size() > 18)
      name << levels[c].substr(0, 17) << "…";
    else
      name << levels[c];
    s << "<circle cx=\"" << lx + 4 << "\" cy=\"" << ly - 3 << "\" r=\"3.5\" fill=\"" << category_colour(c)
      << "\"/><text x=\"" << lx + 10 << "\" y=\"" << ly << "\" font-size=\"9\">" << esc(name.str()) << "</text>";
  }
  s << "</g>";
  return {s.str(), H};
}

}  // namespace

std::string pca_panels(const Study& st, const std::string& dataset, std::string* caption) {
  const DatasetInfo* d = find_dataset(st, dataset);
  std::vector<std::string> by;
  if (d)
    for (const std::string& c : {d->label_col, d->plate_col, d->batch_col, d->fold_col})
      if (!c.empty() && std::find(by.begin(), by.end(), c) == by.end()) by.push_back(c);
  if (by.empty()) return "";
  std::ostringstream out;
  std::set<std::string> fams;
  for (const Model& m : st.models) {
    if (m.kind == "baseline" || !fams.insert(m.family).second) continue;  // one seed per family
    std::vector<std::string> layers;
    for (const Row& r : st.rows)
      if (r.model == m.shown && r.dataset == dataset &&
          std::find(layers.begin(), layers.end(), r.layer) == layers.end())
        layers.push_back(r.layer);
    if (layers.empty()) continue;
    std::vector<std::string> pick = {layers.front(), layers[layers.size() / 2], layers.back()};
    pick.erase(std::unique(pick.begin(), pick.end()), pick.end());
    for (const std::string& layer : pick) {
      const std::string norm = eval_dir(m, dataset, layer) + "/norm";
      const std::string dir =
          fs::exists(norm + "/" + layer + ".npy") ? norm : m.run + "/embed/" + dataset + "/" + m.label;
      if (!fs::exists(dir + "/" + layer + ".npy") || !fs::exists(dir + "/index.csv")) continue;
      auto p = project(dir + "/" + layer + ".npy");
      tabula::Table meta = tabula::read_csv(dir + "/index.csv");
      if (!p || meta.rows() <= p->rows.back()) continue;
      std::vector<std::string> groups;
      double H = 0;
      for (const std::string& c : by) {
        if (!meta.has(c)) continue;
        auto [g, h] = panel(*p, meta.column(c), c.rfind("Metadata_", 0) == 0 ? c.substr(9) : c);
        H = std::max(H, h);
        groups.push_back(g);
      }
      if (groups.empty()) continue;
      const double W = std::max(200 * static_cast<double>(groups.size()) + 10, 430.0);
      out << svg_open(
          "pca-" + slug(dataset + "-" + m.shown + "-" + layer), W, H + 40,
          m.shown + " · " + layer + " · PC1 " + fmt(100 * p->var1, 0) + " %, PC2 " + fmt(100 * p->var2, 0) + " %",
          W / 2);
      for (size_t g = 0; g < groups.size(); ++g)
        out << "<g transform=\"translate(" << 5 + 200 * static_cast<double>(g) << ",28)\">" << groups[g] << "</g>";
      out << "</svg>\n";
    }
  }
  *caption =
      "The first two principal components of each network's first, middle and last layer (its first seed; the "
      "features the metrics saw, per-plate normalised where the study normalises), one point per image, "
      "coloured by each metadata column. Points of one plate or batch gathering apart from the others show a "
      "batch effect that normalisation did not remove.";
  return out.str();
}

}  // namespace tabula::report
