// Runtime layer: float32 layers, for eb.compile's plans and the float islands
// of a quantized model (nodes kept float32).  Not bit-specified against NumPy
// (its BLAS sums in another order), but the same bits on every ISA here and on
// any thread count.  The products (linear, matmul, conv, bmm) are the float
// GEMM's (eightbit/sgemm.h): each output one fma chain from +0, k ascending,
// then + bias, then the clamp; tiles, K / M blocks and threads only group
// outputs.  Within float32 rounding of a float64 product: |err| <= K u sum|a b|.
#pragma once

#include <cstdint>
#include <vector>

#include "eightbit/aligned_buffer.h"
#include "eightbit/conv.h"
#include "eightbit/float_math.h"
#include "eightbit/sgemm.h"

namespace eb {

// B [K x N] = W^T for W [N x K] (PyTorch's linear layout), in 32-column panels (one layout for
// every ISA: set_isa may change the path after a plan's weights are packed).
struct PackedF32 {
  int64_t K = 0, N = 0;
  AlignedBuffer<float> data;
};

PackedF32 pack_f32_transposed(const float* w, int64_t N, int64_t K);

// y [M x N] = clamp(x [M x K] W^T + bias, lo, hi); bias null or N values.
void float_linear(const float* x, int64_t M, const PackedF32& w, const float* bias, float lo, float hi, float* y);

// A float32 NCHW convolution: weights OIHW [out_c, in_c / groups, kh, kw]
// (each group's rows are the GEMM's A), bias empty or out_c values.
struct FloatConv {
  ConvGeometry g;  // g.batch is ignored: the call gives it
  std::vector<float> w;
  std::vector<float> bias;
  float lo = -3.4028235e38f, hi = 3.4028235e38f;
};

void float_conv(const FloatConv& conv, int64_t batch, const float* x, float* y);

// Elementwise float32 activations (FloatUnary, FloatUnaryOp in eightbit/float_math.h), the float
// graph's formulas (graph/float_exec.py) in float32 with the kernels' exp / erf / tanh
// (docs/numerics.md, "Float steps").  float_math.cpp holds these elementwise steps.
void float_unary(const FloatUnaryOp& op, const float* x, int64_t n, float* y);

// y = x * scale[c] + shift[c] over NCHW-like [batch, C, inner] (unfolded batch norm).
void float_channel_affine(const float* x, int64_t batch, int64_t C, int64_t inner, const float* scale,
                          const float* shift, float* y);

// y = clamp(a + b, a * b or a / b, lo, hi) with NumPy broadcasting: `out` is the broadcast shape
// and a_strides / b_strides the element strides of a and b over it (0 along broadcast axes).  The
// clamp is a fused activation; (-inf, inf) leaves every value, infinities and NaN included, as is.
// Division is IEEE's (x / 0 is +-inf or NaN), as NumPy's.
void float_binary(FloatBinaryOp op, const float* a, const std::vector<int64_t>& a_strides, const float* b,
                  const std::vector<int64_t>& b_strides, const std::vector<int64_t>& out, float lo, float hi,
                  float* y);

// Batched matrix product (torch.matmul of two tensors of the same rank >= 3): `out` is the
// output's shape with this call's batch, [..., M, P]; a is [..., M, K] and b [..., K, P], both
// C-contiguous, with a_strides / b_strides their element strides over the leading dims of
// `out` (0 along broadcast ones; one entry per leading dim).  Each product is the float GEMM
// kernel's (one fma chain per output in k order, the same bits on every ISA); b's matrices are
// read in place, unpacked (attention's are small: packing would cost as much as the product),
// whole matrices spread over the pool when there are many.
void float_bmm(const float* a, const std::vector<int64_t>& a_strides, const float* b,
               const std::vector<int64_t>& b_strides, const std::vector<int64_t>& out, int64_t K, float* y);

// y = x with its axes permuted: `perm` over the whole shape (the batch included, perm[0] == 0),
// `in` the input's shape with this call's batch.  The last axis kept last (attention's head
// split / merge, (0, 2, 1, 3)) copies contiguous runs; the last two swapped reads runs too.
void float_transpose(const float* x, const std::vector<int64_t>& in, const std::vector<int64_t>& perm, float* y);

// Padding (the float graph's pad, NumPy's np.pad): `in` the input's shape with this call's batch,
// begin / end per axis (0 on the batch).  Reflect pads by at most n - 1, circular by at most n
// and no mode but constant pads an empty axis: the caller has checked.
enum class FloatPadMode { kConstant, kReflect, kReplicate, kCircular };

struct FloatPad {
  FloatPadMode mode = FloatPadMode::kConstant;
  float value = 0.0f;  // constant mode's fill
  std::vector<int64_t> begin, end;
};

void float_pad(const FloatPad& p, const float* x, const std::vector<int64_t>& in, float* y);

// Layer norm over rows of `inner` values: (x - mean) / sqrt(var + eps) * weight + bias, in float32
// with 16-lane partial sums (a corrected two-pass mean and biased variance; docs/numerics.md).
// weight / bias null or `inner` values.
void float_layer_norm(const float* x, int64_t rows, int64_t inner, double eps, const float* weight,
                      const float* bias, float* y);

// Softmax over the middle axis of [outer, len, inner]: e = exp(x - max), y = e * (1 / sum e).
void float_softmax(const float* x, int64_t outer, int64_t len, int64_t inner, float* y);

// Max / average pooling over the two spatial axes of an NCHW tensor (the float graph's semantics:
// padding ignored by max, counted by average when count_include_pad).
struct FloatPool {
  bool average = false, count_include_pad = true;
  int64_t channels = 0, in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  int64_t kernel[2] = {1, 1}, stride[2] = {1, 1}, pad[4] = {0, 0, 0, 0};  // top, left, bottom, right
};

void float_pool(const FloatPool& p, int64_t batch, const float* x, float* y);

}  // namespace eb
