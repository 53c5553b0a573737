// AnnData's on-disk format (.h5ad, anndata >= 0.8 encodings), written with the HDF5 C API so that
// `anndata.read_h5ad` (and scanpy) read an embedding directly:
//   /            encoding-type anndata 0.1.0
//   X            float32 [n_obs, n_vars] (one layer), encoding-type array 0.2.0
//   obs          dataframe 0.2.0: _index = row ids, column-order = the metadata columns in order; each column as
//                anndata's write_h5ad stores a string column: categorical 0.2.0 (categories = sorted distinct values,
//                codes int8/16/32/64 as pandas picks them, ordered = False) when it has fewer distinct values than
//                rows (AnnData.strings_to_categoricals), else string-array 0.2.0
//   var          dataframe with _index "0".."n_vars-1" (anndata's default var names), no columns
//   obsm/<name>  float32 [n_obs, d] per other layer
//   uns/run      run.json as a nested dict (objects -> dict, strings -> string, integers -> int64 numeric-scalar,
//                other numbers -> float64, booleans -> bool, arrays of strings -> string-array, of numbers ->
//                array, anything else -> dict keyed "0", "1", ...; null entries are left out)
//   uns/run_json the run.json text itself
//   layers, obsm, obsp, varm, varp: dict groups, as anndata writes them.
// Strings are variable-length UTF-8 (h5py's str), attributes too. No object timestamps: the same embedding gives
// the same bytes. Written to a temp file and renamed into place.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tabula {

struct H5adLayer {
  std::string name;
  int64_t cols = 0;
  const float* data = nullptr;  // rows x cols, row-major
};

struct H5adContent {
  int64_t rows = 0;
  std::vector<std::string> obs_names;                  // row ids (size rows)
  std::vector<std::string> obs_columns;                // metadata column names, in order
  std::vector<std::vector<std::string>> obs_values;    // per column, size rows
  H5adLayer x;                                         // X
  std::vector<H5adLayer> obsm;                         // the other layers
  std::string run_json;                                // uns/run_json, and parsed into uns/run (empty: neither)
};

void write_h5ad(const std::string& path, const H5adContent& content);

// The .h5ad of a finished embedding folder: X = `x_layer` (empty: the run's last layer, its feature output), obsm =
// every other layer, obs = index.csv (row ids "0".."n-1"), uns = run.json. Returns the path written
// (DIR/embedding.h5ad unless `out_path` is given).
std::string write_embedding_h5ad(const std::string& dir, const std::string& x_layer = "", const std::string& out_path = "",
                                 const std::string& run_json_text = "");

}  // namespace tabula
