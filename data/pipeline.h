// The data side of embedding: manifest -> decode -> transform -> channel strategy, on worker threads that
// overlap the consumer (the model), delivered in manifest order.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/manifest.h"
#include "data/preprocess.h"

namespace tabula::data {

struct PipelineOptions {
  int threads = 2;      // decode/preprocess workers
  int capacity = 8;     // samples decoded ahead of the consumer at most (bounded memory)
  int64_t limit = -1;   // first `limit` samples only (-1: all)
  DecodeLimits decode;
};

// Throws naming img.source when a pixel is NaN or infinite (a float TIFF may hold them): features of such an
// input are NaN or meaningless, so the data pipeline refuses them rather than embedding them silently.
void check_finite(const Image& img);

// Calls sink(sample, inputs) for each sample in order; inputs are the model inputs of that sample (one per
// channel under per-channel, else one), each C x H x W float. Errors name the sample's file; samples with
// NaN/Inf pixels are errors (check_finite).
void for_each_preprocessed(const Manifest& m, const Transform& t, const ChannelStrategy& s, const PipelineOptions& o,
                           const std::function<void(size_t, std::vector<Image>&)>& sink);

struct PreprocessSummary {
  int64_t samples = 0, inputs = 0;
  std::vector<int64_t> shape;  // of the written array
  double seconds = 0;
};
// `tabula preprocess`: writes OUT (.npy, float32 [inputs, C, H, W]) and OUT's stem + ".index.csv" (the
// manifest's metadata per input, plus `input`: the channel name under per-channel, else the strategy).
PreprocessSummary preprocess_to_npy(const Manifest& m, const Transform& t, const ChannelStrategy& s,
                                    const PipelineOptions& o, const std::string& out);

}  // namespace tabula::data
