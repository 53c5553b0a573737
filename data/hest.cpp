#include "data/hest.h"

#include "data/hdf5.h"

#include <hdf5.h>

#include <cstdio>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <unistd.h>

namespace tabula::data {

std::mutex& hdf5_lock() {
  static std::mutex m;
  return m;
}

namespace {

std::mutex& h5_mutex() { return hdf5_lock(); }
void quiet_hdf5() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

using data::H5Handle;

[[noreturn]] void fail(const std::string& path, const std::string& what) { throw std::runtime_error(path + ": " + what); }

std::vector<hsize_t> dims_of(hid_t ds, const std::string& path, const char* name) {
  H5Handle space(H5Dget_space(ds), H5Sclose);
  if (space < 0) fail(path, std::string("cannot read the shape of dataset '") + name + "'");
  int nd = H5Sget_simple_extent_ndims(space);
  if (nd < 0 || nd > 8) fail(path, std::string("dataset '") + name + "' has an invalid rank");
  std::vector<hsize_t> d(static_cast<size_t>(nd));
  H5Sget_simple_extent_dims(space, d.data(), nullptr);
  return d;
}

hid_t open_dataset(hid_t f, const std::string& path, const char* name) {
  if (H5Lexists(f, name, H5P_DEFAULT) <= 0) fail(path, std::string("no dataset '") + name + "' (a HEST patch file has img, barcode, coords)");
  hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
  if (ds < 0) fail(path, std::string("cannot open dataset '") + name + "'");
  return ds;
}

}  // namespace

HestPatches read_hest_index(const std::string& path) {
  std::lock_guard<std::mutex> lock(h5_mutex());
  quiet_hdf5();
  if (!std::filesystem::exists(path)) fail(path, "no such file");
  H5Handle f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (f < 0) fail(path, "not a readable HDF5 file");
  HestPatches out;
  H5Handle img(open_dataset(f, path, "img"), H5Dclose);
  std::vector<hsize_t> d = dims_of(img, path, "img");
  if (d.size() != 4 || d[3] != 3) fail(path, "dataset 'img' must be N x H x W x 3");
  if (d[1] == 0 || d[2] == 0 || d[1] > 65536 || d[2] > 65536) fail(path, "dataset 'img' has an invalid patch size");
  out.height = int(d[1]);
  out.width = int(d[2]);
  const hsize_t n = d[0];
  {
    H5Handle type(H5Dget_type(img), H5Tclose);
    if (H5Tget_class(type) != H5T_INTEGER || H5Tget_size(type) != 1) fail(path, "dataset 'img' must be uint8");
  }
  H5Handle bc(open_dataset(f, path, "barcode"), H5Dclose);
  std::vector<hsize_t> bd = dims_of(bc, path, "barcode");
  if (bd.empty() || bd[0] != n || (bd.size() == 2 && bd[1] != 1) || bd.size() > 2)
    fail(path, "dataset 'barcode' must be N x 1 with N = " + std::to_string(n));
  {
    H5Handle type(H5Dget_type(bc), H5Tclose);
    if (H5Tget_class(type) != H5T_STRING) fail(path, "dataset 'barcode' must hold strings");
    if (H5Tis_variable_str(type) > 0) {
      std::vector<char*> s(n, nullptr);
      H5Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
      H5Tset_size(mem, H5T_VARIABLE);
      if (H5Dread(bc, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, s.data()) < 0) fail(path, "cannot read dataset 'barcode'");
      for (char* c : s) out.barcodes.push_back(c ? c : "");
      H5Handle space(H5Dget_space(bc), H5Sclose);
      H5Dvlen_reclaim(mem, space, H5P_DEFAULT, s.data());
    } else {
      const size_t len = H5Tget_size(type);
      if (len == 0 || len > 4096) fail(path, "dataset 'barcode' has an invalid string length");
      std::vector<char> buf(n * len);
      H5Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
      H5Tset_size(mem, len);
      // Null-padded in memory: a null-terminated memory type would drop a full-length string's last byte.
      H5Tset_strpad(mem, H5T_STR_NULLPAD);
      if (H5Dread(bc, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) < 0) fail(path, "cannot read dataset 'barcode'");
      for (hsize_t i = 0; i < n; ++i) {
        const char* p = buf.data() + i * len;
        size_t k = 0;
        while (k < len && p[k]) ++k;
        out.barcodes.emplace_back(p, k);
      }
    }
  }
  H5Handle co(open_dataset(f, path, "coords"), H5Dclose);
  std::vector<hsize_t> cd = dims_of(co, path, "coords");
  if (cd.size() != 2 || cd[0] != n || cd[1] != 2) fail(path, "dataset 'coords' must be N x 2 with N = " + std::to_string(n));
  std::vector<int64_t> c(n * 2);
  if (H5Dread(co, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, c.data()) < 0) fail(path, "cannot read dataset 'coords'");
  for (hsize_t i = 0; i < n; ++i) out.coords.push_back({c[2 * i], c[2 * i + 1]});
  return out;
}

Image read_hest_patch(const std::string& path, int64_t index, const DecodeLimits& limits) {
  std::lock_guard<std::mutex> lock(h5_mutex());
  quiet_hdf5();
  H5Handle f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (f < 0) fail(path, "not a readable HDF5 file");
  H5Handle img(open_dataset(f, path, "img"), H5Dclose);
  std::vector<hsize_t> d = dims_of(img, path, "img");
  if (d.size() != 4 || d[3] != 3 || d[1] == 0 || d[2] == 0 || d[1] > 65536 || d[2] > 65536)
    fail(path, "dataset 'img' must be N x H x W x 3 with sides <= 65536");
  if (int64_t(d[1]) > limits.max_side || int64_t(d[2]) > limits.max_side || int64_t(d[1] * d[2] * 3) > limits.max_samples)
    fail(path, "patch size " + std::to_string(d[2]) + "x" + std::to_string(d[1]) + " exceeds the decode limits");
  if (index < 0 || hsize_t(index) >= d[0]) fail(path, "patch " + std::to_string(index) + " out of range (N = " + std::to_string(d[0]) + ")");
  H5Handle space(H5Dget_space(img), H5Sclose);
  hsize_t start[4] = {hsize_t(index), 0, 0, 0}, count[4] = {1, d[1], d[2], 3};
  H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, count, nullptr);
  H5Handle mem(H5Screate_simple(4, count, nullptr), H5Sclose);
  std::vector<uint8_t> hwc(d[1] * d[2] * 3);
  if (H5Dread(img, H5T_NATIVE_UINT8, mem, space, H5P_DEFAULT, hwc.data()) < 0)
    fail(path, "cannot read patch " + std::to_string(index) + " of dataset 'img' (corrupt or truncated file)");
  Image out(3, int(d[1]), int(d[2]));
  out.max_value = 255;
  out.bits = 8;
  out.source = path + "[" + std::to_string(index) + "]";
  for (int c = 0; c < 3; ++c) {
    float* p = out.plane(c);
    for (size_t i = 0; i < out.plane_size(); ++i) p[i] = hwc[i * 3 + size_t(c)];
  }
  return out;
}

void write_hest_h5(const std::string& path, const HestPatches& h) {
  const size_t n = h.images.size();
  if (h.barcodes.size() != n || h.coords.size() != n) fail(path, "images, barcodes and coords differ in length");
  int H = n ? h.images[0].height : h.height, W = n ? h.images[0].width : h.width;
  for (const Image& im : h.images)
    if (im.channels != 3 || im.height != H || im.width != W) fail(path, "HEST patches must all be 3 x H x W of one size");
  std::lock_guard<std::mutex> lock(h5_mutex());
  quiet_hdf5();
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    // No object modification times: the same patches give the same bytes.
    H5Handle fcpl(H5Pcreate(H5P_FILE_CREATE), H5Pclose);
    H5Pset_obj_track_times(fcpl, false);
    H5Handle f(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, fcpl, H5P_DEFAULT), H5Fclose);
    if (f < 0) fail(path, "cannot create HDF5 file");
    H5Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    H5Pset_obj_track_times(dcpl, false);
    bool ok = true;
    {
      hsize_t dims[4] = {n, hsize_t(H), hsize_t(W), 3};
      H5Handle space(H5Screate_simple(4, dims, nullptr), H5Sclose);
      // One chunk per patch, deflated: a patch is read with one chunk decompression.
      H5Handle img_dcpl(H5Pcopy(dcpl), H5Pclose);
      if (n > 0) {
        hsize_t chunk[4] = {1, hsize_t(H), hsize_t(W), 3};
        H5Pset_chunk(img_dcpl, 4, chunk);
        H5Pset_deflate(img_dcpl, 4);
      }
      H5Handle ds(H5Dcreate2(f, "img", H5T_STD_U8LE, space, H5P_DEFAULT, img_dcpl, H5P_DEFAULT), H5Dclose);
      std::vector<uint8_t> buf(n * size_t(H) * W * 3);
      for (size_t k = 0; k < n; ++k)
        for (int c = 0; c < 3; ++c) {
          const float* p = h.images[k].plane(c);
          for (size_t i = 0; i < size_t(H) * W; ++i)
            buf[(k * size_t(H) * W + i) * 3 + size_t(c)] = uint8_t(std::min(255.0f, std::max(0.0f, p[i] + 0.5f)));
        }
      ok = ok && ds >= 0 && (n == 0 || H5Dwrite(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) >= 0);
    }
    {
      size_t len = 1;
      for (const auto& b : h.barcodes) len = std::max(len, b.size());
      std::vector<char> buf(n * len, 0);
      for (size_t k = 0; k < n; ++k) std::copy(h.barcodes[k].begin(), h.barcodes[k].end(), buf.begin() + long(k * len));
      hsize_t dims[2] = {n, 1};
      H5Handle space(H5Screate_simple(2, dims, nullptr), H5Sclose);
      H5Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
      H5Tset_size(type, len);
      H5Tset_strpad(type, H5T_STR_NULLPAD);
      H5Handle ds(H5Dcreate2(f, "barcode", type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), H5Dclose);
      ok = ok && ds >= 0 && (n == 0 || H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) >= 0);
    }
    {
      std::vector<int64_t> buf;
      for (const auto& c : h.coords) buf.push_back(c[0]), buf.push_back(c[1]);
      hsize_t dims[2] = {n, 2};
      H5Handle space(H5Screate_simple(2, dims, nullptr), H5Sclose);
      H5Handle ds(H5Dcreate2(f, "coords", H5T_STD_I64LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), H5Dclose);
      ok = ok && ds >= 0 && (n == 0 || H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) >= 0);
    }
    if (!ok) {
      std::remove(tmp.c_str());
      fail(path, "writing the HDF5 datasets failed");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    fail(path, "cannot rename the written file into place: " + ec.message());
  }
}

}  // namespace tabula::data
