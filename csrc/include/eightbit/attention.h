// Kernel layer interface: the loops of int8 attention that are not GEMMs (docs/numerics.md,
// "int8 attention"; reference/int8_attention.py is the specification), one table per instruction
// set.  Every table gives the same bits: integer arithmetic, and float32 steps that are exact
// (max, |x|, a power-of-two scaling, round half to even) or one IEEE operation each in the
// reference's order (a division, a product, a sum).
#pragma once

#include <cstdint>

namespace eb {

struct AttentionKernels {
  // b [K, P] float32 (row stride ldb) -> each column symmetric int8: s[p] = max_k |b| / 127 (1
  // where 0), q = rne(clamp(b / s, -127, 127)), written in pack_b's layout (kernels/gemm.h: panels
  // of 16 columns, K in groups of 4, zero padding to Kp = round_up(K, 4), Np = round_up(P, 16)):
  // `packed` (Kp * Np bytes), col_sum[Np] (sum_k q), col_scale[Np] = s[p] * alpha (0 in the
  // padding).  `work` holds Kp * Np bytes.  Returns false (the outputs undefined) when b holds NaN
  // or infinity.
  bool (*quantize_columns)(const float* b, int64_t K, int64_t P, int64_t ldb, float alpha, int8_t* work,
                           int8_t* packed, int32_t* col_sum, float* col_scale);
  // DynamicQuantizeLinear of each row of a [M, K] (row stride lda), exactly dynamic_qparams and
  // quantize_per_tensor (runtime/quantize.h): q [M, ldq] uint8 (bytes K .. ldq untouched),
  // scale[M], zp[M].  False when a holds NaN or infinity.  Null in units without their own:
  // the runtime's functions then do it row by row.
  bool (*quantize_rows)(const float* a, int64_t M, int64_t K, int64_t lda, uint8_t* q, int64_t ldq, float* scale,
                        int32_t* zp) = nullptr;
  // Softmax of `rows` rows: row r of x (x + r * ldx, T values) -> s = x * scale (when `scaled`)
  // + mask row r (mask + r * mask_ld, T values; mask_ld may be 0; none when mask is null), then the
  // integer softmax: p + r * ldp (uint8) and s_p[r], p_scale "fixed" or "row"; each p row is 0
  // from T up to round_up(T, 4) (the GEMM reads groups of 4) and may be written (0) up to
  // round_up(T, 16) (ldp leaves room, or the rows are written in order).  `table` is the exp table
  // (4097 entries); `s` holds 4 * round_up(T, 16) floats and `e` T int32 of work.  Returns false
  // for NaN or +inf in s.
  bool (*softmax_rows)(const float* x, int64_t ldx, const float* mask, int64_t mask_ld, int64_t rows, int64_t T,
                       bool scaled, float scale, const int32_t* table, bool fixed, uint8_t* p, int64_t ldp,
                       float* s_p, float* s, int32_t* e);
};

AttentionKernels attention_kernels_scalar();
AttentionKernels attention_kernels_avx2();
AttentionKernels attention_kernels_avx512();

}  // namespace eb
