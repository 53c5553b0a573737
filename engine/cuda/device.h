// Device tensors for the CUDA backend: `--device` parsing, the process stream per device, a caching allocator
// (no cudaMalloc inside a forward once the first batch has warmed it up) and host<->device copies.
// Plain C++ header: code built without nvcc may include it; the implementation is device.cu.
// Every device tensor produced here is contiguous f32 (or the dtype it was uploaded with) in a Storage whose
// `device` is Device::cuda; its owner returns the block to the cache when the last view dies.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>
#include <string>
#include <string_view>

#include "engine/cuda/device_name.h"
#include "engine/tensor.h"

namespace tabula::cuda {

// parse_device("cpu" | "cuda" | "cuda:N") lives in device_name.h (header-only, usable without the backend).

// The stream every tabula::cuda op on `device` is issued on (created on first use; cudaStream_t as void*).
// One stream per device keeps execution order = issue order, which is what makes block reuse in the cache safe
// and every run bitwise reproducible.
void* stream_for(int device);
void synchronize(int device);

// The device that ops run on when a tensor argument does not say (set by set_current_device; default 0).
int current_device();
void set_current_device(int device);

struct AllocatorStats {
  int64_t device_mallocs = 0;   // cudaMalloc calls so far (a warm forward adds none)
  int64_t cache_hits = 0;       // allocations served from the cache
  size_t bytes_reserved = 0;    // bytes held from cudaMalloc (in use + cached)
  size_t bytes_in_use = 0;
  size_t peak_bytes_in_use = 0;
};
AllocatorStats allocator_stats(int device);
// Returns the cached (unused) blocks of `device` to the driver.
void empty_cache(int device);

// A fresh contiguous device tensor from the caching allocator. Contents unspecified (NaN-filled when
// set_poison_allocations is on, so unwritten outputs show up in tests).
Tensor empty(const Shape& shape, int device, DType dtype = DType::f32);
// Device index of a tensor allocated here (throws op_error(op) when `t` is not a cuda tensor).
int device_of(std::string_view op, const Tensor& t);

// Host -> device (any strided CPU tensor; made contiguous first) and device -> host (contiguous result on the
// heap). Both synchronise the stream so the host buffer may be reused/read right away. Uploads go through a ring of
// reused pinned slots (engine/staging_ring.h), so a weight is never staged whole in host memory.
Tensor to_device(const Tensor& host, int device);
Tensor to_host(const Tensor& dev);

// Pinned (page-locked) host memory for overlapped H2D copies: upload_async returns once the copy is queued on
// the device's stream; the pinned buffer must not be rewritten before the stream passes the copy (synchronize
// or an event), which is what a double-buffered batch loop does.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t bytes);
  ~PinnedBuffer();
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  void* data() const { return ptr_; }
  size_t size() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};
// Copies `host` (contiguous f32 CPU) into `pinned`, then queues pinned -> `dst` (same numel, contiguous device).
void upload_async(const Tensor& host, PinnedBuffer& pinned, Tensor& dst);

// A whole forward captured once as a CUDA graph and replayed per batch (no per-op launch cost, no host work).
// Usage: run the forward eagerly once first (warm-up: fills the allocator cache and the cuBLASLt/cuDNN algorithm
// caches), write each batch into the same input tensor (upload_async), then replay() and read output().
// The forward must only issue device work on the device's stream: no to_host/to_device inside it (they
// synchronise), and no cuda::interpolate (it uploads tap tables) - resize position embeddings at load time.
// Memory the captured kernels use stays reserved for the graph's lifetime: blocks freed during capture are
// taken out of the cache and returned when the Graph dies, so no later allocation can alias them.
// Tensors the forward reads but does not create (inputs, weights) are captured by address: keep them alive, and
// at the same address, as long as the Graph (as with torch.cuda.graphs).
class Graph {
 public:
  Graph(int device, const std::function<Tensor()>& forward);
  ~Graph();
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  void replay();                                  // queued on the device's stream; synchronize() to wait
  const Tensor& output() const { return out_; }   // written by every replay

 private:
  int device_;
  void* exec_ = nullptr;  // cudaGraphExec_t
  Tensor out_;
  std::vector<void*> held_;
};

}  // namespace tabula::cuda
