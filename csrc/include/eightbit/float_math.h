// Kernel layer interface: the float32 steps that are not GEMMs (activations, softmax, layer norm,
// elementwise add / mul / div, per-channel affine), one table per instruction set.
//
// Not bit-specified against NumPy, but every table gives the same bits: every path runs the same
// float32 operations in the same order (fused multiply-adds only where written, on every path),
// reductions go into 16 partial sums (element i into partial i mod 16, the tail padded with a
// neutral value) folded by one fixed pairwise tree.  exp / erf / tanh are our own range
// reductions and polynomials (kernels/float_math.h); their measured error bounds are in
// docs/numerics.md ("Float steps").
#pragma once

#include <cstdint>

namespace eb {

// Elementwise float32 activations, the float graph's formulas (graph/float_exec.py).
enum class FloatUnary { kClip, kLeakyRelu, kSigmoid, kTanh, kHardswish, kGelu, kGeluTanh, kHardsigmoid, kErf };

struct FloatUnaryOp {
  FloatUnary kind = FloatUnary::kClip;
  // clip: [a, b]; leaky_relu: slope a; hardsigmoid: clip(a * x + b, 0, 1)
  float a = -3.4028235e38f, b = 3.4028235e38f;
};

enum class FloatBinaryOp { kAdd, kMul, kDiv };

struct FloatMathKernels {
  // y[i] = op(x[i]), i < n.
  void (*unary)(const FloatUnaryOp& op, const float* x, int64_t n, float* y);
  // y[i] = e^x[i] (the softmax's exp; for tests and benchmarks).
  void (*exp)(const float* x, int64_t n, float* y);
  // y[i] = clamp(a[i * sa] op b[i * sb], lo, hi) with sa, sb in {0, 1} (a scalar or a vector);
  // the clamp only when `clamp` (max then min: NaN stays NaN).
  void (*binary)(FloatBinaryOp op, const float* a, int64_t sa, const float* b, int64_t sb, int64_t n, bool clamp,
                 float lo, float hi, float* y);
  // y[i] = x[i] * scale + shift.
  void (*affine)(const float* x, int64_t n, float scale, float shift, float* y);
  // Softmax of `rows` contiguous rows of `len` values: e = exp(x - max), y = e * (1 / sum e).
  void (*softmax_rows)(const float* x, int64_t rows, int64_t len, float* y);
  // Softmax of one [len, inner] slice over its first axis (every column on its own).
  void (*softmax_columns)(const float* x, int64_t len, int64_t inner, float* y);
  // Layer norm of `rows` contiguous rows of `inner` values (the float64 formula, rounded once);
  // weight / bias null or `inner` values.
  void (*layer_norm_rows)(const float* x, int64_t rows, int64_t inner, double eps, const float* weight,
                          const float* bias, float* y);
};

FloatMathKernels float_math_kernels_scalar();
FloatMathKernels float_math_kernels_avx2();
FloatMathKernels float_math_kernels_avx512();

}  // namespace eb
