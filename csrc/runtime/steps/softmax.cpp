// Runtime layer, step softmax: a float island over one non-batch axis of a
// float32 tensor (a quantized model's softmax runs after its dequantize), or
// attention's softmax(x * scale + mask) over the last axis in one pass over
// the scores (graph.passes.fuse_masked_softmax).
#include <algorithm>
#include <cmath>

#include "runtime/dispatch.h"
#include "runtime/float_ops.h"
#include "runtime/steps/steps.h"
#include "runtime/thread_pool.h"

namespace eb {
namespace {

struct SoftmaxStep final : Step {
  int64_t axis = 1;
  bool scaled = false;
  float scale = 1.0f;

  // kernels/float_math.h: float32 exp and 16-lane partial sums, the same bits on every ISA
  // (docs/numerics.md, "Float steps").
  void run(const StepIO& io) const override {
    const std::vector<int64_t> shape = with_batch(io.in_t(), io.batch());
    const auto* x = static_cast<const float*>(io.in());
    auto* y = static_cast<float*>(io.out());
    const auto a = static_cast<size_t>(axis);
    if (io.num_inputs() == 1 && !scaled) {
      float_softmax(x, product(shape, 0, a), shape[a], product(shape, a + 1, shape.size()), y);
      return;
    }
    masked_rows(io, shape, x, y);
  }

  // The last axis: each row of y becomes x * scale + its mask row (two roundings, as the float
  // graph's mul then add), then the rows' softmax in place.
  void masked_rows(const StepIO& io, const std::vector<int64_t>& shape, const float* x, float* y) const {
    const size_t rank = shape.size();
    const int64_t len = shape[rank - 1], rows = product(shape, 0, rank - 1);
    const bool has_mask = io.num_inputs() == 2;
    std::vector<int64_t> mask_strides;
    if (has_mask) mask_strides = broadcast_strides(with_batch(io.in_t(1), io.batch()), shape);
    const auto* mask = has_mask ? static_cast<const float*>(io.in(1)) : nullptr;
    const FloatMathKernels k = active_float_math();
    parallel_for(rows, len * 32, kMinWorkPerThread, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* in = x + r * len;
        float* out = y + r * len;
        if (scaled) {
          k.binary(FloatBinaryOp::kMul, in, 1, &scale, 0, len, false, 0.0f, 0.0f, out);
          in = out;
        }
        if (has_mask) {
          int64_t offset = 0;  // the mask row's offset: r's index along each axis but the last
          for (int64_t d = static_cast<int64_t>(rank) - 2, rest = r; d >= 0; --d) {
            offset += (rest % shape[static_cast<size_t>(d)]) * mask_strides[static_cast<size_t>(d)];
            rest /= shape[static_cast<size_t>(d)];
          }
          k.binary(FloatBinaryOp::kAdd, in, 1, mask + offset, mask_strides[rank - 1], len, false, 0.0f, 0.0f, out);
        } else if (in != out) {
          std::copy(in, in + len, out);
        }
      }
      k.softmax_rows(y + r0 * len, r1 - r0, len, y + r0 * len);
    });
  }
};

}  // namespace

std::unique_ptr<Step> create_softmax(const StepContext& c) {
  if (c.inputs.size() != 1 && c.inputs.size() != 2) c.bad("expected 1 input (or 2 with a mask)");
  for (size_t i = 0; i < c.inputs.size(); ++i)
    if (c.in(i).quantized()) c.bad("softmax works on float32 tensors");
  if (c.out().quantized()) c.bad("softmax works on float32 tensors");
  auto s = std::make_unique<SoftmaxStep>();
  const std::vector<int64_t>& x = c.in().shape;
  s->axis = c.lowered.integer("axis");
  // Axis 0 is the batch: items are independent, so no step may mix them.
  if (s->axis < 1 || s->axis >= static_cast<int64_t>(x.size()))
    c.bad("axis must name a dimension after the batch, got " + std::to_string(s->axis));
  if (c.lowered.has("scale")) {
    s->scaled = true;
    s->scale = static_cast<float>(c.lowered.real("scale"));
    if (!std::isfinite(s->scale)) c.bad("scale must be finite");
  }
  if ((s->scaled || c.inputs.size() == 2) && s->axis != static_cast<int64_t>(x.size()) - 1)
    c.bad("a scale or mask goes with a softmax over the last axis");
  if (c.inputs.size() == 2) {
    const std::vector<int64_t>& m = c.in(1).shape;
    bool fits = m.size() == x.size();
    for (size_t d = 1; fits && d < x.size(); ++d) fits = m[d] == 1 || m[d] == x[d];
    if (!fits) c.bad("mask " + shape_str(m) + " must broadcast to x " + shape_str(x));
  }
  c.shape_is(c.out(), x);
  return s;
}

}  // namespace eb
