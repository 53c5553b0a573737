// The horizontal predictor's vectorised undo (data/tiff_predictor.h) against the definition, one sample at a time:
// every width (8/16/32-bit), strides 1..4, row lengths around the vector widths, wrap-around modulo 2^bits.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "data/tiff_predictor.h"

using namespace tabula::data;

namespace {

template <class T>
void check_width() {
  std::mt19937 rng(22);
  for (int stride = 1; stride <= 4; ++stride)
    for (size_t n : {size_t(0), size_t(1), size_t(7), size_t(8), size_t(9), size_t(15), size_t(16), size_t(17),
                     size_t(33), size_t(1080), size_t(3 * 1081)}) {
      std::vector<T> row(n), want(n);
      for (size_t i = 0; i < n; ++i) row[i] = want[i] = T(rng());
      for (size_t i = size_t(stride); i < n; ++i) want[i] = T(want[i] + want[i - size_t(stride)]);
      undo_horizontal_predictor(row.data(), n, stride);
      EXPECT_EQ(row, want) << sizeof(T) * 8 << "-bit, stride " << stride << ", " << n << " samples";
    }
}

}  // namespace

TEST(DataTiffPredictor, UndoEqualsTheRunningSumOfEverySampleWidth) {
  check_width<uint8_t>();
  check_width<uint16_t>();
  check_width<uint32_t>();
}

TEST(DataTiffPredictor, SumsWrapAroundLikeTheSampleType) {
  std::vector<uint16_t> row(20, 0x8000);  // 0x8000 * k modulo 2^16: alternates 0x8000, 0
  undo_horizontal_predictor(row.data(), row.size(), 1);
  for (size_t i = 0; i < row.size(); ++i) EXPECT_EQ(row[i], i % 2 == 0 ? 0x8000 : 0) << i;
  std::vector<uint8_t> bytes(40, 255);  // -1 each step: 255, 254, ...
  undo_horizontal_predictor(bytes.data(), bytes.size(), 1);
  for (size_t i = 0; i < bytes.size(); ++i) EXPECT_EQ(bytes[i], uint8_t(255 - i)) << i;
}
