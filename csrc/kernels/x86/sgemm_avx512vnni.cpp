// Kernel layer, AVX-512: float32 GEMM (eightbit/sgemm.h), 12 x 32 register
// tiles: 24 zmm accumulators (FMA's 4-cycle latency x 2 per cycle needs >= 8
// independent chains; 24 leave the loads room), two zmm of B per k, and A's
// 12 values broadcast from memory straight into the FMAs.
#include <immintrin.h>

#include "kernels/sgemm.h"

namespace eb {
namespace {

constexpr int kMr = 12, kNr = 32;
constexpr int64_t kKc = 384;  // B's <= 384 x 32 slice, <= 48 KiB, read from L1 / L2 across the row tiles
constexpr int64_t kMc = 396;  // 33 row tiles: A's 396 x 384 block, ~600 KiB, in L2 across the panels

inline __mmask16 lanes(int n) {  // the first n of 16 lanes (n clamped to [0, 16])
  return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

// R rows x 32 columns; kFull: all 32 columns valid (plain loads and stores).
template <int R, bool kFull>
void tile(const SgemmTile& t) {
  const __mmask16 m0 = kFull ? __mmask16(0xFFFF) : lanes(t.cols), m1 = kFull ? __mmask16(0xFFFF) : lanes(t.cols - 16);
  __m512 acc[R][2];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    if (t.first) {
      acc[r][0] = _mm512_setzero_ps();
      acc[r][1] = _mm512_setzero_ps();
    } else {
      acc[r][0] = _mm512_maskz_loadu_ps(m0, t.c + r * t.ldc);
      acc[r][1] = _mm512_maskz_loadu_ps(m1, t.c + r * t.ldc + 16);
    }
  }
  // Rows r of A at a + r * lda, addressed from three bases (rows 0, 4, 8) and lda x {1, 2, 3}:
  // no register per row.
  const float* a0 = t.a;
  const float* a4 = t.a + 4 * t.lda;
  const float* a8 = t.a + 8 * t.lda;
  const int64_t lda = t.lda;
  const float* b = t.b;
  for (int64_t k = 0; k < t.kc; ++k, b += t.ldb) {
    const __m512 b0 = kFull ? _mm512_loadu_ps(b) : _mm512_maskz_loadu_ps(m0, b);
    const __m512 b1 = kFull ? _mm512_loadu_ps(b + 16) : _mm512_maskz_loadu_ps(m1, b + 16);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(((r < 4 ? a0 : r < 8 ? a4 : a8) + (r % 4) * lda)[k]);
      acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
    }
  }
  const __m512 lo = _mm512_set1_ps(t.lo), hi = _mm512_set1_ps(t.hi);
  __m512 bc0 = _mm512_setzero_ps(), bc1 = _mm512_setzero_ps();
  if (t.last && t.bias_col != nullptr) {
    bc0 = _mm512_maskz_loadu_ps(m0, t.bias_col);
    bc1 = _mm512_maskz_loadu_ps(m1, t.bias_col + 16);
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    __m512 v0 = acc[r][0], v1 = acc[r][1];
    if (t.last) {
      if (t.bias_col != nullptr) {
        v0 = _mm512_add_ps(v0, bc0);
        v1 = _mm512_add_ps(v1, bc1);
      } else if (t.bias_row != nullptr) {
        const __m512 br = _mm512_set1_ps(t.bias_row[r]);
        v0 = _mm512_add_ps(v0, br);
        v1 = _mm512_add_ps(v1, br);
      }
      // max(lo, v) then min(hi, v): a NaN v stays NaN, as std::min(std::max(v, lo), hi).
      v0 = _mm512_min_ps(hi, _mm512_max_ps(lo, v0));
      v1 = _mm512_min_ps(hi, _mm512_max_ps(lo, v1));
    }
    float* c = t.c + r * t.ldc;
    if (kFull) {
      _mm512_storeu_ps(c, v0);
      _mm512_storeu_ps(c + 16, v1);
    } else {
      _mm512_mask_storeu_ps(c, m0, v0);
      _mm512_mask_storeu_ps(c + 16, m1, v1);
    }
  }
}

void sgemm_avx512(const SgemmCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  sgemm_blocked<kMr, kNr, kKc, kMc>(call, m0, m1, p0, p1, [](int rows, const SgemmTile& t) {
    const bool full = t.cols == kNr;
    sgemm_rows<kMr>(rows, [&](auto r) {
      constexpr int R = decltype(r)::value;
      full ? tile<R, true>(t) : tile<R, false>(t);
    });
  });
}

}  // namespace

SgemmFn sgemm_kernel_avx512() { return sgemm_avx512; }

}  // namespace eb
