// Position encodings computed from the token grid rather than learned: DINOv3's axial 2D RoPE
// (dinov3/layers/rope_position_encoding.py, dinov3/layers/attention.py rope_apply) and the fixed 2D sin-cos table
// of Recursion's channel-agnostic MAE (maes_microscopy/vit.py generate_2d_sincos_pos_embeddings).
//
// The tables are computed in float32 step by step as torch does (each op rounded to f32), so they match torch's up
// to its sin/cos/pow implementation (Sleef on AVX-512/AVX2 builds: within 1-2 ULP of libm). Applying the RoPE
// tables to q / k is an op like any other (rope_apply in engine/op_list.h: ref::, the CPU and CUDA backends).
#pragma once
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace tabula {

// RopePositionEmbedding(normalize_coords=...): how patch-centre coordinates are scaled into [-1, 1].
enum class RopeNormalize { min, max, separate };

// RopePositionEmbedding._init_weights: the head_dim / 4 periods, either base ** (2 k / (head_dim / 2)) or, when
// min/max periods are given, max_period * (max/min) ** (linspace(0, 1) - 1). head_dim must be a multiple of 4.
std::vector<float> rope_periods(int64_t head_dim, std::optional<double> base, std::optional<double> min_period = {},
                                std::optional<double> max_period = {});

// RopePositionEmbedding.forward(H=h, W=w) in eval mode (no shift, jitter or rescale: those run in training only):
// coords = 2 * ((arange(0.5, n) / norm)) - 1 on a meshgrid 'ij', angles = 2 pi coords / periods tiled twice.
// Returns (sin, cos), each [h * w, head_dim] with head_dim = 4 * periods.size().
std::pair<Tensor, Tensor> rope_sin_cos(const std::vector<float>& periods, int64_t h, int64_t w, RopeNormalize norm);

// generate_2d_sincos_pos_embeddings(embedding_dim=dim, length, scale, use_class_token, num_modality):
// [1, (class_token) + num_modality * length^2, dim], rows = cat(sin(h w_k), cos(h w_k), sin(w w_k), cos(w w_k))
// with w_k = 1 / scale ** (k / (dim / 4)), the grid repeated per modality, a zero row first for the class token.
Tensor sincos_2d_pos_embed(int64_t dim, int64_t length, double scale = 10000.0, bool class_token = true,
                           int64_t num_modality = 1);

}  // namespace tabula
