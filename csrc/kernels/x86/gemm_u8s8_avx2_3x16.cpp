// Kernel layer, AVX2 without VNNI: exact u8 x s8 GEMM micro-kernels.
//
// `vpmaddubsw` would add two u8*s8 products into a saturating int16
// (255*127*2 > 32767), so this path widens both operands to int16 and uses
// `vpmaddwd`, whose int32 pair sums cannot overflow for byte inputs.  A is
// widened once per call by the runtime (GemmCall::a_wide); B is widened in
// registers from the shared k4n16 layout: 16 bytes = 4 columns x 4 k become
// 8 int32 lanes holding, per column, the partial sums of k{0,1} and k{2,3}.
// Those pairs are folded with `vphaddd` once per tile, not per k.
//
// Tile: up to 3 rows x 16 columns = 12 ymm accumulators + 1 B + A broadcasts.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "kernels/epilogue.h"

namespace eb {
namespace {

constexpr int kMR = 3;

inline __m256i broadcast_a4(const int16_t* p) {
  int64_t v;
  std::memcpy(&v, p, sizeof v);
  return _mm256_set1_epi64x(v);
}

// Folds the per-column partial pairs of 8 columns (two accumulators of 4).
inline __m256i fold_pairs(__m256i lo4, __m256i hi4) {
  return _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo4, hi4), 0xD8);
}

template <int MR>
void ukernel(int64_t groups, const int16_t* a, int64_t lda, const int8_t* b, int32_t* tile) {
  __m256i acc[MR][4];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 4; ++j) acc[r][j] = _mm256_setzero_si256();
  for (int64_t g = 0; g < groups; ++g) {
    __m256i av[MR];
    for (int r = 0; r < MR; ++r) av[r] = broadcast_a4(a + r * lda + g * kKGroup);
    for (int j = 0; j < 4; ++j) {
      const __m256i bv = _mm256_cvtepi8_epi16(
          _mm_load_si128(reinterpret_cast<const __m128i*>(b + g * kPanelGroupBytes + j * 16)));
      for (int r = 0; r < MR; ++r) acc[r][j] = _mm256_add_epi32(acc[r][j], _mm256_madd_epi16(av[r], bv));
    }
  }
  for (int r = 0; r < MR; ++r) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(tile + r * kPanelCols), fold_pairs(acc[r][0], acc[r][1]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(tile + r * kPanelCols + 8), fold_pairs(acc[r][2], acc[r][3]));
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
  alignas(64) int32_t tile[kMR * kPanelCols];
  for (int64_t m = m0; m < m1; m += kMR) {
    const int rows = static_cast<int>(std::min<int64_t>(kMR, m1 - m));
    const int16_t* a = call.a_wide + m * call.lda_wide;
    for (int64_t p = p0; p < p1; ++p) {
      kTable[rows - 1](groups, a, call.lda_wide, B.panel(p), tile);
      const int64_t n0 = p * kPanelCols;
      const int cols = static_cast<int>(std::min<int64_t>(kPanelCols, B.N - n0));
      apply_epilogue(call.ep, tile, kPanelCols, m, rows, n0, cols);
    }
  }
}

}  // namespace

GemmKernel gemm_kernel_avx2() { return {"avx2", true, kMR, block_avx2}; }

}  // namespace eb
