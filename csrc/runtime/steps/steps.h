// Runtime layer: the plan's steps, one kind (or a few that share code) per
// file in this directory.  A kind's file holds its parameters, their checks,
// its create function (the step's record of the `.eb` file -> a checked Step
// with its constants packed: docs/format.md, "kind") and its run.
//
// Adding a kind: a new steps/<name>.cpp defining create_<kind>, one line in
// EB_STEP_KINDS below, and the Python lowering (model/lowering.py).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "eightbit/conv.h"
#include "model/build.h"
#include "model/record.h"
#include "runtime/plan.h"

namespace eb {

// Every step kind, by the "kind" of its record: the registry of model/build.cpp and the
// create functions' declarations below are made from this one list.
#define EB_STEP_KINDS(X)                                                        \
  X(quantize) X(dequantize)                       /* quantize.cpp */          \
  X(conv)                                         /* conv.cpp */              \
  X(binary_conv) X(binary_linear)                 /* xnor.cpp */              \
  X(dynamic_linear)                               /* dynamic_linear.cpp */    \
  X(blockwise_linear)                             /* blockwise.cpp */         \
  X(dynamic_bmm) X(softmax_bmm)                   /* attention.cpp */         \
  X(binary) X(lut)                                /* elementwise.cpp */       \
  X(max_pool) X(avg_pool) X(global_avg_pool)      /* pool.cpp */              \
  X(reshape) X(concat)                            /* shape.cpp */             \
  X(softmax)                                      /* softmax.cpp */           \
  X(float_conv) X(float_linear) X(float_bmm)      /* float_layers.cpp */      \
  X(float_pool) X(float_layer_norm)               /* float_layers.cpp */      \
  X(float_unary) X(float_affine) X(float_binary)  /* float_elementwise.cpp */ \
  X(float_transpose) X(float_pad) X(float_concat) /* float_shape.cpp */       \
  X(float_select)                                 /* float_shape.cpp */       \
  X(float_reduce)                                 /* float_reduce.cpp */      \
  X(embedding) X(additive_mask)                   /* token_inputs.cpp */      \
  X(padded_positions)                             /* token_inputs.cpp */      \
  X(host)                                         /* host.cpp */

// Work per thread below which a thread pool wake-up costs more than it saves (byte operations).
constexpr int64_t kMinWorkPerThread = 65536;

// What a step's create function reads: its records, its tensors and its label; and the checks
// the kinds share.  Every failure throws ModelError "<label>: <what>".
struct StepContext {
  const PlanExecutor& ex;   // the tensors so far
  std::vector<int> inputs;  // tensor ids, known to ex
  int output;
  std::string label;        // "step 3 (conv, from conv1)"
  Record consts, lowered;   // the step's constants and its lowered record
  size_t index;             // the step's position in the plan
  const BuildOptions& options;

  const PlanTensor& in(size_t i = 0) const;  // "expected at least i + 1 input(s)" if absent
  const PlanTensor& out() const { return ex.tensor(output); }

  [[noreturn]] void bad(const std::string& what) const;
  void arity(size_t n) const;                         // exactly n inputs
  void require_quantized(const PlanTensor& t) const;  // uint8 or int8
  void rank(const PlanTensor& t, size_t r) const;
  void same_type(const PlanTensor& a, const PlanTensor& b) const;
  // t's shape is `want` (dimension 0, the batch, is not compared).
  void shape_is(const PlanTensor& t, const std::vector<int64_t>& want) const;
  // A linear layer: in() [N, ..., k] -> out() [N, ..., n].
  void linear_shapes(int64_t k, int64_t n) const;
  // Strides, dilations and pads of a convolution, and a kernel that fits the padded input.
  void window(const ConvGeometry& g) const;
  // The fused clamp [lo, hi] of a float step's record: no NaN bound, lo <= hi.
  std::pair<float, float> clamp(const char* lo_key = "lo", const char* hi_key = "hi") const;
  // One input and the output, both float32.
  void float_in_out(const std::string& what) const;
};

using CreateStep = std::unique_ptr<Step> (*)(const StepContext& c);

#define EB_DECLARE_CREATE_STEP(kind) std::unique_ptr<Step> create_##kind(const StepContext& c);
EB_STEP_KINDS(EB_DECLARE_CREATE_STEP)
#undef EB_DECLARE_CREATE_STEP

// ------------------------------------------------------------ shapes

// "(N, 3, 8, 8)": a shape for messages, its batch dimension as N.
std::string shape_str(const std::vector<int64_t>& s);

inline int64_t product(const std::vector<int64_t>& s, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to && i < s.size(); ++i) p *= s[i];
  return p;
}

// Whether dimensions [from, to) of a shape hold the sequence dimension (kSequenceDim).
inline bool holds_sequence(const std::vector<int64_t>& s, size_t from, size_t to) {
  for (size_t i = from; i < to && i < s.size(); ++i)
    if (s[i] == kSequenceDim) return true;
  return false;
}

// A sample's element count c * S^k as {c, k}: equal for two shapes at every sequence length
// exactly when the pairs are equal.
inline std::pair<int64_t, int> sample_monomial(const std::vector<int64_t>& s) {
  std::pair<int64_t, int> m{1, 0};
  for (size_t i = 1; i < s.size(); ++i) {
    if (s[i] == kSequenceDim)
      ++m.second;
    else
      m.first *= s[i];
  }
  return m;
}

// Rows per batch item of an [N, ..., K] tensor: the product of the dimensions between N and K.
inline int64_t product_of_middle(const std::vector<int64_t>& s) { return product(s, 1, s.size() - 1); }

// `s` with its last dimension replaced by `last`.
inline std::vector<int64_t> with_last(std::vector<int64_t> s, int64_t last) {
  s.back() = last;
  return s;
}

// The tensor's shape with this call's batch.
inline std::vector<int64_t> with_batch(const PlanTensor& t, int64_t batch) {
  std::vector<int64_t> s = t.shape;
  s[0] = batch;
  return s;
}

// Element strides of a C-contiguous tensor of `shape` over the broadcast shape `out` (NumPy rules,
// shapes aligned at the right; 0 along axes of extent 1 or missing).
std::vector<int64_t> broadcast_strides(const std::vector<int64_t>& shape, const std::vector<int64_t>& out);

// ------------------------------------------------------------ constants

template <typename T>
std::vector<T> values_of(const ArrayView& a, size_t padded_to = 0) {
  std::vector<T> out(std::max(static_cast<size_t>(a.count), padded_to), T{});
  if (a.count > 0) std::memcpy(out.data(), a.data, static_cast<size_t>(a.nbytes));
  return out;
}

// Per-channel parameters: n values, padded to n + 16 (the kernels read whole panels).
template <typename T>
std::vector<T> per_channel(const Record& r, const char* key, ArrayDtype dtype, const char* dtype_name, int64_t n) {
  const ArrayView& a = r.array(key, dtype, dtype_name);
  if (a.count != n) r.bad(std::string("'") + key + "' must hold " + std::to_string(n) + " values");
  return values_of<T>(a, static_cast<size_t>(n + 16));
}

// A float32 array (count >= 0: of exactly count values), or empty where optional and absent.
std::vector<float> floats(const Record& r, const char* key, int64_t count = -1);
std::vector<float> optional_floats(const Record& r, const char* key);

// The int8 weights of a conv / linear / dynamic_linear step: consts.w, or, in a model stored with
// narrower codes, consts.w_packed (uint8 [O, ceil(n * bits / 8)]: each row's n codes as bits-bit
// two's complement, least significant bit first) with lowered.w_bits (2-7) and lowered.w_shape,
// unpacked here.
class StepWeights {
 public:
  explicit StepWeights(const StepContext& c);
  const std::vector<int64_t>& shape() const { return shape_; }
  const int8_t* data() const { return unpacked_.empty() ? stored_ : unpacked_.data(); }

 private:
  std::vector<int64_t> shape_;
  const int8_t* stored_ = nullptr;
  std::vector<int8_t> unpacked_;
};

// A 256-entry lookup table of the output's dtype.
std::vector<uint8_t> byte_table(const StepContext& c, const ArrayView& a);

// The enum value named `name` in `table`, or "unknown <what> '<name>'".
template <typename E, size_t N>
E lookup(const StepContext& c, const std::pair<const char*, E> (&table)[N], const std::string& name, const char* what) {
  for (const auto& [n, e] : table)
    if (name == n) return e;
  c.bad(std::string("unknown ") + what + " '" + name + "'");
}

// Bytes of the constants a step holds.
template <typename T>
int64_t bytes_of(const std::vector<T>& v) {
  return static_cast<int64_t>(v.size() * sizeof(T));
}
template <typename T>
int64_t bytes_of(const AlignedBuffer<T>& v) {
  return static_cast<int64_t>(v.size() * sizeof(T));
}
inline int64_t bytes_of(const PackedB& b) {
  return bytes_of(b.data) + bytes_of(b.col_sum) + bytes_of(b.zp_shifted) + bytes_of(b.zp_user);
}

}  // namespace eb
