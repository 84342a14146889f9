// Kernel layer, AVX2 without VNNI: exact u8 x s8 GEMM micro-kernels.
//
// `vpmaddubsw` would add two u8*s8 products into a saturating int16
// (255*127*2 > 32767), so this path widens both operands to int16 and uses
// `vpmaddwd`, whose int32 pair sums cannot overflow for byte inputs.  A is
// widened once per call by the runtime (GemmCall::a_wide); B is widened in
// registers from the shared k4n16 layout: 16 bytes = 4 columns x 4 k become
// 8 int32 lanes holding, per column, the partial sums of k{0,1} and k{2,3},
// folded with `vphaddd` once per tile, not per k.
//
// Tile: 6 rows x 8 columns (half a panel) = 12 ymm accumulators, 2 of B, one
// A broadcast and one product: all 16 registers.  Per 4 k it issues 2
// widening loads, 6 broadcasts (load port only), 12 vpmaddwd and 12 vpaddd:
// 26 vector ALU uops for 12 vpmaddwd, ~92% of the 2-per-cycle vpmaddwd peak.
// The full tile is inline assembly (GCC spills the accumulators of the
// intrinsics version every iteration); partial tiles use intrinsics.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "kernels/epilogue.h"

namespace eb {
namespace {

constexpr int kMR = 6;
constexpr int kNR = 8;  // columns per tile: half a panel

inline __m256i broadcast_a4(const int16_t* p) {
  int64_t v;
  std::memcpy(&v, p, sizeof v);
  return _mm256_set1_epi64x(v);
}

// Folds the per-column partial pairs of 8 columns (two accumulators of 4).
inline __m256i fold_pairs(__m256i lo4, __m256i hi4) {
  return _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo4, hi4), 0xD8);
}

// Raw sums for MR rows x 8 columns; `b` points at the half panel's first
// group (row stride between groups: 64 bytes).  tile row stride: 8.
template <int MR>
void ukernel(int64_t groups, const int16_t* a, int64_t lda, const int8_t* b, int32_t* tile) {
  __m256i acc[MR][2];
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
  for (int64_t g = 0; g < groups; ++g) {
    const __m256i b0 = _mm256_cvtepi8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(b + g * kPanelGroupBytes)));
    const __m256i b1 =
        _mm256_cvtepi8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(b + g * kPanelGroupBytes + 16)));
    for (int r = 0; r < MR; ++r) {
      const __m256i av = broadcast_a4(a + r * lda + g * kKGroup);
      acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(av, b0));
      acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(av, b1));
    }
  }
  for (int r = 0; r < MR; ++r)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(tile + r * kNR), fold_pairs(acc[r][0], acc[r][1]));
}

template <>
void ukernel<6>(int64_t groups, const int16_t* a, int64_t lda, const int8_t* b, int32_t* tile) {
  alignas(32) int32_t raw[12 * 8];
  const char* a0 = reinterpret_cast<const char*>(a);
  const char* a3 = reinterpret_cast<const char*>(a + 3 * lda);
  const int64_t lda_bytes = lda * static_cast<int64_t>(sizeof(int16_t));
  __asm__ volatile(
      "vpxor %%ymm0, %%ymm0, %%ymm0\n\t"
      "vpxor %%ymm1, %%ymm1, %%ymm1\n\t"
      "vpxor %%ymm2, %%ymm2, %%ymm2\n\t"
      "vpxor %%ymm3, %%ymm3, %%ymm3\n\t"
      "vpxor %%ymm4, %%ymm4, %%ymm4\n\t"
      "vpxor %%ymm5, %%ymm5, %%ymm5\n\t"
      "vpxor %%ymm6, %%ymm6, %%ymm6\n\t"
      "vpxor %%ymm7, %%ymm7, %%ymm7\n\t"
      "vpxor %%ymm8, %%ymm8, %%ymm8\n\t"
      "vpxor %%ymm9, %%ymm9, %%ymm9\n\t"
      "vpxor %%ymm10, %%ymm10, %%ymm10\n\t"
      "vpxor %%ymm11, %%ymm11, %%ymm11\n\t"
      "shr $1, %[k]\n\t"          // pairs of groups: half the loop overhead
      "jz 3f\n\t"
      "1:\n\t"
      "vpmovsxbw 0(%[b]), %%ymm12\n\t"
      "vpmovsxbw 16(%[b]), %%ymm13\n\t"
      "vpbroadcastq 0(%[a0]), %%ymm14\n\t"
      "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm0, %%ymm0\n\t"
      "vpmaddwd %%ymm13, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm1, %%ymm1\n\t"
      "vpbroadcastq 0(%[a0],%[lda],1), %%ymm14\n\t"
      "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm2, %%ymm2\n\t"
      "vpmaddwd %%ymm13, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm3, %%ymm3\n\t"
      "vpbroadcastq 0(%[a0],%[lda],2), %%ymm14\n\t"
      "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm4, %%ymm4\n\t"
      "vpmaddwd %%ymm13, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm5, %%ymm5\n\t"
      "vpbroadcastq 0(%[a3]), %%ymm14\n\t"
      "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm6, %%ymm6\n\t"
      "vpmaddwd %%ymm13, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm7, %%ymm7\n\t"
      "vpbroadcastq 0(%[a3],%[lda],1), %%ymm14\n\t"
      "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm8, %%ymm8\n\t"
      "vpmaddwd %%ymm13, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm9, %%ymm9\n\t"
      "vpbroadcastq 0(%[a3],%[lda],2), %%ymm14\n\t"
      "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm10, %%ymm10\n\t"
      "vpmaddwd %%ymm13, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm11, %%ymm11\n\t"
      "vpmovsxbw 64(%[b]), %%ymm12\n\t"
      "vpmovsxbw 80(%[b]), %%ymm13\n\t"
      "vpbroadcastq 8(%[a0]), %%ymm14\n\t"
      "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm0, %%ymm0\n\t"
      "vpmaddwd %%ymm13, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm1, %%ymm1\n\t"
      "vpbroadcastq 8(%[a0],%[lda],1), %%ymm14\n\t"
      "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm2, %%ymm2\n\t"
      "vpmaddwd %%ymm13, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm3, %%ymm3\n\t"
      "vpbroadcastq 8(%[a0],%[lda],2), %%ymm14\n\t"
      "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm4, %%ymm4\n\t"
      "vpmaddwd %%ymm13, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm5, %%ymm5\n\t"
      "vpbroadcastq 8(%[a3]), %%ymm14\n\t"
      "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm6, %%ymm6\n\t"
      "vpmaddwd %%ymm13, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm7, %%ymm7\n\t"
      "vpbroadcastq 8(%[a3],%[lda],1), %%ymm14\n\t"
      "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm8, %%ymm8\n\t"
      "vpmaddwd %%ymm13, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm9, %%ymm9\n\t"
      "vpbroadcastq 8(%[a3],%[lda],2), %%ymm14\n\t"
      "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm10, %%ymm10\n\t"
      "vpmaddwd %%ymm13, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm11, %%ymm11\n\t"
      "add $16, %[a0]\n\t"
      "add $16, %[a3]\n\t"
      "add $128, %[b]\n\t"
      "dec %[k]\n\t"
      "jnz 1b\n\t"
      "3:\n\t"
      "test $1, %[odd]\n\t"
      "jz 2f\n\t"
      "vpmovsxbw 0(%[b]), %%ymm12\n\t"
      "vpmovsxbw 16(%[b]), %%ymm13\n\t"
      "vpbroadcastq 0(%[a0]), %%ymm14\n\t"
      "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm0, %%ymm0\n\t"
      "vpmaddwd %%ymm13, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm1, %%ymm1\n\t"
      "vpbroadcastq 0(%[a0],%[lda],1), %%ymm14\n\t"
      "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm2, %%ymm2\n\t"
      "vpmaddwd %%ymm13, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm3, %%ymm3\n\t"
      "vpbroadcastq 0(%[a0],%[lda],2), %%ymm14\n\t"
      "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm4, %%ymm4\n\t"
      "vpmaddwd %%ymm13, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm5, %%ymm5\n\t"
      "vpbroadcastq 0(%[a3]), %%ymm14\n\t"
      "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm6, %%ymm6\n\t"
      "vpmaddwd %%ymm13, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm7, %%ymm7\n\t"
      "vpbroadcastq 0(%[a3],%[lda],1), %%ymm14\n\t"
      "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm8, %%ymm8\n\t"
      "vpmaddwd %%ymm13, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm9, %%ymm9\n\t"
      "vpbroadcastq 0(%[a3],%[lda],2), %%ymm14\n\t"
      "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm10, %%ymm10\n\t"
      "vpmaddwd %%ymm13, %%ymm14, %%ymm15\n\t"
      "vpaddd %%ymm15, %%ymm11, %%ymm11\n\t"
      "2:\n\t"
      "vmovdqu %%ymm0, 0(%[raw])\n\t"
      "vmovdqu %%ymm1, 32(%[raw])\n\t"
      "vmovdqu %%ymm2, 64(%[raw])\n\t"
      "vmovdqu %%ymm3, 96(%[raw])\n\t"
      "vmovdqu %%ymm4, 128(%[raw])\n\t"
      "vmovdqu %%ymm5, 160(%[raw])\n\t"
      "vmovdqu %%ymm6, 192(%[raw])\n\t"
      "vmovdqu %%ymm7, 224(%[raw])\n\t"
      "vmovdqu %%ymm8, 256(%[raw])\n\t"
      "vmovdqu %%ymm9, 288(%[raw])\n\t"
      "vmovdqu %%ymm10, 320(%[raw])\n\t"
      "vmovdqu %%ymm11, 352(%[raw])\n\t"
      : [a0] "+r"(a0), [a3] "+r"(a3), [b] "+r"(b), [k] "+r"(groups)
      : [lda] "r"(lda_bytes), [raw] "r"(raw), [odd] "r"(groups & 1)
      : "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
        "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
  for (int r = 0; r < 6; ++r) {
    const __m256i lo = _mm256_load_si256(reinterpret_cast<const __m256i*>(raw + 16 * r));
    const __m256i hi = _mm256_load_si256(reinterpret_cast<const __m256i*>(raw + 16 * r + 8));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(tile + r * kNR), fold_pairs(lo, hi));
  }
}

using UkernelFn = void (*)(int64_t, const int16_t*, int64_t, const int8_t*, int32_t*);

template <int... R>
constexpr auto make_table(std::integer_sequence<int, R...>) {
  return std::array<UkernelFn, sizeof...(R)>{ukernel<R + 1>...};
}

const auto kTable = make_table(std::make_integer_sequence<int, kMR>{});

void block_avx2(const GemmCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  const PackedB& B = *call.b;
  const int64_t groups = B.Kp / kKGroup;
  alignas(64) int32_t tile[kMR * kNR];
  for (int64_t m = m0; m < m1; m += kMR) {
    const int rows = static_cast<int>(std::min<int64_t>(kMR, m1 - m));
    const int16_t* a = call.a_wide + m * call.lda_wide;
    for (int64_t p = p0; p < p1; ++p) {
      for (int half = 0; half < 2; ++half) {
        const int64_t n0 = p * kPanelCols + half * kNR;
        if (n0 >= B.N) break;
        kTable[rows - 1](groups, a, call.lda_wide, B.panel(p) + half * 32, tile);
        apply_epilogue(call.ep, tile, kNR, m, rows, n0, static_cast<int>(std::min<int64_t>(kNR, B.N - n0)));
      }
    }
  }
}

}  // namespace

GemmKernel gemm_kernel_avx2() { return {"avx2", true, kMR, block_avx2}; }

}  // namespace eb
