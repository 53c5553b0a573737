// A weight file into a model, phase by phase, each timed: map (open + mmap), parse (header / pickle, the layout
// mapping), pack (build the model: every weight converted and packed for the CPU GEMM, or uploaded to a GPU, layer
// by layer, each layer's source pages released once it holds its own copy). `tabula bench` and `tabula embed`
// report the phases; a load that takes over 2 s prints a progress line on stderr while it packs.
#pragma once
#include <memory>
#include <string>

#include "models/model.h"

namespace tabula {

struct WeightLoadTimes {
  double map_ms = 0, parse_ms = 0, pack_ms = 0;
  size_t bytes = 0;  // the weights' bytes as stored in the file
  double total_ms() const { return map_ms + parse_ms + pack_ms; }
  std::string summary() const;  // "4.3 GiB in 1.82 s (map 0.1 ms, parse 9.8 ms, pack 1812 ms)"
};

// A weight file (safetensors or torch.save checkpoint, any supported layout) as reference-named tensors: zero-copy
// views into the file mapping where the bytes allow. `key` picks a nested checkpoint entry (teacher, model, ...).
WeightMap load_weight_map(const std::string& path, const std::string& key = "", WeightLoadTimes* times = nullptr);

// Reports Model::load's progress on stderr as "<what>: loading weights: D/N layers (P%), S s" once `start` is
// more than 2 s ago, then every 2 s; prints nothing when quiet.
LoadProgress load_progress_line(std::string what, bool quiet);

// build_model(arch, load_weight_map(path, key)) with the weights prepared for `device` (-1: the CPU), the pack
// phase timed into `times` and its progress shown (load_progress_line). Errors name the file.
std::unique_ptr<Model> load_model_file(const std::string& arch, const std::string& path, const std::string& key,
                                       int device, const std::string& what, bool quiet, WeightLoadTimes* times);

}  // namespace tabula
