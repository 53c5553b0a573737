#include "embed/weights_load.h"

#include <chrono>
#include <cstdio>
#include <stdexcept>

#include "engine/file_pages.h"
#include "models/registry.h"
#include "weights_tools/checkpoint.h"
#include "weights_tools/layout.h"

namespace tabula {

namespace {
using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }
}  // namespace

std::string WeightLoadTimes::summary() const {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%.2f GiB in %.2f s (map %.1f ms, parse %.1f ms, pack %.0f ms)",
                static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0), total_ms() / 1000.0, map_ms, parse_ms,
                pack_ms);
  return buf;
}

WeightMap load_weight_map(const std::string& path, const std::string& key, WeightLoadTimes* times) {
  weights::LoadOptions lo;
  lo.key = key;
  weights::Checkpoint ck = weights::load_checkpoint(path, lo);
  const auto t0 = Clock::now();
  weights::LayoutPlan plan;
  weights::StateDict sd = weights::to_canonical(ck.sd, &plan);
  if (!plan.problems.empty()) throw std::runtime_error(path + ": " + plan.problems[0]);
  WeightMap wm;
  for (const weights::WeightTensor& t : sd.tensors) {
    Shape shape(t.shape.begin(), t.shape.end());
    // Zero-copy view into the file mapping (or the loader's buffer), kept alive by its storage owner; a mapped
    // view's pages are released once its layer holds its own copy (engine/file_pages.h).
    auto owner = std::const_pointer_cast<void>(t.storage);
    wm[t.name] = t.mapped ? file_mapped_view(t.data, shape, t.dtype, std::move(owner))
                          : Tensor::from_external(const_cast<uint8_t*>(t.data), shape, t.dtype, std::move(owner));
  }
  if (times) {
    times->map_ms = ck.map_ms;
    times->parse_ms = ck.parse_ms + ms_since(t0);
    times->bytes = sd.total_bytes();
  }
  return wm;
}

LoadProgress load_progress_line(std::string what, bool quiet) {
  if (quiet) return {};
  const auto start = Clock::now();
  auto next = std::make_shared<double>(2.0);  // seconds: the first line after 2 s, then every 2 s
  return [what = std::move(what), start, next](size_t done, size_t total) {
    const double s = ms_since(start) / 1000.0;
    if (s < *next || total == 0) return;
    std::fprintf(stderr, "%s: loading weights: %zu/%zu layers (%zu%%), %.1f s\n", what.c_str(), done, total,
                 100 * done / total, s);
    std::fflush(stderr);
    *next = s + 2.0;
  };
}

std::unique_ptr<Model> load_model_file(const std::string& arch, const std::string& path, const std::string& key,
                                       int device, const std::string& what, bool quiet, WeightLoadTimes* times) {
  WeightLoadTimes local;
  WeightLoadTimes& t = times ? *times : local;
  BuildOptions bo;
  bo.device = device;
  bo.progress = load_progress_line(what, quiet);  // its clock starts here: the 2 s count map and parse too
  WeightMap wm = load_weight_map(path, key, &t);  // its errors name the file already
  const auto t1 = Clock::now();
  std::unique_ptr<Model> model;
  try {
    model = build_model(arch, wm, bo);
  } catch (const std::exception& e) {  // weights for another arch: say which file
    throw std::runtime_error(path + ": " + e.what());
  }
  t.pack_ms = ms_since(t1);
  return model;
}

}  // namespace tabula
