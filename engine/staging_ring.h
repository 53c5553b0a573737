// Host -> device uploads through a ring of reused pinned (page-locked) staging buffers.
//
// A copy from pageable memory (a weight in a file mapping) makes the driver stage it itself, synchronously; and
// allocating pinned memory per tensor costs more than the copy. So a weight is cut into chunks of at most one slot:
// each chunk is copied into the next slot on the host, the slot's device copy is queued, and an event recorded
// after it; a slot is refilled only after its event, so the host copy of chunk k+1 overlaps the device copy of
// chunk k. Host memory an upload holds is the ring plus the one source tensor (models/device.cpp gives a weight's
// file pages back once it is uploaded), and the ring itself waits for the device only before it reuses a slot.
//
// The ring's logic (chunking, slot order, when to wait) is host code; the device side is the three calls of
// StagingCopyEngine, which engine/cuda/ implements with cudaMemcpyAsync / cudaEventRecord / cudaEventSynchronize
// on the device's stream and which tests implement with a fake that runs the copies late. Header-only: the CUDA
// module compiles it in itself rather than calling back into the binary for it.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <vector>

namespace tabula {

class StagingCopyEngine {
 public:
  virtual ~StagingCopyEngine() = default;
  // Queues bytes from pinned slot memory to device memory, in submission order.
  virtual void copy_async(void* device_dst, const void* pinned_src, size_t bytes) = 0;
  // Records slot's event after everything queued so far.
  virtual void record(int slot) = 0;
  // Blocks the host until slot's last recorded event has passed (returns at once when none was recorded).
  virtual void wait(int slot) = 0;
};

class StagingRing {
 public:
  // `slots` are pinned buffers of slot_bytes each, owned by the caller, like the engine.
  StagingRing(StagingCopyEngine& engine, std::vector<void*> slots, size_t slot_bytes)
      : engine_(engine), slots_(std::move(slots)), slot_bytes_(slot_bytes), in_flight_(slots_.size(), false) {
    if (slots_.empty() || slot_bytes_ == 0) throw std::invalid_argument("StagingRing: needs a non-empty slot");
  }
  StagingRing(const StagingRing&) = delete;
  StagingRing& operator=(const StagingRing&) = delete;

  // Queues the copy of n host bytes at src to device memory at dst. Returns once src has been read (the device
  // copies may still be in flight: they read the slots, not src).
  void upload(void* device_dst, const void* src, size_t n) {
    std::lock_guard<std::mutex> lock(mutex_);
    const char* from = static_cast<const char*>(src);
    char* to = static_cast<char*>(device_dst);
    for (size_t off = 0; off < n;) {
      const size_t bytes = std::min(slot_bytes_, n - off);
      const size_t s = next_;
      next_ = (next_ + 1) % slots_.size();
      if (in_flight_[s]) engine_.wait(static_cast<int>(s));  // its previous chunk must have left the slot
      std::memcpy(slots_[s], from + off, bytes);
      engine_.copy_async(to + off, slots_[s], bytes);
      engine_.record(static_cast<int>(s));
      in_flight_[s] = true;
      off += bytes;
    }
  }
  // Waits until every queued copy has passed.
  void drain() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t s = 0; s < slots_.size(); ++s)
      if (in_flight_[s]) {
        engine_.wait(static_cast<int>(s));
        in_flight_[s] = false;
      }
  }

  size_t slot_bytes() const { return slot_bytes_; }
  int slots() const { return static_cast<int>(slots_.size()); }

 private:
  StagingCopyEngine& engine_;
  std::vector<void*> slots_;
  size_t slot_bytes_;
  size_t next_ = 0;  // the slot the next chunk goes into
  std::vector<bool> in_flight_;
  std::mutex mutex_;  // one upload at a time: the slots are shared
};

}  // namespace tabula
