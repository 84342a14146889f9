// Kernel layer, scalar: float32 GEMM (eightbit/sgemm.h) with std::fma, the
// fallback and the reference the SIMD paths match bit for bit: the same fma
// chain per output (+0, then k ascending), then the bias, then the clamp.
// Slow where the CPU has no FMA (the C library emulates it), but exact.
#include <cmath>

#include "kernels/sgemm.h"

namespace eb {
namespace {

constexpr int kMr = 4, kNr = 32;
constexpr int64_t kKc = 256, kMc = 256;

void sgemm_scalar(const SgemmCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  sgemm_blocked<kMr, kNr, kKc, kMc>(call, m0, m1, p0, p1, [](int rows, const SgemmTile& t) {
    float acc[kMr][kNr];
    for (int r = 0; r < rows; ++r)
      for (int j = 0; j < t.cols; ++j) acc[r][j] = t.first ? 0.0f : t.c[r * t.ldc + j];
    for (int64_t k = 0; k < t.kc; ++k) {
      const float* b = t.b + k * t.ldb;
      for (int r = 0; r < rows; ++r) {
        const float av = t.a[r * t.lda + k];
        for (int j = 0; j < t.cols; ++j) acc[r][j] = std::fma(av, b[j], acc[r][j]);
      }
    }
    for (int r = 0; r < rows; ++r)
      for (int j = 0; j < t.cols; ++j) {
        float v = acc[r][j];
        if (t.last) {
          if (t.bias_col != nullptr)
            v += t.bias_col[j];
          else if (t.bias_row != nullptr)
            v += t.bias_row[r];
          v = std::min(std::max(v, t.lo), t.hi);
        }
        t.c[r * t.ldc + j] = v;
      }
  });
}

}  // namespace

SgemmFn sgemm_kernel_scalar() { return sgemm_scalar; }

}  // namespace eb
