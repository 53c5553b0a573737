// Giving back the pages of weights that were read from a file mapping once their values live elsewhere.
//
// A model's weights are memory-mapped and then copied into the forms the kernels read (packed panels for the CPU
// GEMM, f32 from a 16-bit file, device memory on a GPU). The mapped pages they were read from stay in the process
// (RSS) until unmapped, so without this every copied weight would be held twice. Releasing a range
// (madvise(MADV_DONTNEED) on the read-only private mapping) drops its pages from this process without changing
// what any view reads: a page touched again is faulted back in from the file (the page cache), so a tensor that
// shares the bytes (a tied weight, a bias read in place by the forward) stays valid. Memory that is not a file
// mapping is never released: MADV_DONTNEED would zero anonymous memory.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "engine/tensor.h"

namespace tabula {

// A tensor viewing `data` inside a read-only file mapping that `owner` keeps alive (Tensor::from_external with
// the storage marked file_mapped).
Tensor file_mapped_view(const void* data, const Shape& shape, DType dtype, std::shared_ptr<void> owner);

// Releases the whole pages inside [p, p + n) of a read-only file mapping (the caller vouches that it is one);
// partial pages at either end are kept, since a neighbouring tensor may live there. Returns the bytes released.
size_t release_mapped_range(const void* p, size_t n);
// The same for the bytes a tensor views, when its storage is file_mapped; 0 (and nothing done) otherwise.
size_t release_file_pages(const Tensor& t);

// Process-wide counts of the releases made (calls that released at least one page, and bytes), for reports and
// for tests that check the release path ran.
struct PageReleaseStats {
  uint64_t releases = 0;
  uint64_t bytes = 0;
};
PageReleaseStats page_release_stats();

}  // namespace tabula
