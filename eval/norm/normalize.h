// Profile normalisation on plain feature matrices, each step fitted on negative controls (or all rows) within
// groups of a metadata column (plate, batch), as pycytominer / EFAAR do:
//  - standardize: (x - mean_ctrl) / std_ctrl (population std, ddof 0, as sklearn's StandardScaler);
//  - robust MAD: (x - median_ctrl) / MAD_ctrl, MAD scaled x1.4826 ("mad_robustize") or raw;
//  - spherize (whitening) fitted on controls: PCA, ZCA, PCA-cor, ZCA-cor with regulariser eps, computed with a full
//    eigendecomposition (not pycytominer's sliced eigenvector window, pycytominer issue #747);
//  - PCA (sklearn semantics: centred, components by SVD, sign flip as sklearn's svd_flip);
//  - EFAAR: centre-scale on controls (per batch), TVN (centre-scale -> PCA on controls -> centre-scale ->
//    per-batch (Cov_ctrl + 0.5 I)^(-1/2)), PCA-centerscale;
//  - aggregation (mean/median) by any columns; feature filtering (zero MAD, low variance).
// All fits run in float64 and return float32, so results match numpy/sklearn to float32 rounding.
#pragma once
#include <string>
#include <vector>

#include "eval/metrics/features.h"
#include "util/table.h"

namespace tabula::eval {

// Which rows fit the transform: `control_column == control_value` (e.g. Metadata_negcon == True / pert == DMSO),
// or every row when control_column is empty. Groups by `group_column` (empty = one group).
struct NormSpec {
  std::string group_column, control_column, control_value;
};

// Rows of each group (in pandas' sorted group order) and, within each, the control rows.
struct FitGroups {
  std::vector<std::vector<size_t>> rows, controls;
};
FitGroups fit_groups(const Table& meta, const NormSpec& spec);

enum class Scale { standard, mad, mad_raw };
// In-place per-group standardize / robust-MAD. A feature whose control std/MAD is 0 is left centred and unscaled
// (sklearn's StandardScaler behaviour for std; pycytominer would divide by eps).
void scale_on_controls(RowMatrixF& x, const Table& meta, const NormSpec& spec, Scale how, double eps = 0.0);

enum class Whiten { pca, zca, pca_cor, zca_cor };
// Fits whitening on the control rows of each group and applies it to the group's rows (centred on the control
// mean). eps regularises the eigenvalues: W = diag(1/sqrt(lambda + eps)) U^T (PCA) or U diag(..) U^T (ZCA); the
// "-cor" variants whiten the correlation matrix after scaling by the control std.
void spherize(RowMatrixF& x, const Table& meta, const NormSpec& spec, Whiten how, double eps = 1e-6);

// sklearn.decomposition.PCA(n_components).fit(fit_rows).transform(all rows) with svd_flip sign convention.
// n_components <= 0 keeps min(n_fit, D). Returns [N, k].
RowMatrixF pca(const RowMatrixF& x, const std::vector<size_t>& fit_rows, int64_t n_components,
               std::vector<double>* explained_variance = nullptr);
RowMatrixD pca_f64(const RowMatrixD& x, const std::vector<size_t>& fit_rows, int64_t n_components,
                   std::vector<double>* explained_variance = nullptr);

// EFAAR efaar.py.
void centerscale_on_controls(RowMatrixF& x, const Table& meta, const std::string& pert_col,
                             const std::string& control_key, const std::string& batch_col);
RowMatrixF tvn_on_controls(const RowMatrixF& x, const Table& meta, const std::string& pert_col,
                           const std::string& control_key, const std::string& batch_col);
// EFAAR embed_by_pca: centre-scale by batch (all rows) then PCA(n_components) on all rows.
RowMatrixF pca_centerscale(const RowMatrixF& x, const Table& meta, const std::string& batch_col, int64_t n_components);

// Mean or median of the rows of each group of `by` (pandas groupby order); meta_out gets the `by` columns.
RowMatrixF aggregate(const RowMatrixF& x, const Table& meta, const std::vector<std::string>& by,
                     const std::string& method, Table* meta_out);

// Indices of features to keep: drops features whose MAD over `rows` is 0 (zero_mad) and/or whose variance is
// <= min_variance. Returns the kept column indices.
std::vector<int64_t> filter_features(const RowMatrixF& x, bool drop_zero_mad, double min_variance);

}  // namespace tabula::eval
