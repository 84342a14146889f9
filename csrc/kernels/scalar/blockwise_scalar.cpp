// Kernel layer, portable path: block-quantized low-bit linear layer, one output at a time (the
// C++ twin of eightbit.reference.blockwise, written for clarity).
#include <algorithm>

#include "eightbit/blockwise.h"

namespace eb {
namespace {

// The code of column c, k of a panel: nibble of byte (k / 4) * 32 + (c % 8) * 4 + k % 4, low
// half for columns 0-7, high half for 8-15; stored as q + 8.
int code_at(const uint8_t* panel, int64_t c, int64_t k) {
  const uint8_t byte = panel[(k / 4) * kNibbleGroupBytes + (c % 8) * 4 + k % 4];
  return (c < 8 ? byte & 0x0f : byte >> 4) - 8;
}

void blockwise_scalar(const BlockwiseCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  const PackedBlockB& B = *call.b;
  for (int64_t m = m0; m < m1; ++m) {
    const int8_t* x = call.xq + m * call.lda;
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t c = 0; c < kBlockPanelCols && p * kBlockPanelCols + c < B.N; ++c) {
        const int64_t n = p * kBlockPanelCols + c;
        float acc = 0.0f;
        for (int64_t b = 0; b < B.blocks; ++b) {
          int32_t dot = 0;
          for (int64_t k = b * B.block; k < (b + 1) * B.block; ++k) dot += int32_t{x[k]} * code_at(B.panel(p), c, k);
          acc = acc + static_cast<float>(dot) * B.panel_scales(p)[b * kBlockPanelCols + c];
        }
        float y = acc * call.x_scale[m];
        if (call.bias != nullptr) y = y + call.bias[n];
        call.y[m * call.ldy + n] = call.relu && !(y > 0.0f) ? 0.0f : y;  // as vmaxps(y, 0): +0 for y = -0
      }
  }
}

}  // namespace

BlockwiseFn blockwise_kernel_scalar() { return blockwise_scalar; }

}  // namespace eb
