// One table of op cases, run on every backend present against the CPU reference (ggml's test-backend-ops,
// llm.c's validate_result). A case holds host inputs, the op as ops:: calls (which dispatch on the inputs' device,
// so the same lambda runs on the CPU and the CUDA backend), the reference as ref:: calls, and its tolerances.
// The runner uploads the inputs for a device backend, brings the result back, and compares through the one
// validator (fresh random inputs per run seed, NaN-poisoned outputs, worst-element report).
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/backend.h"
#include "engine/ops.h"
#include "engine/validate.h"

namespace tabula::test {

// How the CUDA backend is checked beyond fp32 (the CPU is always fp32).
enum class PrecisionRule {
  fp32,       // precision-independent op: checked once, in fp32
  gemm,       // every precision; the reference sees the `rounded` inputs as the device rounds them (bf16/fp16);
              // tolerance gemm_tol(p, K)
  conv,       // every precision; cuDNN runs f32 data with tensor-op math outside fp32: gemm_tol(tf32, K)
  attention,  // every precision; q, k, v rounded for the reference; the case's own tolerance
};

using OpFn = std::function<Tensor(const std::vector<Tensor>& in)>;

struct OpCase {
  OpCase(std::string what_, std::vector<Tensor> in_, OpFn op_, OpFn reference_, validate::Tolerance tol_)
      : what(std::move(what_)), in(std::move(in_)), op(std::move(op_)), reference(std::move(reference_)), tol(tol_) {}
  std::string what;                    // printed on failure: op and shapes
  std::vector<Tensor> in;              // host inputs (undefined entries stay undefined on every backend)
  OpFn op;                             // ops:: calls; runs on whichever device `in` lives on
  OpFn reference;                      // ref:: calls on host tensors
  validate::Tolerance tol;             // the CPU backend, and the CUDA backend in fp32 when cuda_tol is unset
  std::optional<validate::Tolerance> cuda_tol;
  PrecisionRule rule = PrecisionRule::fp32;
  int64_t K = 0;                       // dot-product length (gemm / conv rules)
  std::vector<size_t> rounded;         // inputs the device rounds to 16 bits (gemm / attention rules)
  bool on_cuda = true;                 // false: the CUDA backend does not implement the op
};

// The families of cases (tests/engine/op_cases.cpp), by name: each is a list built from its own random stream.
std::vector<std::string> op_case_families();
std::vector<OpCase> op_cases(const std::string& family);

// Runs every case of `family` on the backend of `device` (every precision its rule asks for on a GPU).
void run_op_cases(const std::string& family, Device device);

validate::Tolerance gemm_tol(Precision p, int64_t K);
Tensor rounded(const Tensor& x, Precision p);  // the 16-bit rounding a GPU applies to operands, on the host

}  // namespace tabula::test
