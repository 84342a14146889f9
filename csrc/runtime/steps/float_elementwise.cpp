// Runtime layer, float island elementwise steps: float_unary (activations),
// float_affine (an unfolded batch norm: per-channel scale and shift) and
// float_binary (add / mul / div with NumPy broadcasting, a constant or a second
// input, and a fused clamp).
#include <cmath>
#include <limits>
#include <tuple>

#include "runtime/float_ops.h"
#include "runtime/steps/steps.h"

namespace eb {
namespace {

struct FloatUnaryStep final : Step {
  FloatUnaryOp op;

  void run(const StepIO& io) const override {
    float_unary(op, static_cast<const float*>(io.in()), io.batch() * io.in_t().sample_elems(),
                static_cast<float*>(io.out()));
  }
};

struct FloatAffineStep final : Step {  // per-channel (axis 1) scale and shift
  std::vector<float> scale, shift;

  void run(const StepIO& io) const override {
    const PlanTensor& x = io.in_t();
    float_channel_affine(static_cast<const float*>(io.in()), io.batch(), x.shape[1], x.sample_elems() / x.shape[1],
                         scale.data(), shift.data(), static_cast<float*>(io.out()));
  }
  int64_t const_bytes() const override { return bytes_of(scale) + bytes_of(shift); }
};

struct FloatBinaryStep final : Step {  // a + b, a * b or a / b; b a tensor (second input) or the constant `b`
  FloatBinaryOp op = FloatBinaryOp::kAdd;
  std::vector<float> b;
  std::vector<int64_t> b_shape;  // the constant's shape (empty when b is an input)
  // b_shape[b_seq_axis] is the longest sequence: a run of length S reads the first S entries
  // along it (every axis before it has extent 1, so they are b's first values); -1: none.
  int64_t b_seq_axis = -1;
  // A fused activation as a clamp of the result (relu: [0, inf)); none: (-inf, inf).
  float lo = -std::numeric_limits<float>::infinity(), hi = std::numeric_limits<float>::infinity();

  void run(const StepIO& io) const override {
    const std::vector<int64_t> a_shape = with_batch(io.in_t(0), io.batch());
    std::vector<int64_t> bs = b_shape.empty() ? with_batch(io.in_t(1), io.batch()) : b_shape;
    const std::vector<int64_t> y_shape = with_batch(io.out_t(), io.batch());
    if (b_seq_axis >= 0)  // this run's length: the output's extent on the same (right-aligned) axis
      bs[static_cast<size_t>(b_seq_axis)] = y_shape[y_shape.size() - bs.size() + static_cast<size_t>(b_seq_axis)];
    const float* pb = b_shape.empty() ? static_cast<const float*>(io.in(1)) : b.data();
    float_binary(op, static_cast<const float*>(io.in(0)), broadcast_strides(a_shape, y_shape), pb,
                 broadcast_strides(bs, y_shape), y_shape, lo, hi, static_cast<float*>(io.out()));
  }
  int64_t const_bytes() const override { return bytes_of(b); }
};

}  // namespace

std::unique_ptr<Step> create_float_unary(const StepContext& c) {
  static const std::pair<const char*, FloatUnary> kKinds[] = {
      {"clip", FloatUnary::kClip},           {"leaky_relu", FloatUnary::kLeakyRelu}, {"sigmoid", FloatUnary::kSigmoid},
      {"tanh", FloatUnary::kTanh},           {"hardswish", FloatUnary::kHardswish},  {"gelu", FloatUnary::kGelu},
      {"gelu_tanh", FloatUnary::kGeluTanh},  {"hardsigmoid", FloatUnary::kHardsigmoid}, {"erf", FloatUnary::kErf}};
  auto s = std::make_unique<FloatUnaryStep>();
  const FloatUnary kind = lookup(c, kKinds, c.lowered.str("fn"), "float activation");
  // clip's a, b are its bounds; the other kinds' (slope, alpha, beta) must be finite
  const auto [a, b] = kind == FloatUnary::kClip ? c.clamp("a", "b")
                                                : std::pair<float, float>(c.lowered.real("a"), c.lowered.real("b"));
  if (kind != FloatUnary::kClip && (!std::isfinite(a) || !std::isfinite(b))) c.bad("activation parameters must be finite");
  s->op = FloatUnaryOp{kind, a, b};
  c.float_in_out("a float activation");
  c.shape_is(c.out(), c.in().shape);
  return s;
}

std::unique_ptr<Step> create_float_affine(const StepContext& c) {
  c.arity(1);
  const PlanTensor &x = c.in(), &y = c.out();
  if (x.quantized() || y.quantized() || x.shape.size() < 2) c.bad("batch norm works on float32 [N, C, ...] tensors");
  auto s = std::make_unique<FloatAffineStep>();
  s->scale = floats(c.lowered, "scale");
  s->shift = floats(c.lowered, "shift");
  if (static_cast<int64_t>(s->scale.size()) != x.shape[1] || static_cast<int64_t>(s->shift.size()) != x.shape[1])
    c.bad("scale and shift need one value per channel");
  c.shape_is(y, x.shape);
  return s;
}

std::unique_ptr<Step> create_float_binary(const StepContext& c) {
  static const std::pair<const char*, FloatBinaryOp> kOps[] = {
      {"add", FloatBinaryOp::kAdd}, {"mul", FloatBinaryOp::kMul}, {"div", FloatBinaryOp::kDiv}};
  auto s = std::make_unique<FloatBinaryStep>();
  s->op = lookup(c, kOps, c.lowered.str("fn"), "float binary op");
  std::tie(s->lo, s->hi) = c.clamp();
  if (c.lowered.has("b")) {
    const ArrayView& b = c.lowered.array("b", ArrayDtype::kFloat32, "float32");
    s->b = values_of<float>(b);
    s->b_shape = b.shape.empty() ? std::vector<int64_t>{1} : b.shape;
  }
  c.arity(s->b_shape.empty() ? 2 : 1);
  for (size_t i = 0; i < c.inputs.size(); ++i)
    if (c.in(i).quantized()) c.bad("float add / mul / div works on float32 tensors");
  if (c.out().quantized()) c.bad("float add / mul / div works on float32 tensors");
  // Every operand broadcasts to the output (the batch only against the batch, or 1).
  const std::vector<int64_t>& y = c.out().shape;
  if (c.lowered.has("b_seq_axis")) {
    const int64_t k = c.lowered.integer("b_seq_axis");
    const size_t rank = s->b_shape.size();
    if (s->b_shape.empty() || k < 0 || k >= static_cast<int64_t>(rank) || y.size() < rank ||
        y[y.size() - rank + static_cast<size_t>(k)] != kSequenceDim || s->b_shape[static_cast<size_t>(k)] != c.ex.sequence_hi() ||
        product(s->b_shape, 0, static_cast<size_t>(k)) != 1)
      c.bad("b_seq_axis must name the axis of the constant b that holds the longest sequence, where the output has "
            "the sequence, with extent 1 before it");
    s->b_seq_axis = k;
  }
  // The constant as the checks see it: its sequence axis symbolic.
  std::vector<int64_t> b_checked = s->b_shape;
  if (s->b_seq_axis >= 0) b_checked[static_cast<size_t>(s->b_seq_axis)] = kSequenceDim;
  auto fits = [&](const std::vector<int64_t>& a, bool batch_dim) {
    if (a.size() > y.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      const size_t d = y.size() - a.size() + i;
      if (d == 0 && batch_dim) continue;
      if (a[i] != 1 && a[i] != y[d]) return false;
    }
    return true;
  };
  // A tensor operand has the output's rank: its dimension 0 is the batch.
  const std::vector<int64_t>& a = c.in(0).shape;
  const bool b_is_input = s->b_shape.empty();
  if (!fits(a, true) || a.size() != y.size() ||
      (b_is_input ? !fits(c.in(1).shape, true) || c.in(1).shape.size() != y.size() : !fits(b_checked, false)))
    c.bad("operands do not broadcast to the output");
  if (!(s->lo <= s->hi)) c.bad("the fused activation's clamp range is empty");
  return s;
}

}  // namespace eb
