// Runtime layer, float_reduce: the sum, mean, L2 norm or maximum of a float32 tensor over
// contiguous non-batch axes (sentence encoders' pooling). x is viewed as
// [N * outer, len, inner]; each output value accumulates its `len` inputs in order, in double,
// and is rounded to float32 once: portable scalar code, so the same bits on every ISA, and the
// same bits as the graph's float executor (graph/float_exec.py _reduce).
#include <algorithm>
#include <cmath>

#include "runtime/steps/steps.h"

namespace eb {
namespace {

enum class ReduceMode { kSum, kMean, kL2, kMax };

struct FloatReduceStep final : Step {
  ReduceMode mode = ReduceMode::kSum;
  size_t first = 1, last = 1;  // the reduced axes

  void run(const StepIO& io) const override {
    const std::vector<int64_t>& shape = io.in_t().shape;
    const int64_t outer = io.batch() * product(shape, 1, first), len = product(shape, first, last + 1),
                  inner = product(shape, last + 1, shape.size());
    const auto* x = static_cast<const float*>(io.in());
    auto* y = static_cast<float*>(io.out());
    for (int64_t o = 0; o < outer; ++o) {
      const float* xo = x + o * len * inner;
      for (int64_t i = 0; i < inner; ++i) y[o * inner + i] = reduce(xo + i, len, inner);
    }
  }

  // One output value from the `len` inputs at x[0], x[inner], x[2 * inner], ...
  float reduce(const float* x, int64_t len, int64_t inner) const {
    if (mode == ReduceMode::kMax) {
      float m = x[0];  // NaN propagates, as NumPy's max
      for (int64_t k = 1; k < len && !std::isnan(m); ++k) {
        const float v = x[k * inner];
        if (std::isnan(v) || v > m) m = v;
      }
      return m;
    }
    double acc = 0.0;
    for (int64_t k = 0; k < len; ++k) {
      const double v = x[k * inner];
      acc += mode == ReduceMode::kL2 ? v * v : v;
    }
    if (mode == ReduceMode::kMean) acc /= static_cast<double>(len);
    if (mode == ReduceMode::kL2) acc = std::sqrt(acc);
    return static_cast<float>(acc);
  }
};

}  // namespace

std::unique_ptr<Step> create_float_reduce(const StepContext& c) {
  static const std::pair<const char*, ReduceMode> kModes[] = {
      {"sum", ReduceMode::kSum}, {"mean", ReduceMode::kMean}, {"l2", ReduceMode::kL2}, {"max", ReduceMode::kMax}};
  c.float_in_out("reduce");
  auto s = std::make_unique<FloatReduceStep>();
  s->mode = lookup(c, kModes, c.lowered.str("mode"), "reduce mode");
  const bool keepdims = c.lowered.flag("keepdims");
  const std::vector<int64_t> axes = c.lowered.ints("axes");
  const std::vector<int64_t>& x = c.in().shape;
  const auto rank = static_cast<int64_t>(x.size());
  if (axes.empty()) c.bad("axes must name at least one axis");
  for (size_t i = 0; i < axes.size(); ++i) {
    if (axes[i] < 1 || axes[i] >= rank) c.bad("axes must name dimensions other than the batch, in range of x's rank");
    // One run of adjacent axes: x is then [outer, len, inner] without a gather.
    if (i > 0 && axes[i] != axes[i - 1] + 1) c.bad("axes must be increasing and contiguous (e.g. [1, 2])");
  }
  const auto first = static_cast<size_t>(axes.front()), last = static_cast<size_t>(axes.back());
  s->first = first;
  s->last = last;
  // (the sequence, if reduced, is at least 1 long)
  if (!holds_sequence(x, first, last + 1) && product(x, first, last + 1) < 1) c.bad("the reduced axes hold no values");
  std::vector<int64_t> want;
  for (size_t d = 0; d < x.size(); ++d) {
    if (d < first || d > last) want.push_back(x[d]);
    else if (keepdims) want.push_back(1);
  }
  c.shape_is(c.out(), want);
  return s;
}

}  // namespace eb
