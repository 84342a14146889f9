// Kernel layer: the float32 GEMM of eightbit/sgemm.h, shared source for every
// ISA (each unit compiles it with its own flags; the 16-column inner loops
// vectorise to one zmm, two ymm or four xmm).
#pragma once

#include <algorithm>
#include <cstdint>

#include "eightbit/sgemm.h"

namespace eb {
namespace {  // internal linkage: see kernels/depthwise.h

constexpr int kSgemmRows = 4;

// A panel row's 16 sums as native GCC / Clang vectors of this unit's ISA: one zmm, two ymm or
// four xmm.  (Plain float arrays were vectorized across the rows instead, with shuffles on every
// k: ten times slower.)  Lane arithmetic is still one float32 multiply and one add per k,
// unfused (-ffp-contract=off), so every ISA gives the same bits.
#if defined(__AVX512F__)
constexpr int kSgemmLanes = 16;
#elif defined(__AVX__)
constexpr int kSgemmLanes = 8;
#else
constexpr int kSgemmLanes = 4;
#endif
constexpr int kSgemmVecs = kSgemmPanel / kSgemmLanes;
typedef float SgemmVec __attribute__((vector_size(kSgemmLanes * sizeof(float))));
// The same vector read from any float address (an unaligned load; may alias float data).
typedef float SgemmVecLoad __attribute__((vector_size(kSgemmLanes * sizeof(float)), aligned(4), may_alias));

// Rows [m, m + R) x one panel: R x 16 sums over all of K, then bias and clamp.
template <int R>
void sgemm_tile(const SgemmCall& call, int64_t m, int64_t panel) {
  SgemmVec acc[R][kSgemmVecs] = {};
  const float* b = call.b + panel * call.K * kSgemmPanel;
  const float* a = call.a + m * call.lda;
  const int64_t lda = call.lda, K = call.K;
  for (int64_t k = 0; k < K; ++k) {
    SgemmVec bk[kSgemmVecs];
    for (int v = 0; v < kSgemmVecs; ++v) bk[v] = *reinterpret_cast<const SgemmVecLoad*>(b + k * kSgemmPanel + v * kSgemmLanes);
    for (int r = 0; r < R; ++r) {
      const float av = a[r * lda + k];
      for (int v = 0; v < kSgemmVecs; ++v) acc[r][v] += av * bk[v];
    }
  }
  const int64_t n0 = panel * kSgemmPanel;
  const int cols = static_cast<int>(std::min<int64_t>(kSgemmPanel, call.N - n0));
  for (int r = 0; r < R; ++r) {
    float* c = call.c + (m + r) * call.ldc + n0;
    for (int j = 0; j < cols; ++j) {
      float v = acc[r][j / kSgemmLanes][j % kSgemmLanes];
      if (call.bias != nullptr) v += call.bias_per_row ? call.bias[m + r] : call.bias[n0 + j];
      c[j] = std::min(std::max(v, call.lo), call.hi);
    }
  }
}

inline void sgemm_block(const SgemmCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  for (int64_t p = p0; p < p1; ++p) {
    int64_t m = m0;
    for (; m + kSgemmRows <= m1; m += kSgemmRows) sgemm_tile<kSgemmRows>(call, m, p);
    for (; m < m1; ++m) sgemm_tile<1>(call, m, p);
  }
}

}  // namespace
}  // namespace eb
