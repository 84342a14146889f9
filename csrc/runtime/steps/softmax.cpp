// Runtime layer, step softmax: a float island over one non-batch axis of a
// float32 tensor (a quantized model's softmax runs after its dequantize).
#include <algorithm>
#include <cmath>

#include "runtime/steps/steps.h"
#include "runtime/thread_pool.h"

namespace eb {
namespace {

struct SoftmaxStep final : Step {
  int64_t axis = 1;

  // exp and the sum in double, one rounding at the end: within a few ulp of NumPy's float32
  // formula (execute.py), which rounds at every step.
  void run(const StepIO& io) const override {
    const std::vector<int64_t> shape = with_batch(io.in_t(), io.batch());
    const auto a = static_cast<size_t>(axis);
    const int64_t outer = product(shape, 0, a), len = shape[a], inner = product(shape, a + 1, shape.size());
    const auto* x = static_cast<const float*>(io.in());
    auto* y = static_cast<float*>(io.out());
    parallel_for(outer, len * inner * 16, kMinWorkPerThread, [&](int64_t o0, int64_t o1) {
      std::vector<double> e(static_cast<size_t>(len));  // each exp computed once (the dominant cost)
      for (int64_t o = o0; o < o1; ++o)
        for (int64_t i = 0; i < inner; ++i) {
          const float* px = x + o * len * inner + i;
          float* py = y + o * len * inner + i;
          float mx = -INFINITY;
          for (int64_t k = 0; k < len; ++k) mx = std::max(mx, px[k * inner]);
          double sum = 0.0;
          for (int64_t k = 0; k < len; ++k) sum += (e[k] = std::exp(static_cast<double>(px[k * inner] - mx)));
          for (int64_t k = 0; k < len; ++k) py[k * inner] = static_cast<float>(e[k] / sum);
        }
    });
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
