// Runtime layer, int8 attention (reference/int8_attention.py, docs/numerics.md "int8 attention"):
//   dynamic_bmm   float32 a [N, ..., M, K] x b [N, ..., K, P] -> float32 [N, ..., M, P]: a's rows
//                 quantized at run time (uint8, DynamicQuantizeLinear), b's columns (symmetric
//                 int8), one u8s8 GEMM per matrix, y = float(acc) * (s_a[m] * (s_b[p] * alpha)).
//   softmax_bmm   float32 scores [N, ..., M, T] (, mask), v [N, ..., T, D] -> float32 [N, ..., M, D]:
//                 softmax(scores * scale + mask) as uint8 probabilities from an integer exp table,
//                 v's columns symmetric int8, one u8s8 GEMM per matrix.
// Every extent is read from the tensors at run (the sequence may be free); create only checks.
#include <algorithm>
#include <cmath>
#include <limits>

#include "runtime/dispatch.h"
#include "runtime/gemm.h"
#include "runtime/quantize.h"
#include "runtime/thread_pool.h"
#include "runtime/steps/steps.h"

namespace eb {
namespace {

constexpr int64_t kExpTableSize = 4097;  // d in [0, 16]; the last entry for d >= 16
constexpr int64_t kExpOne = int64_t{1} << 24;

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

// Below this many multiply-adds (and as many softmax / quantization elements) per thread, a
// wake-up of the pool costs more than the heads it would take.
constexpr int64_t kMinWorkPerThread = int64_t{1} << 18;

// One thread's buffers, reused across heads and runs: a head is a few microseconds of work, so
// allocating per head (as pack_b does) would cost more than the head.
struct HeadScratch {
  AlignedBuffer<uint8_t> a;        // A rows, [M, Kp], zero past K (+16 bytes: softmax rows are stored whole)
  AlignedBuffer<int16_t> a_wide;   // the same widened, for kernels that read int16 (avx2)
  AlignedBuffer<int32_t> row_zp;
  AlignedBuffer<float> row_scale;
  AlignedBuffer<int8_t> q;         // B's codes, [Kp, Np], before packing
  PackedB b;                       // B packed, with col_sum and zero zb'
  AlignedBuffer<float> col_scale;
  AlignedBuffer<float> s;          // four softmax rows, scaled and masked (whole vectors)
  AlignedBuffer<float> mask;       // a mask row that broadcasts along the keys
  AlignedBuffer<int32_t> e;
};

HeadScratch& head_scratch() {
  thread_local HeadScratch s;
  return s;
}

// The GEMM kernel for one head: a tile kernel (AMX) for M, N <= ~128 and K = a head's 32 / 64
// would spend its time padding K to 64 and packing A into tiles, so those shapes take the kernel
// it uses for few rows (AVX-512 VNNI), which gives the same bits.
GemmKernel head_kernel() {
  GemmKernel k = active_gemm();
  if (k.a_row_pad > 1 && k.few_rows != nullptr) k = k.few_rows();
  return k;
}

// Quantizes B's columns into s.b (pack_b's layout, zb' = 0) and s.col_scale; false if B holds NaN
// or infinity.
bool quantize_b(const AttentionKernels& ak, const float* b, int64_t K, int64_t P, float alpha, HeadScratch& s) {
  const int64_t Kp = round_up(K, kKGroup), Np = round_up(P, kPanelCols);
  PackedB& pb = s.b;
  pb.K = K;
  pb.N = P;
  pb.Kp = Kp;
  pb.Np = Np;
  pb.b_signed = true;
  pb.zp_per_column = false;
  pb.any_zp_shifted = false;
  pb.data.reserve_discard(static_cast<size_t>(Kp * Np + kPackedSlack));
  pb.col_sum.reserve_discard(static_cast<size_t>(Np));
  if (pb.zp_shifted.size() < static_cast<size_t>(Np)) pb.zp_shifted.resize(static_cast<size_t>(Np));  // zeros
  s.q.reserve_discard(static_cast<size_t>(Kp * Np));
  s.col_scale.reserve_discard(static_cast<size_t>(Np));
  return ak.quantize_columns(b, K, P, P, alpha, s.q.data(), pb.data.data(), pb.col_sum.data(), s.col_scale.data());
}

// y [M, P] = float(acc) * (row_scale[m] * col_scale[p]), acc = sum_k (a[m, k] - row_zp[m]) * q[k, p],
// a = s.a (M rows of lda bytes, zero from K to Kp), q = s.b; row_zp null for a zero point of 0.
void head_gemm(const GemmKernel& kernel, int64_t M, int64_t lda, const int32_t* row_zp, const float* row_scale,
               float* y, HeadScratch& s) {
  const PackedB& b = s.b;
  GemmCall call;
  call.M = M;
  call.a = s.a.data();
  call.lda = lda;
  if (kernel.wide_a) {
    s.a_wide.reserve_discard(static_cast<size_t>(M * b.Kp));
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < b.Kp; ++k) s.a_wide[m * b.Kp + k] = s.a[m * lda + k];
    call.a_wide = s.a_wide.data();
    call.lda_wide = b.Kp;
  }
  call.b = &b;
  Epilogue& ep = call.ep;
  ep.kind = OutputKind::kFloat;
  ep.row_zp = row_zp;
  ep.col_sum = b.col_sum.data();
  ep.col_zp = b.zp_shifted.data();
  ep.row_scale = row_scale;
  ep.col_scale = s.col_scale.data();
  ep.out = y;
  ep.ldc = b.N;
  // Row blocks as run_gemm's: the head's B (Kp x Np bytes) stays in L1 across them.
  const int64_t block_rows = int64_t{kernel.mr} * 16;
  for (int64_t m0 = 0; m0 < M; m0 += block_rows)
    kernel.block(call, m0, std::min(M, m0 + block_rows), 0, b.Np / kPanelCols);
}

// Asks for n floats at p in L1 ahead of use: the next head's operands, while this head computes
// (they come from L2 or L3, written by the previous step).
void prefetch(const float* p, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) __builtin_prefetch(p + i);
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
    if (M == 0 || P == 0) return;
    const std::string non_finite = io.label() + ": the input holds NaN or infinity (dynamic quantization needs finite values)";
    const GemmKernel kernel = head_kernel();
    const AttentionKernels ak = active_attention();
    const int64_t work = M * round_up(P, kPanelCols) * Kp + M * K + K * P;
    // Heads on the pool: each is computed whole by one thread, so the bits do not depend on the split.
    parallel_for(static_cast<int64_t>(a_off.size()), work, kMinWorkPerThread, [&](int64_t i0, int64_t i1) {
      HeadScratch& s = head_scratch();
      s.a.reserve_discard(static_cast<size_t>(M * Kp));
      s.row_zp.reserve_discard(static_cast<size_t>(M));
      s.row_scale.reserve_discard(static_cast<size_t>(M));
      for (int64_t i = i0; i < i1; ++i) {
        if (i + 1 < i1) {
          prefetch(a + a_off[static_cast<size_t>(i + 1)], M * K);
          prefetch(b + b_off[static_cast<size_t>(i + 1)], K * P);
        }
        const float* ai = a + a_off[static_cast<size_t>(i)];
        if (ak.quantize_rows != nullptr) {
          if (!ak.quantize_rows(ai, M, K, K, s.a.data(), Kp, s.row_scale.data(), s.row_zp.data()))
            throw std::invalid_argument(non_finite);
        } else {
          for (int64_t m = 0; m < M; ++m) {
            QuantParams q;
            if (!dynamic_qparams(ai + m * K, K, &q)) throw std::invalid_argument(non_finite);
            quantize_per_tensor(ai + m * K, K, q.scale, q.zero_point, 0, 255, s.a.data() + m * Kp);
            s.row_scale[m] = q.scale;
            s.row_zp[m] = q.zero_point;
          }
        }
        for (int64_t m = 0; m < M; ++m) std::fill(s.a.data() + m * Kp + K, s.a.data() + (m + 1) * Kp, uint8_t{0});
        if (!quantize_b(ak, b + b_off[static_cast<size_t>(i)], K, P, alpha, s)) throw std::invalid_argument(non_finite);
        head_gemm(kernel, M, Kp, s.row_zp.data(), s.row_scale.data(), y + i * M * P, s);
      }
    });
  }
};

struct SoftmaxBmmStep final : Step {
  bool scaled = false, fixed_scale = false;
  float scale = 1.0f;
  std::vector<int32_t> exp_table;  // kExpTableSize entries, exp_table[0] = 2^24

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
    if (M == 0 || D == 0) return;
    const std::string bad_scores = io.label() + ": the attention scores hold NaN or +infinity";
    const std::string bad_v = io.label() + ": v holds NaN or infinity (dynamic quantization needs finite values)";
    const GemmKernel kernel = head_kernel();
    const AttentionKernels ak = active_attention();
    const int32_t* table = exp_table.data();
    const bool mask_row_broadcasts = has_mask && mask_strides[r - 1] == 0;  // one mask value per row
    const int64_t work = M * round_up(D, kPanelCols) * Tp + 4 * M * T + T * D;
    parallel_for(static_cast<int64_t>(x_off.size()), work, kMinWorkPerThread, [&](int64_t i0, int64_t i1) {
      HeadScratch& s = head_scratch();
      s.a.reserve_discard(static_cast<size_t>(M * Tp + 16));  // the last row may be written to round_up(T, 16)
      s.row_scale.reserve_discard(static_cast<size_t>(M));
      s.s.reserve_discard(static_cast<size_t>(4 * round_up(T, 16)));  // four rows of whole vectors
      s.e.reserve_discard(static_cast<size_t>(T));
      if (mask_row_broadcasts) s.mask.reserve_discard(static_cast<size_t>(T));
      for (int64_t i = i0; i < i1; ++i) {
        if (i + 1 < i1) {
          prefetch(x + x_off[static_cast<size_t>(i + 1)], M * T);
          prefetch(v + v_off[static_cast<size_t>(i + 1)], T * D);
        }
        // The mask rows of matrix i: its index along each leading axis, then m * the row stride.
        int64_t moff = 0;
        if (has_mask)
          for (int64_t d = static_cast<int64_t>(r) - 3, rest = i; d >= 0; --d) {
            moff += (rest % x_shape[static_cast<size_t>(d)]) * mask_strides[static_cast<size_t>(d)];
            rest /= x_shape[static_cast<size_t>(d)];
          }
        // The scores' matrix i is x's matrix i: x has the output's leading shape (checked at create).
        const float* xi = x + x_off[static_cast<size_t>(i)];
        bool ok = true;
        if (!mask_row_broadcasts) {  // the mask's rows lie mask_strides[r - 2] apart (maybe 0)
          ok = ak.softmax_rows(xi, T, has_mask ? mask + moff : nullptr, has_mask ? mask_strides[r - 2] : 0, M, T, scaled,
                               scale, table, fixed_scale, s.a.data(), Tp, s.row_scale.data(), s.s.data(), s.e.data());
        } else {  // one mask value per row: a row of copies
          for (int64_t m = 0; m < M && ok; ++m) {
            std::fill(s.mask.data(), s.mask.data() + T, mask[moff + m * mask_strides[r - 2]]);
            ok = ak.softmax_rows(xi + m * T, T, s.mask.data(), 0, 1, T, scaled, scale, table, fixed_scale,
                                 s.a.data() + m * Tp, Tp, s.row_scale.data() + m, s.s.data(), s.e.data());
          }
        }
        if (!ok) throw std::invalid_argument(bad_scores);
        if (!quantize_b(ak, v + v_off[static_cast<size_t>(i)], T, D, 1.0f, s)) throw std::invalid_argument(bad_v);
        head_gemm(kernel, M, Tp, nullptr, s.row_scale.data(), y + i * M * D, s);
      }
    });
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
