// Kernel layer, portable path: u8 x s8 GEMM over the k4n16 packed B, one
// 4 x 16 tile at a time, then the shared epilogue.  This is the fallback on
// any CPU (and aarch64 until NEON kernels exist) and the C++ twin of
// eightbit.reference; it is written for clarity, not speed.
#include <algorithm>

#include "kernels/epilogue.h"

namespace eb {
namespace {

constexpr int kMR = 4;

void tile_scalar(const GemmCall& call, int64_t m, int rows, int64_t p) {
  const PackedB& B = *call.b;
  const int8_t* bp = B.panel(p);
  const int64_t groups = B.Kp / kKGroup;
  int32_t tile[kMR][kPanelCols] = {};
  for (int r = 0; r < rows; ++r) {
    const uint8_t* a = call.a + (m + r) * call.lda;
    for (int64_t g = 0; g < groups; ++g) {
      const int8_t* bg = bp + g * kPanelGroupBytes;
      const uint8_t* ag = a + g * kKGroup;
      for (int c = 0; c < kPanelCols; ++c) {
        int32_t sum = 0;
        for (int j = 0; j < kKGroup; ++j) sum += int32_t{ag[j]} * int32_t{bg[c * kKGroup + j]};
        // Wrapping add: int32 accumulation may overflow for huge K by contract.
        tile[r][c] = static_cast<int32_t>(static_cast<uint32_t>(tile[r][c]) + static_cast<uint32_t>(sum));
      }
    }
  }
  const int cols = static_cast<int>(std::min<int64_t>(kPanelCols, B.N - p * kPanelCols));
  apply_epilogue(call.ep, &tile[0][0], kPanelCols, m, rows, p * kPanelCols, cols);
}

void block_scalar(const GemmCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  for (int64_t m = m0; m < m1; m += kMR) {
    const int rows = static_cast<int>(std::min<int64_t>(kMR, m1 - m));
    for (int64_t p = p0; p < p1; ++p) tile_scalar(call, m, rows, p);
  }
}

}  // namespace

GemmKernel gemm_kernel_scalar() { return {"scalar", false, kMR, block_scalar}; }

}  // namespace eb
