// Kernel layer, Armv8.2 dot product (SDOT): u8 x s8 GEMM micro-kernels.
//
// SDOT multiplies signed bytes only, so A is flipped to a - 128 (one EOR per
// 16 bytes of a row) and the panel's sum_k b added back once per tile:
//   sum_k a b = sum_k (a - 128) b + 128 colsum,
// exact modulo 2^32 like every term of the contract.  Tile: 4 rows x 16
// columns = 16 accumulators; per K group of 4, 4 loads of B (16 columns x 4 k)
// and 16 SDOT by element (the 4 bytes of a row broadcast from a lane), as
// XNNPACK's 4x16c4 neondot kernels do.
#include <cstring>

#include "kernels/arm/gemm_arm.h"

namespace eb {
namespace {

// The 4-row tile's loop over 4 K groups at a time, in inline assembly: GCC's
// schedule of the intrinsics hoists all 16 B loads and spills 5 accumulators.
// Accumulators v16-v31 (acc: 16 x 4 int32, row-major 4 x 16, in and out), A
// v0-v3, B v4-v7.  Per iteration (1024 MACs): 4 loads of A, 4 EOR, 8 LDP of
// B, 64 SDOT and 2 loop instructions.  iterations >= 1; advances a[0..3], b.
inline void dot_4x16_by4(int64_t iterations, const uint8_t* (&a)[4], const int8_t*& b, int32_t* acc) {
  __asm__ volatile(
      "ldp q16, q17, [%[acc], #0]\n\t"
      "ldp q18, q19, [%[acc], #32]\n\t"
      "ldp q20, q21, [%[acc], #64]\n\t"
      "ldp q22, q23, [%[acc], #96]\n\t"
      "ldp q24, q25, [%[acc], #128]\n\t"
      "ldp q26, q27, [%[acc], #160]\n\t"
      "ldp q28, q29, [%[acc], #192]\n\t"
      "ldp q30, q31, [%[acc], #224]\n\t"
      "movi v8.16b, #0x80\n\t"
      "1:\n\t"
      "ldr q0, [%[a0]], #16\n\t"
      "ldr q1, [%[a1]], #16\n\t"
      "ldr q2, [%[a2]], #16\n\t"
      "ldr q3, [%[a3]], #16\n\t"
      "eor v0.16b, v0.16b, v8.16b\n\t"
      "eor v1.16b, v1.16b, v8.16b\n\t"
      "eor v2.16b, v2.16b, v8.16b\n\t"
      "eor v3.16b, v3.16b, v8.16b\n\t"
      "ldp q4, q5, [%[b]], #32\n\t"
      "ldp q6, q7, [%[b]], #32\n\t"
      "sdot v16.4s, v4.16b, v0.4b[0]\n\t"
      "sdot v17.4s, v5.16b, v0.4b[0]\n\t"
      "sdot v18.4s, v6.16b, v0.4b[0]\n\t"
      "sdot v19.4s, v7.16b, v0.4b[0]\n\t"
      "sdot v20.4s, v4.16b, v1.4b[0]\n\t"
      "sdot v21.4s, v5.16b, v1.4b[0]\n\t"
      "sdot v22.4s, v6.16b, v1.4b[0]\n\t"
      "sdot v23.4s, v7.16b, v1.4b[0]\n\t"
      "sdot v24.4s, v4.16b, v2.4b[0]\n\t"
      "sdot v25.4s, v5.16b, v2.4b[0]\n\t"
      "sdot v26.4s, v6.16b, v2.4b[0]\n\t"
      "sdot v27.4s, v7.16b, v2.4b[0]\n\t"
      "sdot v28.4s, v4.16b, v3.4b[0]\n\t"
      "sdot v29.4s, v5.16b, v3.4b[0]\n\t"
      "sdot v30.4s, v6.16b, v3.4b[0]\n\t"
      "sdot v31.4s, v7.16b, v3.4b[0]\n\t"
      "ldp q4, q5, [%[b]], #32\n\t"
      "ldp q6, q7, [%[b]], #32\n\t"
      "sdot v16.4s, v4.16b, v0.4b[1]\n\t"
      "sdot v17.4s, v5.16b, v0.4b[1]\n\t"
      "sdot v18.4s, v6.16b, v0.4b[1]\n\t"
      "sdot v19.4s, v7.16b, v0.4b[1]\n\t"
      "sdot v20.4s, v4.16b, v1.4b[1]\n\t"
      "sdot v21.4s, v5.16b, v1.4b[1]\n\t"
      "sdot v22.4s, v6.16b, v1.4b[1]\n\t"
      "sdot v23.4s, v7.16b, v1.4b[1]\n\t"
      "sdot v24.4s, v4.16b, v2.4b[1]\n\t"
      "sdot v25.4s, v5.16b, v2.4b[1]\n\t"
      "sdot v26.4s, v6.16b, v2.4b[1]\n\t"
      "sdot v27.4s, v7.16b, v2.4b[1]\n\t"
      "sdot v28.4s, v4.16b, v3.4b[1]\n\t"
      "sdot v29.4s, v5.16b, v3.4b[1]\n\t"
      "sdot v30.4s, v6.16b, v3.4b[1]\n\t"
      "sdot v31.4s, v7.16b, v3.4b[1]\n\t"
      "ldp q4, q5, [%[b]], #32\n\t"
      "ldp q6, q7, [%[b]], #32\n\t"
      "sdot v16.4s, v4.16b, v0.4b[2]\n\t"
      "sdot v17.4s, v5.16b, v0.4b[2]\n\t"
      "sdot v18.4s, v6.16b, v0.4b[2]\n\t"
      "sdot v19.4s, v7.16b, v0.4b[2]\n\t"
      "sdot v20.4s, v4.16b, v1.4b[2]\n\t"
      "sdot v21.4s, v5.16b, v1.4b[2]\n\t"
      "sdot v22.4s, v6.16b, v1.4b[2]\n\t"
      "sdot v23.4s, v7.16b, v1.4b[2]\n\t"
      "sdot v24.4s, v4.16b, v2.4b[2]\n\t"
      "sdot v25.4s, v5.16b, v2.4b[2]\n\t"
      "sdot v26.4s, v6.16b, v2.4b[2]\n\t"
      "sdot v27.4s, v7.16b, v2.4b[2]\n\t"
      "sdot v28.4s, v4.16b, v3.4b[2]\n\t"
      "sdot v29.4s, v5.16b, v3.4b[2]\n\t"
      "sdot v30.4s, v6.16b, v3.4b[2]\n\t"
      "sdot v31.4s, v7.16b, v3.4b[2]\n\t"
      "ldp q4, q5, [%[b]], #32\n\t"
      "ldp q6, q7, [%[b]], #32\n\t"
      "sdot v16.4s, v4.16b, v0.4b[3]\n\t"
      "sdot v17.4s, v5.16b, v0.4b[3]\n\t"
      "sdot v18.4s, v6.16b, v0.4b[3]\n\t"
      "sdot v19.4s, v7.16b, v0.4b[3]\n\t"
      "sdot v20.4s, v4.16b, v1.4b[3]\n\t"
      "sdot v21.4s, v5.16b, v1.4b[3]\n\t"
      "sdot v22.4s, v6.16b, v1.4b[3]\n\t"
      "sdot v23.4s, v7.16b, v1.4b[3]\n\t"
      "sdot v24.4s, v4.16b, v2.4b[3]\n\t"
      "sdot v25.4s, v5.16b, v2.4b[3]\n\t"
      "sdot v26.4s, v6.16b, v2.4b[3]\n\t"
      "sdot v27.4s, v7.16b, v2.4b[3]\n\t"
      "sdot v28.4s, v4.16b, v3.4b[3]\n\t"
      "sdot v29.4s, v5.16b, v3.4b[3]\n\t"
      "sdot v30.4s, v6.16b, v3.4b[3]\n\t"
      "sdot v31.4s, v7.16b, v3.4b[3]\n\t"
      "subs %[n], %[n], #1\n\t"
      "b.ne 1b\n\t"
      "stp q16, q17, [%[acc], #0]\n\t"
      "stp q18, q19, [%[acc], #32]\n\t"
      "stp q20, q21, [%[acc], #64]\n\t"
      "stp q22, q23, [%[acc], #96]\n\t"
      "stp q24, q25, [%[acc], #128]\n\t"
      "stp q26, q27, [%[acc], #160]\n\t"
      "stp q28, q29, [%[acc], #192]\n\t"
      "stp q30, q31, [%[acc], #224]\n\t"
      : [a0] "+r"(a[0]), [a1] "+r"(a[1]), [a2] "+r"(a[2]), [a3] "+r"(a[3]), [b] "+r"(b), [n] "+r"(iterations)
      : [acc] "r"(acc)
      : "cc", "memory", "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v16", "v17", "v18", "v19", "v20",
        "v21", "v22", "v23", "v24", "v25", "v26", "v27", "v28", "v29", "v30", "v31");
}

template <int MR>
struct TileDot {
  static void run(int64_t groups, const uint8_t* const* a, const int8_t* b, const int32_t* col_sum, int32_t* tile) {
    int32x4_t acc[MR][4];
    for (int r = 0; r < MR; ++r)
      for (int c = 0; c < 4; ++c) acc[r][c] = vdupq_n_s32(0);
    const uint8x16_t flip = vdupq_n_u8(0x80);
    // `av[r]` holds 4 groups of row r; group j of them times the 16 columns at bg.
    auto dot_group = [&](const int8x16_t* av, const int8_t* bg, auto j) {
      const int8x16_t b0 = vld1q_s8(bg), b1 = vld1q_s8(bg + 16), b2 = vld1q_s8(bg + 32), b3 = vld1q_s8(bg + 48);
      for (int r = 0; r < MR; ++r) {
        acc[r][0] = vdotq_laneq_s32(acc[r][0], b0, av[r], decltype(j)::value);
        acc[r][1] = vdotq_laneq_s32(acc[r][1], b1, av[r], decltype(j)::value);
        acc[r][2] = vdotq_laneq_s32(acc[r][2], b2, av[r], decltype(j)::value);
        acc[r][3] = vdotq_laneq_s32(acc[r][3], b3, av[r], decltype(j)::value);
      }
    };
    int64_t g = 0;
    if (MR == 4 && groups >= 4) {
      const uint8_t* rows[4] = {a[0], a[1], a[2], a[3]};
      const int8_t* bg = b;
      alignas(16) int32_t sums[4 * kPanelCols] = {};
      dot_4x16_by4(groups / 4, rows, bg, sums);
      for (int r = 0; r < MR; ++r)
        for (int c = 0; c < 4; ++c) acc[r][c] = vld1q_s32(sums + r * kPanelCols + 4 * c);
      g = groups / 4 * 4;
    }
    for (; g + 4 <= groups; g += 4) {
      int8x16_t av[MR];
      for (int r = 0; r < MR; ++r) av[r] = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(a[r] + g * kKGroup), flip));
      unroll<4>([&](auto j) { dot_group(av, b + (g + j) * kPanelGroupBytes, j); });
    }
    for (; g < groups; ++g) {  // A is readable only up to Kp: one group at a time
      int8x16_t av[MR];
      for (int r = 0; r < MR; ++r) av[r] = vreinterpretq_s8_u8(veorq_u8(load_group(a[r] + g * kKGroup), flip));
      dot_group(av, b + g * kPanelGroupBytes, std::integral_constant<int, 0>{});
    }
    for (int c = 0; c < 4; ++c) {
      const int32x4_t back = vshlq_n_s32(vld1q_s32(col_sum + 4 * c), 7);  // 128 colsum, wrapping
      for (int r = 0; r < MR; ++r) vst1q_s32(tile + r * kPanelCols + 4 * c, vaddq_s32(acc[r][c], back));
    }
  }
};

void block_dotprod(const GemmCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  block_arm<TileDot>(call, m0, m1, p0, p1);
}

}  // namespace

GemmKernel gemm_kernel_dotprod() { return {"dotprod", false, kArmMR, block_dotprod}; }

}  // namespace eb
