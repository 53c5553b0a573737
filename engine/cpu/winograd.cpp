// Winograd F(4x4, 3x3): the load-time weight transform and the dispatch of the input/output transforms to the
// widest ISA this CPU has (the bodies are in winograd_impl.h). The GEMMs and the tiling over the batch are in
// packed.cpp, next to the micro-kernel driver they share with every other packed conv.
#define TABULA_WINO_NS generic
#include "engine/cpu/winograd_impl.h"

#include "engine/system.h"
#include "engine/threads.h"

namespace tabula::detail {

WinogradKernels winograd_kernels_generic() { return generic::kernels(); }

namespace {
const WinogradKernels& winograd_kernels() {
  static const WinogradKernels k = [] {
    const CpuFeatures& f = cpu_features();
    if (f.has_avx512()) return winograd_kernels_avx512();
    if (f.has_avx2_fma()) return winograd_kernels_avx2();
    return winograd_kernels_generic();
  }();
  return k;
}
}  // namespace

void winograd_input_transform(const WinogradGeometry& g, const float* x, int64_t t0, int64_t t1, float* v,
                              int64_t ps) {
  winograd_kernels().input(g, x, t0, t1, v, ps);
}

void winograd_output_transform(const WinogradGeometry& g, const float* m, int64_t ps, int64_t t0, int64_t t1,
                               const WinogradEpilogue& ep, float* y) {
  winograd_kernels().output(g, m, ps, t0, t1, ep, y);
}

std::vector<float> winograd_weight_transform(const float* w, int64_t cout, int64_t cin) {
  // G = [[ 1/4,     0,    0],
  //      [-1/6,  -1/6, -1/6],
  //      [-1/6,   1/6, -1/6],
  //      [1/24,  1/12,  1/6],
  //      [1/24, -1/12,  1/6],
  //      [   0,     0,    1]]
  static constexpr double G[6][3] = {{1.0 / 4, 0, 0},
                                     {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                     {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                     {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                     {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                     {0, 0, 1}};
  std::vector<float> b(static_cast<size_t>(kWinoPoints * cin * cout));
  parallel_for(cout, grain_for(cout, cin * 300), [&](int64_t co0, int64_t co1) {  // (load time: per output channel)
  for (int64_t co = co0; co < co1; ++co)
    for (int64_t ci = 0; ci < cin; ++ci) {
      const float* g = w + (co * cin + ci) * 9;
      double t[6][3];  // G g
      for (int i = 0; i < 6; ++i)
        for (int c = 0; c < 3; ++c) t[i][c] = G[i][0] * g[c] + G[i][1] * g[3 + c] + G[i][2] * g[6 + c];
      for (int i = 0; i < 6; ++i)
        for (int k = 0; k < 6; ++k) {  // (G g) G^T
          const double u = t[i][0] * G[k][0] + t[i][1] * G[k][1] + t[i][2] * G[k][2];
          b[static_cast<size_t>(((i * 6 + k) * cin + ci) * cout + co)] = static_cast<float>(u);
        }
    }
  });
  return b;
}

}  // namespace tabula::detail
