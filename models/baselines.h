// The paper's non-learned baselines, as feature extractors over one image (C x H x W floats, each channel scaled
// to [0, 1] by the source's full scale). Registered as archs (`pixels`, `nuclei`) so they run wherever a model
// does; the point of them is to show how much of a benchmark a representation with no learned weights solves.
//
//   pixels  per-channel intensity statistics, a histogram and a coarse downsampled image: what a model gets
//           "for free" from global intensity and layout (plate effects, intensity-only compounds).
//   nuclei  structure only: segment nuclei on the DNA / hematoxylin channel (Gaussian smoothing, Otsu threshold,
//           distance-transform watershed to split touching nuclei), then count, density, size and shape statistics,
//           nearest-neighbour distances and a radius-graph's degree: what cell count and nuclear morphology alone
//           can retrieve (density-only compounds, tissue cellularity). No intensity enters its features.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tabula::baselines {

struct PixelsConfig {
  int hist_bins = 16;  // histogram over [0, 1] per channel, as fractions of pixels
  int grid = 4;        // grid x grid area means per channel
};

// Feature names in output order: ch<c>_mean, ch<c>_std, ch<c>_p01 ... ch<c>_hist<k>, ch<c>_grid<y>_<x>.
std::vector<std::string> pixel_feature_names(int channels, const PixelsConfig& cfg);
std::vector<float> pixel_features(const float* chw, int channels, int height, int width, const PixelsConfig& cfg);

struct NucleiConfig {
  int dna_channel = 0;        // which channel holds the nuclear stain (DNA / hematoxylin)
  bool invert = false;        // true when nuclei are dark on bright (brightfield H&E intensity)
  double sigma = 2.0;         // Gaussian smoothing before thresholding, pixels
  int min_area = 20;          // objects smaller than this (pixels) are noise
  int min_distance = 4;       // watershed seeds: local maxima of the distance map within this radius
  double graph_radius = 0.0;  // neighbour graph radius in pixels; 0 = 2 x the median nearest-neighbour distance
};

struct Nucleus {
  double area = 0, perimeter = 0, cy = 0, cx = 0;
  double major_axis = 0, minor_axis = 0, eccentricity = 0, form_factor = 0;
};

struct NucleiSegmentation {
  int height = 0, width = 0;
  std::vector<int32_t> labels;  // 0 background, 1..n nuclei, row-major
  std::vector<Nucleus> nuclei;  // nuclei[i] describes label i + 1
};

// Segments one plane (H x W floats). Deterministic: the same plane gives the same labels.
NucleiSegmentation segment_nuclei(const float* plane, int height, int width, const NucleiConfig& cfg);

std::vector<std::string> nuclei_feature_names();
std::vector<float> nuclei_features(const NucleiSegmentation& seg, double graph_radius = 0.0);
std::vector<float> nuclei_features(const float* chw, int channels, int height, int width, const NucleiConfig& cfg);

// Building blocks, exposed for tests.
std::vector<float> gaussian_blur(const float* plane, int height, int width, double sigma);  // reflect padding
float otsu_threshold(const float* values, size_t n, int bins = 256);  // skimage.filters.threshold_otsu semantics
// Exact Euclidean distance to the nearest background pixel (Felzenszwalb & Huttenlocher), for a 0/1 mask.
std::vector<float> distance_transform(const std::vector<uint8_t>& mask, int height, int width);

}  // namespace tabula::baselines
