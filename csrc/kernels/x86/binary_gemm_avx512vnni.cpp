// Kernel layer, AVX-512 with VPOPCNTDQ (Ice Lake, Sapphire Rapids, Zen 4 and
// later): binary GEMM.  A tile keeps R rows x P panels of 8 columns as int64
// lanes, one lane per output: per word of K it loads P panel vectors of B,
// broadcasts each row's word of A, and adds popcount(a XOR b) to every
// accumulator, three instructions per 512 sign pairs with no horizontal
// reduction.  The dispatch table picks it only on CPUs with VPOPCNTDQ (the
// AVX2 kernel runs elsewhere), hence the target pragma on this unit alone.
#pragma GCC target("avx512vpopcntdq")
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#include "eightbit/binary.h"
#include "kernels/tile_split.h"

namespace eb {
namespace {

constexpr int kRows = 6;    // 6 x 4 panels = 24 accumulators + 4 of B + broadcasts: 32 zmm
constexpr int kPanels = 4;

template <int R, int P>
void tile(const BinaryGemmCall& call, int64_t m, int64_t p, int64_t w0, int64_t w1, __mmask8 last_cols) {
  const PackedBinaryB& B = *call.b;
  const int64_t pstride = B.words * kBinaryPanelCols;
  const uint64_t* b = B.panel(p);
  const uint64_t* a = call.a + m * call.lda;
  __m512i acc[R][P];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < P; ++j) {
      const __mmask8 cols = j + 1 == P ? last_cols : __mmask8{0xff};
      acc[r][j] = w0 == 0 ? _mm512_setzero_si512()
                          : _mm512_cvtepu32_epi64(_mm256_maskz_loadu_epi32(
                                cols, call.c + (m + r) * call.ldc + (p + j) * kBinaryPanelCols));
    }
  for (int64_t w = w0; w < w1; ++w) {
    __m512i bv[P];
    for (int j = 0; j < P; ++j) bv[j] = _mm512_load_si512(b + j * pstride + w * kBinaryPanelCols);
    for (int r = 0; r < R; ++r) {
      const __m512i av = _mm512_set1_epi64(static_cast<long long>(a[r * call.lda + w]));
      for (int j = 0; j < P; ++j)
        acc[r][j] = _mm512_add_epi64(acc[r][j], _mm512_popcnt_epi64(_mm512_xor_si512(av, bv[j])));
    }
  }
  const bool final = w1 == B.words;
  const __m512i k = _mm512_set1_epi64(B.K);
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < P; ++j) {
      const __m512i v = final ? _mm512_sub_epi64(k, _mm512_slli_epi64(acc[r][j], 1)) : acc[r][j];
      const __mmask8 cols = j + 1 == P ? last_cols : __mmask8{0xff};
      _mm256_mask_storeu_epi32(call.c + (m + r) * call.ldc + (p + j) * kBinaryPanelCols, cols,
                               _mm512_cvtepi64_epi32(v));
    }
}

using TileFn = void (*)(const BinaryGemmCall&, int64_t, int64_t, int64_t, int64_t, __mmask8);

template <int R, int... P>
constexpr auto tiles_of_height(std::integer_sequence<int, P...>) {
  return std::array<TileFn, kPanels>{tile<R, P + 1>...};
}
template <int... R>
constexpr auto all_tiles(std::integer_sequence<int, R...>) {
  return std::array<std::array<TileFn, kPanels>, kRows>{
      tiles_of_height<R + 1>(std::make_integer_sequence<int, kPanels>{})...};
}
constexpr auto kTiles = all_tiles(std::make_integer_sequence<int, kRows>{});

void binary_gemm_avx512(const BinaryGemmCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1, int64_t w0,
                        int64_t w1) {
  const PackedBinaryB& B = *call.b;
  const TileSplit split(m1 - m0, kRows);
  for (int64_t p = p0; p < p1; p += kPanels) {  // B's panels stay in L1 while every row passes
    const int np = static_cast<int>(std::min<int64_t>(kPanels, p1 - p));
    const int64_t tail = std::min<int64_t>(B.N - (p + np - 1) * kBinaryPanelCols, kBinaryPanelCols);
    const auto last_cols = static_cast<__mmask8>((1u << tail) - 1u);
    for (int64_t m = m0, t = 0; m < m1; m += split.rows(t), ++t)
      kTiles[split.rows(t) - 1][np - 1](call, m, p, w0, w1, last_cols);
  }
}

// 16 compares into a mask register, four per word; the tail with masked loads.
void pack_signs_avx512(const float* x, int64_t n, const float* threshold, bool per_column, uint64_t* bits) {
  const __m512 scalar = _mm512_set1_ps(threshold[0]);
  for (int64_t k0 = 0; k0 < n; k0 += 64) {
    uint64_t word = 0;
    for (int64_t j = 0; j < 64 && k0 + j < n; j += 16) {
      const int64_t left = n - k0 - j;
      const __mmask16 in = left >= 16 ? __mmask16{0xffff} : static_cast<__mmask16>((1u << left) - 1u);
      const __m512 t = per_column ? _mm512_maskz_loadu_ps(in, threshold + k0 + j) : scalar;
      const __mmask16 lt = _mm512_mask_cmp_ps_mask(in, _mm512_maskz_loadu_ps(in, x + k0 + j), t, _CMP_LT_OQ);
      word |= static_cast<uint64_t>(lt) << j;
    }
    bits[k0 / 64] = word;
  }
}

}  // namespace

BinaryKernels binary_kernels_avx512() { return {binary_gemm_avx512, pack_signs_avx512, "avx512 vpopcntq"}; }

}  // namespace eb
