// Kernel layer, baseline Armv8-A NEON: exact u8 x s8 GEMM micro-kernels with
// widening multiply-accumulates (no dot product instruction).
//
// LD4 de-interleaves a K group of the k4n16 panel (16 columns x 4 k) into one
// register per k holding the 16 columns; SXTL widens them to int16, and SMLAL
// by element multiplies 4 columns by one int16 A value (0..255) into int32
// lanes: products of at most 255 x 128, every sum exact modulo 2^32.  Tile:
// 4 rows x 16 columns = 16 accumulators; per K group, 1 LD4, 8 SXTL and
// 64 SMLAL(2) for 256 multiply-adds.
#include <cstring>

#include "kernels/arm/gemm_arm.h"

namespace eb {
namespace {

template <int MR>
struct TileNeon {
  static void run(int64_t groups, const uint8_t* const* a, const int8_t* b, const int32_t* col_sum, int32_t* tile) {
    (void)col_sum;
    int32x4_t acc[MR][4];
    for (int r = 0; r < MR; ++r)
      for (int c = 0; c < 4; ++c) acc[r][c] = vdupq_n_s32(0);
    // av[r] lanes 4j .. 4j + 3: row r's k values of group j (of 2) as int16
    auto group = [&](const int16x8_t* av, const int8_t* bg, auto j) {
      const int8x16x4_t bk = vld4q_s8(bg);  // bk.val[k]: the 16 columns at k
      unroll<4>([&](auto k) {
        constexpr int lane = 4 * decltype(j)::value + decltype(k)::value;
        const int16x8_t lo = vmovl_s8(vget_low_s8(bk.val[k])), hi = vmovl_high_s8(bk.val[k]);
        for (int r = 0; r < MR; ++r) {
          acc[r][0] = vmlal_laneq_s16(acc[r][0], vget_low_s16(lo), av[r], lane);
          acc[r][1] = vmlal_high_laneq_s16(acc[r][1], lo, av[r], lane);
          acc[r][2] = vmlal_laneq_s16(acc[r][2], vget_low_s16(hi), av[r], lane);
          acc[r][3] = vmlal_high_laneq_s16(acc[r][3], hi, av[r], lane);
        }
      });
    };
    int64_t g = 0;
    for (; g + 2 <= groups; g += 2) {
      int16x8_t av[MR];
      for (int r = 0; r < MR; ++r) av[r] = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(a[r] + g * kKGroup)));
      unroll<2>([&](auto j) { group(av, b + (g + j) * kPanelGroupBytes, j); });
    }
    if (g < groups) {
      int16x8_t av[MR];
      for (int r = 0; r < MR; ++r)
        av[r] = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(load_group(a[r] + g * kKGroup))));
      group(av, b + g * kPanelGroupBytes, std::integral_constant<int, 0>{});
    }
    for (int r = 0; r < MR; ++r)
      for (int c = 0; c < 4; ++c) vst1q_s32(tile + r * kPanelCols + 4 * c, acc[r][c]);
  }
};

void block_neon(const GemmCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  block_arm<TileNeon>(call, m0, m1, p0, p1);
}

}  // namespace

GemmKernel gemm_kernel_neon() { return {"neon", false, kArmMR, block_neon}; }

}  // namespace eb
