// Runtime layer, steps that move bytes: reshape (the float graph's reshape /
// flatten, on quantized or float32 tensors) and concat (QLinearConcat: each
// input copied, or mapped through its requantization table).
#include "runtime/cnn_ops.h"
#include "runtime/steps/steps.h"
#include "runtime/thread_pool.h"

namespace eb {
namespace {

// Bytes of `batch` items of [P, C] <-> [C, P] (P pixels): NHWC <-> NCHW.
void transpose_bytes(const uint8_t* x, int64_t batch, int64_t rows, int64_t cols, uint8_t* y) {
  parallel_for(batch, rows * cols, kMinWorkPerThread, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const uint8_t* src = x + n * rows * cols;
      uint8_t* dst = y + n * rows * cols;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
    }
  });
}

// The float graph's reshape: a 4-D quantized input is read in NCHW order, a 4-D quantized output
// written in NHWC order.
struct ReshapeStep final : Step {
  bool same_bytes = false;  // no NHWC <-> NCHW reordering: the bytes are the input's
  bool may_alias_input() const override { return same_bytes; }

  void run(const StepIO& io) const override {
    const PlanTensor& x = io.in_t();
    const PlanTensor& y = io.out_t();
    const int64_t batch = io.batch();
    const auto* src = static_cast<const uint8_t*>(io.in());
    auto* dst = static_cast<uint8_t*>(io.out());
    const bool from_nhwc = x.quantized() && x.shape.size() == 4;
    const bool to_nhwc = y.quantized() && y.shape.size() == 4;
    const int64_t bytes = batch * x.sample_bytes();
    if (!from_nhwc && !to_nhwc) {
      if (bytes > 0 && src != dst) std::memcpy(dst, src, static_cast<size_t>(bytes));
      return;
    }
    if (from_nhwc && to_nhwc) {  // through NCHW order
      thread_local AlignedBuffer<uint8_t> tmp;
      tmp.reserve_discard(static_cast<size_t>(bytes));
      transpose_bytes(src, batch, x.shape[1] * x.shape[2], x.shape[3], tmp.data());
      transpose_bytes(tmp.data(), batch, y.shape[3], y.shape[1] * y.shape[2], dst);
      return;
    }
    if (from_nhwc)
      transpose_bytes(src, batch, x.shape[1] * x.shape[2], x.shape[3], dst);
    else
      transpose_bytes(src, batch, y.shape[3], y.shape[1] * y.shape[2], dst);
  }
};

struct ConcatStep final : Step {
  int64_t axis = 1;                          // >= 1: never the batch
  std::vector<std::vector<uint8_t>> tables;  // per input: 256 bytes, or empty to copy

  void run(const StepIO& io) const override {
    std::vector<ConcatPart> parts(io.num_inputs());
    for (size_t i = 0; i < parts.size(); ++i) {
      parts[i].data = static_cast<const uint8_t*>(io.in(i));
      parts[i].axis_len = io.in_t(i).shape[static_cast<size_t>(axis)];
      parts[i].table = tables[i].empty() ? nullptr : tables[i].data();
    }
    const std::vector<int64_t>& shape = io.out_t().shape;
    const auto a = static_cast<size_t>(axis);
    concat(parts, io.batch() * product(shape, 1, a), product(shape, a + 1, shape.size()),
           static_cast<uint8_t*>(io.out()));
  }

  int64_t const_bytes() const override {
    int64_t n = 0;
    for (const auto& t : tables) n += bytes_of(t);
    return n;
  }
};

}  // namespace

std::unique_ptr<Step> create_reshape(const StepContext& c) {
  c.arity(1);
  c.same_type(c.in(), c.out());
  const bool sequence = holds_sequence(c.in().shape, 1, c.in().shape.size()) || holds_sequence(c.out().shape, 1, c.out().shape.size());
  if (sequence && ((c.in().quantized() && c.in().shape.size() == 4) || (c.out().quantized() && c.out().shape.size() == 4)))
    c.bad("a 4-D quantized tensor (NHWC) with the sequence dimension");
  if (sample_monomial(c.in().shape) != sample_monomial(c.out().shape))
    c.bad("cannot reshape " + shape_str(c.in().shape) + " to " + shape_str(c.out().shape));
  auto s = std::make_unique<ReshapeStep>();
  s->same_bytes = !(c.in().quantized() && c.in().shape.size() == 4) && !(c.out().quantized() && c.out().shape.size() == 4);
  return s;
}

std::unique_ptr<Step> create_concat(const StepContext& c) {
  if (c.inputs.empty()) c.bad("expected at least one input");
  const PlanTensor& y = c.out();
  c.require_quantized(y);
  auto s = std::make_unique<ConcatStep>();
  s->axis = c.lowered.integer("axis");
  if (s->axis < 1 || s->axis >= static_cast<int64_t>(y.shape.size())) c.bad("axis must be a non-batch axis");
  const auto axis = static_cast<size_t>(s->axis);
  int64_t total = 0;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const PlanTensor& x = c.in(i);
    c.same_type(x, y);
    if (x.shape.size() != y.shape.size()) c.bad("input '" + x.name + "' has the wrong rank");
    for (size_t d = 1; d < y.shape.size(); ++d)
      if (d != axis && x.shape[d] != y.shape[d]) c.bad("input '" + x.name + "' differs from the output outside the concat axis");
    total += x.shape[axis];
  }
  if (total != y.shape[axis]) c.bad("the output's axis extent is not the inputs' sum");
  const Value& tables = c.lowered.get("tables", Value::Kind::kList);
  if (tables.items.size() != c.inputs.size()) c.bad("needs one table (or none) per input");
  for (const Value& t : tables.items) {
    if (t.kind == Value::Kind::kNone) s->tables.emplace_back();
    else if (t.kind == Value::Kind::kArray) s->tables.push_back(byte_table(c, *t.array));
    else c.bad("a table must be an array or none");
  }
  return s;
}

}  // namespace eb
