// Resampling absolute position embeddings to another patch grid, exactly as timm's loader does it
// (timm.layers.resample_abs_pos_embed: prefix tokens kept, the grid part converted to f32 and resized with
// torch.nn.functional.interpolate(mode='bicubic', antialias=True, size-based), then cast back).
// The interpolation replays torch's CPU antialiased separable kernel (UpSampleKernel.cpp,
// HelperInterpCubic::aa_filter with Keys a = -0.5, PIL-style support and normalised weights, width pass then
// height pass), including its float/double promotions, so the result is what torch computes.
#pragma once
#include <cstdint>

#include "weights_tools/weight_tensor.h"

namespace tabula::weights {

// 1-D antialiased bicubic resampling weights for `in` -> `out` samples (torch's
// _compute_indices_min_size_weights_aa with float weights): output i reads input[xmin[i] .. xmin[i]+xsize[i]).
struct AaCubicWeights {
  int64_t max_size = 0;
  std::vector<int64_t> xmin, xsize;
  std::vector<float> w;  // out x max_size, zero padded
};
AaCubicWeights aa_cubic_weights(int64_t in, int64_t out);

// Resizes an [H, W, C] channels-last f32 grid to [new_h, new_w, C] (torch's bicubic antialias interpolate).
std::vector<float> resize_bicubic_aa(const std::vector<float>& x, int64_t h, int64_t w, int64_t c, int64_t new_h,
                                     int64_t new_w);

// timm.layers.resample_abs_pos_embed(posemb, new_size, old_size=None, num_prefix_tokens, 'bicubic', antialias=True)
// for posemb [1, prefix + H*W, D] in f32/f16/bf16; old size square unless given. Returns posemb unchanged when
// the token count already matches a square new size (as timm does).
WeightTensor resample_abs_pos_embed(const WeightTensor& posemb, int64_t new_h, int64_t new_w, int64_t num_prefix_tokens,
                                    int64_t old_h = 0, int64_t old_w = 0);

}  // namespace tabula::weights
