// Runtime layer, quantized elementwise steps: binary (QLinearAdd / QLinearMul,
// NumPy broadcasting) and lut (a 256-entry table per byte: any quantized unary
// function, resolved by the writer).
#include <array>

#include "runtime/cnn_ops.h"
#include "runtime/steps/steps.h"

namespace eb {
namespace {

// ONNX Runtime's operand order of QLinearAdd depends on the shapes, batch included, and through
// the batch only on whether it is <= 1: the record resolves it for both cases.
struct BinaryStep final : Step {
  bool mul = false;
  bool b_first_batch_le1 = false, b_first_batch_gt1 = false;

  void run(const StepIO& io) const override {
    const PlanTensor& a = io.in_t(0);
    const PlanTensor& b = io.in_t(1);
    const PlanTensor& c = io.out_t();
    const QuantTensor qa{io.in(0), with_batch(a, io.batch()), a.scale, a.zp};
    const QuantTensor qb{io.in(1), with_batch(b, io.batch()), b.scale, b.zp};
    if (mul)
      qlinear_mul(qa, qb, c.scale, c.zp, c.is_signed(), io.out());
    else
      qlinear_add(qa, qb, c.scale, c.zp, c.is_signed(), io.batch() <= 1 ? b_first_batch_le1 : b_first_batch_gt1,
                  io.out());
  }
};

struct LutStep final : Step {
  std::array<uint8_t, 256> table{};

  void run(const StepIO& io) const override {
    lookup_table(static_cast<const uint8_t*>(io.in()), io.batch() * io.in_t().sample_elems(), table.data(),
                 static_cast<uint8_t*>(io.out()));
  }
  int64_t const_bytes() const override { return static_cast<int64_t>(table.size()); }
};

}  // namespace

std::unique_ptr<Step> create_binary(const StepContext& c) {
  c.arity(2);
  const PlanTensor &a = c.in(0), &b = c.in(1), &y = c.out();
  c.require_quantized(y);
  c.same_type(a, y);
  c.same_type(b, y);
  std::vector<int64_t> shape;
  if (a.shape.size() != y.shape.size() || b.shape.size() != y.shape.size() || !broadcast_shapes(a.shape, b.shape, &shape))
    c.bad("input shapes " + shape_str(a.shape) + " and " + shape_str(b.shape) + " do not broadcast");
  c.shape_is(y, shape);
  auto s = std::make_unique<BinaryStep>();
  s->mul = c.lowered.flag("mul");
  const std::vector<int64_t> order = c.lowered.ints("b_first", 2);
  if ((order[0] != 0 && order[0] != 1) || (order[1] != 0 && order[1] != 1)) c.bad("b_first must hold two 0 / 1 flags");
  s->b_first_batch_le1 = order[0] != 0;
  s->b_first_batch_gt1 = order[1] != 0;
  return s;
}

std::unique_ptr<Step> create_lut(const StepContext& c) {
  c.arity(1);
  c.require_quantized(c.in());
  c.require_quantized(c.out());
  c.shape_is(c.out(), c.in().shape);
  auto s = std::make_unique<LutStep>();
  const std::vector<uint8_t> t = byte_table(c, *c.consts.get("table", Value::Kind::kArray).array);
  std::copy(t.begin(), t.end(), s->table.begin());
  return s;
}

}  // namespace eb
