// Kernel layer, AVX-512 VNNI: u8 x s8 GEMM micro-kernels over the k4n16
// packed B.  One `vpdpbusd` multiplies 64 byte pairs and adds them, 4 at a
// time, into 16 int32 lanes with no intermediate saturation, so it is exact.
//
// Tile: up to 12 rows x 2 panels (32 columns) = 24 zmm accumulators, 2 zmm of
// B and one broadcast of A: 27 of 32 registers.  Per group of 4 k it issues
// 2 B loads + 12 broadcasts for 24 vpdpbusd, so two VNNI ports stay busy with
// loads to spare.  Few rows (GEMV-like calls) use 4 panels instead, so that at
// least 4 independent accumulator chains hide the 4-5 cycle latency.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "kernels/epilogue.h"

namespace eb {
namespace {

constexpr int kMR = 12;

inline __m512i broadcast_a(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return _mm512_set1_epi32(v);
}

// Raw sums S for MR rows x NP panels, stored to tile (row stride NP * 16).
template <int MR, int NP>
void ukernel(int64_t groups, const uint8_t* a, int64_t lda, const int8_t* b, int64_t bstride, int32_t* tile) {
  __m512i acc[MR][NP];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NP; ++j) acc[r][j] = _mm512_setzero_si512();
  for (int64_t g = 0; g < groups; ++g) {
    __m512i bv[NP];
    for (int j = 0; j < NP; ++j) bv[j] = _mm512_load_si512(b + j * bstride + g * kPanelGroupBytes);
    for (int r = 0; r < MR; ++r) {
      const __m512i av = broadcast_a(a + r * lda + g * kKGroup);
      for (int j = 0; j < NP; ++j) acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], av, bv[j]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NP; ++j) _mm512_storeu_si512(tile + r * NP * kPanelCols + j * kPanelCols, acc[r][j]);
}

// The full 12 x 32 tile, the one that carries large GEMMs, in inline
// assembly: with intrinsics GCC 12 copies the 24 accumulators through the
// stack on every iteration and runs at half speed (DESIGN.md, "Performance").
// zmm0-23 accumulate (row r: zmm 2r, 2r+1), zmm24-25 hold B, zmm26-29
// rotate the A broadcasts.
template <>
void ukernel<12, 2>(int64_t groups, const uint8_t* a, int64_t lda, const int8_t* b, int64_t bstride, int32_t* tile) {
  const uint8_t* a0 = a;
  const uint8_t* a3 = a + 3 * lda;
  const uint8_t* a6 = a + 6 * lda;
  const uint8_t* a9 = a + 9 * lda;
  __asm__ volatile(
      "vpxord %%zmm0, %%zmm0, %%zmm0\n\t"
      "vpxord %%zmm1, %%zmm1, %%zmm1\n\t"
      "vpxord %%zmm2, %%zmm2, %%zmm2\n\t"
      "vpxord %%zmm3, %%zmm3, %%zmm3\n\t"
      "vpxord %%zmm4, %%zmm4, %%zmm4\n\t"
      "vpxord %%zmm5, %%zmm5, %%zmm5\n\t"
      "vpxord %%zmm6, %%zmm6, %%zmm6\n\t"
      "vpxord %%zmm7, %%zmm7, %%zmm7\n\t"
      "vpxord %%zmm8, %%zmm8, %%zmm8\n\t"
      "vpxord %%zmm9, %%zmm9, %%zmm9\n\t"
      "vpxord %%zmm10, %%zmm10, %%zmm10\n\t"
      "vpxord %%zmm11, %%zmm11, %%zmm11\n\t"
      "vpxord %%zmm12, %%zmm12, %%zmm12\n\t"
      "vpxord %%zmm13, %%zmm13, %%zmm13\n\t"
      "vpxord %%zmm14, %%zmm14, %%zmm14\n\t"
      "vpxord %%zmm15, %%zmm15, %%zmm15\n\t"
      "vpxord %%zmm16, %%zmm16, %%zmm16\n\t"
      "vpxord %%zmm17, %%zmm17, %%zmm17\n\t"
      "vpxord %%zmm18, %%zmm18, %%zmm18\n\t"
      "vpxord %%zmm19, %%zmm19, %%zmm19\n\t"
      "vpxord %%zmm20, %%zmm20, %%zmm20\n\t"
      "vpxord %%zmm21, %%zmm21, %%zmm21\n\t"
      "vpxord %%zmm22, %%zmm22, %%zmm22\n\t"
      "vpxord %%zmm23, %%zmm23, %%zmm23\n\t"
      "test %[k], %[k]\n\t"
      "jz 2f\n\t"
      "1:\n\t"
      "vmovdqa64 (%[b]), %%zmm24\n\t"
      "vmovdqa64 (%[b],%[bs],1), %%zmm25\n\t"
      "vpbroadcastd (%[a0]), %%zmm26\n\t"
      "vpdpbusd %%zmm24, %%zmm26, %%zmm0\n\t"
      "vpdpbusd %%zmm25, %%zmm26, %%zmm1\n\t"
      "vpbroadcastd (%[a0],%[lda],1), %%zmm27\n\t"
      "vpdpbusd %%zmm24, %%zmm27, %%zmm2\n\t"
      "vpdpbusd %%zmm25, %%zmm27, %%zmm3\n\t"
      "vpbroadcastd (%[a0],%[lda],2), %%zmm28\n\t"
      "vpdpbusd %%zmm24, %%zmm28, %%zmm4\n\t"
      "vpdpbusd %%zmm25, %%zmm28, %%zmm5\n\t"
      "vpbroadcastd (%[a3]), %%zmm29\n\t"
      "vpdpbusd %%zmm24, %%zmm29, %%zmm6\n\t"
      "vpdpbusd %%zmm25, %%zmm29, %%zmm7\n\t"
      "vpbroadcastd (%[a3],%[lda],1), %%zmm26\n\t"
      "vpdpbusd %%zmm24, %%zmm26, %%zmm8\n\t"
      "vpdpbusd %%zmm25, %%zmm26, %%zmm9\n\t"
      "vpbroadcastd (%[a3],%[lda],2), %%zmm27\n\t"
      "vpdpbusd %%zmm24, %%zmm27, %%zmm10\n\t"
      "vpdpbusd %%zmm25, %%zmm27, %%zmm11\n\t"
      "vpbroadcastd (%[a6]), %%zmm28\n\t"
      "vpdpbusd %%zmm24, %%zmm28, %%zmm12\n\t"
      "vpdpbusd %%zmm25, %%zmm28, %%zmm13\n\t"
      "vpbroadcastd (%[a6],%[lda],1), %%zmm29\n\t"
      "vpdpbusd %%zmm24, %%zmm29, %%zmm14\n\t"
      "vpdpbusd %%zmm25, %%zmm29, %%zmm15\n\t"
      "vpbroadcastd (%[a6],%[lda],2), %%zmm26\n\t"
      "vpdpbusd %%zmm24, %%zmm26, %%zmm16\n\t"
      "vpdpbusd %%zmm25, %%zmm26, %%zmm17\n\t"
      "vpbroadcastd (%[a9]), %%zmm27\n\t"
      "vpdpbusd %%zmm24, %%zmm27, %%zmm18\n\t"
      "vpdpbusd %%zmm25, %%zmm27, %%zmm19\n\t"
      "vpbroadcastd (%[a9],%[lda],1), %%zmm28\n\t"
      "vpdpbusd %%zmm24, %%zmm28, %%zmm20\n\t"
      "vpdpbusd %%zmm25, %%zmm28, %%zmm21\n\t"
      "vpbroadcastd (%[a9],%[lda],2), %%zmm29\n\t"
      "vpdpbusd %%zmm24, %%zmm29, %%zmm22\n\t"
      "vpdpbusd %%zmm25, %%zmm29, %%zmm23\n\t"
      "add $4, %[a0]\n\t"
      "add $4, %[a3]\n\t"
      "add $4, %[a6]\n\t"
      "add $4, %[a9]\n\t"
      "add $64, %[b]\n\t"
      "dec %[k]\n\t"
      "jnz 1b\n\t"
      "2:\n\t"
      "vmovdqu32 %%zmm0, 0(%[tile])\n\t"
      "vmovdqu32 %%zmm1, 64(%[tile])\n\t"
      "vmovdqu32 %%zmm2, 128(%[tile])\n\t"
      "vmovdqu32 %%zmm3, 192(%[tile])\n\t"
      "vmovdqu32 %%zmm4, 256(%[tile])\n\t"
      "vmovdqu32 %%zmm5, 320(%[tile])\n\t"
      "vmovdqu32 %%zmm6, 384(%[tile])\n\t"
      "vmovdqu32 %%zmm7, 448(%[tile])\n\t"
      "vmovdqu32 %%zmm8, 512(%[tile])\n\t"
      "vmovdqu32 %%zmm9, 576(%[tile])\n\t"
      "vmovdqu32 %%zmm10, 640(%[tile])\n\t"
      "vmovdqu32 %%zmm11, 704(%[tile])\n\t"
      "vmovdqu32 %%zmm12, 768(%[tile])\n\t"
      "vmovdqu32 %%zmm13, 832(%[tile])\n\t"
      "vmovdqu32 %%zmm14, 896(%[tile])\n\t"
      "vmovdqu32 %%zmm15, 960(%[tile])\n\t"
      "vmovdqu32 %%zmm16, 1024(%[tile])\n\t"
      "vmovdqu32 %%zmm17, 1088(%[tile])\n\t"
      "vmovdqu32 %%zmm18, 1152(%[tile])\n\t"
      "vmovdqu32 %%zmm19, 1216(%[tile])\n\t"
      "vmovdqu32 %%zmm20, 1280(%[tile])\n\t"
      "vmovdqu32 %%zmm21, 1344(%[tile])\n\t"
      "vmovdqu32 %%zmm22, 1408(%[tile])\n\t"
      "vmovdqu32 %%zmm23, 1472(%[tile])\n\t"
      : [a0] "+r"(a0), [a3] "+r"(a3), [a6] "+r"(a6), [a9] "+r"(a9), [b] "+r"(b), [k] "+r"(groups)
      : [lda] "r"(lda), [bs] "r"(bstride), [tile] "r"(tile)
      : "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
        "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22",
        "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29");
}

using UkernelFn = void (*)(int64_t, const uint8_t*, int64_t, const int8_t*, int64_t, int32_t*);

template <int NP, int... R>
constexpr auto make_table(std::integer_sequence<int, R...>) {
  return std::array<UkernelFn, sizeof...(R)>{ukernel<R + 1, NP>...};
}

const auto kTable1 = make_table<1>(std::make_integer_sequence<int, kMR>{});
const auto kTable2 = make_table<2>(std::make_integer_sequence<int, kMR>{});
const auto kTable4 = make_table<4>(std::make_integer_sequence<int, 3>{});

void block_avx512vnni(const GemmCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  const PackedB& B = *call.b;
  const int64_t groups = B.Kp / kKGroup;
  const int64_t bstride = B.panel_stride();
  alignas(64) int32_t tile[kMR * 4 * kPanelCols];
  for (int64_t m = m0; m < m1; m += kMR) {
    const int rows = static_cast<int>(std::min<int64_t>(kMR, m1 - m));
    const uint8_t* a = call.a + m * call.lda;
    int64_t p = p0;
    while (p < p1) {
      const int64_t left = p1 - p;
      int np;
      if (rows <= 3 && left >= 4) {
        np = 4;
        kTable4[rows - 1](groups, a, call.lda, B.panel(p), bstride, tile);
      } else if (left >= 2) {
        np = 2;
        kTable2[rows - 1](groups, a, call.lda, B.panel(p), bstride, tile);
      } else {
        np = 1;
        kTable1[rows - 1](groups, a, call.lda, B.panel(p), bstride, tile);
      }
      const int64_t n0 = p * kPanelCols;
      const int cols = static_cast<int>(std::min<int64_t>(np * kPanelCols, B.N - n0));
      apply_epilogue(call.ep, tile, np * kPanelCols, m, rows, n0, cols);
      p += np;
    }
  }
}

}  // namespace

GemmKernel gemm_kernel_avx512vnni() { return {"avx512vnni", false, kMR, block_avx512vnni}; }

}  // namespace eb
