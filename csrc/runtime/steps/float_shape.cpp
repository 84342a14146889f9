// Runtime layer, float island steps that move float32 values: float_transpose
// (any permutation that keeps the batch first), float_pad (np.pad's constant,
// reflect, replicate and circular modes), float_concat and float_select (one
// index along an axis, the axis dropped).
#include <algorithm>

#include "runtime/float_ops.h"
#include "runtime/steps/steps.h"

namespace eb {
namespace {

constexpr int64_t kMaxExtent = int64_t{1} << 40;

struct FloatTransposeStep final : Step {
  std::vector<int64_t> perm;  // over every axis; perm[0] == 0 (the batch stays first)

  void run(const StepIO& io) const override {
    float_transpose(static_cast<const float*>(io.in()), with_batch(io.in_t(), io.batch()), perm,
                    static_cast<float*>(io.out()));
  }
};

struct FloatPadStep final : Step {
  FloatPad pad;  // begin / end per axis, 0 on the batch

  void run(const StepIO& io) const override {
    float_pad(pad, static_cast<const float*>(io.in()), with_batch(io.in_t(), io.batch()),
              static_cast<float*>(io.out()));
  }
};

struct FloatConcatStep final : Step {
  int64_t axis = 1;

  // Each input contributes extent[axis] * inner floats per outer index.
  void run(const StepIO& io) const override {
    const std::vector<int64_t> y_shape = with_batch(io.out_t(), io.batch());
    const auto a = static_cast<size_t>(axis);
    const int64_t outer = product(y_shape, 0, a), inner = product(y_shape, a + 1, y_shape.size());
    auto* y = static_cast<float*>(io.out());
    int64_t offset = 0;
    for (size_t i = 0; i < io.num_inputs(); ++i) {
      const int64_t run = io.in_t(i).shape[a] * inner;
      const auto* x = static_cast<const float*>(io.in(i));
      for (int64_t o = 0; o < outer; ++o)
        std::memcpy(y + o * y_shape[a] * inner + offset, x + o * run, static_cast<size_t>(run) * sizeof(float));
      offset += run;
    }
  }
};

struct FloatSelectStep final : Step {
  int64_t axis = 1, index = 0;

  void run(const StepIO& io) const override {  // x viewed as [N * outer, extent, inner]
    const std::vector<int64_t>& shape = io.in_t().shape;
    const auto a = static_cast<size_t>(axis);
    const int64_t outer = io.batch() * product(shape, 1, a), extent = shape[a], inner = product(shape, a + 1, shape.size());
    const auto* x = static_cast<const float*>(io.in());
    auto* y = static_cast<float*>(io.out());
    for (int64_t o = 0; o < outer; ++o)
      std::memcpy(y + o * inner, x + (o * extent + index) * inner, static_cast<size_t>(inner) * sizeof(float));
  }
};

}  // namespace

std::unique_ptr<Step> create_float_select(const StepContext& c) {
  c.float_in_out("select");
  const std::vector<int64_t>& x = c.in().shape;
  const int64_t axis = c.lowered.integer("axis");
  if (axis < 1 || axis >= static_cast<int64_t>(x.size())) c.bad("axis must name a dimension other than the batch");
  const auto a = static_cast<size_t>(axis);
  auto s = std::make_unique<FloatSelectStep>();
  s->axis = axis;
  s->index = c.lowered.integer("index");
  // from the sequence: an index below its shortest length
  const int64_t extent = x[a] == kSequenceDim ? c.ex.sequence_lo() : x[a];
  if (s->index < 0 || s->index >= extent) c.bad("index is out of range of the axis");
  std::vector<int64_t> want = x;
  want.erase(want.begin() + static_cast<std::ptrdiff_t>(a));
  c.shape_is(c.out(), want);
  return s;
}

std::unique_ptr<Step> create_float_transpose(const StepContext& c) {
  c.float_in_out("transpose");
  auto s = std::make_unique<FloatTransposeStep>();
  s->perm = c.lowered.ints("perm");
  const std::vector<int64_t>& x = c.in().shape;
  if (s->perm.size() != x.size() || s->perm[0] != 0) c.bad("perm must order every axis and keep the batch first");
  std::vector<bool> seen(x.size(), false);
  std::vector<int64_t> want(x.size(), 0);
  for (size_t d = 0; d < x.size(); ++d) {
    const int64_t p = s->perm[d];
    if (p < 0 || p >= static_cast<int64_t>(x.size()) || seen[static_cast<size_t>(p)]) c.bad("perm is not a permutation");
    seen[static_cast<size_t>(p)] = true;
    want[d] = x[static_cast<size_t>(p)];
  }
  c.shape_is(c.out(), want);
  return s;
}

std::unique_ptr<Step> create_float_pad(const StepContext& c) {
  static const std::pair<const char*, FloatPadMode> kModes[] = {
      {"constant", FloatPadMode::kConstant}, {"reflect", FloatPadMode::kReflect},
      {"replicate", FloatPadMode::kReplicate}, {"circular", FloatPadMode::kCircular}};
  const std::vector<int64_t> pads = c.lowered.ints("pads");
  if (pads.size() % 2) c.bad("pads must hold the begins, then the ends of every axis");
  auto s = std::make_unique<FloatPadStep>();
  FloatPad& p = s->pad;
  p.mode = lookup(c, kModes, c.lowered.str("mode"), "pad mode");
  p.value = static_cast<float>(c.lowered.real("value"));
  const auto half = static_cast<std::ptrdiff_t>(pads.size() / 2);  // ONNX order: begins, then ends
  p.begin.assign(pads.begin(), pads.begin() + half);
  p.end.assign(pads.begin() + half, pads.end());

  c.float_in_out("pad");
  const std::vector<int64_t>& x = c.in().shape;
  if (p.begin.size() != x.size() || p.end.size() != x.size() || p.begin[0] != 0 || p.end[0] != 0)
    c.bad("pads need a begin and an end per axis, 0 on the batch");
  std::vector<int64_t> want(x.size(), 0);
  for (size_t d = 1; d < x.size(); ++d) {
    const int64_t n = x[d], b = p.begin[d], e = p.end[d];
    if (b < 0 || e < 0 || b > kMaxExtent || e > kMaxExtent) c.bad("pads must be in [0, 2^40]");
    // Every output index must find its source inside the input (float_pad's contract).
    const int64_t most = std::max(b, e);
    if (most > 0 && ((p.mode == FloatPadMode::kReflect && most > n - 1) ||
                     (p.mode == FloatPadMode::kCircular && most > n) || (p.mode == FloatPadMode::kReplicate && n < 1)))
      c.bad("axis " + std::to_string(d) + " of extent " + std::to_string(n) + " is too short for this padding");
    want[d] = n + b + e;
  }
  c.shape_is(c.out(), want);
  return s;
}

std::unique_ptr<Step> create_float_concat(const StepContext& c) {
  const PlanTensor& y = c.out();
  auto s = std::make_unique<FloatConcatStep>();
  s->axis = c.lowered.integer("axis");
  if (y.quantized() || s->axis < 1 || s->axis >= static_cast<int64_t>(y.shape.size())) c.bad("bad float concat");
  int64_t total = 0;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const PlanTensor& x = c.in(i);
    if (x.quantized() || x.shape.size() != y.shape.size()) c.bad("inputs must be float32 of the output's rank");
    for (size_t d = 1; d < y.shape.size(); ++d)
      if (d != static_cast<size_t>(s->axis) && x.shape[d] != y.shape[d]) c.bad("inputs differ outside the axis");
    total += x.shape[static_cast<size_t>(s->axis)];
    if (x.shape[static_cast<size_t>(s->axis)] == kSequenceDim) c.bad("a concatenation along the sequence dimension");
  }
  if (total != y.shape[static_cast<size_t>(s->axis)]) c.bad("the output's axis extent is not the inputs' sum");
  return s;
}

}  // namespace eb
