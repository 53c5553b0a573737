#include "engine/cuda/runtime.h"

#include <cuda_runtime.h>
#include <cudnn.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace tabula::cuda {

void check(int status, const char* what, const char* file, int line) {
  if (status == cudaSuccess) return;
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + what + ": " +
                           cudaGetErrorString(static_cast<cudaError_t>(status)));
}

std::vector<CudaDeviceInfo> list_devices() {
  std::vector<CudaDeviceInfo> out;
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return out;
  }
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    out.push_back({i, p.name, p.major, p.minor, p.totalGlobalMem});
  }
  return out;
}

std::string runtime_version_string() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

std::string cudnn_version_string() {
  size_t v = cudnnGetVersion();  // e.g. 91300 = 9.13.0
  return std::to_string(v / 10000) + "." + std::to_string((v % 10000) / 100) + "." + std::to_string(v % 100);
}

Stream::Stream(int device) : device_(device) {
  TABULA_CUDA_CHECK(cudaSetDevice(device));
  cudaStream_t s;
  TABULA_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  stream_ = s;
}

Stream::~Stream() {
  if (stream_) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

void Stream::synchronize() { TABULA_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_))); }

DeviceBuffer::DeviceBuffer(int device, size_t bytes) : device_(device), bytes_(bytes) {
  TABULA_CUDA_CHECK(cudaSetDevice(device));
  TABULA_CUDA_CHECK(cudaMalloc(&ptr_, bytes));
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_) cudaFree(ptr_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& o) noexcept
    : device_(o.device_), ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) cudaFree(ptr_);
    device_ = o.device_;
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

void DeviceBuffer::copy_from_host(const void* src, size_t bytes, Stream& s) {
  if (bytes > bytes_) throw std::runtime_error("DeviceBuffer::copy_from_host: " + std::to_string(bytes) +
                                               " bytes into a buffer of " + std::to_string(bytes_));
  TABULA_CUDA_CHECK(cudaMemcpyAsync(ptr_, src, bytes, cudaMemcpyHostToDevice, static_cast<cudaStream_t>(s.handle())));
}

void DeviceBuffer::copy_to_host(void* dst, size_t bytes, Stream& s) const {
  if (bytes > bytes_) throw std::runtime_error("DeviceBuffer::copy_to_host: " + std::to_string(bytes) +
                                               " bytes from a buffer of " + std::to_string(bytes_));
  TABULA_CUDA_CHECK(cudaMemcpyAsync(dst, ptr_, bytes, cudaMemcpyDeviceToHost, static_cast<cudaStream_t>(s.handle())));
}

}  // namespace tabula::cuda
