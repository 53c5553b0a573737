// `tabula embed --aggregate`: site/crop-level rows -> one row per well (or any grouping), as
// `df.groupby(by, sort=True).mean()` on the float32 features would give.
#include <algorithm>
#include <stdexcept>

#include "engine/fileio.h"
#include "util/npy.h"
#include "embed/embed.h"
#include "eval/metrics/features.h"
#include "eval/metrics/map.h"
#include "eval/norm/normalize.h"
#include "util/table.h"

namespace tabula {

std::vector<std::string> well_columns(const std::vector<std::string>& columns) {
  auto has = [&](const std::string& c) { return std::find(columns.begin(), columns.end(), c) != columns.end(); };
  if (has("well_id")) return {"well_id"};
  std::vector<std::string> by;
  for (const char* c : {"Metadata_Source", "Metadata_Batch", "experiment", "experiment_name"})
    if (has(c)) by.push_back(c);
  std::string plate, well;
  for (const char* c : {"Metadata_Plate", "plate", "Plate"})
    if (plate.empty() && has(c)) plate = c;
  for (const char* c : {"Metadata_Well", "well", "Well", "address"})
    if (well.empty() && has(c)) well = c;
  if (plate.empty() || well.empty()) {
    std::string all;
    for (const auto& c : columns) all += (all.empty() ? "" : ", ") + c;
    throw std::invalid_argument("--aggregate well: the metadata has no " + std::string(plate.empty() ? "plate" : "well") +
                                " column (looked for Metadata_Plate/plate/Plate and Metadata_Well/well/Well/address; "
                                "columns: " + all + "); name the columns instead: --aggregate C1,C2");
  }
  by.push_back(plate);
  by.push_back(well);
  return by;
}

int64_t aggregate_embedding(const std::string& dir, const std::vector<std::string>& layers, const std::vector<std::string>& by) {
  tabula::Table meta = tabula::read_csv(dir + "/index.csv");
  for (const auto& c : by) meta.index(c);  // throws naming the file and its columns
  std::vector<size_t> all(meta.rows());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  const auto groups = eval::group_rows(meta, by, all);
  for (const std::string& layer : layers) {
    const std::string file = dir + "/" + layer + ".npy";
    eval::RowMatrixF x = eval::load_features(file);
    eval::RowMatrixF g = eval::aggregate(x, meta, by, "mean", nullptr);
    AtomicFile f(file);
    f.write(npy_header(DType::f32, {g.rows(), g.cols()}));
    f.write(g.data(), static_cast<size_t>(g.size()) * sizeof(float));
    f.commit();
  }
  // Metadata that is the same for every row of every group (compound, plate, ...) survives; per-site columns go.
  std::vector<std::string> keep;
  for (const auto& c : meta.columns()) {
    const auto& col = meta.column(c);
    bool constant = true;
    for (const auto& rows : groups)
      for (size_t r : rows) constant = constant && col[r] == col[rows[0]];
    if (constant) keep.push_back(c);
  }
  keep.push_back("n_aggregated");
  if (meta.has("n_aggregated")) throw std::runtime_error(dir + "/index.csv: already has a column n_aggregated (aggregated twice?)");
  tabula::Table out(keep);
  for (const auto& rows : groups) {
    std::vector<std::string> row;
    for (size_t k = 0; k + 1 < keep.size(); ++k) row.push_back(meta.column(keep[k])[rows[0]]);
    row.push_back(std::to_string(rows.size()));
    out.add_row(row);
  }
  tabula::write_csv(dir + "/index.csv", out);
  return static_cast<int64_t>(groups.size());
}

}  // namespace tabula
