// Runtime layer: the plan executor (see plan.h).  The steps themselves live in
// csrc/runtime/steps/: here are the tensor table, the arena, the run loop,
// monitoring and profiling.
#include "runtime/plan.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "runtime/thread_pool.h"

namespace eb {
namespace {

// Elements per thread below which a thread pool wake-up costs more than it saves (monitoring's
// counting passes).
constexpr int64_t kMinCountPerThread = int64_t{1} << 18;

constexpr int64_t kArenaAlign = 64;  // every tensor starts on a cache line
constexpr int64_t kMaxExtent = int64_t{1} << 40;

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw std::invalid_argument(where + ": " + what);
}

int64_t round_up_to(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// ------------------------------------------------------------ monitoring

// Bytes of x[0..n) equal to a or to b: byte-wide counters per lane (at most 255
// blocks before they are summed), so the compare and the count stay byte vectors.
int64_t count_bytes_serial(const uint8_t* x, int64_t n, uint8_t a, uint8_t b) {
  constexpr int64_t kLanes = 32;
  int64_t total = 0, j = 0;
  while (n - j >= kLanes) {
    uint8_t acc[kLanes] = {};
    const int64_t blocks = std::min<int64_t>((n - j) / kLanes, 255);
    for (int64_t k = 0; k < blocks; ++k, j += kLanes)
      for (int64_t l = 0; l < kLanes; ++l) acc[l] = static_cast<uint8_t>(acc[l] + ((x[j + l] == a) | (x[j + l] == b)));
    for (int64_t l = 0; l < kLanes; ++l) total += acc[l];
  }
  for (; j < n; ++j) total += (x[j] == a) | (x[j] == b);
  return total;
}

int64_t count_bytes(const uint8_t* x, int64_t n, uint8_t a, uint8_t b) {
  std::atomic<int64_t> total{0};
  parallel_for(n, 1, kMinCountPerThread, [&](int64_t i0, int64_t i1) {
    total.fetch_add(count_bytes_serial(x + i0, i1 - i0, a, b), std::memory_order_relaxed);
  });
  return total.load();
}

// Values of x[0..n) below lo or above hi (NaN is neither).
int64_t count_outside(const float* x, int64_t n, float lo, float hi) {
  std::atomic<int64_t> total{0};
  parallel_for(n, 4, kMinCountPerThread, [&](int64_t i0, int64_t i1) {
    int64_t c = 0;
    for (int64_t j0 = i0; j0 < i1; j0 += 4096) {
      const int64_t j1 = std::min(i1, j0 + 4096);
      uint32_t local = 0;
      for (int64_t j = j0; j < j1; ++j) local += static_cast<uint32_t>((x[j] < lo) | (x[j] > hi));
      c += local;
    }
    total.fetch_add(c, std::memory_order_relaxed);
  });
  return total.load();
}

// The float32 bounds equivalent to the exact real bounds [lo, hi]: for a float x,
// x < lo  <=>  x < lo_f  and  x > hi  <=>  x > hi_f.
std::pair<float, float> float_bounds(double lo, double hi) {
  float lo_f = static_cast<float>(lo), hi_f = static_cast<float>(hi);
  if (static_cast<double>(lo_f) < lo) lo_f = std::nextafter(lo_f, INFINITY);
  if (static_cast<double>(hi_f) > hi) hi_f = std::nextafter(hi_f, -INFINITY);
  return {lo_f, hi_f};
}

// Adds what one step wrote to its output's counters.
void count_step(const std::vector<PlanTensor>& tensors, const PlanStep& step, int64_t batch,
                const std::vector<void*>& buffers, std::vector<TensorStats>& stats) {
  TensorStats& st = stats[static_cast<size_t>(step.output)];
  if (!st.monitored) return;
  const PlanTensor& y = tensors[static_cast<size_t>(step.output)];
  const int64_t n = batch * y.sample_elems();
  const int32_t qmin = y.is_signed() ? -128 : 0, qmax = y.is_signed() ? 127 : 255;
  // Codes as bytes; a zero point at one end makes that end legitimate (a ReLU's 0): count the other twice.
  const auto lo_byte = static_cast<uint8_t>(qmin), hi_byte = static_cast<uint8_t>(qmax);
  const uint8_t a = y.zp != qmin ? lo_byte : hi_byte, b = y.zp != qmax ? hi_byte : lo_byte;
  st.count += n;
  st.saturated += count_bytes(static_cast<const uint8_t*>(buffers[static_cast<size_t>(step.output)]), n, a, b);
  if (st.range_checked) {
    // Exact in double: a float scale times an integer below 2^9.
    const auto [lo, hi] = float_bounds(static_cast<double>(y.scale) * (qmin - y.zp),
                                       static_cast<double>(y.scale) * (qmax - y.zp));
    st.out_of_range += count_outside(static_cast<const float*>(buffers[static_cast<size_t>(step.inputs[0])]), n, lo, hi);
  }
}

}  // namespace

int64_t PlanTensor::sample_elems() const {
  int64_t n = 1;
  for (size_t i = 1; i < shape.size(); ++i) n *= shape[i];
  return n;
}

void PlanExecutor::set_sequence(int64_t lo, int64_t hi) {
  if (finalized_ || !tensors_.empty()) throw std::logic_error("PlanExecutor: set_sequence before the tensors");
  if (lo < 1 || lo > hi || hi > kMaxExtent) fail("sequence", "the range must be 1 <= lo <= hi <= 2^40");
  seq_lo_ = lo;
  seq_hi_ = hi;
}

int PlanExecutor::add_tensor(PlanTensor t) {
  if (finalized_) throw std::logic_error("PlanExecutor: already finalized");
  const std::string where = "tensor '" + t.name + "'";
  if (t.shape.empty()) fail(where, "must have a batch dimension");
  int64_t elems = 1;  // at the longest sequence
  for (size_t i = 1; i < t.shape.size(); ++i) {
    const int64_t d = t.shape[i] == kSequenceDim && has_sequence() ? seq_hi_ : t.shape[i];
    if (d < 0 || d > kMaxExtent || (d > 0 && elems > kMaxExtent / d))
      fail(where, "has a negative or huge dimension");
    elems *= d;
  }
  if (t.quantized()) {
    if (!(t.scale > 0.0f) || !std::isfinite(t.scale)) fail(where, "scale must be positive and finite");
    const int32_t lo = t.is_signed() ? -128 : 0, hi = t.is_signed() ? 127 : 255;
    if (t.zp < lo || t.zp > hi) fail(where, "zero point is outside its dtype's range");
  }
  tensors_.push_back(std::move(t));
  return static_cast<int>(tensors_.size() - 1);
}

void PlanExecutor::add_step(PlanStep step) {
  if (finalized_) throw std::logic_error("PlanExecutor: already finalized");
  const auto n = static_cast<int>(tensors_.size());
  if (step.output < 0 || step.output >= n) fail(step.label, "unknown output tensor");
  for (int id : step.inputs)
    if (id < 0 || id >= n) fail(step.label, "unknown input tensor");
  if (!step.impl) fail(step.label, "internal: no step");
  steps_.push_back(std::move(step));
}

void PlanExecutor::finalize(std::vector<int> inputs, std::vector<int> outputs) {
  if (finalized_) throw std::logic_error("PlanExecutor: already finalized");
  const size_t n = tensors_.size();
  std::vector<bool> defined(n, false), external(n, false);
  for (int id : inputs) {
    if (id < 0 || static_cast<size_t>(id) >= n) fail("plan inputs", "unknown tensor");
    if (tensors_[id].quantized()) fail("plan input '" + tensors_[id].name + "'", "must be float32");
    if (external[id]) fail("plan input '" + tensors_[id].name + "'", "is listed twice");
    defined[id] = external[id] = true;
  }
  for (const PlanStep& step : steps_) {
    for (int id : step.inputs)
      if (!defined[id]) fail(step.label, "input '" + tensors_[id].name + "' is not computed before this step");
    if (defined[step.output]) fail(step.label, "output '" + tensors_[step.output].name + "' is written twice");
    defined[step.output] = true;
  }
  for (int id : outputs) {
    if (id < 0 || static_cast<size_t>(id) >= n || !defined[id] || tensors_[id].quantized() || external[id])
      fail("plan outputs", "each must be a float32 tensor computed by a step");
    external[id] = true;
  }
  inputs_ = std::move(inputs);
  outputs_ = std::move(outputs);
  if (has_sequence()) {  // a run reads its length from the inputs
    bool shown = false;
    for (int id : inputs_)
      for (size_t d = 1; d < tensors_[id].shape.size(); ++d) shown |= tensors_[id].shape[d] == kSequenceDim;
    if (!shown) fail("plan inputs", "no input has the sequence dimension");
  }
  layout_ = plan_memory(has_sequence() ? tensors_at_unchecked(seq_hi_) : tensors_);
  stats_.assign(n, TensorStats{});
  const_bytes_ = 0;
  for (const PlanStep& step : steps_) {
    TensorStats& st = stats_[static_cast<size_t>(step.output)];
    st.monitored = tensors_[static_cast<size_t>(step.output)].quantized();
    st.range_checked = st.monitored && step.impl->quantizes();
    const_bytes_ += step.impl->const_bytes();
  }
  finalized_ = true;
}

// Greedy first-fit over lifetimes: tensors, largest first, each at the lowest
// offset free of every placed tensor whose lifetime [defining step, last
// reading step] overlaps its own.  Sizes are per batch item and every tensor
// is linear in the batch, so offset * batch is a valid layout for any batch.
PlanExecutor::Layout PlanExecutor::plan_memory(const std::vector<PlanTensor>& tensors) const {
  const size_t n = tensors.size();
  Layout layout;
  std::vector<int64_t>& offsets = layout.offset_per_sample;
  offsets.assign(n, -1);
  std::vector<int64_t> first(n, -1), last(n, -1);
  for (size_t s = 0; s < steps_.size(); ++s) {
    const auto i = static_cast<int64_t>(s);
    first[steps_[s].output] = i;
    last[steps_[s].output] = std::max(last[steps_[s].output], i);
    for (int id : steps_[s].inputs) last[id] = std::max(last[id], i);
  }
  std::vector<bool> external(n, false);
  for (int id : inputs_) external[id] = true;
  for (int id : outputs_) external[id] = true;
  std::vector<int> order;
  for (size_t t = 0; t < n; ++t)
    if (!external[t] && first[t] >= 0) order.push_back(static_cast<int>(t));
  auto size_of = [&](int t) { return round_up_to(tensors[t].sample_bytes(), kArenaAlign); };
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return size_of(a) > size_of(b); });
  // A step whose output may share its input's slot (a reshape) and that reads the input last:
  // the output takes the input's slot, and the slot lives until the output's last reader.
  std::vector<int> alias_of(n, -1);
  for (size_t s = 0; s < steps_.size(); ++s) {
    const PlanStep& st = steps_[s];
    if (st.inputs.size() != 1 || !st.impl->may_alias_input()) continue;
    const int in = st.inputs[0], out = st.output;
    if (external[in] || external[out] || first[in] < 0 || last[in] != static_cast<int64_t>(s) ||
        tensors[in].sample_bytes() != tensors[out].sample_bytes())
      continue;
    const int root = alias_of[in] >= 0 ? alias_of[in] : in;
    alias_of[out] = root;
    last[root] = std::max(last[root], last[out]);
  }
  std::vector<int> placed;
  layout.arena_per_sample = 0;
  for (int t : order) {
    if (alias_of[t] >= 0) continue;  // placed with its root below
    std::vector<std::pair<int64_t, int64_t>> busy;  // [begin, end) of overlapping tensors
    for (int p : placed)
      if (first[p] <= last[t] && first[t] <= last[p]) busy.emplace_back(offsets[p], offsets[p] + size_of(p));
    std::sort(busy.begin(), busy.end());
    int64_t offset = 0;
    for (const auto& [begin, end] : busy) {
      if (offset + size_of(t) <= begin) break;
      offset = std::max(offset, end);
    }
    offsets[t] = offset;
    layout.arena_per_sample = std::max(layout.arena_per_sample, offset + size_of(t));
    placed.push_back(t);
  }
  for (int t : order)
    if (alias_of[t] >= 0) offsets[t] = offsets[alias_of[t]];
  return layout;
}

std::vector<PlanTensor> PlanExecutor::tensors_at_unchecked(int64_t seq) const {
  std::vector<PlanTensor> out = tensors_;
  for (PlanTensor& t : out)
    for (size_t d = 1; d < t.shape.size(); ++d)
      if (t.shape[d] == kSequenceDim) t.shape[d] = seq;
  return out;
}

void PlanExecutor::check_sequence(int64_t seq) const {
  if (has_sequence() && (seq < seq_lo_ || seq > seq_hi_))
    throw std::invalid_argument("sequence length " + std::to_string(seq) + " is outside the model's range " +
                                std::to_string(seq_lo_) + " to " + std::to_string(seq_hi_));
}

std::vector<int64_t> PlanExecutor::shape_at(int id, int64_t seq) const {
  std::vector<int64_t> shape = tensor(id).shape;
  if (!has_sequence()) return shape;
  check_sequence(seq);
  for (size_t d = 1; d < shape.size(); ++d)
    if (shape[d] == kSequenceDim) shape[d] = seq;
  return shape;
}

const std::vector<PlanTensor>& PlanExecutor::tensors_at(int64_t seq) {
  if (!has_sequence()) return tensors_;
  check_sequence(seq);
  if (seq != resolved_seq_) {
    resolved_ = tensors_at_unchecked(seq);
    resolved_layout_ = plan_memory(resolved_);
    resolved_seq_ = seq;
  }
  return resolved_;
}

void PlanExecutor::run(int64_t batch, const std::vector<const float*>& inputs, const std::vector<float*>& outputs,
                       int64_t seq) {
  run_impl(batch, seq, inputs, outputs, nullptr);
}

void PlanExecutor::run_profiled(int64_t batch, const std::vector<const float*>& inputs,
                                const std::vector<float*>& outputs, std::vector<double>* step_seconds, int64_t seq) {
  if (step_seconds == nullptr) throw std::invalid_argument("PlanExecutor::run_profiled: no step_seconds");
  run_impl(batch, seq, inputs, outputs, step_seconds);
}

void PlanExecutor::set_monitoring(bool on) {
  std::lock_guard<std::mutex> lock(run_mutex_);
  monitoring_ = on;
}

bool PlanExecutor::monitoring() {
  std::lock_guard<std::mutex> lock(run_mutex_);
  return monitoring_;
}

void PlanExecutor::reset_stats() {
  std::lock_guard<std::mutex> lock(run_mutex_);
  for (TensorStats& st : stats_) st.count = st.saturated = st.out_of_range = 0;
}

std::vector<TensorStats> PlanExecutor::stats() {
  std::lock_guard<std::mutex> lock(run_mutex_);
  return stats_;
}

void PlanExecutor::run_impl(int64_t batch, int64_t seq, const std::vector<const float*>& inputs,
                            const std::vector<float*>& outputs, std::vector<double>* step_seconds) {
  if (!finalized_) throw std::logic_error("PlanExecutor: not finalized");
  if (batch < 0 || inputs.size() != inputs_.size() || outputs.size() != outputs_.size())
    throw std::invalid_argument("PlanExecutor::run: wrong number of buffers");
  std::lock_guard<std::mutex> lock(run_mutex_);
  const auto start = std::chrono::steady_clock::now();
  const std::vector<PlanTensor>& tensors = tensors_at(seq);
  const Layout& layout = has_sequence() ? resolved_layout_ : layout_;
  const int64_t per_sample = layout.arena_per_sample;
  const std::vector<int64_t>& offsets = layout.offset_per_sample;
  if (batch > 0 && per_sample > std::numeric_limits<int64_t>::max() / batch)
    throw std::length_error("a batch of " + std::to_string(batch) + " needs more than 2^63 bytes of intermediate tensors");
  // Grows only: a smaller batch reuses the arena of a larger one.
  arena_.reserve_discard(static_cast<size_t>(std::max<int64_t>(per_sample * batch, 1)));
  std::vector<void*> buffers(tensors_.size(), nullptr);  // per tensor id
  for (size_t t = 0; t < tensors_.size(); ++t)
    if (offsets[t] >= 0) buffers[t] = arena_.data() + offsets[t] * batch;
  for (size_t i = 0; i < inputs.size(); ++i) buffers[inputs_[i]] = const_cast<float*>(inputs[i]);
  for (size_t i = 0; i < outputs.size(); ++i) buffers[outputs_[i]] = outputs[i];
  if (step_seconds == nullptr && !monitoring_) {
    for (const PlanStep& step : steps_) step.impl->run(StepIO(tensors, step, buffers, batch));
  } else {
    if (step_seconds != nullptr) step_seconds->assign(steps_.size(), 0.0);
    for (size_t s = 0; s < steps_.size(); ++s) {
      const PlanStep& step = steps_[s];
      std::chrono::steady_clock::time_point t0;
      if (step_seconds != nullptr) t0 = std::chrono::steady_clock::now();
      step.impl->run(StepIO(tensors, step, buffers, batch));
      if (step_seconds != nullptr)
        (*step_seconds)[s] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (monitoring_) count_step(tensors, step, batch, buffers, stats_);  // after the clock: a profile excludes it
    }
  }
  last_run_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::vector<std::string> PlanExecutor::step_kernels() const {
  std::vector<std::string> names;
  for (const PlanStep& step : steps_)
    names.push_back(step.inputs.empty() ? "" : step.impl->kernel(tensors_[static_cast<size_t>(step.inputs[0])]));
  return names;
}

}  // namespace eb
