// Kernel layer, AVX2 + FMA: float32 GEMM (eightbit/sgemm.h), 6 x 16 register
// tiles over half a 32-column panel: 12 ymm accumulators (FMA's 4-cycle
// latency x 2 per cycle needs >= 8 independent chains), two ymm of B per k and
// one broadcast of A, 15 of the 16 registers.  The same fma chain per output as
// every other path, so the same bits.
#include <immintrin.h>

#include "kernels/sgemm.h"

namespace eb {
namespace {

constexpr int kMr = 6, kNr = 16;
constexpr int64_t kKc = 384;  // B's <= 384 x 16 slice: <= 24 KiB, in L1 across the row tiles
constexpr int64_t kMc = 396;  // 66 row tiles: A's 396 x 384 block in L2 across the panels

inline __m256i lanes(int n) {  // a maskload / maskstore mask of the first n of 8 lanes
  const __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), index);
}

// R rows x 16 columns; kFull: all 16 columns valid (plain loads and stores).
template <int R, bool kFull>
void tile(const SgemmTile& t) {
  const __m256i m0 = lanes(t.cols), m1 = lanes(t.cols - 8);
  auto load = [&](const float* p, int v) {
    return kFull ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, v == 0 ? m0 : m1);
  };
  __m256 acc[R][2];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    if (t.first) {
      acc[r][0] = _mm256_setzero_ps();
      acc[r][1] = _mm256_setzero_ps();
    } else {
      acc[r][0] = load(t.c + r * t.ldc, 0);
      acc[r][1] = load(t.c + r * t.ldc + 8, 1);
    }
  }
  // Rows r of A at a + r * lda, from bases 0 and 3 and lda x {1, 2}.
  const float* a0 = t.a;
  const float* a3 = t.a + 3 * t.lda;
  const int64_t lda = t.lda;
  const float* b = t.b;
  for (int64_t k = 0; k < t.kc; ++k, b += t.ldb) {
    const __m256 b0 = load(b, 0), b1 = load(b + 8, 1);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m256 av = _mm256_broadcast_ss((r < 3 ? a0 : a3) + (r % 3) * lda + k);
      acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
    }
  }
  const __m256 lo = _mm256_set1_ps(t.lo), hi = _mm256_set1_ps(t.hi);
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    __m256 v[2] = {acc[r][0], acc[r][1]};
    float* c = t.c + r * t.ldc;
#pragma GCC unroll 2
    for (int i = 0; i < 2; ++i) {
      if (t.last) {
        if (t.bias_col != nullptr)
          v[i] = _mm256_add_ps(v[i], load(t.bias_col + 8 * i, i));
        else if (t.bias_row != nullptr)
          v[i] = _mm256_add_ps(v[i], _mm256_set1_ps(t.bias_row[r]));
        // max(lo, v) then min(hi, v): a NaN v stays NaN, as std::min(std::max(v, lo), hi).
        v[i] = _mm256_min_ps(hi, _mm256_max_ps(lo, v[i]));
      }
      if (kFull)
        _mm256_storeu_ps(c + 8 * i, v[i]);
      else
        _mm256_maskstore_ps(c + 8 * i, i == 0 ? m0 : m1, v[i]);
    }
  }
}

void sgemm_avx2(const SgemmCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  sgemm_blocked<kMr, kNr, kKc, kMc>(call, m0, m1, p0, p1, [](int rows, const SgemmTile& t) {
    const bool full = t.cols == kNr;
    sgemm_rows<kMr>(rows, [&](auto r) {
      constexpr int R = decltype(r)::value;
      full ? tile<R, true>(t) : tile<R, false>(t);
    });
  });
}

}  // namespace

SgemmFn sgemm_kernel_avx2() { return sgemm_avx2; }

}  // namespace eb
