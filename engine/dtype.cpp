#include "engine/dtype.h"

namespace tabula {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f64: case DType::i64: return 8;
    case DType::f32: case DType::i32: return 4;
    case DType::f16: case DType::bf16: case DType::i16: case DType::u16: return 2;
    case DType::i8: case DType::u8: case DType::boolean: return 1;
  }
  return 0;
}

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";   case DType::f16: return "f16";  case DType::bf16: return "bf16";
    case DType::f64: return "f64";   case DType::i64: return "i64";  case DType::i32: return "i32";
    case DType::i16: return "i16";   case DType::i8: return "i8";    case DType::u8: return "u8";
    case DType::u16: return "u16";   case DType::boolean: return "bool";
  }
  return "?";
}

std::string_view dtype_safetensors_name(DType t) {
  switch (t) {
    case DType::f32: return "F32";   case DType::f16: return "F16";  case DType::bf16: return "BF16";
    case DType::f64: return "F64";   case DType::i64: return "I64";  case DType::i32: return "I32";
    case DType::i16: return "I16";   case DType::i8: return "I8";    case DType::u8: return "U8";
    case DType::u16: return "U16";   case DType::boolean: return "BOOL";
  }
  return "?";
}

std::optional<DType> dtype_from_name(std::string_view s) {
  static constexpr DType all[] = {DType::f32, DType::f16, DType::bf16, DType::f64, DType::i64, DType::i32,
                                  DType::i16, DType::i8,  DType::u8,   DType::u16, DType::boolean};
  for (DType t : all)
    if (s == dtype_name(t) || s == dtype_safetensors_name(t)) return t;
  return std::nullopt;
}

uint16_t f32_to_f16(float f) {
  uint32_t x = f32_bits(f);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u)  // inf or NaN
    return static_cast<uint16_t>(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u | ((absx >> 13) & 0x3ffu) : 0u));
  if (absx >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: overflow
  if (absx < 0x38800000u) {  // result is subnormal or zero: let the FPU round via a magic add
    float a = f32_from_bits(absx) + 0.5f;  // 0.5 = 2^-1; subnormal f16 ulp is 2^-24
    return static_cast<uint16_t>(sign | ((f32_bits(a) - 0x3f000000u) & 0xffffu));
  }
  uint32_t mant_odd = (absx >> 13) & 1u;
  absx += 0xc8000fffu + mant_odd;  // rebias exponent (-112 << 23) and round to nearest even
  return static_cast<uint16_t>(sign | (absx >> 13));
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    if (mant == 0) return f32_from_bits(sign);
    float v = static_cast<float>(mant) * 5.9604644775390625e-8f;  // mant * 2^-24, exact
    return sign ? -v : v;
  }
  return f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
}

}  // namespace tabula
