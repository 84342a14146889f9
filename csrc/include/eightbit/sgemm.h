// Kernel layer interface: float32 GEMM for the float islands of a quantized
// model (layers kept float32).  B is packed once into panels of 16 columns,
// [panel][k][16]; a kernel computes rows [m0, m1) x panels [p0, p1) of
//
//   C[m][n] = clamp(sum_k A[m][k] * B[k][n] + bias, lo, hi)
//
// with the bias per row or per column.  Each product and each sum is its own
// float32 rounding, in k order (no FMA contraction), so every ISA gives the
// same bits.
#pragma once

#include <cstdint>

namespace eb {

constexpr int kSgemmPanel = 16;

struct SgemmCall {
  int64_t M = 0, N = 0, K = 0;
  const float* a = nullptr;  // M x K, row stride lda
  int64_t lda = 0;
  const float* b = nullptr;  // packed: ceil(N / 16) panels of K x 16 (zero past N)
  const float* bias = nullptr;  // M values (bias_per_row) or N values, or null
  bool bias_per_row = false;
  float lo = -3.4028235e38f, hi = 3.4028235e38f;  // fused activation clamp
  float* c = nullptr;  // M x N, row stride ldc
  int64_t ldc = 0;
};

using SgemmFn = void (*)(const SgemmCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1);

SgemmFn sgemm_kernel_scalar();
SgemmFn sgemm_kernel_avx2();
SgemmFn sgemm_kernel_avx512();

}  // namespace eb
