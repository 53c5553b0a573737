// The reference for torch.nn.functional.interpolate(mode="bilinear"|"bicubic", align_corners=False) on float
// planes, with and without antialias: what torchvision's Resize runs on float tensors. One reference, written
// to be shared with the engine's interpolate op (position-embedding resizing) later.
//
// Mirrors ATen's CPU kernels (aten/src/ATen/native/cpu/UpSampleKernel.cpp, UpSample.h):
//  * antialias=True (_upsample_bilinear2d_aa / _upsample_bicubic2d_aa): separable, width pass first then
//    height; for output i, center = scale * (i + 0.5), support = (interp_size / 2) * max(scale, 1),
//    taps j in [int(center - support + 0.5), int(center + support + 0.5)) clipped to the input,
//    weight = filter((j - center + 0.5) / max(scale, 1)), normalised to sum 1 per output pixel.
//    Filters: bilinear = triangle; bicubic = Keys cubic with a = -0.5 (PIL's choice, not -0.75).
//  * antialias=False: source x = scale * (i + 0.5) - 0.5; bilinear clamps x at 0 and takes 2 taps,
//    bicubic takes 4 taps at floor(x) - 1 .. floor(x) + 2 (indices clamped to the edge) with a = -0.75.
//  scale = in / out (no scale_factor given: torchvision passes the size). A dimension whose size does not
//  change is copied, as ATen skips it. Arithmetic follows ATen's float path step by step (tap centres,
//  weights and sums in float, same order); what remains is FMA contraction in the compiled ATen kernel:
//  outputs agree to ~1e-6 (see tests/eval/test_data_preprocess.cpp).
//  Not covered: interpolate(scale_factor=...) (scale = 1 / scale_factor, as DINOv2's hub pos-embed resize
//  with interpolate_offset uses) and align_corners=True.
#pragma once
#include <cstdint>
#include <vector>

namespace tabula::data {

enum class Interp { bilinear, bicubic };

// Resizes `planes` planes of in_h x in_w (contiguous, plane after plane) to out_h x out_w.
void torch_interpolate(const float* in, int64_t planes, int64_t in_h, int64_t in_w, float* out, int64_t out_h,
                       int64_t out_w, Interp mode, bool antialias);

// The 1-D weights along one dimension: for each output index, the first input index and its taps. With
// antialias these are exactly ATen's float weights (what torch_interpolate uses); without, the same taps and
// Keys coefficients computed in double with clamped edge taps merged (torch_interpolate's non-antialiased
// path uses its own float tables, replaying ATen's non-separable kernel).
struct InterpWeights {
  std::vector<int64_t> first;   // per output index
  std::vector<int64_t> count;   // taps per output index
  std::vector<double> weights;  // out_size * max_taps, row i holds count[i] weights
  int64_t max_taps = 0;
  bool float_accumulate = false;  // antialias: ATen keeps weights and sums in float (see interpolate.cpp)
};
InterpWeights torch_interp_weights(int64_t in_size, int64_t out_size, Interp mode, bool antialias);

}  // namespace tabula::data
