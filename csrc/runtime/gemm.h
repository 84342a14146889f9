// Runtime layer: int8 GEMM entry points.  Validated, typed arguments in;
// A preparation, zero-point terms, blocking and threads here; the micro-
// kernels of the active ISA do the arithmetic.
#pragma once

#include <cstdint>
#include <string>

#include "eightbit/gemm.h"

namespace eb {

// Packs B [K x N] (row stride ldb elements, uint8 or int8) once.  zp holds 1
// value (per tensor) or N (per column), in B's own domain (0..255 / -128..127).
PackedB pack_b(const void* b, bool b_signed, int64_t K, int64_t N, int64_t ldb, const int32_t* zp,
               bool zp_per_column);

// A produced on demand (im2col): fill(ctx, m0, m1, dst, ld) writes rows
// [m0, m1) of A, K bytes each in A's own domain, ld bytes apart.
struct ARowSource {
  void (*fill)(const void* ctx, int64_t m0, int64_t m1, uint8_t* dst, int64_t ld) = nullptr;
  const void* ctx = nullptr;
};

// The A operand of one call: M x K bytes with row stride lda, uint8 or int8,
// or rows from `source` (then data / lda are unused); zero point per tensor
// (1 value) or per row (M values) in A's domain.
struct AOperand {
  ARowSource source;
  const void* data = nullptr;
  bool is_signed = false;
  int64_t M = 0, K = 0, lda = 0;
  const int32_t* zp = nullptr;
  bool zp_per_row = false;
  // Set: A is a convolution's patches read in place (uint8, per-tensor zp) by
  // conv_kernel (one for which conv_supported holds); data / lda / source unused.
  const ConvRows* conv = nullptr;
  const GemmKernel* conv_kernel = nullptr;
  bool rows_padded = false;  // lda >= round_up(K, 4) and the pad bytes are readable
  int64_t zero_padded_to = 0; // every row readable, and zero past K, up to this many bytes
};

// C = epilogue(A x B).  A from a row source is produced and multiplied in
// chunks of rows small enough to stay in L2 in between.  `ep` carries the output kind, its parameters and the
// output pointer; the zero-point fields are filled here.  Per-column
// parameter arrays (multiplier, col_scale, bias, ...) must hold Np entries.
void run_gemm(const AOperand& a, const PackedB& b, Epilogue ep);

// What run_gemm runs on `kernel`: its ISA and tile rows, and the kernel that takes calls of
// fewer rows (eightbit info).
std::string gemm_kernel_name(const GemmKernel& kernel);

// Whether `kernel` computes AOperand::conv directly with this B: it has a
// conv_block, and B needs no row sums of A (every weight zero point, shifted, is 0).
inline bool conv_supported(const GemmKernel& kernel, const PackedB& b) {
  return kernel.conv_block != nullptr && !b.any_zp_shifted;
}

// Dynamic linear layer: quantizes each row of x [M x K] (float32, row stride
// ldx) to uint8 by the DynamicQuantizeLinear formula (with per_tensor, the
// whole of x with one scale and zero point: ldx must be K), then
// y = float(acc) * (s_x[m] * w_scale[n]) + bias[n] (+ relu).  Returns false
// (and computes nothing) when x holds a non-finite value.  The n_zero columns
// zero_cols of x are read as 0 (a dynamic_linear step's outlier columns, which
// it computes in float32 itself; per-row only).
bool run_dynamic_linear(const float* x, int64_t M, int64_t ldx, const PackedB& w, const float* w_scale,
                        const float* bias, bool relu, float* y, int64_t ldy, bool per_tensor = false,
                        const int64_t* zero_cols = nullptr, int64_t n_zero = 0);

}  // namespace eb
