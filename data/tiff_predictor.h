// TIFF Predictor=2 (horizontal differencing, TIFF 6.0 section 14) undone in place: each sample of a row becomes the
// sum of itself and the sample `stride` samples to its left (the same sample of the previous pixel), modulo 2^bits.
// libtiff does this as a separate pass over every decoded strip with a loop per sample; here it runs on one row
// while it is in cache, right before its conversion, and a one-sample-per-pixel row (grey fields, the common case)
// is summed 8 (16-bit) or 16 (8-bit) samples at a time. Signed samples are undone the same way (two's complement).
#pragma once
#include <cstddef>
#include <cstdint>

namespace tabula::data {

void undo_horizontal_predictor(uint8_t* row, size_t n, int stride);
void undo_horizontal_predictor(uint16_t* row, size_t n, int stride);
void undo_horizontal_predictor(uint32_t* row, size_t n, int stride);

}  // namespace tabula::data
