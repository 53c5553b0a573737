#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "engine/dtype.h"
#include "engine/system.h"

using namespace tabula;

TEST(DType, NamesRoundTrip) {
  for (DType t : {DType::f32, DType::f16, DType::bf16, DType::i64, DType::u8, DType::u16}) {
    EXPECT_EQ(dtype_from_name(dtype_name(t)), t);
    EXPECT_EQ(dtype_from_name(dtype_safetensors_name(t)), t);
  }
  EXPECT_FALSE(dtype_from_name("F33").has_value());
  EXPECT_EQ(dtype_size(DType::bf16), 2u);
}

// Every f16 bit pattern converts to f32 and back unchanged (NaNs stay NaN).
TEST(DType, F16RoundTripsEveryPattern) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f))));
      continue;
    }
    EXPECT_EQ(f32_to_f16(f), h) << h;
  }
}

// Round to nearest even between neighbouring f16 values, compared against exact double arithmetic.
TEST(DType, F16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_f16(65504.f), 0x7bffu);
  EXPECT_EQ(f32_to_f16(65520.f), 0x7c00u);  // ties to even overflow to inf, as torch
  EXPECT_EQ(f32_to_f16(1.0f + 1.0f / 2048), 0x3c00u);  // halfway between 1 and 1+2^-10 -> even (1)
  EXPECT_EQ(f32_to_f16(1.0f + 3.0f / 2048), 0x3c02u);
  EXPECT_EQ(f32_to_f16(5.9604644775390625e-8f), 0x0001u);  // smallest subnormal
  EXPECT_EQ(f32_to_f16(2.98023223876953125e-8f), 0x0000u); // half of it ties to even zero
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000u);
}

TEST(DType, BF16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80u);
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x3f808000u)), 0x3f80u);  // tie -> even
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x3f818000u)), 0x3f82u);  // tie -> even (up)
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x3f808001u)), 0x3f81u);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  for (uint32_t h = 0; h < 65536; h += 7) {
    float f = bf16_to_f32(static_cast<uint16_t>(h));
    if (!std::isnan(f)) {
      EXPECT_EQ(f32_to_bf16(f), h);
    }
  }
}

TEST(System, CpuFeaturesAreConsistent) {
  const auto& f = cpu_features();
  if (f.has_avx512()) {
    EXPECT_TRUE(f.avx2);
  }
  EXPECT_FALSE(cpu_features_string().empty());
  EXPECT_NE(build_summary().find("cuda:"), std::string::npos);
}

// Lists devices when a GPU is present; skipped otherwise (label gpu).
TEST(GpuSystem, DeviceIsListed) {
  if (!cuda_built() || cuda_devices().empty()) GTEST_SKIP() << "no CUDA device";
  for (const auto& d : cuda_devices()) {
    EXPECT_FALSE(d.name.empty());
    EXPECT_GE(d.sm_major, 7);
  }
}

#if TABULA_HAVE_CUDA
#include "engine/cuda/runtime.h"
TEST(GpuSystem, DeviceBufferRoundTrip) {
  if (cuda_devices().empty()) GTEST_SKIP() << "no CUDA device";
  cuda::Stream s(0);
  std::vector<float> in(1000), out(1000, -1.f);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i) * 0.5f;
  cuda::DeviceBuffer buf(0, in.size() * sizeof(float));
  buf.copy_from_host(in.data(), in.size() * sizeof(float), s);
  buf.copy_to_host(out.data(), out.size() * sizeof(float), s);
  s.synchronize();
  EXPECT_EQ(in, out);
  EXPECT_THROW(buf.copy_to_host(out.data(), 2 * in.size() * sizeof(float), s), std::runtime_error);
}
#endif
