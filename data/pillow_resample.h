// Pillow's Image.resize for 8-bit images (modes "L" and "RGB", one plane at a time), bit-exact: what timm's,
// torchvision's and DINOv2's eval transforms compute when their users hand them PIL images.
//
// Mirrors Pillow 13's src/libImaging/Resample.c:
//  * precompute_coeffs: scale = in / out (double); the filter's support widens by max(scale, 1) (Pillow always
//    antialiases a downscale); for output i, center = (i + 0.5) * scale, taps j in
//    [(int)(center - support + 0.5), (int)(center + support + 0.5)) clipped to the input, weight
//    filter((j - center + 0.5) / max(scale, 1)) in double, normalised by the tap sum.
//  * normalize_coeffs_8bpc: weights to fixed point with PRECISION_BITS = 32 - 8 - 2 = 22, rounded half away
//    from zero; each output = clip8((1 << 21) + sum(pixel * k) >> 22), an int32 sum.
//  * ImagingResampleInner: two passes through a uint8 intermediate image, horizontal first, except that Pillow 13
//    runs the vertical pass first when the height shrinks by more than twice the pixels the width loses; a pass
//    whose size does not change is skipped, and Image.resize returns a copy when neither changes.
//  * filters: box (support 0.5), bilinear (1), hamming (1), bicubic (2, Keys a = -0.5), lanczos (3).
// torchvision's F.resize on a PIL image calls Image.resize(size, resample) without reducing_gap, so no
// Image.reduce step precedes the resampling (and none is done here).
#pragma once
#include <cstdint>
#include <vector>

namespace tabula::data {

enum class PilFilter { box, bilinear, hamming, bicubic, lanczos };

// Pillow's double coefficients before fixed point: for each output index its first tap and tap count, and
// ksize doubles per output (zeros past the count).
struct PilCoeffs {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<double> k;
};
PilCoeffs pil_precompute_coeffs(int in_size, int out_size, PilFilter filter);
// The fixed-point weights pil_resize_u8 sums (normalize_coeffs_8bpc, PRECISION_BITS 22), and those of
// torch_resize_u8 with the precision it picks (*precision); what a device resize uploads (data/device_preprocess.h).
std::vector<int32_t> pil_fixed_coeffs(const PilCoeffs& c);
std::vector<int32_t> torch_u8_fixed_coeffs(const PilCoeffs& c, int* precision);
// Whether pil_resize_u8 runs its vertical pass first for this size change (Pillow 13's rule, see the .cpp).
bool pil_vertical_first(int in_h, int in_w, int out_h, int out_w);

// Resizes `planes` uint8 planes of in_h x in_w (contiguous) to out_h x out_w as Image.resize does.
void pil_resize_u8(const uint8_t* in, int planes, int in_h, int in_w, uint8_t* out, int out_h, int out_w,
                   PilFilter filter);

// torch's own uint8 resize (F.interpolate / torchvision's Resize on a uint8 tensor, antialias=True, bilinear or
// bicubic: ATen's UpSampleKernel uint8 path, ported from Pillow-SIMD): the same double weights as Pillow, but as
// int16 with a precision chosen per dimension (the largest p <= 22 with round(max weight * 2^(p+1)) < 2^15), always
// the horizontal pass first. Differs from Pillow by 1 in a few pixels per thousand.
void torch_resize_u8(const uint8_t* in, int planes, int in_h, int in_w, uint8_t* out, int out_h, int out_w,
                     PilFilter filter);

}  // namespace tabula::data
