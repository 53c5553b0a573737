// The CUDA backend's host-side basics: device listing/selection, streams, device memory, error checks.
// Only this header's plain-C++ declarations are visible to code built without nvcc; the implementation
// lives in runtime.cu. Every CUDA call goes through TABULA_CUDA_CHECK, which throws with file:line.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "engine/system.h"

namespace tabula::cuda {

std::vector<CudaDeviceInfo> list_devices();  // empty when no driver or device; never throws
std::string runtime_version_string();         // "13.0"
std::string cudnn_version_string();           // "9.x.y"

// Raises tabula::cuda::Error("file:line: cudaMalloc: out of memory") on failure.
void check(int status, const char* what, const char* file, int line);

// RAII device selection + stream.
class Stream {
 public:
  explicit Stream(int device);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  void* handle() const { return stream_; }  // cudaStream_t
  int device() const { return device_; }
  void synchronize();

 private:
  int device_;
  void* stream_ = nullptr;
};

// Device memory owned by one allocation (the arena allocator builds on this).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(int device, size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* data() const { return ptr_; }
  size_t size() const { return bytes_; }
  void copy_from_host(const void* src, size_t bytes, Stream& s);
  void copy_to_host(void* dst, size_t bytes, Stream& s) const;

 private:
  int device_ = -1;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace tabula::cuda

#define TABULA_CUDA_CHECK(call) ::tabula::cuda::check(static_cast<int>(call), #call, __FILE__, __LINE__)
