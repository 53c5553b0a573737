#include "embed/h5ad.h"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <regex>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <stdexcept>

#include "engine/fileio.h"
#include "util/npy.h"
#include "data/hdf5.h"
#include "data/hest.h"
#include "util/table.h"
#include "util/json.h"

namespace tabula {

namespace {

using H5 = data::H5Handle;

class Writer {
 public:
  Writer(const std::string& path, hid_t file) : path_(path), file_(file) {
    gcpl_ = H5Pcreate(H5P_GROUP_CREATE);
    dcpl_ = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_obj_track_times(gcpl_, false);
    H5Pset_obj_track_times(dcpl_, false);
    utf8_ = H5Tcopy(H5T_C_S1);
    H5Tset_size(utf8_, H5T_VARIABLE);
    H5Tset_cset(utf8_, H5T_CSET_UTF8);
    // numpy/h5py booleans: an int8 enum {FALSE = 0, TRUE = 1}.
    bool_ = H5Tenum_create(H5T_NATIVE_INT8);
    int8_t f = 0, t = 1;
    H5Tenum_insert(bool_, "FALSE", &f);
    H5Tenum_insert(bool_, "TRUE", &t);
  }
  ~Writer() {
    H5Pclose(gcpl_);
    H5Pclose(dcpl_);
    H5Tclose(utf8_);
    H5Tclose(bool_);
  }
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  [[noreturn]] void fail(const std::string& what) const { throw std::runtime_error(path_ + ": " + what); }
  void check(herr_t r, const std::string& what) const {
    if (r < 0) fail("HDF5 failed writing " + what);
  }

  hid_t group(hid_t parent, const std::string& name, const char* enc, const char* ver) {
    hid_t g = H5Gcreate2(parent, name.c_str(), H5P_DEFAULT, gcpl_, H5P_DEFAULT);
    if (g < 0) fail("cannot create group '" + name + "'");
    encoding(g, enc, ver);
    return g;
  }
  void encoding(hid_t obj, const char* type, const char* version) {
    attr_str(obj, "encoding-type", type);
    attr_str(obj, "encoding-version", version);
  }
  void attr_str(hid_t obj, const char* name, const std::string& value) {
    H5 space(H5Screate(H5S_SCALAR), H5Sclose);
    H5 a(H5Acreate2(obj, name, utf8_, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    const char* p = value.c_str();
    check(a < 0 ? -1 : H5Awrite(a, utf8_, &p), std::string("attribute ") + name);
  }
  void attr_str_array(hid_t obj, const char* name, const std::vector<std::string>& values) {
    hsize_t n = values.size();
    H5 space(H5Screate_simple(1, &n, nullptr), H5Sclose);
    if (values.empty()) {  // h5py stores an empty list as an empty float64 array
      H5 a(H5Acreate2(obj, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
      check(a, std::string("attribute ") + name);
      return;
    }
    std::vector<const char*> p;
    for (const auto& v : values) p.push_back(v.c_str());
    H5 a(H5Acreate2(obj, name, utf8_, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    check(a < 0 ? -1 : H5Awrite(a, utf8_, p.data()), std::string("attribute ") + name);
  }
  void attr_bool(hid_t obj, const char* name, bool value) {
    H5 space(H5Screate(H5S_SCALAR), H5Sclose);
    H5 a(H5Acreate2(obj, name, bool_, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    int8_t v = value;
    check(a < 0 ? -1 : H5Awrite(a, bool_, &v), std::string("attribute ") + name);
  }

  // A dense array dataset of `file_type` with anndata's "array" encoding.
  void array(hid_t parent, const std::string& name, hid_t file_type, hid_t mem_type, const std::vector<hsize_t>& dims,
             const void* data) {
    H5 space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
    H5 ds(H5Dcreate2(parent, name.c_str(), file_type, space, H5P_DEFAULT, dcpl_, H5P_DEFAULT), H5Dclose);
    if (ds < 0) fail("cannot create dataset '" + name + "'");
    size_t n = 1;
    for (hsize_t d : dims) n *= d;
    if (n) check(H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "dataset " + name);
    encoding(ds, "array", "0.2.0");
  }
  void string_array(hid_t parent, const std::string& name, const std::vector<std::string>& values) {
    hsize_t n = values.size();
    H5 space(H5Screate_simple(1, &n, nullptr), H5Sclose);
    H5 ds(H5Dcreate2(parent, name.c_str(), utf8_, space, H5P_DEFAULT, dcpl_, H5P_DEFAULT), H5Dclose);
    if (ds < 0) fail("cannot create dataset '" + name + "'");
    std::vector<const char*> p;
    for (const auto& v : values) p.push_back(v.c_str());
    if (n) check(H5Dwrite(ds, utf8_, H5S_ALL, H5S_ALL, H5P_DEFAULT, p.data()), "dataset " + name);
    encoding(ds, "string-array", "0.2.0");
  }
  void scalar_string(hid_t parent, const std::string& name, const std::string& value) {
    H5 space(H5Screate(H5S_SCALAR), H5Sclose);
    H5 ds(H5Dcreate2(parent, name.c_str(), utf8_, space, H5P_DEFAULT, dcpl_, H5P_DEFAULT), H5Dclose);
    if (ds < 0) fail("cannot create dataset '" + name + "'");
    const char* p = value.c_str();
    check(H5Dwrite(ds, utf8_, H5S_ALL, H5S_ALL, H5P_DEFAULT, &p), "dataset " + name);
    encoding(ds, "string", "0.2.0");
  }
  void scalar(hid_t parent, const std::string& name, hid_t file_type, hid_t mem_type, const void* v) {
    H5 space(H5Screate(H5S_SCALAR), H5Sclose);
    H5 ds(H5Dcreate2(parent, name.c_str(), file_type, space, H5P_DEFAULT, dcpl_, H5P_DEFAULT), H5Dclose);
    if (ds < 0) fail("cannot create dataset '" + name + "'");
    check(H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), "dataset " + name);
    encoding(ds, "numeric-scalar", "0.2.0");
  }

  // An obs column as anndata writes the column pandas.read_csv(index.csv, keep_default_na=False) gives: integers
  // as int64, other decimal numbers as float64, anything else a string column (after
  // AnnData.strings_to_categoricals).
  void obs_column(hid_t obs, const std::string& name, const std::vector<std::string>& values) {
    static const std::regex integer(R"([+-]?[0-9]+)"), decimal(R"([+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?)");
    auto all = [&](const std::regex& re) {
      for (const auto& v : values)
        if (!std::regex_match(v, re)) return false;
      return !values.empty();
    };
    const hsize_t rows = values.size();
    if (all(integer)) {
      std::vector<int64_t> x;
      bool fits = true;
      for (const auto& v : values) {
        errno = 0;
        x.push_back(std::strtoll(v.c_str(), nullptr, 10));
        fits = fits && errno != ERANGE;
      }
      if (fits) {
        array(obs, name, H5T_STD_I64LE, H5T_NATIVE_INT64, {rows}, x.data());
        return;
      }
    }
    if (all(decimal)) {
      std::vector<double> x;
      for (const auto& v : values) x.push_back(std::strtod(v.c_str(), nullptr));
      array(obs, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {rows}, x.data());
      return;
    }
    std::vector<std::string> cats(values.begin(), values.end());
    std::sort(cats.begin(), cats.end());  // pandas sorts string categories (code point order = UTF-8 byte order)
    cats.erase(std::unique(cats.begin(), cats.end()), cats.end());
    if (cats.size() >= values.size()) {
      string_array(obs, name, values);
      return;
    }
    H5 g(group(obs, name, "categorical", "0.2.0"), H5Gclose);
    attr_bool(g, "ordered", false);
    string_array(g, "categories", cats);
    std::vector<int64_t> codes;
    for (const auto& v : values) codes.push_back(std::lower_bound(cats.begin(), cats.end(), v) - cats.begin());
    const hsize_t n = codes.size();
    // pandas' coerce_indexer_dtype: the smallest signed integer type whose max exceeds the category count.
    const size_t k = cats.size();
    if (k < 127) {
      std::vector<int8_t> c(codes.begin(), codes.end());
      array(g, "codes", H5T_STD_I8LE, H5T_NATIVE_INT8, {n}, c.data());
    } else if (k < 32767) {
      std::vector<int16_t> c(codes.begin(), codes.end());
      array(g, "codes", H5T_STD_I16LE, H5T_NATIVE_INT16, {n}, c.data());
    } else if (k < 2147483647) {
      std::vector<int32_t> c(codes.begin(), codes.end());
      array(g, "codes", H5T_STD_I32LE, H5T_NATIVE_INT32, {n}, c.data());
    } else {
      array(g, "codes", H5T_STD_I64LE, H5T_NATIVE_INT64, {n}, codes.data());
    }
  }

  static bool integer_literal(const json::Value& v) {
    return v.is_number() && v.number_text().find_first_of(".eE") == std::string::npos;
  }

  // run.json as anndata would write the dict json.load gives (see the header for the mapping).
  void json_entry(hid_t parent, const std::string& name, const json::Value& v) {
    switch (v.kind()) {
      case json::Value::Kind::null:
        return;
      case json::Value::Kind::boolean: {
        int8_t b = v.as_bool();
        scalar(parent, name, bool_, bool_, &b);
        return;
      }
      case json::Value::Kind::number:
        if (integer_literal(v)) {
          int64_t i = v.as_int64();
          scalar(parent, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &i);
        } else {
          double d = v.as_double();
          scalar(parent, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &d);
        }
        return;
      case json::Value::Kind::string:
        scalar_string(parent, name, v.as_string());
        return;
      case json::Value::Kind::object: {
        H5 g(group(parent, name, "dict", "0.1.0"), H5Gclose);
        for (const auto& [k, x] : v.as_object()) {
          if (k.empty() || k.find('/') != std::string::npos || k == ".") fail("run.json key '" + k + "' cannot be an HDF5 name");
          json_entry(g, k, x);
        }
        return;
      }
      case json::Value::Kind::array: {
        const auto& a = v.as_array();
        bool strings = !a.empty(), numbers = !a.empty(), ints = true, named = !a.empty();
        for (const auto& x : a) {
          const json::Value* n = x.is_object() ? x.find("name") : nullptr;
          named = named && n && n->is_string();
          strings = strings && x.is_string();
          numbers = numbers && x.is_number();
          ints = ints && integer_literal(x);
        }
        if (strings || named) {
          // Objects with a "name" each (run.json's layers) -> the list of their names.
          std::vector<std::string> s;
          for (const auto& x : a) s.push_back(named ? x.find("name")->as_string() : x.as_string());
          string_array(parent, name, s);
        } else if (numbers && ints) {
          std::vector<int64_t> s;
          for (const auto& x : a) s.push_back(x.as_int64());
          array(parent, name, H5T_STD_I64LE, H5T_NATIVE_INT64, {s.size()}, s.data());
        } else if (numbers) {
          std::vector<double> s;
          for (const auto& x : a) s.push_back(x.as_double());
          array(parent, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {s.size()}, s.data());
        } else {
          H5 g(group(parent, name, "dict", "0.1.0"), H5Gclose);
          for (size_t i = 0; i < a.size(); ++i) json_entry(g, std::to_string(i), a[i]);
        }
        return;
      }
    }
  }

 private:
  std::string path_;
  hid_t file_;
  hid_t gcpl_, dcpl_, utf8_, bool_;
};

}  // namespace

void write_h5ad(const std::string& path, const H5adContent& c) {
  auto fail = [&](const std::string& w) { throw std::runtime_error(path + ": " + w); };
  const auto n = static_cast<size_t>(c.rows);
  if (c.obs_names.size() != n) fail("obs names: " + std::to_string(c.obs_names.size()) + " for " + std::to_string(n) + " rows");
  if (c.obs_values.size() != c.obs_columns.size()) fail("obs: column names and values differ in number");
  std::set<std::string> names;
  for (size_t k = 0; k < c.obs_columns.size(); ++k) {
    if (c.obs_values[k].size() != n) fail("obs column '" + c.obs_columns[k] + "' has the wrong length");
    // "_index" holds the row ids; a '/' would make a nested HDF5 path.
    if (c.obs_columns[k] == "_index" || c.obs_columns[k].empty() || c.obs_columns[k].find('/') != std::string::npos ||
        !names.insert(c.obs_columns[k]).second)
      fail("obs column name '" + c.obs_columns[k] + "' cannot be stored (empty, '_index', duplicate or with '/')");
  }
  if (!c.x.data || c.x.cols < 1) fail("X is missing");
  if (!c.var_names.empty() && static_cast<int64_t>(c.var_names.size()) != c.x.cols) fail("var names: wrong count");
  for (const auto& l : c.obsm)
    if (!l.data || l.name.empty() || l.name.find('/') != std::string::npos) fail("obsm entry '" + l.name + "' cannot be stored");
  json::Value run;
  if (!c.run_json.empty()) run = json::parse(c.run_json, path + " (run.json)");

  std::lock_guard<std::mutex> lock(data::hdf5_lock());
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  try {
    H5 fcpl(H5Pcreate(H5P_FILE_CREATE), H5Pclose);
    H5Pset_obj_track_times(fcpl, false);
    H5 f(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, fcpl, H5P_DEFAULT), H5Fclose);
    if (f < 0) fail("cannot create the HDF5 file (" + tmp + ")");
    {
      Writer w(path, f);
      w.encoding(f, "anndata", "0.1.0");
      w.array(f, "X", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {n, static_cast<hsize_t>(c.x.cols)}, c.x.data);
      for (const char* g : {"layers", "obsp", "varm", "varp"}) H5 h(w.group(f, g, "dict", "0.1.0"), H5Gclose);
      {
        H5 obs(w.group(f, "obs", "dataframe", "0.2.0"), H5Gclose);
        w.attr_str(obs, "_index", "_index");
        w.attr_str_array(obs, "column-order", c.obs_columns);
        w.string_array(obs, "_index", c.obs_names);
        for (size_t k = 0; k < c.obs_columns.size(); ++k) w.obs_column(obs, c.obs_columns[k], c.obs_values[k]);
      }
      {
        H5 var(w.group(f, "var", "dataframe", "0.2.0"), H5Gclose);
        w.attr_str(var, "_index", "_index");
        w.attr_str_array(var, "column-order", {});
        std::vector<std::string> ids = c.var_names;
        if (ids.empty())
          for (int64_t i = 0; i < c.x.cols; ++i) ids.push_back(std::to_string(i));
        w.string_array(var, "_index", ids);
      }
      {
        H5 obsm(w.group(f, "obsm", "dict", "0.1.0"), H5Gclose);
        for (const auto& l : c.obsm)
          w.array(obsm, l.name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {n, static_cast<hsize_t>(l.cols)}, l.data);
      }
      {
        H5 uns(w.group(f, "uns", "dict", "0.1.0"), H5Gclose);
        if (!c.run_json.empty()) {
          w.json_entry(uns, "run", run);
          w.scalar_string(uns, "run_json", c.run_json);
        }
      }
    }
    if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) fail("flushing the HDF5 file failed");
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  // Like AtomicFile: the bytes are on disk before the name points at them.
  if (int fd = ::open(tmp.c_str(), O_RDONLY); fd >= 0) {
    const bool synced = ::fsync(fd) == 0;
    ::close(fd);
    if (!synced) {
      std::remove(tmp.c_str());
      fail("fsync of the written file failed");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    fail("cannot rename the written file into place: " + ec.message());
  }
}

// X's feature names: a baseline's own names (the layer's "features" in run.json); per-channel runs "LAYER.CHANNEL.j"
// (run.json's "inputs", each input's features in turn); else "LAYER.j".
static std::vector<std::string> var_names(const json::Value& run, const std::string& layer, int64_t cols) {
  std::vector<std::string> out;
  for (const json::Value& l : run.find("layers")->as_array()) {
    const json::Value* f = l.find("features");
    if (l.find("name")->as_string() != layer || !f || !f->is_array()) continue;
    for (const json::Value& n : f->as_array()) out.push_back(n.as_string());
    if (static_cast<int64_t>(out.size()) == cols) return out;
    out.clear();
  }
  std::vector<std::string> inputs;
  if (const json::Value* in = run.find("inputs"); in && in->is_array())
    for (const json::Value& n : in->as_array()) inputs.push_back(n.as_string());
  if (inputs.size() > 1 && cols % static_cast<int64_t>(inputs.size()) == 0) {
    const int64_t per = cols / static_cast<int64_t>(inputs.size());
    for (const std::string& in : inputs)
      for (int64_t j = 0; j < per; ++j) out.push_back(layer + "." + in + "." + std::to_string(j));
    return out;
  }
  for (int64_t j = 0; j < cols; ++j) out.push_back(layer + "." + std::to_string(j));
  return out;
}

std::string write_embedding_h5ad(const std::string& dir, const std::string& x_layer, const std::string& out_path,
                                 const std::string& run_json_text) {
  const std::string run_text = run_json_text.empty() ? read_file_text(dir + "/run.json") : run_json_text;
  json::Value run = json::parse(run_text, dir + "/run.json");
  std::vector<std::string> layers;
  for (const json::Value& l : run.find("layers")->as_array()) layers.push_back(l.find("name")->as_string());
  if (layers.empty()) throw std::runtime_error(dir + "/run.json: no layers");
  const std::string xl = x_layer.empty() ? layers.back() : x_layer;
  if (std::find(layers.begin(), layers.end(), xl) == layers.end())
    throw std::runtime_error(dir + ": no layer '" + xl + "' for the h5ad X");
  tabula::Table index = tabula::read_csv(dir + "/index.csv");
  H5adContent c;
  c.rows = static_cast<int64_t>(index.rows());
  for (int64_t i = 0; i < c.rows; ++i) c.obs_names.push_back(std::to_string(i));
  c.obs_columns = index.columns();
  for (size_t k = 0; k < index.cols(); ++k) c.obs_values.push_back(index.column(k));
  c.run_json = run_text;
  // Trailing newline of the file is not part of the JSON document.
  while (!c.run_json.empty() && (c.run_json.back() == '\n' || c.run_json.back() == '\r')) c.run_json.pop_back();
  std::map<std::string, NpyArray> arrays;
  for (const std::string& l : layers) {
    NpyArray a = read_npy(dir + "/" + l + ".npy");
    if (a.dtype != DType::f32 || a.shape.size() != 2 || a.shape[0] != c.rows)
      throw std::runtime_error(dir + "/" + l + ".npy: expected float32 [" + std::to_string(c.rows) + ", D] (index.csv rows)");
    arrays[l] = std::move(a);
  }
  for (const std::string& l : layers) {
    H5adLayer h{l, arrays[l].shape[1], arrays[l].as<float>()};
    if (l == xl) c.x = h;
    else c.obsm.push_back(h);
  }
  c.var_names = var_names(run, xl, c.x.cols);
  const std::string path = out_path.empty() ? dir + "/embedding.h5ad" : out_path;
  write_h5ad(path, c);
  return path;
}

}  // namespace tabula
