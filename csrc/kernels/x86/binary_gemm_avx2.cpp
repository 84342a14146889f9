// Kernel layer, AVX2: binary GEMM.  No popcount instruction on 256-bit
// vectors, so bits are counted per nibble with a 16-entry vpshufb table
// (XNOR-Net style).  A tile keeps R rows x one panel of 8 columns (two ymm of
// int64 lanes per row): per word of K it adds each byte's count (at most 8)
// into byte accumulators, and folds them into the int64 lanes with vpsadbw
// every 31 words, before a byte could overflow.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#include "eightbit/binary.h"
#include "kernels/tile_split.h"

namespace eb {
namespace {

constexpr int kRows = 4;
constexpr int64_t kFoldWords = 31;  // 31 x 8 <= 255

template <int R>
void tile(const BinaryGemmCall& call, int64_t m, int64_t p, int64_t w0, int64_t w1, int cols) {
  const PackedBinaryB& B = *call.b;
  const uint64_t* b = B.panel(p);
  const uint64_t* a = call.a + m * call.lda;
  const __m256i nibble = _mm256_set1_epi8(0x0f);
  const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,  //
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  alignas(32) int64_t count[R][kBinaryPanelCols] = {};
  if (w0 > 0)
    for (int r = 0; r < R; ++r)
      for (int n = 0; n < cols; ++n) count[r][n] = call.c[(m + r) * call.ldc + p * kBinaryPanelCols + n];
  for (int64_t f0 = w0; f0 < w1; f0 += kFoldWords) {
    const int64_t f1 = std::min(w1, f0 + kFoldWords);
    __m256i bytes[R][2];
    for (int r = 0; r < R; ++r) bytes[r][0] = bytes[r][1] = _mm256_setzero_si256();
    for (int64_t w = f0; w < f1; ++w) {
      const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + w * kBinaryPanelCols));
      const __m256i b1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + w * kBinaryPanelCols + 4));
      for (int r = 0; r < R; ++r) {
        const __m256i av = _mm256_set1_epi64x(static_cast<long long>(a[r * call.lda + w]));
        const __m256i x0 = _mm256_xor_si256(av, b0), x1 = _mm256_xor_si256(av, b1);
        const __m256i c0 = _mm256_add_epi8(_mm256_shuffle_epi8(table, _mm256_and_si256(x0, nibble)),
                                           _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(x0, 4), nibble)));
        const __m256i c1 = _mm256_add_epi8(_mm256_shuffle_epi8(table, _mm256_and_si256(x1, nibble)),
                                           _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(x1, 4), nibble)));
        bytes[r][0] = _mm256_add_epi8(bytes[r][0], c0);
        bytes[r][1] = _mm256_add_epi8(bytes[r][1], c1);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int h = 0; h < 2; ++h) {
        __m256i* lanes = reinterpret_cast<__m256i*>(count[r] + 4 * h);
        _mm256_store_si256(lanes, _mm256_add_epi64(_mm256_load_si256(lanes),
                                                   _mm256_sad_epu8(bytes[r][h], _mm256_setzero_si256())));
      }
  }
  const bool final = w1 == B.words;
  for (int r = 0; r < R; ++r)
    for (int n = 0; n < cols; ++n)
      call.c[(m + r) * call.ldc + p * kBinaryPanelCols + n] =
          static_cast<int32_t>(final ? B.K - 2 * count[r][n] : count[r][n]);
}

using TileFn = void (*)(const BinaryGemmCall&, int64_t, int64_t, int64_t, int64_t, int);

template <int... R>
constexpr std::array<TileFn, kRows> all_tiles(std::integer_sequence<int, R...>) {
  return {tile<R + 1>...};
}
constexpr auto kTiles = all_tiles(std::make_integer_sequence<int, kRows>{});

void binary_gemm_avx2(const BinaryGemmCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1, int64_t w0,
                      int64_t w1) {
  const PackedBinaryB& B = *call.b;
  const TileSplit split(m1 - m0, kRows);
  for (int64_t p = p0; p < p1; ++p) {
    const int cols = static_cast<int>(std::min<int64_t>(B.N - p * kBinaryPanelCols, kBinaryPanelCols));
    for (int64_t m = m0, t = 0; m < m1; m += split.rows(t), ++t) kTiles[split.rows(t) - 1](call, m, p, w0, w1, cols);
  }
}

// 8 compares per movemask; a tail through zero-filled copies, its extra bits masked off.
void pack_signs_avx2(const float* x, int64_t n, const float* threshold, bool per_column, uint64_t* bits) {
  const __m256 scalar = _mm256_set1_ps(threshold[0]);
  for (int64_t k0 = 0; k0 < n; k0 += 64) {
    const int64_t count = std::min<int64_t>(64, n - k0);
    alignas(32) float xs[64], ts[64];
    const float* xp = x + k0;
    const float* tp = threshold + (per_column ? k0 : 0);
    if (count < 64) {
      std::fill(std::copy_n(xp, count, xs), xs + 64, 0.0f);
      if (per_column) std::fill(std::copy_n(tp, count, ts), ts + 64, 0.0f);
      xp = xs;
      tp = ts;
    }
    uint64_t word = 0;
    for (int j = 0; j < 64; j += 8) {
      const __m256 t = per_column ? _mm256_loadu_ps(tp + j) : scalar;
      const __m256 lt = _mm256_cmp_ps(_mm256_loadu_ps(xp + j), t, _CMP_LT_OQ);
      word |= static_cast<uint64_t>(static_cast<uint32_t>(_mm256_movemask_ps(lt))) << j;
    }
    bits[k0 / 64] = count < 64 ? word & ((uint64_t{1} << count) - 1) : word;
  }
}

}  // namespace

BinaryKernels binary_kernels_avx2() { return {binary_gemm_avx2, pack_signs_avx2, "avx2 vpshufb nibble counts"}; }

}  // namespace eb
