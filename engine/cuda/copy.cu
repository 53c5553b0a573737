// Copies between layouts and element types, torch.cat, and Tensor::contiguous for device tensors.
#include "engine/cuda/common.cuh"

namespace tabula::cuda {
namespace {

// dst = src element by element in logical order, V consecutive elements of the last dim per thread (V divides the
// last dim, whose stride is 1 on both sides when V > 1), converting the element type. vec16: same type and every
// run of V elements is a 16-byte aligned chunk on both sides, copied as one uint4.
template <int V>
__global__ void copy_kernel(void* dst, Strides ds, ET dt, const void* src, Strides ss, ET stype, int64_t groups,
                            bool vec16) {
  const int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (g >= groups) return;
  const int64_t i = g * V, so = offset_of(ss, i), dof = offset_of(ds, i);
  if (V > 1 && vec16) {
    constexpr int es = 16 / V;
    *reinterpret_cast<uint4*>(static_cast<char*>(dst) + dof * es) =
        *reinterpret_cast<const uint4*>(static_cast<const char*>(src) + so * es);
    return;
  }
  for (int v = 0; v < V; ++v) st(dst, dof + v, ld(src, so + v, stype), dt);
}

}  // namespace

// dst (any strided view of device memory) = src (same shape, any strides, any of the three element types).
void copy_into(std::string_view op, Tensor& dst_in, const Tensor& src_in, int dev) {
  const int64_t n = src_in.numel();
  if (n == 0) return;
  if (src_in.shape() != dst_in.shape()) op_error(op, "copy of " + src_in.str() + " into " + dst_in.str());
  // Walk dst in its memory order (stores coalesce): permute both by dst's strides, largest first.
  Tensor dst = dst_in, src = src_in;
  if (!dst.is_contiguous()) {
    std::vector<int64_t> order(static_cast<size_t>(dst.dim()));
    for (size_t d = 0; d < order.size(); ++d) order[d] = static_cast<int64_t>(d);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return dst.stride(a) > dst.stride(b); });
    dst = dst.permute(order), src = src.permute(order);
  }
  const size_t es = dtype_size(dst.dtype());
  int V = 1;
  if (dst.dim() >= 1 && src.stride(-1) == 1 && dst.stride(-1) == 1) {
    for (int c : {8, 4, 2}) {
      bool ok = dst.size(-1) % c == 0;
      for (int64_t d = 0; d + 1 < dst.dim() && ok; ++d)
        if (dst.size(d) > 1 && (src.stride(d) % c || dst.stride(d) % c)) ok = false;
      if (ok) {
        V = c;
        break;
      }
    }
  }
  const bool vec16 = V > 1 && dst.dtype() == src.dtype() && static_cast<size_t>(V) * es == 16 &&
                     aligned(dst.raw(), 16) && aligned(src.raw(), 16);
  const Strides ds = make_strides(op, dst), ss = make_strides(op, src);
  const int64_t groups = n / V;
  const unsigned nb = blocks_for(groups);
  switch (V) {
    case 8:
      copy_kernel<8><<<nb, 256, 0, stream(dev)>>>(dst.raw(), ds, et(dst), src.raw(), ss, et(src), groups, vec16);
      break;
    case 4:
      copy_kernel<4><<<nb, 256, 0, stream(dev)>>>(dst.raw(), ds, et(dst), src.raw(), ss, et(src), groups, vec16);
      break;
    case 2:
      copy_kernel<2><<<nb, 256, 0, stream(dev)>>>(dst.raw(), ds, et(dst), src.raw(), ss, et(src), groups, vec16);
      break;
    default:
      copy_kernel<1><<<nb, 256, 0, stream(dev)>>>(dst.raw(), ds, et(dst), src.raw(), ss, et(src), groups, false);
      break;
  }
  LAUNCH_CHECK();
}

Tensor contiguous(const Tensor& x) {
  const int dev = common_device("cuda::contiguous", {&x});
  if (x.is_contiguous()) return x;
  Tensor y = empty(x.shape(), dev, x.dtype());
  copy_into("cuda::contiguous", y, x, dev);
  return y;
}

Tensor CudaBackend::cat(const std::vector<Tensor>& xs, int64_t dim) {
  const OpTimer timer("cat", xs.empty() ? Tensor() : xs[0]);
  if (xs.empty()) op_error("cuda::cat", "no tensors");
  int dev = -1;
  DType ydt = DType::f32;
  for (const Tensor& t : xs) {
    dev = common_device("cuda::cat", {&t, &xs[0]});
    if (t.dtype() != DType::f32) ydt = t.dtype();  // 16-bit activations win over f32 parameters (class token)
  }
  const int64_t nd = xs[0].dim();
  if (dim < -nd || dim >= nd) op_error("cuda::cat", "dim " + std::to_string(dim) + " out of range for " + xs[0].str());
  if (dim < 0) dim += nd;
  Shape out = xs[0].shape();
  out[dim] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    if (xs[i].dim() != nd)
      op_error("cuda::cat", "tensor " + std::to_string(i) + " " + xs[i].str() + " has a different rank");
    for (int64_t d = 0; d < nd; ++d)
      if (d != dim && xs[i].size(d) != xs[0].size(d))
        op_error("cuda::cat", "tensor " + std::to_string(i) + " " + xs[i].str() + " differs from " + xs[0].str() +
                                  " outside dim " + std::to_string(dim));
    out[dim] += xs[i].size(dim);
  }
  Tensor y = empty(out, dev, ydt);
  int64_t at = 0;
  for (const Tensor& t : xs) {
    Tensor dst = y.slice(dim, at, at + t.size(dim));
    copy_into("cuda::cat", dst, t, dev);
    at += t.size(dim);
  }
  return y;
}

Tensor CudaBackend::clone(const Tensor& x) {
  const OpTimer timer("clone", x);
  const int dev = common_device("Tensor::clone", {&x});
  Tensor y = empty(x.shape(), dev, x.dtype());
  copy_into("Tensor::clone", y, x, dev);
  return y;
}

// Host copies are f32 whatever the device storage type (captures, interventions and to_host() read f32).
Tensor CudaBackend::to_host(const Tensor& x) {
  const int dev = common_device("to_host", {&x});
  Tensor f = x.dtype() == DType::f32 ? cuda::contiguous(x) : dense_as(x, dev, DType::f32);
  return cuda::to_host(f);
}

Tensor CudaBackend::to_device(const Tensor& host, int index) { return cuda::to_device(host, index); }

Tensor CudaBackend::to_device_like(const Tensor& host, const Tensor& like) {
  const int dev = device_of("to_device", like);
  Tensor d = cuda::to_device(host, dev);
  const bool half = like.dtype() == DType::bf16 || like.dtype() == DType::f16;
  return d.dtype() == like.dtype() || !half ? d : dense_as(d, dev, like.dtype());
}

Tensor CudaBackend::to_dtype(const Tensor& x, DType dt) {
  const OpTimer timer("to_dtype", x);
  const int dev = common_device("Tensor::to", {&x});
  if (dt != DType::f32 && dt != DType::bf16 && dt != DType::f16)
    op_error("Tensor::to", "cuda tensors convert between f32, bf16 and f16, not to " + std::string(dtype_name(dt)));
  Tensor y = empty(x.shape(), dev, dt);
  copy_into("Tensor::to", y, x, dev);
  return y;
}

}  // namespace tabula::cuda
