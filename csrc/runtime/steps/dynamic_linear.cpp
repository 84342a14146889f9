// Runtime layer, step dynamic_linear: a dynamic int8 linear layer, float32
// [N, ..., K] -> [N, ..., O]: each row (or, per_tensor, the whole input, as
// ONNX Runtime's quantize_dynamic does) quantized at run time, symmetric int8
// weights packed at create; run_dynamic_linear.  Outlier columns (optional)
// run in float32: zeroed in a copy of the input before the quantization, their
// products added after the bias (reference.quantized_linear).
#include <cmath>

#include "runtime/dispatch.h"
#include "runtime/gemm.h"
#include "runtime/steps/steps.h"

namespace eb {
namespace {

struct DynamicLinearStep final : Step {
  PackedB weights;
  std::vector<float> w_scale, bias;  // weights.Np entries (the epilogue reads whole panels)
  bool relu = false;
  bool per_tensor = false;  // one input scale for the whole tensor, not per row
  std::vector<int64_t> outlier_cols;  // ascending input columns computed in float32
  std::vector<float> outlier_w;       // [J][O]: column j's weights, contiguous over the outputs

  void run(const StepIO& io) const override {
    const PackedB& w = weights;
    const int64_t rows = io.batch() * product_of_middle(io.in_t().shape), K = w.K, O = w.N;
    const auto* x = static_cast<const float*>(io.in());
    auto* y = static_cast<float*>(io.out());
    const std::string non_finite = io.label() + ": the input holds NaN or infinity (dynamic quantization needs finite values)";
    const auto J = static_cast<int64_t>(outlier_cols.size());
    for (int64_t m = 0; m < rows; ++m)  // the int8 product reads them as 0: checked here
      for (int64_t c : outlier_cols)
        if (!std::isfinite(x[m * K + c])) throw std::invalid_argument(non_finite);
    if (!run_dynamic_linear(x, rows, K, w, w_scale.data(), bias.data(), relu && J == 0, y, O, per_tensor,
                            outlier_cols.data(), J))
      throw std::invalid_argument(non_finite);
    if (J == 0) return;
    for (int64_t m = 0; m < rows; ++m) {
      float* ym = y + m * O;
      for (size_t j = 0; j < outlier_cols.size(); ++j) {
        const float xv = x[m * K + outlier_cols[j]];
        const float* wj = outlier_w.data() + j * static_cast<size_t>(O);
        for (int64_t n = 0; n < O; ++n) ym[n] += xv * wj[n];  // two roundings: no FMA (-ffp-contract=off)
      }
      if (relu)
        for (int64_t n = 0; n < O; ++n) ym[n] = ym[n] > 0.0f ? ym[n] : 0.0f;
    }
  }

  std::string kernel(const PlanTensor&) const override {
    return "rows quantized at run time, " + gemm_kernel_name(active_gemm());
  }
  int64_t const_bytes() const override {
    return bytes_of(weights) + bytes_of(w_scale) + bytes_of(bias) + bytes_of(outlier_cols) + bytes_of(outlier_w);
  }
};

}  // namespace

std::unique_ptr<Step> create_dynamic_linear(const StepContext& c) {
  c.arity(1);
  if (c.in().quantized() || c.out().quantized()) c.bad("dynamic_linear works on float32 tensors");
  const StepWeights w(c);
  if (w.shape().size() != 2 || w.shape()[0] < 1) c.bad("w must be 2-D int8 [O, K]");
  const int64_t o = w.shape()[0], k = w.shape()[1];
  c.linear_shapes(k, o);
  auto s = std::make_unique<DynamicLinearStep>();
  s->w_scale = per_channel<float>(c.consts, "w_scale", ArrayDtype::kFloat32, "float32", o);
  s->bias = per_channel<float>(c.consts, "bias", ArrayDtype::kFloat32, "float32", o);
  for (int64_t i = 0; i < o; ++i) {
    if (!(s->w_scale[i] > 0.0f) || !std::isfinite(s->w_scale[i])) c.bad("w_scale must be positive and finite");
    if (!std::isfinite(s->bias[i])) c.bad("bias must be finite");
  }
  s->per_tensor = c.lowered.flag("per_tensor");
  if (c.consts.has("outlier_cols") || c.consts.has("outlier_w")) {
    if (s->per_tensor) c.bad("outlier columns need per-row quantization");
    const ArrayView& cols = c.consts.array("outlier_cols", ArrayDtype::kInt32, "int32");
    const ArrayView& ow = c.consts.array("outlier_w", ArrayDtype::kFloat32, "float32");
    const std::vector<int32_t> col_values = values_of<int32_t>(cols);
    if (cols.shape.size() != 1 || ow.shape.size() != 2 || ow.shape[0] != o || ow.shape[1] != cols.count)
      c.bad("outlier_cols must be 1-D [J] and outlier_w [O, J]");
    for (size_t j = 0; j < col_values.size(); ++j) {
      if (col_values[j] < 0 || col_values[j] >= k || (j > 0 && col_values[j] <= col_values[j - 1]))
        c.bad("outlier_cols must be ascending distinct columns in [0, K)");
      s->outlier_cols.push_back(col_values[j]);
    }
    const std::vector<float> wv = values_of<float>(ow);
    s->outlier_w.resize(wv.size());
    const int64_t J = cols.count;
    for (int64_t i = 0; i < o; ++i)
      for (int64_t j = 0; j < J; ++j) {
        const float v = wv[static_cast<size_t>(i * J + j)];
        if (!std::isfinite(v)) c.bad("outlier_w must be finite");
        s->outlier_w[static_cast<size_t>(j * o + i)] = v;
      }
  }
  s->relu = c.lowered.flag("relu");
  // pack_b packs B [K, O]: the transpose of the PyTorch-layout weights.
  std::vector<int8_t> b(static_cast<size_t>(k * o));
  const int8_t* src = w.data();
  for (int64_t i = 0; i < o; ++i)
    for (int64_t j = 0; j < k; ++j) b[static_cast<size_t>(j * o + i)] = src[i * k + j];
  const int32_t zero = 0;  // symmetric
  s->weights = pack_b(b.data(), true, k, o, o, &zero, false);
  s->w_scale.resize(static_cast<size_t>(s->weights.Np), 0.0f);
  s->bias.resize(static_cast<size_t>(s->weights.Np), 0.0f);
  return s;
}

}  // namespace eb
