#include "study/steps.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <stdexcept>

#include "data/image.h"
#include "data/manifest.h"
#include "eval/metrics/run.h"
#include "util/json.h"
#include "util/table.h"

namespace tabula::study {

namespace fs = std::filesystem;

double summary_number(const std::string& file, const std::string& key) {
  json::Value v = json::parse_file(file);
  const json::Value* x = v.find(key);
  if (!x) throw std::runtime_error(file + ": no '" + key + "'");
  return x->is_null() ? NAN : x->as_double();
}

std::vector<std::string> run_layers(const std::string& dir) {
  json::Value run = json::parse_file(dir + "/run.json");
  std::vector<std::string> out;
  for (const json::Value& l : run.find("layers")->as_array()) out.push_back(l.find("name")->as_string());
  return out;
}

int64_t layer_dim(const std::string& dir, const std::string& layer) {
  json::Value run = json::parse_file(dir + "/run.json");
  for (const json::Value& l : run.find("layers")->as_array())
    if (l.find("name")->as_string() == layer) return l.find("dim")->as_int64();
  throw std::runtime_error(dir + "/run.json: no layer " + layer);
}

std::vector<std::string> target_columns(const StudyDataset& d) {
  tabula::Table ex = tabula::read_csv(d.targets);
  if (!d.target_id.empty()) ex.index(d.target_id);  // names the column when it is missing
  std::vector<std::string> cols;
  for (const auto& c : ex.columns())
    if (c != d.target_id) cols.push_back(c);
  if (cols.empty()) throw std::runtime_error(d.targets + ": no target columns");
  return cols;
}

std::string aligned_targets(const StudyDataset& d, const std::string& index_csv, const std::string& out_csv) {
  if (d.target_id.empty()) return d.targets;
  const tabula::Table index = tabula::read_csv(index_csv);
  if (!index.has(d.target_id)) return d.targets;
  const tabula::Table ex = tabula::read_csv(d.targets);
  const size_t id_col = ex.index(d.target_id);
  std::map<std::string, size_t> row_of;
  for (size_t r = 0; r < ex.rows(); ++r)
    if (auto [it, fresh] = row_of.emplace(ex.at(r, id_col), r); !fresh)
      throw std::runtime_error(d.targets + ":" + std::to_string(ex.line(r)) + ": " + d.target_id + " '" +
                               ex.at(r, id_col) + "' is given twice (also on line " +
                               std::to_string(ex.line(it->second)) + ")");
  const std::vector<std::string>& ids = index.column(d.target_id);
  std::vector<size_t> order(ids.size());
  bool same = ids.size() == ex.rows();
  for (size_t i = 0; i < ids.size(); ++i) {
    auto it = row_of.find(ids[i]);
    if (it == row_of.end())
      throw std::runtime_error(d.targets + ": no row with " + d.target_id + " '" + ids[i] + "' (image " +
                               std::to_string(i) + " of " + d.data + ")");
    order[i] = it->second;
    same = same && order[i] == i;
  }
  if (same) return d.targets;
  std::filesystem::create_directories(std::filesystem::path(out_csv).parent_path());
  tabula::write_csv(out_csv, ex.select_rows(order));
  return out_csv;
}

void write_predictions(const std::string& features, const StudyDataset& d, const std::vector<std::string>& targets,
                       int64_t pca_components, int threads, const std::string& out_csv) {
  eval::RowMatrixF x;
  tabula::Table meta;
  eval::load_inputs({features, ""}, &x, &meta);
  tabula::Table ex = tabula::read_csv(d.targets);
  if (static_cast<int64_t>(ex.rows()) != x.rows())
    throw std::runtime_error(d.targets + ": " + std::to_string(ex.rows()) + " rows, the features have " +
                             std::to_string(x.rows()));
  eval::RowMatrixD y(x.rows(), static_cast<int64_t>(targets.size()));
  for (size_t g = 0; g < targets.size(); ++g) {
    std::vector<double> col = ex.numbers(targets[g]);
    for (size_t r = 0; r < col.size(); ++r)
      y(static_cast<int64_t>(r), static_cast<int64_t>(g)) = d.log1p ? std::log1p(col[r]) : col[r];
  }
  const std::vector<std::string>& fold = meta.column(d.fold_col);
  std::vector<std::string> folds;
  for (const std::string& f : fold)
    if (!f.empty() && std::find(folds.begin(), folds.end(), f) == folds.end()) folds.push_back(f);
  eval::RegressOptions ro;
  ro.method = "ridge";
  ro.ridge_solver = "exact";
  ro.pca_components = pca_components;
  ro.threads = threads;
  const size_t id_col = d.target_id.empty() ? SIZE_MAX : ex.index(d.target_id);
  tabula::Table t({d.target_id.empty() ? "row" : d.target_id, "fold", "target", "observed", "predicted"});
  for (const std::string& f : folds) {
    std::vector<int64_t> train, test;
    for (int64_t r = 0; r < x.rows(); ++r) (fold[static_cast<size_t>(r)] == f ? test : train).push_back(r);
    const auto ntr = static_cast<int64_t>(train.size()), nte = static_cast<int64_t>(test.size());
    eval::RowMatrixF xtr(ntr, x.cols()), xte(nte, x.cols());
    eval::RowMatrixD ytr(ntr, y.cols());
    for (int64_t i = 0; i < ntr; ++i) xtr.row(i) = x.row(train[size_t(i)]), ytr.row(i) = y.row(train[size_t(i)]);
    for (int64_t i = 0; i < nte; ++i) xte.row(i) = x.row(test[size_t(i)]);
    eval::RowMatrixD pred = eval::regress_predict(xtr, ytr, xte, ro);
    for (int64_t i = 0; i < nte; ++i) {
      const auto row = static_cast<size_t>(test[size_t(i)]);
      const std::string id = id_col == SIZE_MAX ? std::to_string(row) : ex.at(row, id_col);
      for (size_t g = 0; g < targets.size(); ++g)
        t.add_row({id, f, targets[g], tabula::format_number(y(test[size_t(i)], static_cast<int64_t>(g))),
                   tabula::format_number(pred(i, static_cast<int64_t>(g)))});
    }
  }
  tabula::write_csv(out_csv, t);
}

void write_split(const std::string& index_csv, const std::string& label_col, const std::string& out_csv) {
  tabula::Table t = tabula::read_csv(index_csv);
  const std::vector<std::string>& label = t.column(label_col);
  std::map<std::string, int> seen;
  std::vector<std::string> split(t.rows());
  for (size_t r = 0; r < t.rows(); ++r) {
    const int k = seen[label[r]]++ % 5;
    split[r] = k == 0 ? "test" : k == 1 ? "val" : "train";
  }
  if (t.has("split")) throw std::runtime_error(index_csv + ": already has a 'split' column (pass it as the split)");
  t.add_column("split", split);
  fs::create_directories(fs::path(out_csv).parent_path());
  tabula::write_csv(out_csv, t);
}

namespace {

// A display thumbnail: each channel stretched between its 0.5th and 99.5th percentile; 1 channel grey, 3 RGB,
// others mixed additively with evenly spaced hues (Cell Painting's 5 channels: DNA blue ... Mito red).
data::Image thumbnail(const data::Image& im, int max_side) {
  const int step = std::max(1, (std::max(im.height, im.width) + max_side - 1) / max_side);
  const int h = im.height / step, w = im.width / step;
  data::Image out(im.channels == 1 ? 1 : 3, h, w);
  for (int c = 0; c < im.channels; ++c) {
    std::vector<float> v(im.plane(c), im.plane(c) + im.plane_size());
    std::sort(v.begin(), v.end());
    const float lo = v[v.size() / 200], hi = std::max(v[v.size() - 1 - v.size() / 200], lo + 1e-6f);
    double rgb[3] = {1, 1, 1};
    if (im.channels != 1 && im.channels != 3) {
      const double hue = 240.0 - 240.0 * c / std::max(1, im.channels - 1);  // blue -> red
      for (int k = 0; k < 3; ++k) {
        const double d = std::abs(hue - (k == 0 ? 0.0 : k == 1 ? 120.0 : 240.0));
        rgb[k] = std::max(0.0, 1 - d / 120.0) * 2.0 / std::max(1, im.channels - 2);
      }
    }
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        double s = 0;
        for (int dy = 0; dy < step; ++dy)
          for (int dx = 0; dx < step; ++dx) s += im.at(c, y * step + dy, x * step + dx);
        const double t = std::clamp((s / (step * step) - lo) / (hi - lo), 0.0, 1.0) * 255;
        if (im.channels == 1 || im.channels == 3)
          out.at(im.channels == 1 ? 0 : c, y, x) = float(t);
        else
          for (int k = 0; k < 3; ++k) out.at(k, y, x) = std::min(255.0f, out.at(k, y, x) + float(t * rgb[k]));
      }
  }
  return out;
}

}  // namespace

void write_examples(const StudyDataset& d, const std::string& class_col, const std::string& out_dir, int per_class) {
  data::Manifest m = data::read_manifest(d.data);
  auto col = [&](const std::string& name) -> long {
    auto it = std::find(m.meta_columns.begin(), m.meta_columns.end(), name);
    return it == m.meta_columns.end() ? -1 : long(it - m.meta_columns.begin());
  };
  const long c_class = col(class_col);
  if (c_class < 0) return;
  std::string ctrl_col, ctrl_value;
  if (auto eq = d.control.find('='); eq != std::string::npos)
    ctrl_col = d.control.substr(0, eq), ctrl_value = d.control.substr(eq + 1);
  const long c_ctrl = ctrl_col.empty() ? -1 : col(ctrl_col), c_compound = col(d.compound_col);
  fs::create_directories(out_dir);
  std::map<std::string, int> count;
  tabula::Table t({"class", "file", "caption"});
  for (size_t i = 0; i < m.samples.size(); ++i) {
    const auto& meta = m.samples[i].meta;
    std::string cls = meta[size_t(c_class)];
    if (c_ctrl >= 0 && meta[size_t(c_ctrl)] == ctrl_value) cls = "control (" + ctrl_value + ")";
    if (cls.empty() || count[cls] >= per_class) continue;
    const std::string file = "example_" + std::to_string(t.rows()) + ".png";
    data::write_png(out_dir + "/" + file, thumbnail(data::load_sample(m, i), 160));
    std::string caption =
        c_compound >= 0
            ? meta[size_t(c_compound)]
            : fs::path(m.samples[i].channel_paths.empty() ? "" : m.samples[i].channel_paths[0]).filename().string();
    t.add_row({cls, file, caption});
    ++count[cls];
  }
  tabula::write_csv(out_dir + "/examples.csv", t);
}

}  // namespace tabula::study
