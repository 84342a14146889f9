// Runtime layer: the CNN companion operators (QLinearAdd, QLinearMul, MaxPool,
// QLinearAveragePool, QLinearGlobalAveragePool, lookup tables, QLinearConcat)
// on validated, C-contiguous buffers.  Splits the work over the thread pool and
// calls the active ISA's kernels (eightbit/cnn_ops.h).
#pragma once

#include <cstdint>
#include <vector>

#include "eightbit/cnn_ops.h"

namespace eb {

// A C-contiguous uint8 / int8 tensor with per-tensor quantization parameters.
struct QuantTensor {
  const void* data = nullptr;
  std::vector<int64_t> shape;
  float scale = 1.0f;
  int32_t zp = 0;
};

// numpy broadcasting of two shapes; false when they do not broadcast.
bool broadcast_shapes(const std::vector<int64_t>& a, const std::vector<int64_t>& b, std::vector<int64_t>* out);

// c = QLinearAdd(a, b) into `out` (the broadcast shape, a's dtype).  With
// `b_first`, b is ONNX Runtime's first fma operand (its "input 0 is scalar"
// order, decided from the shapes by the caller).
void qlinear_add(const QuantTensor& a, const QuantTensor& b, float c_scale, int32_t c_zp, bool is_signed,
                 bool b_first, void* out);
void qlinear_mul(const QuantTensor& a, const QuantTensor& b, float c_scale, int32_t c_zp, bool is_signed,
                 void* out);

// Fills g->out from the window attributes (ONNX rules, ceil_mode dropping a
// last window that would start in the end padding).  False when the dilated
// kernel is larger than the padded input.
bool resolve_pool_output(PoolGeometry* g, const int64_t pad_end[3], bool ceil_mode);

void max_pool(const PoolGeometry& g, bool is_signed, const void* x, void* y);

// The windowed formula, or the global one when the window is the whole
// unpadded image (as ONNX Runtime does).
void qlinear_average_pool(const PoolGeometry& g, const int64_t pad_end[3], const AvgPoolParams& params,
                          int32_t y_zp, const void* x, void* y);

// x is [batch][pixels][channels]; y is [batch][channels].  pixels < 2^24.
void qlinear_global_average_pool(const void* x, bool is_signed, int64_t batch, int64_t pixels, int64_t channels,
                                 float x_scale, int32_t x_zp, float y_scale, int32_t y_zp, void* y);

// y[i] = table[x[i]] (256-entry table; bytes of either sign).
void lookup_table(const uint8_t* x, int64_t n, const uint8_t* table, uint8_t* y);

// One input of a concatenation: `axis_len` slices of `inner` bytes per outer
// index, mapped through `table` (nullptr: copied as they are).
struct ConcatPart {
  const uint8_t* data = nullptr;
  int64_t axis_len = 0;
  const uint8_t* table = nullptr;
};

void concat(const std::vector<ConcatPart>& parts, int64_t outer, int64_t inner, uint8_t* out);

}  // namespace eb
