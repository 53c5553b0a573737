// Argument checks and shape rules shared by the reference and fast implementations of every op, so both reject
// the same inputs with the same messages.
#pragma once
#include <array>
#include <optional>
#include <string_view>
#include <tuple>
#include <vector>

#include "engine/ops.h"

namespace tabula::detail {

inline constexpr double kGemP = 3.0;     // GeM exponent (Radenović et al.; cirtorch default)
inline constexpr double kGemEps = 1e-6;  // clamp before the power, as cirtorch's gem()

Shape broadcast_shape(std::string_view op, const Shape& a, const Shape& b);
std::tuple<int64_t, int64_t, int64_t, int64_t> check_4d(std::string_view op, const Tensor& x);

struct ConvShapes {
  int64_t N, C, H, W, Cout, kh, kw, Ho, Wo;
};
ConvShapes conv2d_shapes(std::string_view op, const Tensor& x, const Tensor& w, const Tensor& b,
                         const Conv2dOptions& o, const Tensor& residual);
void check_pool_args(std::string_view op, std::array<int64_t, 2> k, std::array<int64_t, 2> s,
                     std::array<int64_t, 2> p, std::array<int64_t, 2> d);
// Output size of a pooling window sweep; throws when it is empty (kernel larger than the padded input).
std::pair<int64_t, int64_t> pool_output_hw(std::string_view op, int64_t H, int64_t W, std::array<int64_t, 2> k,
                                           std::array<int64_t, 2> s, std::array<int64_t, 2> p,
                                           std::array<int64_t, 2> d, bool ceil_mode);
// Channels-last max pooling of output rows [oh0, oh1) of one image whose input rows [ih0, ih1) are at x (row ih at
// x + (ih - ih0) * W * C; every row a window of these outputs needs inside the image must be there: rows outside
// [ih0, ih1) count as padding), written to y (row oh at y + (oh - oh0) * Wo * C). A running max per channel in the
// window's order, NaN propagating, as torch: the one body of ops::max_pool2d's channels-last path and of the fused
// ops::conv2d_max_pool2d.
void max_pool_rows_channels_last(const float* x, int64_t ih0, int64_t ih1, int64_t W, int64_t C, float* y,
                                 int64_t oh0, int64_t oh1, int64_t Wo, std::array<int64_t, 2> k,
                                 std::array<int64_t, 2> s, std::array<int64_t, 2> p, std::array<int64_t, 2> d);
void check_linear(std::string_view op, const Tensor& x, const Tensor& w, const Tensor& b);
// linear's residual as a contiguous f32 tensor of the result's shape `out` (undefined when `residual` is).
Tensor linear_residual(std::string_view op, const Tensor& residual, const Shape& out);

struct MatmulShapes {
  int64_t batch, M, K, N;
  Shape out;
};
MatmulShapes matmul_shapes(std::string_view op, const Tensor& a, const Tensor& b);

// rope_apply: x [..., N, head_dim] as `rows` matrices [N, head_dim]; sin / cos [hw, head_dim] cover the last hw
// tokens, the first `prefix` pass unchanged. Shape checks only (each backend checks its devices first).
struct RopeShapes {
  int64_t rows, n, hd, hw, prefix;
};
RopeShapes rope_shapes(std::string_view op, const Tensor& x, const Tensor& sin, const Tensor& cos);

struct SdpaShapes {
  int64_t B, H, Nq, Nk, D, Dv;
};
SdpaShapes sdpa_shapes(std::string_view op, const Tensor& q, const Tensor& k, const Tensor& v);
// biased_attention: q/k/v [B, H, N, D] with Nq == Nk, bias [H, N, N] or undefined, mask [nW, N, N] with B % nW == 0
// or undefined (shapes only: each backend checks its devices). Returns the shapes and nW (1 without a mask).
std::pair<SdpaShapes, int64_t> biased_attention_shapes(std::string_view op, const Tensor& q, const Tensor& k,
                                                       const Tensor& v, const Tensor& bias, const Tensor& mask);

Shape cat_shape(std::string_view op, const std::vector<Tensor>& xs, int64_t dim);
std::pair<int64_t, int64_t> interpolate_size(std::string_view op, int64_t H, int64_t W, const InterpolateOptions& o);

// One axis of ref::interpolate's separable resampling: out[i] = sum_t weight[i][t] * in[index[i][t]]. Exposed so
// other backends (CUDA) resample with exactly the reference's taps.
struct InterpTaps {
  std::vector<std::vector<int64_t>> index;
  std::vector<std::vector<double>> weight;
};
InterpTaps interpolate_taps(int64_t in, int64_t out, std::optional<double> scale_factor, const InterpolateOptions& o);

}  // namespace tabula::detail
