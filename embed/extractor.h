// What turns model inputs into features for `tabula embed`: a network with taps (each pooled to a vector), or a
// baseline (pixels / nuclei) computed on the intensity-scaled field.
#pragma once
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "data/image.h"
#include "models/model.h"

namespace tabula {

// A setting the user typed that cannot work (an unknown tap or pooling, a pooling the tap's shape does not allow):
// the command-line reports it as a usage error (exit code 2).
struct SettingError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

struct Extractor {
  virtual ~Extractor() = default;
  // Output layers (in order) and their width per model input.
  virtual const std::vector<std::pair<std::string, int64_t>>& layers() const = 0;
  // inputs: B images of one shape -> per layer [B, dim] values (row-major).
  virtual std::vector<std::vector<float>> run(const std::vector<const data::Image*>& inputs) = 0;
  // The same for a batch already on the model's device, [B, C, H, W] (device preprocessing's output). Networks only.
  virtual std::vector<std::vector<float>> run_tensor(const Tensor& batch) {
    throw std::invalid_argument("this extractor takes host images only");
  }
  // "tap=pool,..." (run.json's "pool").
  virtual std::string pool_description() const = 0;
  // Per layer, names of its `dim` features when they have names (baselines), else empty.
  virtual std::vector<std::string> feature_names(const std::string& layer) const { return {}; }
};

// `requested`: tap names; empty: the model's default taps; {"all"}: every stage / block output plus the model's
// feature output, leaving out any tap whose features equal a later one's (a ResNet's layer4 average-pooled is its
// avgpool: the sweep is layer1, layer2, layer3, avgpool). `pool`: empty for each tap's natural pooling (feature
// maps: avg; token sequences: the class token, else the patch mean; attention maps: max, since their rows sum to 1
// and avg would be the constant 1/N; vectors: as they are). Notes for the user (a pooling chosen for them, a
// constant feature) go to `warnings`. device: -1 for the CPU, else the GPU the weights move to (select_device has
// set the precision).
std::unique_ptr<Extractor> make_network_extractor(std::unique_ptr<Model> model, const Shape& input,
                                                  std::vector<std::string> requested, const std::string& pool,
                                                  int device, std::vector<std::string>* warnings);

// arch: pixels[:hist=..,grid=..] or nuclei[:dna=..,invert=..,sigma=..,min_area=..,min_distance=..,radius=..].
// channels: the data's channel count (dna= must name one of them); data: its name for errors.
std::unique_ptr<Extractor> make_baseline_extractor(const std::string& arch, int channels,
                                                   const std::string& data = "");
bool is_baseline(const std::string& arch);

}  // namespace tabula
