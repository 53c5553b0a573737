// Fortran-order .npy arrays (np.save of np.asfortranarray, or of a pandas DataFrame's to_numpy()) are read into C
// order, as numpy.load gives them; checked on the bytes numpy writes for a 3-D float32 and a 2-D int64 array.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "util/npy.h"

namespace tabula {
namespace {

// np.save(f, np.asfortranarray(a)): the header says fortran_order True and the data is a.T's C-order bytes.
std::vector<uint8_t> fortran_file(DType dtype, const std::vector<int64_t>& shape, const std::vector<uint8_t>& data) {
  std::string header = npy_header(dtype, shape);
  header.replace(header.find("False"), 5, "True");
  header.insert(header.size() - 1, " ");
  std::vector<uint8_t> out(header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

TEST(NpyFortran, ThreeDimensionalFloatIsReadInCOrder) {
  // a = np.arange(24, dtype=np.float32).reshape(2, 3, 4); Fortran order stores a[i, j, k] at i + 2 j + 6 k.
  std::vector<float> f(24);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) f[static_cast<size_t>(i + 2 * j + 6 * k)] = static_cast<float>(i * 12 + j * 4 + k);
  const auto* p = reinterpret_cast<const uint8_t*>(f.data());
  const auto bytes = fortran_file(DType::f32, {2, 3, 4}, std::vector<uint8_t>(p, p + f.size() * 4));
  const NpyArray a = parse_npy(bytes.data(), bytes.size(), "f.npy");
  ASSERT_EQ(a.shape, (std::vector<int64_t>{2, 3, 4}));
  for (int e = 0; e < 24; ++e) EXPECT_EQ(a.as<float>()[e], static_cast<float>(e)) << e;
}

TEST(NpyFortran, TwoDimensionalIntegersAndOneDimensionalArrays) {
  // np.asfortranarray(np.arange(6).reshape(2, 3)) stores 0 3 1 4 2 5.
  const std::vector<int64_t> f = {0, 3, 1, 4, 2, 5};
  const auto* p = reinterpret_cast<const uint8_t*>(f.data());
  auto bytes = fortran_file(DType::i64, {2, 3}, std::vector<uint8_t>(p, p + f.size() * 8));
  NpyArray a = parse_npy(bytes.data(), bytes.size(), "i.npy");
  for (int e = 0; e < 6; ++e) EXPECT_EQ(a.as<int64_t>()[e], e);
  // A vector is the same in both orders.
  bytes = fortran_file(DType::i64, {6}, std::vector<uint8_t>(p, p + f.size() * 8));
  a = parse_npy(bytes.data(), bytes.size(), "v.npy");
  for (int e = 0; e < 6; ++e) EXPECT_EQ(a.as<int64_t>()[e], f[static_cast<size_t>(e)]);
}

}  // namespace
}  // namespace tabula
