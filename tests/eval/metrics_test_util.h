// Shared by the metric tests: fixture loading.
#pragma once
#include <map>
#include <string>

#include "eval/metrics/features.h"
#include "util/table.h"
#include "tests/test_util.h"

namespace tabula::test {

inline std::string metrics_fixture(const std::string& rel) { return fixture("metrics/" + rel).string(); }

// key,value CSV -> map
inline std::map<std::string, std::string> read_params(const std::string& path) {
  tabula::Table t = tabula::read_csv(path);
  std::map<std::string, std::string> m;
  for (size_t r = 0; r < t.rows(); ++r) m[t.at(r, t.index("key"))] = t.at(r, t.index("value"));
  return m;
}

}  // namespace tabula::test
