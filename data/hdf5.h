// An HDF5 id that closes itself: the one RAII handle for the HEST reader (data/hest.cpp) and the AnnData writer
// (embed/h5ad.cpp). Include only from sources that link the HDF5 C library (tabula_hdf5).
#pragma once
#include <hdf5.h>

namespace tabula::data {

struct H5Handle {  // closes any HDF5 id with its matching close function
  hid_t id = -1;
  herr_t (*close)(hid_t) = nullptr;
  H5Handle(hid_t i, herr_t (*c)(hid_t)) : id(i), close(c) {}
  ~H5Handle() {
    if (id >= 0 && close) close(id);
  }
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  operator hid_t() const { return id; }
};

}  // namespace tabula::data
