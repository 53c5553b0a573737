// The pinned upload ring's logic, driven by a fake copy engine that runs each queued copy as late as the ring
// allows (only when the host waits for an event covering it): a slot refilled before its copy passed would show
// as wrong bytes on the "device", and is also caught the moment it happens.
#include <gtest/gtest.h>

#include <cstring>
#include <deque>
#include <numeric>
#include <vector>

#include "engine/staging_ring.h"

using namespace tabula;

namespace {
class LateCopyEngine final : public StagingCopyEngine {
 public:
  explicit LateCopyEngine(int slots) : marks_(static_cast<size_t>(slots), 0) {}
  void copy_async(void* dst, const void* src, size_t bytes) override {
    pending_.push_back({dst, src, bytes});
    ++queued_;
    max_chunk = std::max(max_chunk, bytes);
  }
  void record(int slot) override { marks_[static_cast<size_t>(slot)] = queued_; }
  void wait(int slot) override {
    ++waits;
    while (done_ < marks_[static_cast<size_t>(slot)]) run_one();
  }
  // What the device would have done by now, had the stream run ahead: nothing (latest) or everything.
  void run_all() {
    while (!pending_.empty()) run_one();
  }
  // A slot the host is about to fill must not be the source of a copy still queued.
  bool slot_busy(const void* slot, size_t bytes) const {
    for (const Copy& c : pending_)
      if (static_cast<const char*>(c.src) < static_cast<const char*>(slot) + bytes &&
          static_cast<const char*>(slot) < static_cast<const char*>(c.src) + c.bytes)
        return true;
    return false;
  }
  int waits = 0;
  size_t max_chunk = 0;

 private:
  struct Copy {
    void* dst;
    const void* src;
    size_t bytes;
  };
  void run_one() {
    const Copy c = pending_.front();
    pending_.pop_front();
    std::memcpy(c.dst, c.src, c.bytes);
    ++done_;
  }
  std::deque<Copy> pending_;
  std::vector<size_t> marks_;
  size_t queued_ = 0, done_ = 0;
};

// Slots that check, through the fake engine, that they are free each time the ring writes into them: the ring
// writes a slot only with memcpy, so the check runs on the engine's next copy_async of that slot.
struct Slots {
  Slots(int n, size_t bytes) : memory(static_cast<size_t>(n), std::vector<char>(bytes)) {
    for (auto& m : memory) pointers.push_back(m.data());
  }
  std::vector<std::vector<char>> memory;
  std::vector<void*> pointers;
};

class CheckingEngine final : public StagingCopyEngine {
 public:
  explicit CheckingEngine(LateCopyEngine& inner, size_t slot_bytes) : inner_(inner), slot_bytes_(slot_bytes) {}
  void copy_async(void* dst, const void* src, size_t bytes) override {
    // The slot was just filled by the host: a queued copy still reading it would now read the new bytes.
    if (inner_.slot_busy(src, slot_bytes_)) ++overwrites;
    inner_.copy_async(dst, src, bytes);
  }
  void record(int slot) override { inner_.record(slot); }
  void wait(int slot) override { inner_.wait(slot); }
  int overwrites = 0;

 private:
  LateCopyEngine& inner_;
  size_t slot_bytes_;
};

std::vector<uint32_t> counting(size_t n, uint32_t start) {
  std::vector<uint32_t> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}
}  // namespace

TEST(StagingRing, ChunksTensorsThroughReusedSlotsInOrder) {
  constexpr int kSlots = 3;
  constexpr size_t kSlotBytes = 4096;
  Slots slots(kSlots, kSlotBytes);
  LateCopyEngine late(kSlots);
  CheckingEngine engine(late, kSlotBytes);
  StagingRing ring(engine, slots.pointers, kSlotBytes);
  // Sizes: empty, smaller than a slot, exactly the ring, not a multiple of a slot, many times the ring.
  const std::vector<size_t> words = {0, 5, kSlots * kSlotBytes / 4, 2500, 40000};
  std::vector<std::vector<uint32_t>> src, dst;
  for (size_t i = 0; i < words.size(); ++i) {
    src.push_back(counting(words[i], static_cast<uint32_t>(1000000 * i)));
    dst.emplace_back(words[i], 0xdeadbeefu);
  }
  for (size_t i = 0; i < words.size(); ++i) {
    ring.upload(dst[i].data(), src[i].data(), words[i] * 4);
    src[i].assign(words[i], 0);  // the source may be reused once upload returns
  }
  ring.drain();
  late.run_all();  // nothing may be left: drain waited for every slot
  EXPECT_EQ(engine.overwrites, 0) << "a slot was refilled before its copy to the device had passed";
  for (size_t i = 0; i < words.size(); ++i)
    EXPECT_TRUE(dst[i] == counting(words[i], static_cast<uint32_t>(1000000 * i))) << "tensor " << i;
  EXPECT_LE(late.max_chunk, kSlotBytes);
  // 0 + 1 + 3 + 3 + 40 chunks through 3 slots: each chunk after the first three waited once for its slot, and
  // drain once for each slot.
  int chunks = 0;
  for (size_t w : words) chunks += static_cast<int>((w * 4 + kSlotBytes - 1) / kSlotBytes);
  EXPECT_EQ(chunks, 47);
  EXPECT_EQ(late.waits, (chunks - kSlots) + kSlots);
}

TEST(StagingRing, WaitsOnlyForTheSlotItReuses) {
  Slots slots(2, 64);
  LateCopyEngine late(2);
  StagingRing ring(late, slots.pointers, 64);
  std::vector<char> src(64 * 2, 'a'), dst(64 * 2, 0);
  ring.upload(dst.data(), src.data(), src.size());
  EXPECT_EQ(late.waits, 0);  // two chunks, two free slots: the host never blocked
  std::vector<char> more(10, 'b'), dst2(10, 0);
  ring.upload(dst2.data(), more.data(), more.size());
  EXPECT_EQ(late.waits, 1);                    // slot 0 again: its first copy had to pass first
  EXPECT_EQ(std::string(dst.begin(), dst.begin() + 64), std::string(64, 'a'));  // and it did, by then
  EXPECT_EQ(dst2[0], 0);                       // the new copy itself is still queued
  ring.drain();
  EXPECT_EQ(std::string(dst2.begin(), dst2.end()), std::string(10, 'b'));
  EXPECT_THROW(StagingRing(late, {}, 64), std::invalid_argument);
}
