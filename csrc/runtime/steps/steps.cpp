// Runtime layer: what the steps share (see steps.h).
#include "runtime/steps/steps.h"

#include <cmath>

#include <algorithm>

namespace eb {

const PlanTensor& StepContext::in(size_t i) const {
  if (i >= inputs.size()) bad("expected at least " + std::to_string(i + 1) + " input(s)");
  return ex.tensor(inputs[i]);
}

void StepContext::bad(const std::string& what) const { throw ModelError(label + ": " + what); }

void StepContext::arity(size_t n) const {
  if (inputs.size() != n) bad("expected " + std::to_string(n) + " input(s)");
}

void StepContext::require_quantized(const PlanTensor& t) const {
  if (!t.quantized()) bad("tensor '" + t.name + "' must be uint8 or int8");
}

void StepContext::rank(const PlanTensor& t, size_t r) const {
  if (t.shape.size() != r) bad("tensor '" + t.name + "' must be " + std::to_string(r) + "-D, got " + shape_str(t.shape));
}

void StepContext::same_type(const PlanTensor& a, const PlanTensor& b) const {
  if (a.type != b.type) bad("tensors '" + a.name + "' and '" + b.name + "' must have the same dtype");
}

void StepContext::shape_is(const PlanTensor& t, const std::vector<int64_t>& want) const {
  if (!std::equal(t.shape.begin() + 1, t.shape.end(), want.begin() + 1, want.end()))
    bad("tensor '" + t.name + "' has shape " + shape_str(t.shape) + ", expected " + shape_str(want));
}

void StepContext::linear_shapes(int64_t k, int64_t n) const {
  const PlanTensor &x = in(), &y = out();
  if (x.shape.size() < 2) bad("a linear layer needs an [N, ..., K] input");
  shape_is(x, with_last(x.shape, k));
  shape_is(y, with_last(x.shape, n));
}

void StepContext::window(const ConvGeometry& g) const {
  // The Python plan's limits (docs/format.md), tighter than ConvGeometry::check's, which then
  // bounds every extent without overflow.
  constexpr int64_t kMax = int64_t{1} << 20;
  const int64_t window[] = {g.kernel_h, g.kernel_w, g.stride_h, g.stride_w, g.dilation_h, g.dilation_w};
  const int64_t pads[] = {g.pad_top, g.pad_left, g.pad_bottom, g.pad_right};
  for (int64_t v : window)
    if (v < 1 || v > kMax) bad("kernel, strides and dilations must be in [1, 2^20], pads in [0, 2^20]");
  for (int64_t p : pads)
    if (p < 0 || p > kMax) bad("kernel, strides and dilations must be in [1, 2^20], pads in [0, 2^20]");
  if (const char* why = g.check()) bad(why);
}

std::pair<float, float> StepContext::clamp(const char* lo_key, const char* hi_key) const {
  const double lo = lowered.real(lo_key), hi = lowered.real(hi_key);
  if (std::isnan(lo) || std::isnan(hi) || lo > hi) bad("the clamp bounds must not be NaN, and lo <= hi");
  return {static_cast<float>(lo), static_cast<float>(hi)};
}

void StepContext::float_in_out(const std::string& what) const {
  arity(1);
  if (in().quantized() || out().quantized()) bad(what + " works on float32 tensors");
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "(N";
  for (size_t i = 1; i < s.size(); ++i) out += ", " + (s[i] == kSequenceDim ? std::string("S") : std::to_string(s[i]));
  return out + (s.size() == 1 ? ",)" : ")");
}

std::vector<int64_t> broadcast_strides(const std::vector<int64_t>& shape, const std::vector<int64_t>& out) {
  std::vector<int64_t> strides(out.size(), 0);
  int64_t stride = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    const size_t d = out.size() - shape.size() + i;
    strides[d] = shape[i] == 1 ? 0 : stride;
    stride *= shape[i];
  }
  return strides;
}

std::vector<float> floats(const Record& r, const char* key, int64_t count) {
  const ArrayView& a = r.array(key, ArrayDtype::kFloat32, "float32");
  if (count >= 0 && a.count != count) r.bad(std::string("'") + key + "' must hold " + std::to_string(count) + " values");
  return values_of<float>(a);
}

std::vector<float> optional_floats(const Record& r, const char* key) {
  return r.has(key) ? floats(r, key) : std::vector<float>{};
}

StepWeights::StepWeights(const StepContext& c) {
  if (!c.consts.has("w_packed")) {
    const ArrayView& w = c.consts.array("w", ArrayDtype::kInt8, "int8");
    shape_ = w.shape;
    stored_ = reinterpret_cast<const int8_t*>(w.data);
    return;
  }
  const ArrayView& packed = c.consts.array("w_packed", ArrayDtype::kUint8, "uint8");
  const int bits = c.lowered.int32("w_bits", 2, 7);
  shape_ = c.lowered.ints("w_shape");
  if (shape_.size() != 2 && shape_.size() != 4) c.bad("w_shape must have 2 or 4 dimensions");
  int64_t n = 1;
  for (size_t d = 1; d < shape_.size(); ++d) {
    if (shape_[d] < 1 || shape_[d] > (int64_t{1} << 30) || n > (int64_t{1} << 40) / shape_[d])
      c.bad("w_shape out of range");
    n *= shape_[d];
  }
  const int64_t rows = shape_[0], row_bytes = (n * bits + 7) / 8;
  if (rows < 1 || rows > (int64_t{1} << 30) || packed.shape != std::vector<int64_t>{rows, row_bytes})
    c.bad("w_packed must be [" + std::to_string(rows) + ", " + std::to_string(row_bytes) + "] for w_shape and w_bits");
  unpacked_.resize(static_cast<size_t>(rows * n));
  const int sign = 1 << (bits - 1);
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* src = packed.data + r * row_bytes;
    for (int64_t i = 0; i < n; ++i) {
      int v = 0;
      for (int b = 0; b < bits; ++b) {
        const int64_t bit = i * bits + b;
        v |= ((src[bit / 8] >> (bit % 8)) & 1) << b;
      }
      unpacked_[static_cast<size_t>(r * n + i)] = static_cast<int8_t>((v ^ sign) - sign);  // sign-extend
    }
    const int64_t used = n * bits;  // the row's padding bits must be zero: one file per model
    if (used % 8 != 0 && (src[row_bytes - 1] >> (used % 8)) != 0) c.bad("w_packed has bits set past its codes");
  }
}

std::vector<uint8_t> byte_table(const StepContext& c, const ArrayView& a) {
  if (a.count != 256 || a.dtype != (c.out().is_signed() ? ArrayDtype::kInt8 : ArrayDtype::kUint8))
    c.bad("a table must be 256 entries of the output's dtype");
  return {a.data, a.data + 256};
}

}  // namespace eb
