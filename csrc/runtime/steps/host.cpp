// Runtime layer, step host: a float node computed outside the core (only the
// Python float executor has it).  BuildOptions::host supplies its function,
// called with the batch, the input buffers and the output buffer (shapes from
// the specs); without one (the C library) the model is refused with
// UnsupportedStep.
#include "runtime/steps/steps.h"

namespace eb {
namespace {

struct HostStep final : Step {
  HostFn fn;

  void run(const StepIO& io) const override {
    std::vector<const void*> ins(io.num_inputs());
    for (size_t i = 0; i < ins.size(); ++i) ins[i] = io.in(i);
    fn(io.batch(), ins, io.out());
  }
};

}  // namespace

std::unique_ptr<Step> create_host(const StepContext& c) {
  if (!c.options.host)
    throw UnsupportedStep(c.label + ": a float node this runtime cannot run (it needs Python's float executor)");
  auto s = std::make_unique<HostStep>();
  s->fn = c.options.host(c.index, c.ex, c.inputs, c.output, c.label);
  if (!s->fn) c.bad("internal: no function");
  return s;
}

}  // namespace eb
