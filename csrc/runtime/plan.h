// Runtime layer: the plan executor.  Runs a whole quantized execution plan
// (python/eightbit/model/plan.py) in one call: packed weights owned here,
// 4-D quantized activations NHWC between steps, every intermediate tensor in
// one arena planned once by liveness.  Numerics are the runtime ops' own
// (run_conv, qlinear_add, pools, ...); every parameter that needs a rule
// (multipliers, clamp bounds, tables, QLinearAdd's operand order) arrives
// resolved from the builder, so results are bit-identical to eightbit.ops.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <limits>
#include <mutex>
#include <string>
#include <variant>
#include <vector>

#include "eightbit/aligned_buffer.h"
#include "eightbit/cnn_ops.h"
#include "eightbit/conv.h"
#include "eightbit/gemm.h"
#include "runtime/conv.h"
#include "runtime/float_ops.h"

namespace eb {

enum class ElemType : uint8_t { kFloat32, kUint8, kInt8 };

inline int64_t elem_bytes(ElemType t) { return t == ElemType::kFloat32 ? 4 : 1; }

// One tensor of the plan.  shape[0] is the batch, free at run time (the value
// stored is ignored except for plan inputs, where a non-negative one is a
// fixed batch).  4-D quantized tensors are NHWC; float ones keep the float
// graph's layout (NCHW).
struct PlanTensor {
  std::string name;
  ElemType type = ElemType::kFloat32;
  std::vector<int64_t> shape;
  float scale = 1.0f;
  int32_t zp = 0;

  bool quantized() const { return type != ElemType::kFloat32; }
  bool is_signed() const { return type == ElemType::kInt8; }
  int64_t sample_elems() const;  // elements per batch item
  int64_t sample_bytes() const { return sample_elems() * elem_bytes(type); }
};

// Rows per batch item of an [N, ..., K] tensor: the product of the dimensions between N and K.
inline int64_t product_of_middle(const std::vector<int64_t>& s) {
  int64_t p = 1;
  for (size_t i = 1; i + 1 < s.size(); ++i) p *= s[i];
  return p;
}

// `s` with its last dimension replaced by `last`.
inline std::vector<int64_t> with_last(std::vector<int64_t> s, int64_t last) {
  s.back() = last;
  return s;
}

// ------------------------------------------------------------- step parameters

struct QuantizeStep {};
struct DequantizeStep {};

// conv and linear (a 1x1 conv over [N, rows, 1, K] for an [N, ..., K] input).
// geometry.batch is set per call.
struct ConvStep {
  ConvGeometry geometry;
  PackedConv weights;
  bool fixed = false;                  // requant "fixed" (m0 / shift) instead of "float"
  std::vector<float> multiplier;       // [out_c + 16] (kernels read whole panels)
  std::vector<int32_t> m0, shift;      // [out_c + 16]
  std::vector<int32_t> bias;           // [out_c + 16]
  int32_t qmin = 0, qmax = 255;        // the fused activation's clamp
};

// QLinearAdd / QLinearMul.  ONNX Runtime's operand order of QLinearAdd depends
// on the shapes, batch included, and through the batch only on whether it is
// <= 1: the builder resolves it for both cases.
struct BinaryStep {
  bool mul = false;
  bool b_first_batch_le1 = false, b_first_batch_gt1 = false;
};

// A pooling window over the two spatial axes of an NHWC tensor (depth 1);
// geometry.out resolved by the builder, geometry.batch set per call.
struct PoolWindow {
  PoolGeometry geometry;
  int64_t pad_end[3] = {0, 0, 0};
  bool ceil_mode = false;
};

struct MaxPoolStep {
  PoolWindow window;
};

struct AvgPoolStep {
  PoolWindow window;
  AvgPoolParams params;
};

struct GlobalAvgPoolStep {};

struct ConcatStep {
  int64_t axis = 1;                                   // >= 1: never the batch
  std::vector<std::vector<uint8_t>> tables;           // per input: 256 bytes, or empty to copy
};

struct LutStep {
  std::array<uint8_t, 256> table{};
};

struct ReshapeStep {};

struct SoftmaxStep {
  int64_t axis = 1;
};
// Dynamic int8 linear layer (float32 [N, K] -> [N, O]): each row quantized at
// run time, symmetric int8 weights; run_dynamic_linear.  w_scale and bias hold
// weights.Np entries (the epilogue reads whole panels).
struct DynamicLinearStep {
  PackedB weights;
  std::vector<float> w_scale, bias;
  bool relu = false;
  bool per_tensor = false;  // one input scale for the whole tensor (ORT's quantize_dynamic), not per row
};

// Float island layers (nodes kept float32): an NCHW convolution, a linear
// layer on [N, K]; bias and fused activation clamp inside.
struct FloatConvStep {
  FloatConv conv;
};
struct FloatUnaryStep {
  FloatUnaryOp op;
};
struct FloatAffineStep {  // unfolded batch norm: per-channel (axis 1) scale and shift
  std::vector<float> scale, shift;
};
struct FloatBinaryStep {  // a + b, a * b or a / b; b a tensor (second input) or the constant `b`
  FloatBinaryOp op = FloatBinaryOp::kAdd;
  std::vector<float> b;
  std::vector<int64_t> b_shape;  // the constant's shape (empty when b is an input)
  // A fused activation as a clamp of the result (relu: [0, inf)); none: (-inf, inf).
  float lo = -std::numeric_limits<float>::infinity(), hi = std::numeric_limits<float>::infinity();
};
// a [N, .., M, K] @ b [N, .., K, P] -> [N, .., M, P] (same rank >= 3, leading dims broadcast).
struct FloatBmmStep {};
struct FloatTransposeStep {
  std::vector<int64_t> perm;  // over every axis; perm[0] == 0 (the batch stays first)
};
struct FloatPadStep {
  FloatPad pad;  // begin / end per axis, 0 on the batch
};
struct FloatLayerNormStep {  // normalizes over the last `axes` dimensions (never the batch)
  int64_t axes = 1;
  double eps = 1e-5;
  std::vector<float> weight, bias;  // empty or one value per normalized element
};
struct FloatPoolStep {
  FloatPool pool;  // global average: kernel = the whole plane
};
struct FloatConcatStep {
  int64_t axis = 1;
};
struct FloatLinearStep {
  PackedF32 weights;
  std::vector<float> bias;  // empty or weights.N values
  float lo = -3.4028235e38f, hi = 3.4028235e38f;
};

// A step computed outside the core (a float graph node): called with the
// batch size, the input buffers and the output buffer (shapes from the specs).
using HostFn = std::function<void(int64_t batch, const std::vector<const void*>& inputs, void* output)>;
struct HostStep {
  HostFn fn;
};

using StepParams = std::variant<QuantizeStep, DequantizeStep, ConvStep, BinaryStep, MaxPoolStep, AvgPoolStep,
                                GlobalAvgPoolStep, ConcatStep, LutStep, ReshapeStep, SoftmaxStep, DynamicLinearStep,
                                FloatConvStep, FloatLinearStep, FloatUnaryStep, FloatAffineStep, FloatBinaryStep,
                                FloatPoolStep, FloatConcatStep, FloatTransposeStep, FloatPadStep, FloatLayerNormStep,
                                FloatBmmStep, HostStep>;

struct PlanStep {
  std::string label;  // "step 3 (conv, from conv1)": for errors
  std::vector<int> inputs;
  int output = -1;
  StepParams params;
};

// ------------------------------------------------------------------ executor

// Counters of one quantized tensor while monitoring is on (PlanExecutor::set_monitoring):
// what production data looks like against the calibration.
struct TensorStats {
  int64_t count = 0;         // elements written
  int64_t saturated = 0;     // codes at qmin (only when zp != qmin) or at qmax (only when zp != qmax)
  int64_t out_of_range = 0;  // written by a quantize step: float inputs outside [scale (qmin - zp), scale (qmax - zp)]
  bool monitored = false;    // a quantized tensor written by a step
  bool range_checked = false;  // written by a quantize step (out_of_range applies)
};

class PlanExecutor {
 public:
  // Builder.  Every add_* checks the shapes and dtypes the step needs and
  // throws std::invalid_argument naming the step otherwise, so that run()
  // can never read or write out of bounds, whatever the plan holds.
  int add_tensor(PlanTensor t);
  void add_step(PlanStep step);
  // Declares the plan's float32 inputs and outputs and plans the memory.
  void finalize(std::vector<int> inputs, std::vector<int> outputs);

  size_t num_tensors() const { return tensors_.size(); }
  const PlanTensor& tensor(int id) const { return tensors_.at(static_cast<size_t>(id)); }
  const std::vector<int>& inputs() const { return inputs_; }
  const std::vector<int>& outputs() const { return outputs_; }
  size_t num_steps() const { return steps_.size(); }

  // Runs the plan for `batch` items: inputs[i] holds plan input i (float32,
  // C-contiguous, its spec's shape with this batch), outputs[i] receives plan
  // output i.  The caller has checked the shapes.  Thread-safe (one run at a
  // time per executor: the arena is shared).
  void run(int64_t batch, const std::vector<const float*>& inputs, const std::vector<float*>& outputs);

  // run() that also records each step's wall time (steady_clock) in step_seconds[step],
  // resized to num_steps().  run() itself times nothing per step.
  void run_profiled(int64_t batch, const std::vector<const float*>& inputs, const std::vector<float*>& outputs,
                    std::vector<double>* step_seconds);

  // Monitoring: while on, every run adds to each quantized step output's TensorStats (one
  // pass over the output, and for a quantize step one over its float input, after the step;
  // off, a run checks one flag).  These take the run mutex: they wait for a run in progress.
  void set_monitoring(bool on);
  bool monitoring();
  void reset_stats();
  std::vector<TensorStats> stats();  // per tensor id

  // Arena bytes one batch item needs, and the bytes held now.
  int64_t arena_bytes_per_sample() const { return arena_per_sample_; }
  int64_t arena_bytes() const { return static_cast<int64_t>(arena_.size()); }
  // Bytes of the constants the steps hold: packed weights, per-channel parameters, tables,
  // float islands' weights (not what a host step's Python function holds).
  int64_t const_bytes() const { return const_bytes_; }
  // Wall time of the last run() inside the core (to measure the binding's overhead).
  double last_run_seconds() const { return last_run_seconds_; }

 private:
  void plan_memory();
  void check_step(const PlanStep& step) const;
  void run_impl(int64_t batch, const std::vector<const float*>& inputs, const std::vector<float*>& outputs,
                std::vector<double>* step_seconds);

  std::vector<PlanTensor> tensors_;
  std::vector<PlanStep> steps_;
  std::vector<int> inputs_, outputs_;
  std::vector<int64_t> offset_per_sample_;  // arena offset per batch item; -1: not in the arena
  int64_t arena_per_sample_ = 0;
  bool finalized_ = false;
  AlignedBuffer<uint8_t> arena_;
  int64_t const_bytes_ = 0;
  double last_run_seconds_ = 0.0;
  bool monitoring_ = false;          // read and written under run_mutex_
  std::vector<TensorStats> stats_;   // per tensor id, under run_mutex_
  std::mutex run_mutex_;
};

}  // namespace eb
