// Preprocessing: torchvision's eval transforms on float images (Resize, CenterCrop, Normalize) with the same
// arithmetic, plus what microscopy needs before them (intensity scaling of 16-bit fields, tiling, single-cell
// crops). Every function takes and returns an Image (float CHW); none changes its input. The overloads taking an
// Image&& give the same values computed in the argument's memory (the pipeline's decoded fields are not copied).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/image.h"
#include "data/interpolate.h"
#include "data/pillow_resample.h"

namespace tabula::data {

// torchvision.transforms.Resize(size) with one int: the shorter side becomes `size`, the longer
// int(size * long / short) (truncated, as torchvision computes it).
Image resize_shorter(const Image& img, int size, Interp mode, bool antialias);
// Resize((h, w)): exact size.
Image resize_exact(const Image& img, int out_h, int out_w, Interp mode, bool antialias);
// torchvision CenterCrop: top = int(round((H - h) / 2)) with Python's round-half-to-even; an image smaller
// than the crop is zero-padded first (as torchvision pads with fill 0).
Image center_crop(const Image& img, int crop_h, int crop_w);
// A window at (top, left) of size h x w; areas outside the image come from reflect padding (numpy/torch
// "reflect": the edge pixel is not repeated). Throws if the padding would exceed the image size.
Image crop_reflect(const Image& img, int top, int left, int h, int w);
// (x - mean[c]) / std[c] per channel; mean/std of size 1 apply to every channel.
Image normalize(const Image& img, const std::vector<float>& mean, const std::vector<float>& std);
Image normalize(Image&& img, const std::vector<float>& mean, const std::vector<float>& std);  // in img's memory

// Intensity scaling, per channel (each channel scaled on its own):
// x / max_value: uint8 -> [0, 1] as ToTensor does, uint16 -> [0, 1] (x / 65535, exact in float's 24 bits).
Image scale_to_unit(const Image& img);
Image scale_to_unit(Image&& img);
// (x - P_lo) / (P_hi - P_lo) clipped to [0, 1], P = numpy.percentile(channel, p, method="linear"): the JUMP
// embedder's per-image, per-channel intensity normalisation (1st/99th percentile by default).
// Order statistics by counting: one pass over 16-bit integer samples, two passes (radix selection) over any floats.
Image percentile_scale(const Image& img, double lo_pct = 1.0, double hi_pct = 99.0, bool clip = true);
Image percentile_scale(Image&& img, double lo_pct = 1.0, double hi_pct = 99.0, bool clip = true);
// (x - min) / (max - min) per channel; a constant channel becomes 0.
Image minmax_scale(const Image& img);
Image minmax_scale(Image&& img);
// numpy.percentile(v, q) with the default "linear" method (for tests and callers that need the value).
double percentile_linear(std::vector<float> v, double q);

// Divides each channel by its illumination-correction function (CellProfiler's illum .npy, one per
// channel, same size as the image). Non-positive illumination values are an error naming the channel.
void divide_illumination(Image& img, const std::vector<std::vector<float>>& illum, const std::vector<std::string>& names);

// Crops of `size` x `size` at stride `stride` over the field, row-major (top-left first); the last row/column
// of tiles is dropped when it would not fit (no padding: tiles are real pixels).
std::vector<Image> tile_field(const Image& img, int size, int stride);
struct CellCentre {
  double y = 0, x = 0;
  int area = 0;  // pixels in the detected nucleus (0 when given)
};
// Nuclei as connected components (8-connectivity) of channel `c` above Otsu's threshold, with at least
// `min_area` pixels; centres are component centroids, in raster order of each component's first pixel.
std::vector<CellCentre> detect_nuclei(const Image& img, int c, int min_area = 20);
// One `size` x `size` crop centred on each centre (top = round(y) - size/2), reflect-padded at the border.
std::vector<Image> cell_crops(const Image& img, const std::vector<CellCentre>& centres, int size);

// How a C-channel microscopy image feeds a 3-channel model.
enum class ChannelMode {
  per_channel,  // each channel replicated to 3 and embedded on its own; features concatenated in channel order
  rgb,          // three chosen channels (rgb:i,j,k) as R, G, B
  mean,         // the channel mean replicated to 3
  all           // every channel as is (for models built with C input channels)
};
struct ChannelStrategy {
  ChannelMode mode = ChannelMode::per_channel;
  std::array<int, 3> rgb{0, 1, 2};
  std::string to_string() const;  // "per-channel", "rgb:0,1,2", "mean", "all"
};
// Parses "per-channel" | "rgb:i,j,k" | "mean" | "all" (also "rgb" = rgb:0,1,2). Throws std::invalid_argument.
ChannelStrategy parse_channel_strategy(const std::string& s);
// The model inputs one image gives under a strategy: per-channel gives C images of 3 channels; rgb and mean
// one of 3; all one of C. Channel indices out of range throw naming the image.
std::vector<Image> apply_channel_strategy(const Image& img, const ChannelStrategy& s);

// A whole eval transform chain, as the references build it.
struct Transform {
  // "unit" (x / max_value), "percentile", "minmax", "none", or "self-standardize" (Recursion's CA-MAE /
  // OpenPhenom: x / max_value, then each model input's channels standardised after the crop, in place of Normalize)
  std::string intensity = "unit";
  double pct_lo = 1.0, pct_hi = 99.0;
  int resize = 256;                // shorter side; 0 = no resize
  int resize_h = 0, resize_w = 0;  // exact size instead of shorter side when both > 0
  Interp interp = Interp::bilinear;
  bool antialias = true;
  int crop = 224;                  // centre crop; 0 = none
  std::vector<float> mean{0.485f, 0.456f, 0.406f}, std{0.229f, 0.224f, 0.225f};
  bool do_normalize = true;
  // Where Resize and CenterCrop run: "pil" = on the 8-bit image as Pillow does (pil_resize_u8, uint8 results,
  // then ToTensor), "uint8" = transforms.v2 on a uint8 tensor (ToImage; torch_resize_u8; ToDtype(scale=True)
  // multiplies by float(1/255) where ToTensor divides by 255), "tensor" = on the intensity-scaled float image
  // (torch_interpolate). resolve_transform (data/transform.h) turns "auto" into one of them; apply_geometry refuses
  // "auto".
  std::string resize_impl = "tensor";

  std::string describe() const;  // one line for run.json / logs
};
// torchvision ResNet weights' eval transform: Resize(256, bilinear, antialias) -> CenterCrop(224) -> Normalize.
Transform transform_torchvision(int resize = 256, int crop = 224);
// DINOv2's eval transform: Resize(256, bicubic, antialias) -> CenterCrop(224) -> Normalize (ImageNet).
Transform transform_dinov2(int crop = 224);
// timm's transforms_imagenet_eval: Resize(floor(img_size / crop_pct), interp) -> CenterCrop(img_size).
Transform transform_timm(int img_size, double crop_pct, Interp interp, std::vector<float> mean, std::vector<float> std);
// The Pillow filter of an interpolation mode (all five exist there).
PilFilter pil_filter(Interp mode);
// MAEModel.input_norm's second half: InstanceNorm2d(affine=False, track_running_stats=False, eps 1e-5), i.e.
// every channel minus its mean, over sqrt(biased variance + 1e-5) (statistics in double).
Image self_standardize(const Image& img);
// Throws std::invalid_argument naming the image or flag where t's 8-bit resize paths ("pil", "uint8") cannot run
// on img (not 8-bit, an intensity rule before the resize, no antialias, uint8 with another filter).
void check_8bit_resize(const Image& img, const Transform& t);
// The geometric and intensity part of the chain: intensity scaling, resize, centre crop (no normalisation).
Image apply_geometry(const Image& img, const Transform& t);
Image apply_geometry(Image&& img, const Transform& t);  // intensity scaling in img's memory (no field-sized copy)
// The whole chain for one image: apply_geometry -> channel strategy -> Normalize on each model input.
// (Scaling happens per source channel before channels are mixed; resizing before replication is exact
// because replication copies values.)
std::vector<Image> preprocess_image(const Image& img, const Transform& t, const ChannelStrategy& s);
std::vector<Image> preprocess_image(Image&& img, const Transform& t, const ChannelStrategy& s);

}  // namespace tabula::data
