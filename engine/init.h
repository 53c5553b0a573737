// torch.nn.init (torch 2.15) and timm.layers.trunc_normal_ (timm 1.0.31) on contiguous float32 buffers,
// drawing from a TorchGenerator exactly as the Python functions draw from torch's default generator.
// Shapes are PyTorch's (Linear [out, in], Conv2d [out, in/groups, kh, kw]).
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "engine/rng.h"
#include "engine/tensor.h"  // Shape, shape_numel

namespace tabula {

struct Fans {
  int64_t fan_in = 0, fan_out = 0;
};
// torch.nn.init._calculate_fan_in_and_fan_out; throws std::invalid_argument for fewer than 2 dimensions.
Fans calculate_fan_in_and_fan_out(const Shape& shape);
// torch.nn.init.calculate_gain ("linear", "conv2d", "sigmoid", "tanh", "relu", "leaky_relu", "selu").
double calculate_gain(std::string_view nonlinearity, std::optional<double> param = std::nullopt);

enum class FanMode { fan_in, fan_out };

void uniform_init(float* w, const Shape& shape, double a, double b, TorchGenerator& gen);
void normal_init(float* w, const Shape& shape, double mean, double std, TorchGenerator& gen);
void kaiming_uniform_(float* w, const Shape& shape, TorchGenerator& gen, double a = 0.0,
                      FanMode mode = FanMode::fan_in, std::string_view nonlinearity = "leaky_relu");
void kaiming_normal_(float* w, const Shape& shape, TorchGenerator& gen, double a = 0.0,
                     FanMode mode = FanMode::fan_in, std::string_view nonlinearity = "leaky_relu");
void xavier_uniform_(float* w, const Shape& shape, TorchGenerator& gen, double gain = 1.0);
void xavier_normal_(float* w, const Shape& shape, TorchGenerator& gen, double gain = 1.0);

// torch.nn.init.trunc_normal_ as of torch 2.15: when [a, b] holds more than 30% of the mass it draws
// normal_(mean, std) and redraws out-of-range values (each redraw is a full-size normal_ on a fresh tensor,
// as torch does). The other branch (uniform proposals accepted through a vectorised log) is not replayed:
// it throws std::invalid_argument. With the ViT defaults (std 0.02, a = -2, b = 2) this is normal_(0, 0.02).
void trunc_normal_(float* w, size_t n, TorchGenerator& gen, double mean = 0.0, double std = 1.0,
                   double a = -2.0, double b = 2.0);
// timm.layers.trunc_normal_ (the pre-2.15 torch algorithm timm keeps): uniform_(2l-1, 2u-1), erfinv_,
// mul_(std*sqrt(2)), add_(mean), clamp_(a, b). Within 1-2 ULP of torch, see erfinv_ in engine/rng.h.
void timm_trunc_normal_(float* w, size_t n, TorchGenerator& gen, double mean = 0.0, double std = 1.0,
                        double a = -2.0, double b = 2.0);

// timm.layers.trunc_normal_tf_: timm_trunc_normal_(0, 1, a, b), then mul_(std), add_(mean) (bounds apply to
// the standard normal). And timm.layers.lecun_normal_: trunc_normal_tf_(std = sqrt(1/fan_in) / .8796...).
// One more float multiply than trunc_normal_: within 3 ULP of torch.
void timm_trunc_normal_tf_(float* w, size_t n, TorchGenerator& gen, double mean = 0.0, double std = 1.0,
                           double a = -2.0, double b = 2.0);
void lecun_normal_(float* w, const Shape& shape, TorchGenerator& gen);

// nn.Linear / nn.Conv2d reset_parameters(): kaiming_uniform_(a=sqrt(5)) then bias U(-1/sqrt(fan_in), ..).
// `bias` may be null (bias=False).
void default_reset_parameters(float* weight, const Shape& weight_shape, float* bias, TorchGenerator& gen);
// Random draws that reset_parameters() consumes, for replaying a constructor whose values are overwritten.
uint64_t default_reset_draws(const Shape& weight_shape, bool has_bias);

}  // namespace tabula
