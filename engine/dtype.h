// Element types tabula stores and computes with, and the exact f16/bf16 <-> f32 conversions torch uses.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace tabula {

enum class DType : uint8_t { f32, f16, bf16, f64, i64, i32, i16, i8, u8, u16, boolean };

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);                  // "f32", "f16", "bf16", ...
std::optional<DType> dtype_from_name(std::string_view s);  // accepts tabula names and safetensors' ("F32", "BF16", ...)
std::string_view dtype_safetensors_name(DType t);      // "F32", "F16", "BF16", "I64", ...

inline uint32_t f32_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float f32_from_bits(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

// bf16 is the top half of an f32; rounding to nearest even as torch's c10::BFloat16 does (NaN stays NaN).
inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float bf16_to_f32(uint16_t h) { return f32_from_bits(static_cast<uint32_t>(h) << 16); }

// IEEE binary16, round to nearest even, subnormals and inf/NaN handled (c10::Half semantics).
uint16_t f32_to_f16(float f);
float f16_to_f32(uint16_t h);

}  // namespace tabula
