// Runtime layer, the steps that read integer token inputs (BERT-style encoders):
//   embedding      ids [N, ...] -> rows of a float32 table [V, D]: [N, ..., D] (ONNX Gather)
//   additive_mask  keep mask [N, T] (1 attend, 0 padding) -> [N, 1, 1, T]: 0 or `fill`
//   padded_positions  ids [N, T] -> RoBERTa's position ids [N, T]: `pad` at padding ids, else
//                  pad + the count of non-padding ids up to and including the token
// Plan tensors are float32, so ids arrive as floats (exact below 2^24, which the table size
// is checked against); every id is checked to be an integer in range before any row is read:
// a bad id throws std::invalid_argument (ValueError in Python), never reads out of bounds.
#include <cmath>
#include <iomanip>
#include <limits>
#include <sstream>

#include "runtime/steps/steps.h"

namespace eb {
namespace {

// Largest table that float32 ids address exactly (every integer up to 2^24 is a float32).
constexpr int64_t kMaxRows = int64_t{1} << 24;

// `v` as an index in [0, limit), or -1 when it is not an integer there (NaN included).
inline int64_t as_index(float v, int64_t limit) {
  if (!(v >= 0.0f) || v >= static_cast<float>(limit) || v != std::floor(v)) return -1;
  return static_cast<int64_t>(v);
}

[[noreturn]] void bad_value(const StepIO& io, const char* what, float v, int64_t limit) {
  std::ostringstream text;
  text << io.label() << ": " << what << " " << std::setprecision(9) << v << " is not an integer in [0, " << limit << ")";
  throw std::invalid_argument(text.str());
}

struct EmbeddingStep final : Step {
  std::vector<float> table;      // [rows, dim], row-major: a float32 table, or
  std::vector<int8_t> table_q;   // an int8 one with
  std::vector<float> row_scale;  // one scale per row (a row reads float(q) * scale)
  int64_t rows = 0, dim = 0;

  void run(const StepIO& io) const override {
    const int64_t count = io.batch() * product(io.in_t().shape, 1, io.in_t().shape.size());
    const auto* ids = static_cast<const float*>(io.in());
    for (int64_t i = 0; i < count; ++i)  // check every id before writing anything
      if (as_index(ids[i], rows) < 0) bad_value(io, "token id", ids[i], rows);
    auto* y = static_cast<float*>(io.out());
    if (!table_q.empty()) {
      for (int64_t i = 0; i < count; ++i) {
        const int64_t r = as_index(ids[i], rows);
        const int8_t* q = table_q.data() + r * dim;
        const float s = row_scale[static_cast<size_t>(r)];
        for (int64_t j = 0; j < dim; ++j) y[i * dim + j] = static_cast<float>(q[j]) * s;
      }
      return;
    }
    const auto row_bytes = static_cast<size_t>(dim) * sizeof(float);
    for (int64_t i = 0; i < count; ++i)
      std::memcpy(y + i * dim, table.data() + as_index(ids[i], rows) * dim, row_bytes);
  }

  int64_t const_bytes() const override { return bytes_of(table) + bytes_of(table_q) + bytes_of(row_scale); }
};

struct AdditiveMaskStep final : Step {
  float fill = -std::numeric_limits<float>::max();

  void run(const StepIO& io) const override {
    const int64_t count = io.batch() * io.in_t().shape[1];
    const auto* keep = static_cast<const float*>(io.in());
    auto* y = static_cast<float*>(io.out());
    for (int64_t i = 0; i < count; ++i) {
      const int64_t k = as_index(keep[i], 2);
      if (k < 0) bad_value(io, "attention mask value", keep[i], 2);
      y[i] = k ? 0.0f : fill;
    }
  }
};

struct PaddedPositionsStep final : Step {
  float pad = 1.0f;

  void run(const StepIO& io) const override {
    const int64_t t = io.in_t().shape[1];
    const auto* ids = static_cast<const float*>(io.in());
    auto* y = static_cast<float*>(io.out());
    for (int64_t r = 0; r < io.batch(); ++r) {
      int64_t count = 0;  // exact: a row holds far fewer than 2^24 tokens
      for (int64_t i = r * t; i < (r + 1) * t; ++i) {
        const bool real = ids[i] != pad;
        count += real;
        y[i] = real ? pad + static_cast<float>(count) : pad;
      }
    }
  }
};

}  // namespace

std::unique_ptr<Step> create_embedding(const StepContext& c) {
  c.float_in_out("embedding");
  const bool int8 = c.consts.has("row_scale");
  const ArrayView& t = int8 ? c.consts.array("table", ArrayDtype::kInt8, "int8")
                            : c.consts.array("table", ArrayDtype::kFloat32, "float32");
  if (t.shape.size() != 2 || t.shape[0] < 1 || t.shape[1] < 1) c.bad("table must be a [V, D] array");
  if (t.shape[0] > kMaxRows) c.bad("the table has more than 2^24 rows (float32 ids address 2^24 exactly)");
  std::vector<int64_t> want = c.in().shape;
  want.push_back(t.shape[1]);
  c.shape_is(c.out(), want);
  auto s = std::make_unique<EmbeddingStep>();
  s->rows = t.shape[0];
  s->dim = t.shape[1];
  if (!int8) {
    s->table = values_of<float>(t);
    return s;
  }
  s->table_q = values_of<int8_t>(t);
  s->row_scale = floats(c.consts, "row_scale", t.shape[0]);
  for (float v : s->row_scale)
    if (!(v > 0.0f) || !std::isfinite(v)) c.bad("row_scale must be positive and finite");
  return s;
}

std::unique_ptr<Step> create_additive_mask(const StepContext& c) {
  c.float_in_out("additive_mask");
  c.rank(c.in(), 2);
  c.shape_is(c.out(), {-1, 1, 1, c.in().shape[1]});
  auto s = std::make_unique<AdditiveMaskStep>();
  const double fill = c.lowered.real("fill");
  if (std::isnan(fill)) c.bad("fill is NaN");
  s->fill = static_cast<float>(fill);
  return s;
}

std::unique_ptr<Step> create_padded_positions(const StepContext& c) {
  c.float_in_out("padded_positions");
  c.rank(c.in(), 2);
  c.shape_is(c.out(), c.in().shape);
  if (c.in().shape[1] > kMaxRows) c.bad("rows longer than 2^24 tokens");
  const int64_t pad = c.lowered.integer("pad");
  if (pad < 0 || pad >= kMaxRows) c.bad("pad must be in [0, 2^24)");
  auto s = std::make_unique<PaddedPositionsStep>();
  s->pad = static_cast<float>(pad);
  return s;
}

}  // namespace eb
