// Kernel layer, Armv8.6 int8 matrix multiply (FEAT_I8MM): u8 x s8 GEMM
// micro-kernels with USMMLA, which multiplies unsigned A by signed B directly
// (no correction term).
//
// USMMLA adds a 2x8 (rows x k) by 8x2 (k x columns) product into a 2x2 int32
// block.  A row pair is two 8-byte loads (two K groups of each row); a column
// pair is built from the shared k4n16 packing in registers: ZIP1/ZIP2 of the
// 32-bit lanes of two consecutive groups give each column its 8 k-values.
// Tile: 4 rows x 16 columns = 2 x 8 blocks = 16 accumulators; per 8 k,
// 8 loads and 8 ZIPs of B, 4 loads of A, 16 USMMLA (32 MACs each).
#include <cstring>

#include "kernels/arm/gemm_arm.h"

namespace eb {
namespace {

template <int MR>
struct TileMmla {
  static constexpr int kPairs = (MR + 1) / 2;

  static void run(int64_t groups, const uint8_t* const* a, const int8_t* b, const int32_t* col_sum, int32_t* tile) {
    (void)col_sum;
    // acc[p][j]: rows 2p, 2p + 1 x columns 2j, 2j + 1, lanes (r0 c0, r0 c1, r1 c0, r1 c1)
    int32x4_t acc[kPairs][8];
    for (int p = 0; p < kPairs; ++p)
      for (int j = 0; j < 8; ++j) acc[p][j] = vdupq_n_s32(0);
    // a row past MR (odd MR) repeats the last one; its sums are dropped
    auto row = [&](int r) { return a[std::min(r, MR - 1)]; };
    auto multiply = [&](const uint8x16_t* ap, const int8_t* b0, const int8_t* b1) {
      for (int q = 0; q < 4; ++q) {
        const int32x4_t x0 = vreinterpretq_s32_s8(vld1q_s8(b0 + 16 * q));
        const int32x4_t x1 = b1 != nullptr ? vreinterpretq_s32_s8(vld1q_s8(b1 + 16 * q)) : vdupq_n_s32(0);
        const int8x16_t lo = vreinterpretq_s8_s32(vzip1q_s32(x0, x1));  // columns 4q, 4q + 1
        const int8x16_t hi = vreinterpretq_s8_s32(vzip2q_s32(x0, x1));  // columns 4q + 2, 4q + 3
        for (int p = 0; p < kPairs; ++p) {
          acc[p][2 * q] = vusmmlaq_s32(acc[p][2 * q], ap[p], lo);
          acc[p][2 * q + 1] = vusmmlaq_s32(acc[p][2 * q + 1], ap[p], hi);
        }
      }
    };
    int64_t g = 0;
    for (; g + 2 <= groups; g += 2) {
      uint8x16_t ap[kPairs];
      for (int p = 0; p < kPairs; ++p)
        ap[p] = vcombine_u8(vld1_u8(row(2 * p) + g * kKGroup), vld1_u8(row(2 * p + 1) + g * kKGroup));
      multiply(ap, b + g * kPanelGroupBytes, b + (g + 1) * kPanelGroupBytes);
    }
    if (g < groups) {  // an odd last group: k 4..7 of every row and column are zero
      uint8x16_t ap[kPairs];
      for (int p = 0; p < kPairs; ++p)
        ap[p] = vreinterpretq_u8_u64(vzip1q_u64(vreinterpretq_u64_u8(load_group(row(2 * p) + g * kKGroup)),
                                                vreinterpretq_u64_u8(load_group(row(2 * p + 1) + g * kKGroup))));
      multiply(ap, b + g * kPanelGroupBytes, nullptr);
    }
    for (int p = 0; p < kPairs; ++p)
      for (int q = 0; q < 4; ++q) {
        const int64x2_t c01 = vreinterpretq_s64_s32(acc[p][2 * q]), c23 = vreinterpretq_s64_s32(acc[p][2 * q + 1]);
        vst1q_s32(tile + (2 * p) * kPanelCols + 4 * q, vreinterpretq_s32_s64(vzip1q_s64(c01, c23)));
        if (2 * p + 1 < MR)
          vst1q_s32(tile + (2 * p + 1) * kPanelCols + 4 * q, vreinterpretq_s32_s64(vzip2q_s64(c01, c23)));
      }
  }
};

void block_i8mm(const GemmCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  block_arm<TileMmla>(call, m0, m1, p0, p1);
}

}  // namespace

GemmKernel gemm_kernel_i8mm() { return {"i8mm", false, kArmMR, block_i8mm}; }

}  // namespace eb
