// Model layer: a plan tree (the metadata of a `.eb` file, model_file.h) built
// into a PlanExecutor.  Each step's record carries its parameters fully
// resolved by the writer (multipliers, clamp bounds, tables, operand order:
// python/eightbit/model/lowering.py), so no numerics rule is computed here.
// The builder reads the file-level parts (tensors, step list, inputs and
// outputs) and hands each step's record, by its "kind", to that kind's create
// function (runtime/steps/), which checks it, packs its constants and returns
// the step.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/model_file.h"
#include "runtime/plan.h"

namespace eb {

// The function of a host step (a float graph node computed outside the core): called with the
// batch size, the input buffers and the output buffer (shapes from the specs).
using HostFn = std::function<void(int64_t batch, const std::vector<const void*>& inputs, void* output)>;

// A step this build cannot run without a host (a float node only the Python float executor has).
class UnsupportedStep : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A model that needs more intermediate memory per batch item than BuildOptions allows.
class ArenaLimitError : public ModelError {
 public:
  using ModelError::ModelError;
};

struct BuildOptions {
  // Arena bytes one batch item may need (the sum of the live intermediate tensors at their peak).
  int64_t max_arena_bytes_per_sample = int64_t{4} << 30;
  // Supplies the function of a "host" step (its index, the executor being built, its input and
  // output tensor ids, its label); null: such steps are refused with UnsupportedStep.
  std::function<HostFn(size_t step, const PlanExecutor& ex, const std::vector<int>& inputs, int output,
                       const std::string& label)>
      host;
};

std::unique_ptr<PlanExecutor> build_executor(const Value& plan_tree, const BuildOptions& options = {});

}  // namespace eb
