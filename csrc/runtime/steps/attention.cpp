// Runtime layer, int8 attention (reference/int8_attention.py, docs/numerics.md "int8 attention"):
//   dynamic_bmm   float32 a [N, ..., M, K] x b [N, ..., K, P] -> float32 [N, ..., M, P]: a's rows
//                 quantized at run time (uint8, DynamicQuantizeLinear), b's columns (symmetric
//                 int8), one u8s8 GEMM per matrix, y = float(acc) * (s_a[m] * (s_b[p] * alpha)).
//   softmax_bmm   float32 scores [N, ..., M, T] (, mask), v [N, ..., T, D] -> float32 [N, ..., M, D]:
//                 softmax(scores * scale + mask) as uint8 probabilities from an integer exp table,
//                 v's columns symmetric int8, one u8s8 GEMM per matrix.
// Every extent is read from the tensors at run (the sequence may be free); create only checks.
#include <cmath>
#include <limits>

#include "runtime/gemm.h"
#include "runtime/quantize.h"
#include "runtime/steps/steps.h"

namespace eb {
namespace {

constexpr int kExpFracBits = 8;        // d = max - x in steps of 2^-8
constexpr int64_t kExpTableSize = 4097;  // d in [0, 16]; the last entry for d >= 16
constexpr int64_t kExpOne = int64_t{1} << 24;

// rne(v) for |v| < 2^22: adding and subtracting 1.5 * 2^23 rounds to an integer once, to nearest
// even, exactly as std::nearbyint in the default mode (no fast-math: the compiler may not
// reassociate), and inline and vectorizable where nearbyint may be a library call.
inline float round_even(float v) {
  constexpr float kMagic = 12582912.0f;
  return (v + kMagic) - kMagic;
}

// The matrices of a bmm operand: its element offsets over the output's leading dimensions (0 where
// it broadcasts), like FloatBmmStep's.
std::vector<int64_t> matrix_offsets(const PlanTensor& t, const std::vector<int64_t>& y_shape, int64_t batch) {
  const size_t lead = y_shape.size() - 2;
  std::vector<int64_t> s = with_batch(t, batch);
  const int64_t matrix = s[lead] * s[lead + 1];
  s.resize(lead);
  const std::vector<int64_t> lead_shape(y_shape.begin(), y_shape.begin() + static_cast<std::ptrdiff_t>(lead));
  const std::vector<int64_t> strides = broadcast_strides(s, lead_shape);
  const int64_t count = product(lead_shape, 0, lead);
  std::vector<int64_t> offsets(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    int64_t off = 0;
    for (int64_t d = static_cast<int64_t>(lead) - 1, rest = i; d >= 0; --d) {
      off += (rest % lead_shape[static_cast<size_t>(d)]) * strides[static_cast<size_t>(d)];
      rest /= lead_shape[static_cast<size_t>(d)];
    }
    offsets[static_cast<size_t>(i)] = off * matrix;
  }
  return offsets;
}

// b [K, P] (row stride P) -> int8 columns, symmetric: s[p] = max_k |b| / 127 (1 where 0),
// q = rne(clamp(b / s, -127, 127)); col_scale[p] = s[p] * alpha, padded to Np with 0.  Returns B packed.
PackedB quantize_columns(const float* b, int64_t K, int64_t P, float alpha, std::vector<int8_t>& q,
                         std::vector<float>& amax, std::vector<float>& col_scale) {
  amax.assign(static_cast<size_t>(P), 0.0f);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t p = 0; p < P; ++p) amax[static_cast<size_t>(p)] = std::max(amax[static_cast<size_t>(p)], std::fabs(b[k * P + p]));
  const int64_t Np = round_up(P, kPanelCols);
  col_scale.assign(static_cast<size_t>(Np + 16), 0.0f);
  for (int64_t p = 0; p < P; ++p) {
    const float a = amax[static_cast<size_t>(p)];
    amax[static_cast<size_t>(p)] = a > 0.0f ? a / 127.0f : 1.0f;  // now the scale
    col_scale[static_cast<size_t>(p)] = amax[static_cast<size_t>(p)] * alpha;
  }
  q.resize(static_cast<size_t>(K * P));
  for (int64_t k = 0; k < K; ++k)
    for (int64_t p = 0; p < P; ++p) {
      float v = b[k * P + p] / amax[static_cast<size_t>(p)];
      v = v > -127.0f ? v : -127.0f;
      v = v < 127.0f ? v : 127.0f;
      q[static_cast<size_t>(k * P + p)] = static_cast<int8_t>(round_even(v));
    }
  const int32_t zero = 0;
  return pack_b(q.data(), true, K, P, P, &zero, false);
}

void gemm_float_out(const uint8_t* a, int64_t M, int64_t lda, const int32_t* zp, bool zp_per_row,
                    const PackedB& b, const float* row_scale, const float* col_scale, float* y) {
  AOperand op;
  op.data = a;
  op.M = M;
  op.K = b.K;
  op.lda = lda;
  op.zp = zp;
  op.zp_per_row = zp_per_row;
  op.rows_padded = true;
  op.zero_padded_to = lda;
  Epilogue ep;
  ep.kind = OutputKind::kFloat;
  ep.row_scale = row_scale;
  ep.col_scale = col_scale;
  ep.out = y;
  ep.ldc = b.N;
  run_gemm(op, b, ep);
}

std::vector<int64_t> out_shape(const StepIO& io) { return with_batch(io.out_t(), io.batch()); }

struct DynamicBmmStep final : Step {
  float alpha = 1.0f;

  void run(const StepIO& io) const override {
    const std::vector<int64_t> y_shape = out_shape(io);
    const size_t r = y_shape.size();
    const int64_t M = y_shape[r - 2], P = y_shape[r - 1], K = io.in_t(0).shape.back(), Kp = round_up(K, kKGroup);
    const std::vector<int64_t> a_off = matrix_offsets(io.in_t(0), y_shape, io.batch());
    const std::vector<int64_t> b_off = matrix_offsets(io.in_t(1), y_shape, io.batch());
    const auto* a = static_cast<const float*>(io.in(0));
    const auto* b = static_cast<const float*>(io.in(1));
    auto* y = static_cast<float*>(io.out());
    const std::string non_finite = io.label() + ": the input holds NaN or infinity (dynamic quantization needs finite values)";
    std::vector<uint8_t> aq(static_cast<size_t>(std::max<int64_t>(M * Kp, 1)));
    std::vector<int32_t> zp(static_cast<size_t>(std::max<int64_t>(M, 1)));
    std::vector<float> row_scale(zp.size()), amax, col_scale;
    std::vector<int8_t> bq;
    for (size_t i = 0; i < a_off.size(); ++i) {
      const float* ai = a + a_off[i];
      for (int64_t m = 0; m < M; ++m) {
        QuantParams q;
        if (!dynamic_qparams(ai + m * K, K, &q)) throw std::invalid_argument(non_finite);
        quantize_per_tensor(ai + m * K, K, q.scale, q.zero_point, 0, 255, aq.data() + m * Kp);
        std::fill(aq.begin() + m * Kp + K, aq.begin() + (m + 1) * Kp, uint8_t{0});
        row_scale[static_cast<size_t>(m)] = q.scale;
        zp[static_cast<size_t>(m)] = q.zero_point;
      }
      const float* bi = b + b_off[i];
      for (int64_t e = 0; e < K * P; ++e)
        if (!std::isfinite(bi[e])) throw std::invalid_argument(non_finite);
      const PackedB packed = quantize_columns(bi, K, P, alpha, bq, amax, col_scale);
      gemm_float_out(aq.data(), M, Kp, zp.data(), true, packed, row_scale.data(), col_scale.data(),
                     y + static_cast<int64_t>(i) * M * P);
    }
  }
};

struct SoftmaxBmmStep final : Step {
  bool scaled = false, fixed_scale = false;
  float scale = 1.0f;
  std::vector<int32_t> exp_table;  // kExpTableSize entries, exp_table[0] = 2^24

  // Row x (T values, scaled and masked already) -> p (uint8) and its scale; false for NaN / +inf.
  bool softmax_row(const float* x, int64_t T, uint8_t* p, float* s_p, std::vector<int32_t>& e) const {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < T; ++j) {
      if (!(x[j] < std::numeric_limits<float>::infinity())) return false;  // NaN or +inf
      m = x[j] > m ? x[j] : m;
    }
    if (m == -std::numeric_limits<float>::infinity()) {  // every key masked: attends to nothing
      std::fill(p, p + T, uint8_t{0});
      *s_p = 0.0f;
      return true;
    }
    int64_t sum = 0;
    const float limit = static_cast<float>(kExpTableSize - 1);
    for (int64_t j = 0; j < T; ++j) {
      float v = (m - x[j]) * static_cast<float>(1 << kExpFracBits);  // exact: a power of two
      v = v < limit ? v : limit;                                      // +inf (a -inf key) -> the last entry
      e[static_cast<size_t>(j)] = exp_table[static_cast<size_t>(round_even(v))];
      sum += e[static_cast<size_t>(j)];
    }
    if (fixed_scale) {
      const int64_t r = (int64_t{255} << 48) / sum;
      for (int64_t j = 0; j < T; ++j)
        p[j] = static_cast<uint8_t>((e[static_cast<size_t>(j)] * r + (int64_t{1} << 47)) >> 48);
      *s_p = 1.0f / 255.0f;
    } else {
      for (int64_t j = 0; j < T; ++j)
        p[j] = static_cast<uint8_t>((int64_t{e[static_cast<size_t>(j)]} * 255 + (int64_t{1} << 23)) >> 24);
      *s_p = static_cast<float>(static_cast<double>(kExpOne) / (255.0 * static_cast<double>(sum)));
    }
    return true;
  }

  void run(const StepIO& io) const override {
    const std::vector<int64_t> y_shape = out_shape(io);
    const size_t r = y_shape.size();
    const int64_t M = y_shape[r - 2], D = y_shape[r - 1], T = io.in_t(0).shape.back(), Tp = round_up(T, kKGroup);
    const std::vector<int64_t> x_off = matrix_offsets(io.in_t(0), y_shape, io.batch());
    const std::vector<int64_t> v_off = matrix_offsets(io.in_t(1), y_shape, io.batch());
    const bool has_mask = io.num_inputs() == 3;
    std::vector<int64_t> mask_strides;
    const std::vector<int64_t> x_shape = with_batch(io.in_t(0), io.batch());
    if (has_mask) mask_strides = broadcast_strides(with_batch(io.in_t(2), io.batch()), x_shape);
    const auto* x = static_cast<const float*>(io.in(0));
    const auto* v = static_cast<const float*>(io.in(1));
    const auto* mask = has_mask ? static_cast<const float*>(io.in(2)) : nullptr;
    auto* y = static_cast<float*>(io.out());
    std::vector<uint8_t> pq(static_cast<size_t>(std::max<int64_t>(M * Tp, 1)), 0);
    std::vector<float> row(static_cast<size_t>(T)), s_p(static_cast<size_t>(std::max<int64_t>(M, 1))), amax, col_scale;
    std::vector<int32_t> e(static_cast<size_t>(T));
    std::vector<int8_t> vq;
    const int32_t zero = 0;
    for (size_t i = 0; i < x_off.size(); ++i) {
      // The scores' matrix i is x's matrix i: x has the output's leading shape (checked at create).
      for (int64_t m = 0; m < M; ++m) {
        const float* xm = x + x_off[i] + m * T;
        if (scaled || has_mask) {
          int64_t moff = 0;  // the mask row: (matrix i, row m)'s index along each axis but the last
          if (has_mask) {
            const int64_t flat = static_cast<int64_t>(i) * M + m;
            for (int64_t d = static_cast<int64_t>(r) - 2, rest = flat; d >= 0; --d) {
              moff += (rest % x_shape[static_cast<size_t>(d)]) * mask_strides[static_cast<size_t>(d)];
              rest /= x_shape[static_cast<size_t>(d)];
            }
          }
          for (int64_t j = 0; j < T; ++j) {
            float s = scaled ? xm[j] * scale : xm[j];
            if (has_mask) s = s + mask[moff + j * mask_strides[r - 1]];  // two roundings: no FMA
            row[static_cast<size_t>(j)] = s;
          }
          xm = row.data();
        }
        if (!softmax_row(xm, T, pq.data() + m * Tp, s_p.data() + m, e))
          throw std::invalid_argument(io.label() + ": the attention scores hold NaN or +infinity");
      }
      const float* vi = v + v_off[i];
      for (int64_t k = 0; k < T * D; ++k)
        if (!std::isfinite(vi[k]))
          throw std::invalid_argument(io.label() + ": v holds NaN or infinity (dynamic quantization needs finite values)");
      const PackedB packed = quantize_columns(vi, T, D, 1.0f, vq, amax, col_scale);
      gemm_float_out(pq.data(), M, Tp, &zero, false, packed, s_p.data(), col_scale.data(),
                     y + static_cast<int64_t>(i) * M * D);
    }
  }
  int64_t const_bytes() const override { return bytes_of(exp_table); }
};

// a [N, ..., M, K] and b [N, ..., K, P] of the same rank >= 3, leading dimensions broadcasting,
// y their product's shape; `a_full`: a's leading dimensions must be y's (no broadcasting of a).
void check_bmm(const StepContext& c, bool a_full) {
  const PlanTensor &a = c.in(0), &b = c.in(1), &y = c.out();
  for (size_t i = 0; i < 2; ++i)
    if (c.in(i).quantized()) c.bad("int8 attention steps read float32 tensors");
  if (y.quantized()) c.bad("int8 attention steps write float32 tensors");
  const size_t r = a.shape.size();
  if (r < 3 || b.shape.size() != r)
    c.bad("a " + shape_str(a.shape) + " and b " + shape_str(b.shape) + " must have the same rank >= 3");
  if (a.shape[r - 1] != b.shape[r - 2] || (a.shape[r - 1] < 1 && a.shape[r - 1] != kSequenceDim))
    c.bad("a " + shape_str(a.shape) + " has " + std::to_string(a.shape[r - 1]) + " columns, b " + shape_str(b.shape) +
          " " + std::to_string(b.shape[r - 2]) + " rows");
  std::vector<int64_t> want(r, 0);
  for (size_t d = 1; d + 2 < r; ++d) {
    const int64_t ea = a.shape[d], eb = b.shape[d];
    if (ea != eb && ea != 1 && eb != 1)
      c.bad("the leading dimensions of a " + shape_str(a.shape) + " and b " + shape_str(b.shape) + " do not broadcast");
    want[d] = ea == 1 ? eb : ea;
    if (a_full && ea != want[d]) c.bad("the scores " + shape_str(a.shape) + " must have the output's leading dimensions");
  }
  want[r - 2] = a.shape[r - 2];
  want[r - 1] = b.shape[r - 1];
  c.shape_is(y, want);
}

}  // namespace

std::unique_ptr<Step> create_dynamic_bmm(const StepContext& c) {
  c.arity(2);
  check_bmm(c, false);
  auto s = std::make_unique<DynamicBmmStep>();
  s->alpha = static_cast<float>(c.lowered.real("alpha"));
  if (!(s->alpha > 0.0f) || !std::isfinite(s->alpha)) c.bad("alpha must be positive and finite");
  return s;
}

std::unique_ptr<Step> create_softmax_bmm(const StepContext& c) {
  if (c.inputs.size() != 2 && c.inputs.size() != 3) c.bad("expected 2 inputs (scores, v) or 3 (with a mask)");
  check_bmm(c, true);
  if (c.inputs.size() == 3) {
    const PlanTensor &x = c.in(0), &mask = c.in(2);
    if (mask.quantized()) c.bad("the mask must be float32");
    if (mask.shape.size() != x.shape.size()) c.bad("the mask " + shape_str(mask.shape) + " must have the scores' rank");
    for (size_t d = 1; d < x.shape.size(); ++d)
      if (mask.shape[d] != 1 && mask.shape[d] != x.shape[d])
        c.bad("the mask " + shape_str(mask.shape) + " does not broadcast to the scores " + shape_str(x.shape));
  }
  auto s = std::make_unique<SoftmaxBmmStep>();
  s->scaled = c.lowered.has("scale");
  if (s->scaled) {
    s->scale = static_cast<float>(c.lowered.real("scale"));
    if (!std::isfinite(s->scale)) c.bad("scale must be finite");
  }
  const std::string p_scale = c.lowered.str("p_scale");
  if (p_scale != "row" && p_scale != "fixed") c.bad("p_scale must be 'row' or 'fixed', got '" + p_scale + "'");
  s->fixed_scale = p_scale == "fixed";
  const ArrayView& t = c.consts.array("exp_table", ArrayDtype::kInt32, "int32");
  if (t.shape.size() != 1 || t.count != kExpTableSize) c.bad("exp_table must hold 4097 int32 values");
  s->exp_table = values_of<int32_t>(t);
  if (s->exp_table[0] != kExpOne) c.bad("exp_table[0] must be 2^24");
  for (int32_t v : s->exp_table)
    if (v < 0 || v > kExpOne) c.bad("exp_table values must lie in [0, 2^24]");
  return s;
}

}  // namespace eb
