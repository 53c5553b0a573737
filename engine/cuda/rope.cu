// DINOv3's rotary position embedding on the queries and keys (ops::rope_apply): one thread per output element,
// reading x through its strides (q / k are strided views of the qkv output), the tables in f32.
#include "engine/cuda/common.cuh"

namespace tabula::cuda {
namespace {

// y = x * cos + rotate_half(x) * sin on the last hw tokens of every [N, hd] matrix; the first `prefix` tokens are
// copied. Each product and the sum rounded to f32 without contraction (__fmul_rn / __fadd_rn), as the CPU paths.
__global__ void rope_kernel(void* y, ET yt, const void* x, Strides sx, ET xt, const void* sn, ET snt, const void* cs,
                            ET cst, int64_t n, int64_t N, int64_t hd, int64_t prefix) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const int64_t d = i % hd, t = (i / hd) % N;
  const float v = ld(x, offset_of(sx, i), xt);
  if (t < prefix) {
    st(y, i, v, yt);
    return;
  }
  const int64_t half = hd / 2;
  const float other = ld(x, offset_of(sx, d < half ? i + half : i - half), xt);
  const float rot = d < half ? -other : other;
  const int64_t p = (t - prefix) * hd + d;
  st(y, i, __fadd_rn(__fmul_rn(v, ld(cs, p, cst)), __fmul_rn(rot, ld(sn, p, snt))), yt);
}

}  // namespace

Tensor CudaBackend::rope_apply(const Tensor& x, const Tensor& sin_in, const Tensor& cos_in) {
  const OpTimer timer("rope_apply", x);
  const int dev = common_device("cuda::rope_apply", {&x, &sin_in, &cos_in});
  const detail::RopeShapes s = detail::rope_shapes("cuda::rope_apply", x, sin_in, cos_in);
  const Tensor sn = dense(sin_in, dev), cs = dense(cos_in, dev);
  Tensor y = empty(x.shape(), dev, x.dtype());
  if (y.numel())
    rope_kernel<<<blocks_for(y.numel()), 256, 0, stream(dev)>>>(y.raw(), et(y), x.raw(),
                                                                make_strides("cuda::rope_apply", x), et(x), sn.raw(),
                                                                et(sn), cs.raw(), et(cs), y.numel(), s.n, s.hd,
                                                                s.prefix);
  LAUNCH_CHECK();
  return y;
}

}  // namespace tabula::cuda
