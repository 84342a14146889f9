// Kernel layer interface: linear layers with block-quantized low-bit weights (4-bit and
// narrower codes, one float32 scale per block of `block` weights along K; ONNX's blocked
// DequantizeLinear, ONNX Runtime's MatMulNBits).  The input rows are quantized at run time to
// symmetric int8 (eightbit.reference.blockwise):
//
//   dot_b[m][n] = sum_{k in block b} xq[m][k] * q[n][k]                   (exact int32)
//   acc = 0; for b in order: acc = float32(acc + float32(float32(dot_b) * scale[n][b]))
//   y[m][n] = float32(acc * x_scale[m]) (+ bias[n]) (relu)
//
// The VNNI and AVX2 kernels multiply the codes offset to u = q + 8 in [0, 15] (unsigned, as
// vpdpbusd's first operand wants) by the signed activations and start each block's sum at
// -8 * sum_b xq[m]; AMX multiplies q itself (tdpbssd).  The integers are exact, and only the
// float steps above have an order.
#pragma once

#include <cstdint>

#include "eightbit/aligned_buffer.h"

namespace eb {

// Weights in panels of 16 columns.  Per panel and group of 4 k, 32 bytes: byte i holds, in its
// low nibble, byte i of the int8 k4n16 group (column i / 4, k i % 4) and, in its high nibble,
// byte i + 32 (column 8 + i / 4), each as u = q + 8.  Scales per panel, block, column.
constexpr int kBlockPanelCols = 16;
constexpr int64_t kNibbleGroupBytes = 32;

struct PackedBlockB {
  int64_t K = 0, N = 0, block = 0, blocks = 0, Np = 0;
  AlignedBuffer<uint8_t> nibbles;  // (Np / 16) panels x (K / 4) groups x 32 bytes
  AlignedBuffer<float> scales;     // (Np / 16) panels x blocks x 16 (padding columns 0)

  const uint8_t* panel(int64_t p) const { return nibbles.data() + p * (K / 4) * kNibbleGroupBytes; }
  const float* panel_scales(int64_t p) const { return scales.data() + p * blocks * kBlockPanelCols; }
};

// One call: xq int8 [M][K] (lda bytes apart), x_scale [M], block_bias [M][blocks] = -8 * the
// block's sum of xq, y float32 [M][ldy] (columns [0, N)), bias [N] or null.
struct BlockwiseCall {
  const int8_t* xq = nullptr;
  int64_t lda = 0;
  const float* x_scale = nullptr;
  const int32_t* block_bias = nullptr;
  const PackedBlockB* b = nullptr;
  const float* bias = nullptr;
  bool relu = false;
  float* y = nullptr;
  int64_t ldy = 0;
};

// Rows [m0, m1) x panels [p0, p1).
using BlockwiseFn = void (*)(const BlockwiseCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1);

BlockwiseFn blockwise_kernel_scalar();
BlockwiseFn blockwise_kernel_avx2();
BlockwiseFn blockwise_kernel_avxvnni();
BlockwiseFn blockwise_kernel_avx512();
BlockwiseFn blockwise_kernel_amx();  // 16 rows and more on AMX tiles, other rows blockwise_kernel_avx512

}  // namespace eb
