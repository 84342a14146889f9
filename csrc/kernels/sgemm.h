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

// Rows [m, m + R) x one panel: R x 16 sums over all of K, then bias and clamp.
template <int R>
void sgemm_tile(const SgemmCall& call, int64_t m, int64_t panel) {
  float acc[R][kSgemmPanel] = {};
  const float* b = call.b + panel * call.K * kSgemmPanel;
  const float* a = call.a + m * call.lda;
  for (int64_t k = 0; k < call.K; ++k) {
    const float* bk = b + k * kSgemmPanel;
    for (int r = 0; r < R; ++r) {
      const float av = a[r * call.lda + k];
      for (int j = 0; j < kSgemmPanel; ++j) acc[r][j] += av * bk[j];
    }
  }
  const int64_t n0 = panel * kSgemmPanel;
  const int cols = static_cast<int>(std::min<int64_t>(kSgemmPanel, call.N - n0));
  for (int r = 0; r < R; ++r) {
    float* c = call.c + (m + r) * call.ldc + n0;
    for (int j = 0; j < cols; ++j) {
      float v = acc[r][j];
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
