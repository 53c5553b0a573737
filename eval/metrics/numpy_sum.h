// numpy's pairwise summation, shared by copairs' AP (map.cpp) and its null (map_null.cpp).
#pragma once
#include <cstdint>

namespace tabula::eval {

// numpy's pairwise summation (numpy/_core/src/umath/loops_utils.h.src), which np.sum / np.add.reduce run along a
// contiguous axis: plain below 8 terms, 8 accumulators in blocks of up to 128, halves above.
template <class T>
T pairwise_sum(const T* a, int64_t n) {
  if (n < 8) {
    T res = 0;
    for (int64_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    T r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    int64_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    T res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

}  // namespace tabula::eval
