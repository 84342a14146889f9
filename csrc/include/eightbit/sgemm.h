// Kernel layer interface: float32 GEMM for float layers (eb.compile's plans and
// the float islands of quantized models).  A kernel computes rows [m0, m1) x
// column panels [p0, p1) (panels of 32 columns) of
//
//   C[m][n] = clamp(sum_k A[m][k] * B[k][n] + bias, lo, hi)
//
// with the bias per row or per column.  Numerics, the same bits on every ISA:
// each output is one float32 accumulator that starts at +0 and takes
// acc = fma(A[m][k], B[k][n], acc) for k = 0, 1, ..., K-1 in that order (one
// rounding per k), then acc + bias (one rounding), then the clamp.  Register
// tiles, K blocking and threads change only which outputs are computed
// together, never an output's chain.
//
// B is read as B[k][n] = b[(n / 32) * b_panel_stride + k * ldb + n % 32]:
//  - packed (weights, once at create): panels [N / 32][K][32], ldb = 32,
//    b_panel_stride = 32 K (pack_f32_transposed);
//  - a plain row-major [K][N] matrix: ldb = N, b_panel_stride = 32.
// Kernels never read B past column N (tail panels are masked).
#pragma once

#include <cstdint>

namespace eb {

constexpr int kSgemmPanel = 32;

struct SgemmCall {
  int64_t M = 0, N = 0, K = 0;
  const float* a = nullptr;  // M x K, row stride lda
  int64_t lda = 0;
  const float* b = nullptr;  // see above
  int64_t ldb = kSgemmPanel, b_panel_stride = 0;
  const float* bias = nullptr;  // M values (bias_per_row) or N values, or null
  bool bias_per_row = false;
  float lo = -3.4028235e38f, hi = 3.4028235e38f;  // fused activation clamp
  float* c = nullptr;  // M x N, row stride ldc
  int64_t ldc = 0;

  // B a row-major K x N matrix with row stride ldb_ (no packing).
  void set_plain_b(const float* b_, int64_t ldb_) {
    b = b_;
    ldb = ldb_;
    b_panel_stride = kSgemmPanel;
  }
  // B packed into panels [ceil(N / 32)][K][32].
  void set_packed_b(const float* b_) {
    b = b_;
    ldb = kSgemmPanel;
    b_panel_stride = K * kSgemmPanel;
  }
};

using SgemmFn = void (*)(const SgemmCall& call, int64_t m0, int64_t m1, int64_t p0, int64_t p1);

SgemmFn sgemm_kernel_scalar();
SgemmFn sgemm_kernel_avx2();
SgemmFn sgemm_kernel_avx512();

}  // namespace eb
