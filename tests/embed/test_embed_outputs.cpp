// `tabula embed`'s optional outputs: the .h5ad (checked object by object against the file anndata itself writes
// for the same embedding, tests/fixtures/embed/h5ad/reference.h5ad from weights_tools/reference/embed_fixtures.py)
// and well-level aggregation (against numpy's float32 means).
#include <gtest/gtest.h>
#include <hdf5.h>

#include <filesystem>
#include <map>
#include <sstream>

#include "engine/fileio.h"
#include "util/npy.h"
#include "embed/embed.h"
#include "data/image.h"
#include "data/manifest.h"
#include "embed/h5ad.h"
#include "util/table.h"
#include "tests/test_util.h"

using namespace tabula;
namespace fs = std::filesystem;

namespace {

// Type of a dataset or attribute as the text anndata's reader cares about: class, size, sign, string kind.
std::string type_text(hid_t t) {
  std::ostringstream s;
  H5T_class_t c = H5Tget_class(t);
  s << "class=" << int(c);
  if (c == H5T_STRING) {
    s << " vlen=" << H5Tis_variable_str(t) << " cset=" << int(H5Tget_cset(t));
  } else {
    s << " size=" << H5Tget_size(t);
    if (c == H5T_INTEGER) s << " sign=" << int(H5Tget_sign(t));
    if (c == H5T_ENUM) s << " members=" << H5Tget_nmembers(t);
  }
  return s.str();
}

std::string shape_text(hid_t space) {
  int nd = H5Sget_simple_extent_ndims(space);
  std::vector<hsize_t> d(static_cast<size_t>(std::max(nd, 0)));
  if (nd > 0) H5Sget_simple_extent_dims(space, d.data(), nullptr);
  std::string s = "(";
  for (hsize_t x : d) s += std::to_string(x) + ",";
  return s + ")";
}

// Values as text: strings (vlen) verbatim, numbers via double, enums via their int8 value.
std::string values_text(hid_t obj, bool attribute) {
  hid_t t = attribute ? H5Aget_type(obj) : H5Dget_type(obj);
  hid_t space = attribute ? H5Aget_space(obj) : H5Dget_space(obj);
  hssize_t n = H5Sget_simple_extent_npoints(space);
  std::ostringstream s;
  if (H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t)) {
    std::vector<char*> p(static_cast<size_t>(n));
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    H5Tset_cset(mt, H5Tget_cset(t));
    if (n > 0) attribute ? H5Aread(obj, mt, p.data()) : H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, p.data());
    for (char* c : p) s << "[" << (c ? c : "<null>") << "]";
    if (n > 0) H5Dvlen_reclaim(mt, space, H5P_DEFAULT, p.data());
    H5Tclose(mt);
  } else if (H5Tget_class(t) == H5T_ENUM) {
    std::vector<int8_t> v(static_cast<size_t>(n));
    if (n > 0) attribute ? H5Aread(obj, t, v.data()) : H5Dread(obj, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
    for (int8_t x : v) s << int(x) << ",";
  } else {
    std::vector<double> v(static_cast<size_t>(n));
    if (n > 0)
      attribute ? H5Aread(obj, H5T_NATIVE_DOUBLE, v.data())
                : H5Dread(obj, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
    s.precision(17);
    for (double x : v) s << x << ",";
  }
  H5Sclose(space);
  H5Tclose(t);
  return s.str();
}

// Every object of the file: path -> "group|dataset type shape values" plus one entry per attribute.
std::map<std::string, std::string> describe(const std::string& file) {
  std::map<std::string, std::string> out;
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  EXPECT_GE(f, 0) << file;
  if (f < 0) return out;
  std::vector<std::string> paths = {"/"};
  H5Lvisit(f, H5_INDEX_NAME, H5_ITER_INC,
           [](hid_t, const char* name, const H5L_info_t*, void* data) -> herr_t {
             static_cast<std::vector<std::string>*>(data)->push_back(name);
             return 0;
           },
           &paths);
  for (const std::string& p : paths) {
    hid_t o = H5Oopen(f, p.c_str(), H5P_DEFAULT);
    H5I_type_t kind = H5Iget_type(o);
    if (kind == H5I_DATASET) {
      hid_t t = H5Dget_type(o), sp = H5Dget_space(o);
      out[p] = "dataset " + type_text(t) + " " + shape_text(sp) + " " + values_text(o, false);
      H5Tclose(t);
      H5Sclose(sp);
    } else {
      out[p] = "group";
    }
    int na = H5Aget_num_attrs(o);
    for (int i = 0; i < na; ++i) {
      hid_t a = H5Aopen_by_idx(o, ".", H5_INDEX_NAME, H5_ITER_INC, static_cast<hsize_t>(i), H5P_DEFAULT, H5P_DEFAULT);
      char name[256] = {0};
      H5Aget_name(a, sizeof name, name);
      hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
      out[p + " @" + name] = type_text(t) + " " + shape_text(sp) + " " + values_text(a, true);
      H5Tclose(t);
      H5Sclose(sp);
      H5Aclose(a);
    }
    H5Oclose(o);
  }
  H5Fclose(f);
  return out;
}

std::string copy_fixture(const std::string& name) {
  auto dir = test::scratch_dir() / name;
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(test::fixture("embed/h5ad")))
    fs::copy_file(e.path(), dir / e.path().filename(), fs::copy_options::overwrite_existing);
  return dir.string();
}

}  // namespace

TEST(H5ad, SameObjectsAttributesDtypesAndValuesAsAnndata) {
  const std::string dir = copy_fixture("h5ad");
  const std::string ours = write_embedding_h5ad(dir);
  EXPECT_EQ(ours, dir + "/embedding.h5ad");
  auto want = describe(test::fixture("embed/h5ad/reference.h5ad").string());
  auto got = describe(ours);
  ASSERT_GT(want.size(), 30u);  // X, obs (categorical + string columns), var, obsm, uns ... and their attributes
  for (const auto& [k, v] : want) {
    auto it = got.find(k);
    if (it == got.end()) {
      ADD_FAILURE() << "tabula's file lacks " << k << " = " << v;
      continue;
    }
    EXPECT_EQ(it->second, v) << k;
  }
  for (const auto& [k, v] : got) EXPECT_TRUE(want.count(k)) << "tabula's file has an extra " << k << " = " << v;
  // The things a reader keys on, spelled out (so a fixture regenerated wrongly cannot pass silently).
  EXPECT_EQ(got["/ @encoding-type"].substr(got["/ @encoding-type"].find('[')), "[anndata]");
  EXPECT_NE(got["obs/Metadata_Plate @encoding-type"].find("[categorical]"), std::string::npos);
  EXPECT_NE(got["obs/Metadata_note @encoding-type"].find("[string-array]"), std::string::npos);
  EXPECT_NE(got["obs @_index"].find("[_index]"), std::string::npos);
  EXPECT_NE(got["obs/Metadata_Plate/codes"].find("size=1 sign=1"), std::string::npos);  // int8 codes
  EXPECT_NE(got["X"].find("(18,5,)"), std::string::npos);
  EXPECT_NE(got["obsm/layer1"].find("(18,3,)"), std::string::npos);
  EXPECT_FALSE(got.count("uns/run/missing"));  // null entries are left out
}

TEST(H5ad, ByteIdenticalRewriteAndErrorsNameTheFile) {
  const std::string dir = copy_fixture("h5ad-bytes");
  const std::string a = read_file_text(write_embedding_h5ad(dir, "", dir + "/a.h5ad"));
  const std::string b = read_file_text(write_embedding_h5ad(dir, "", dir + "/b.h5ad"));
  EXPECT_EQ(a, b) << "no timestamps: the same embedding gives the same bytes";
  // X can be any layer; an unknown one is refused naming the folder.
  EXPECT_NO_THROW(write_embedding_h5ad(dir, "layer1", dir + "/c.h5ad"));
  try {
    write_embedding_h5ad(dir, "layer9", dir + "/d.h5ad");
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("layer9"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir + "/d.h5ad"));
  // Nothing half-written is left next to the output when the folder cannot be written.
  try {
    write_embedding_h5ad(dir, "", dir + "/no/such/folder/x.h5ad");
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("x.h5ad"), std::string::npos) << e.what();
  }
}

TEST(Aggregate, WellMeansEqualNumpy) {
  const std::string dir = copy_fixture("agg");
  tabula::Table index = tabula::read_csv(dir + "/index.csv");
  const auto by = well_columns(index.columns());
  EXPECT_EQ(by, (std::vector<std::string>{"Metadata_Plate", "Metadata_Well"}));
  EXPECT_EQ(aggregate_embedding(dir, {"layer1", "avgpool"}, by), 6);
  for (const char* layer : {"layer1", "avgpool"}) {
    NpyArray got = read_npy(dir + "/" + std::string(layer) + ".npy");
    NpyArray want = read_npy(test::fixture("embed/h5ad/well_" + std::string(layer) + ".npy").string());
    ASSERT_EQ(got.shape, want.shape) << layer;
    for (int64_t i = 0; i < want.numel(); ++i) EXPECT_EQ(got.as<float>()[i], want.as<float>()[i]) << layer << " " << i;
  }
  tabula::Table got = tabula::read_csv(dir + "/index.csv");
  tabula::Table want = tabula::read_csv(test::fixture("embed/h5ad/well_index.csv").string());
  ASSERT_EQ(got.rows(), want.rows());
  for (const auto& c : want.columns()) EXPECT_EQ(got.column(c), want.column(c)) << c;
  // The compound is constant within a well and survives; the per-site columns do not.
  EXPECT_TRUE(got.has("Metadata_JCP2022"));
  EXPECT_FALSE(got.has("Metadata_Site"));
  EXPECT_FALSE(got.has("path"));
}

TEST(Aggregate, WellColumnsOfEachManifestKind) {
  EXPECT_EQ(well_columns({"Metadata_Source", "Metadata_Batch", "Metadata_Plate", "Metadata_Well", "Metadata_Site"}),
            (std::vector<std::string>{"Metadata_Source", "Metadata_Batch", "Metadata_Plate", "Metadata_Well"}));
  EXPECT_EQ(well_columns({"experiment", "plate", "well", "site"}), (std::vector<std::string>{"experiment", "plate", "well"}));
  EXPECT_EQ(well_columns({"well_id", "experiment_name", "plate", "address"}), (std::vector<std::string>{"well_id"}));
  EXPECT_THROW(well_columns({"sample", "barcode", "x", "y"}), std::invalid_argument);
}

// End to end through the CLI: a per-well h5ad run equals the per-site run aggregated by the library.
TEST(Aggregate, EmbedAggregateWellAndFormatH5ad) {
  const auto root = test::scratch_dir();
  const std::string synth = (root / "synth").string();
  auto r = test::run_tabula("synth cellpainting --batches 1 --plates 1 --sites 2 --size 96 --out '" + synth + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string site = (root / "site").string(), well = (root / "well").string();
  r = test::run_tabula("embed --arch pixels --data '" + synth + "/load_data.csv' --quiet --out '" + site + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_tabula("embed --arch pixels --data '" + synth + "/load_data.csv' --quiet --aggregate well --format h5ad --out '" +
                       well + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const int64_t sites = static_cast<int64_t>(tabula::read_csv(site + "/index.csv").rows());
  const int64_t wells = aggregate_embedding(site, {"pixels"}, well_columns(tabula::read_csv(site + "/index.csv").columns()));
  EXPECT_EQ(wells * 2, sites) << "two sites per well";
  EXPECT_EQ(read_file_text(well + "/pixels.npy"), read_file_text(site + "/pixels.npy"));
  EXPECT_EQ(read_file_text(well + "/index.csv"), read_file_text(site + "/index.csv"));
  EXPECT_NE(read_file_text(well + "/run.json").find("\"aggregate\":{\"by\":[\"Metadata_Source\""), std::string::npos);
  ASSERT_TRUE(fs::exists(well + "/embedding.h5ad"));
  auto d = describe(well + "/embedding.h5ad");
  EXPECT_NE(d["X"].find("(" + std::to_string(wells) + ","), std::string::npos) << d["X"];
  EXPECT_NE(d["uns/run_json"].find("aggregate"), std::string::npos);
  // --resume --format h5ad on a finished folder without one adds it.
  ASSERT_FALSE(fs::exists(site + "/embedding.h5ad"));
  r = test::run_tabula("embed --arch pixels --data '" + synth + "/load_data.csv' --quiet --resume --format h5ad --out '" + site + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(site + "/embedding.h5ad"));
  // Refusals, before any work: aggregation of shards, by an unknown column, an unknown format.
  r = test::run_tabula("embed --arch pixels --data '" + synth + "/load_data.csv' --quiet --aggregate well --shard 0/2 --out '" +
                       (root / "x").string() + "'");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--shard"), std::string::npos) << r.err;
  r = test::run_tabula("embed --arch pixels --data '" + synth + "/load_data.csv' --quiet --aggregate Metadata_Nope --out '" +
                       (root / "y").string() + "'");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("Metadata_Nope"), std::string::npos) << r.err;
  r = test::run_tabula("embed --arch pixels --data '" + synth + "/load_data.csv' --quiet --format parquet --out '" +
                       (root / "z").string() + "'");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("parquet"), std::string::npos) << r.err;
}

// RxRx3-core's metadata_rxrx3_core.csv (experiment_name, plate, address, well_id; one site) with images unpacked
// from its parquet shards to images/<experiment_name>/Plate<plate>/<address>_s1_<channel>.<ext>, the shards' key
// layout: read as an rxrx manifest, and `--aggregate well` keys on well_id.
TEST(Aggregate, RxRx3CoreMetadataIsAnRxRxManifest) {
  const fs::path dir = test::scratch_dir() / "rxrx3";
  fs::create_directories(dir / "images" / "gene-001" / "Plate1");
  data::Image ch(1, 6, 7);
  for (int c = 1; c <= 6; ++c) {
    std::fill(ch.pixels.begin(), ch.pixels.end(), float(c));
    data::write_png((dir / "images" / "gene-001" / "Plate1" / ("AA02_s1_" + std::to_string(c) + ".png")).string(), ch);
  }
  write_file_atomic((dir / "metadata_rxrx3_core.csv").string(),
                    "well_id,experiment_name,plate,address,gene,treatment,SMILES,concentration,perturbation_type,cell_type\n"
                    "gene-001_1_AA02,gene-001,1,AA02,EMPTY_control,EMPTY_control,,,CRISPR,HUVEC\n");
  data::Manifest m = data::read_manifest((dir / "metadata_rxrx3_core.csv").string());
  EXPECT_EQ(m.kind, "rxrx");
  EXPECT_EQ(m.channel_names.size(), 6u);
  EXPECT_EQ(data::load_sample(m, 0).channels, 6);
  EXPECT_EQ(well_columns(m.meta_columns), (std::vector<std::string>{"well_id"}));
}
