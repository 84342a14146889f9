// Runtime layer, step softmax: a float island over one non-batch axis of a
// float32 tensor (a quantized model's softmax runs after its dequantize).
#include "runtime/float_ops.h"
#include "runtime/steps/steps.h"

namespace eb {
namespace {

struct SoftmaxStep final : Step {
  int64_t axis = 1;

  // kernels/float_math.h: float32 exp and 16-lane partial sums, the same bits on every ISA
  // (docs/numerics.md, "Float steps").
  void run(const StepIO& io) const override {
    const std::vector<int64_t> shape = with_batch(io.in_t(), io.batch());
    const auto a = static_cast<size_t>(axis);
    float_softmax(static_cast<const float*>(io.in()), product(shape, 0, a), shape[a],
                  product(shape, a + 1, shape.size()), static_cast<float*>(io.out()));
  }
};

}  // namespace

std::unique_ptr<Step> create_softmax(const StepContext& c) {
  c.arity(1);
  if (c.in().quantized() || c.out().quantized()) c.bad("softmax works on float32 tensors");
  auto s = std::make_unique<SoftmaxStep>();
  s->axis = c.lowered.integer("axis");
  // Axis 0 is the batch: items are independent, so no step may mix them.
  if (s->axis < 1 || s->axis >= static_cast<int64_t>(c.in().shape.size()))
    c.bad("axis must name a dimension after the batch, got " + std::to_string(s->axis));
  c.shape_is(c.out(), c.in().shape);
  return s;
}

}  // namespace eb
