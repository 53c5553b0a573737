#include "data/pipeline.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <stdexcept>

#include "engine/fileio.h"
#include "util/npy.h"
#include "data/prefetch.h"

namespace tabula::data {

void check_finite(const Image& img) {
  const size_t hw = img.plane_size();
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < img.pixels.size(); ++i)
    if (!std::isfinite(img.pixels[i]) && bad++ == 0) first = i;
  if (bad == 0) return;
  const size_t c = first / hw, y = (first % hw) / size_t(img.width), x = first % size_t(img.width);
  throw std::runtime_error(img.source + ": " + std::to_string(bad) + " pixel value" + (bad == 1 ? " is" : "s are") +
                           " NaN or infinite (the first at channel " + std::to_string(c) + ", row " + std::to_string(y) +
                           ", column " + std::to_string(x) + "); replace or mask them before embedding");
}

void for_each_preprocessed(const Manifest& m, const Transform& t, const ChannelStrategy& s, const PipelineOptions& o,
                           const std::function<void(size_t, std::vector<Image>&)>& sink) {
  const int64_t n = o.limit >= 0 ? std::min<int64_t>(o.limit, int64_t(m.samples.size())) : int64_t(m.samples.size());
  DecodeLimits limits = o.decode;
  if (limits.threads <= 1) limits.threads = decode_threads_per_image(o.threads, std::min<int64_t>(n, o.capacity));
  Prefetcher<std::vector<Image>> pf(n, o.threads, o.capacity, [&](int64_t i) {
    Image img = load_sample(m, size_t(i), limits);
    check_finite(img);
    return preprocess_image(std::move(img), t, s);
  });
  for (int64_t i = 0; i < n; ++i) {
    std::optional<std::vector<Image>> inputs = pf.next();
    sink(size_t(i), *inputs);
  }
}

PreprocessSummary preprocess_to_npy(const Manifest& m, const Transform& t, const ChannelStrategy& s,
                                    const PipelineOptions& o, const std::string& out) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<float> data;
  std::vector<int64_t> shape;
  std::vector<size_t> rows;
  std::vector<std::string> input_names;
  PreprocessSummary sum;
  for_each_preprocessed(m, t, s, o, [&](size_t i, std::vector<Image>& inputs) {
    for (size_t k = 0; k < inputs.size(); ++k) {
      const Image& x = inputs[k];
      std::vector<int64_t> sh = {x.channels, x.height, x.width};
      if (shape.empty()) shape = sh;
      if (sh != shape)
        throw std::runtime_error(m.source + " (sample " + std::to_string(i) + "): preprocessed to " +
                                 std::to_string(x.channels) + "x" + std::to_string(x.height) + "x" + std::to_string(x.width) +
                                 ", earlier samples differ; give --resize/--crop so that all inputs agree");
      data.insert(data.end(), x.pixels.begin(), x.pixels.end());
      rows.push_back(i);
      if (s.mode == ChannelMode::per_channel)
        input_names.push_back(k < m.channel_names.size() ? m.channel_names[k] : std::to_string(k));
      else
        input_names.push_back(s.to_string());
    }
    ++sum.samples;
  });
  if (rows.empty()) throw std::runtime_error(m.source + ": no samples to preprocess");
  sum.inputs = int64_t(rows.size());
  sum.shape = {sum.inputs, shape[0], shape[1], shape[2]};
  write_npy(out, sum.shape, data.data());
  // index.csv: the manifest's metadata columns, then `input`.
  Manifest with_input = m;
  with_input.meta_columns.push_back("input");
  with_input.samples.clear();
  std::vector<size_t> order;
  for (size_t r = 0; r < rows.size(); ++r) {
    Sample smp;
    smp.meta = m.samples[rows[r]].meta;
    smp.meta.push_back(input_names[r]);
    with_input.samples.push_back(std::move(smp));
    order.push_back(r);
  }
  std::filesystem::path p(out);
  write_file_atomic((p.parent_path() / (p.stem().string() + ".index.csv")).string(), index_csv(with_input, order));
  sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return sum;
}

}  // namespace tabula::data
