// Runtime layer: the plan executor.  Runs a whole quantized execution plan
// (python/eightbit/model/plan.py) in one call: the tensor table, 4-D
// quantized activations NHWC between steps, every intermediate tensor in one
// arena planned once by liveness, the run loop, monitoring and profiling.
// What each step computes is a Step (csrc/runtime/steps/): numerics are the
// runtime ops' own (run_conv, qlinear_add, pools, ...), every parameter that
// needs a rule arriving resolved in the step's record, so results are
// bit-identical to eightbit.ops.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "eightbit/aligned_buffer.h"

namespace eb {

enum class ElemType : uint8_t { kFloat32, kUint8, kInt8 };

inline int64_t elem_bytes(ElemType t) { return t == ElemType::kFloat32 ? 4 : 1; }

// The code of the sequence dimension in a PlanTensor's shape: a length known per run, in the
// executor's [lo, hi] (PlanExecutor::set_sequence).
constexpr int64_t kSequenceDim = -2;

// One tensor of the plan.  shape[0] is the batch, free at run time (the value
// stored is ignored except for plan inputs, where a non-negative one is a
// fixed batch); another dimension may be kSequenceDim.  4-D quantized tensors
// are NHWC; float ones keep the float graph's layout (NCHW).  Steps see the
// tensors of one run, their sequence dimension resolved (StepIO); a create
// function sees it as kSequenceDim (compared, never multiplied).
struct PlanTensor {
  std::string name;
  ElemType type = ElemType::kFloat32;
  std::vector<int64_t> shape;
  float scale = 1.0f;
  int32_t zp = 0;

  bool quantized() const { return type != ElemType::kFloat32; }
  bool is_signed() const { return type == ElemType::kInt8; }
  int64_t sample_elems() const;  // elements per batch item (a resolved shape)
  int64_t sample_bytes() const { return sample_elems() * elem_bytes(type); }
};

// ------------------------------------------------------------------ steps

struct PlanStep;

// One step's view of one run: the batch, its tensors' specs and their buffers.
class StepIO {
 public:
  StepIO(const std::vector<PlanTensor>& tensors, const PlanStep& step, const std::vector<void*>& buffers,
         int64_t batch)
      : tensors_(tensors), step_(step), buffers_(buffers), batch_(batch) {}

  int64_t batch() const { return batch_; }
  size_t num_inputs() const;
  const PlanTensor& in_t(size_t i = 0) const;
  const PlanTensor& out_t() const;
  const void* in(size_t i = 0) const;
  void* out() const;
  const std::string& label() const;

 private:
  const std::vector<PlanTensor>& tensors_;
  const PlanStep& step_;
  const std::vector<void*>& buffers_;  // per tensor id
  int64_t batch_;
};

// What one step computes.  Each kind lives in one file, csrc/runtime/steps/<group>.cpp, whose
// create function reads the step's record, checks it against the tensors, packs its constants
// and returns the Step; run() then only computes (the executor calls it once per inference).
class Step {
 public:
  virtual ~Step() = default;
  virtual void run(const StepIO& io) const = 0;
  // Bytes of the constants it holds: packed weights, per-channel parameters, tables, float
  // weights (not what a host step's Python function holds).
  virtual int64_t const_bytes() const { return 0; }
  // A quantize step: monitoring also counts its float inputs outside the output's range.
  virtual bool quantizes() const { return false; }
  // The output holds the input's bytes unchanged (a reshape): the memory planner may give it the
  // input's arena slot when this step is the input's last reader; run() then copies nothing.
  virtual bool may_alias_input() const { return false; }
  // The kernel run() takes on the active dispatch path, for `eightbit info` (the choice made by
  // the same functions run() calls); "" for a step whose kernel is its kind's one loop.
  virtual std::string kernel(const PlanTensor& input) const {
    (void)input;
    return "";
  }
};

struct PlanStep {
  std::string label;  // "step 3 (conv, from conv1)": for errors
  std::vector<int> inputs;
  int output = -1;
  std::unique_ptr<const Step> impl;
};

inline size_t StepIO::num_inputs() const { return step_.inputs.size(); }
inline const PlanTensor& StepIO::in_t(size_t i) const { return tensors_[static_cast<size_t>(step_.inputs[i])]; }
inline const PlanTensor& StepIO::out_t() const { return tensors_[static_cast<size_t>(step_.output)]; }
inline const void* StepIO::in(size_t i) const { return buffers_[static_cast<size_t>(step_.inputs[i])]; }
inline void* StepIO::out() const { return buffers_[static_cast<size_t>(step_.output)]; }
inline const std::string& StepIO::label() const { return step_.label; }

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
  // Builder (model/build.h drives it).  Each step's create function has checked the shapes and
  // dtypes it needs against tensor(), so that run() can never read or write out of bounds,
  // whatever the plan holds; add_step checks the tensor ids, finalize the order.
  int add_tensor(PlanTensor t);
  void add_step(PlanStep step);
  // Declares the plan's float32 inputs and outputs and plans the memory.
  void finalize(std::vector<int> inputs, std::vector<int> outputs);
  // A plan whose shapes hold kSequenceDim runs every length in [lo, hi] (before add_tensor).
  void set_sequence(int64_t lo, int64_t hi);
  bool has_sequence() const { return seq_hi_ > 0; }
  int64_t sequence_lo() const { return seq_lo_; }
  int64_t sequence_hi() const { return seq_hi_; }
  // Tensor `id`'s shape in a run of sequence length `seq` (its spec's when the plan has no
  // sequence dimension; seq is then ignored).  Throws std::invalid_argument for a length
  // outside the range.
  std::vector<int64_t> shape_at(int id, int64_t seq) const;

  size_t num_tensors() const { return tensors_.size(); }
  const PlanTensor& tensor(int id) const { return tensors_.at(static_cast<size_t>(id)); }
  const std::vector<int>& inputs() const { return inputs_; }
  const std::vector<int>& outputs() const { return outputs_; }
  size_t num_steps() const { return steps_.size(); }
  // Step::kernel of each step (its first input; "" for a step without inputs).
  std::vector<std::string> step_kernels() const;

  // Runs the plan for `batch` items: inputs[i] holds plan input i (float32,
  // C-contiguous, its spec's shape with this batch), outputs[i] receives plan
  // output i.  The caller has checked the shapes.  Thread-safe (one run at a
  // time per executor: the arena is shared).
  // A plan with a sequence dimension takes the run's length `seq` (0 otherwise); its arena
  // is laid out for that length.
  void run(int64_t batch, const std::vector<const float*>& inputs, const std::vector<float*>& outputs,
           int64_t seq = 0);

  // run() that also records each step's wall time (steady_clock) in step_seconds[step],
  // resized to num_steps().  run() itself times nothing per step.
  void run_profiled(int64_t batch, const std::vector<const float*>& inputs, const std::vector<float*>& outputs,
                    std::vector<double>* step_seconds, int64_t seq = 0);

  // Monitoring: while on, every run adds to each quantized step output's TensorStats (one
  // pass over the output, and for a quantize step one over its float input, after the step;
  // off, a run checks one flag).  These take the run mutex: they wait for a run in progress.
  void set_monitoring(bool on);
  bool monitoring();
  void reset_stats();
  std::vector<TensorStats> stats();  // per tensor id

  // Arena bytes one batch item needs (at the longest sequence), and the bytes held now.
  int64_t arena_bytes_per_sample() const { return layout_.arena_per_sample; }
  int64_t arena_bytes() const { return static_cast<int64_t>(arena_.size()); }
  // Bytes of the constants the steps hold: packed weights, per-channel parameters, tables,
  // float islands' weights (not what a host step's Python function holds).
  int64_t const_bytes() const { return const_bytes_; }
  // Wall time of the last run() inside the core (to measure the binding's overhead).
  double last_run_seconds() const { return last_run_seconds_; }

 private:
  // The arena layout of one sequence length: offsets per batch item (-1: not in the arena).
  struct Layout {
    std::vector<int64_t> offset_per_sample;
    int64_t arena_per_sample = 0;
  };
  Layout plan_memory(const std::vector<PlanTensor>& tensors) const;
  std::vector<PlanTensor> tensors_at_unchecked(int64_t seq) const;
  void check_sequence(int64_t seq) const;
  // The tensors of a run of length `seq` (run_mutex_ held): tensors_, or resolved_ laid out.
  const std::vector<PlanTensor>& tensors_at(int64_t seq);
  const Layout& layout_at(int64_t seq);
  void run_impl(int64_t batch, int64_t seq, const std::vector<const float*>& inputs,
                const std::vector<float*>& outputs, std::vector<double>* step_seconds);

  std::vector<PlanTensor> tensors_;
  int64_t seq_lo_ = 0, seq_hi_ = 0;  // 0: no sequence dimension
  // The last length run: its tensors and layout (a run at another length recomputes both).
  int64_t resolved_seq_ = -1;
  std::vector<PlanTensor> resolved_;
  Layout resolved_layout_;
  std::vector<PlanStep> steps_;
  std::vector<int> inputs_, outputs_;
  Layout layout_;                    // without a sequence dimension, or at the longest
  bool finalized_ = false;
  AlignedBuffer<uint8_t> arena_;
  int64_t const_bytes_ = 0;
  double last_run_seconds_ = 0.0;
  bool monitoring_ = false;          // read and written under run_mutex_
  std::vector<TensorStats> stats_;   // per tensor id, under run_mutex_
  std::mutex run_mutex_;
};

}  // namespace eb
