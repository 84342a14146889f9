"""QuantizedModel: a validated Plan lowered once to the C++ plan executor, which runs it in one call."""
from __future__ import annotations

import numpy as np

from .. import ops as _ops
from .. import reference as _reference
from .._version import __version__
from . import file_format
from .execute import check_feeds, step_weights, run_plan
from .native import build_executor
from .plan import Plan


class QuantizedModel:
    """An int8 model: ``qm(x)`` for a single-input model (float in, float out, the float graph's
    layout), ``qm.run({name: array})`` for any. ``qm.reference_run`` computes the same with
    ``eightbit.reference`` (NumPy), which ``run`` matches bit for bit; ``qm.run_steps`` runs the
    plan step by step with ``eightbit.ops`` (one C++ call per step: for debugging)."""

    def __init__(self, plan: Plan):
        self.plan = plan.validate()
        self._packed = None
        try:
            self._executor = build_executor(self.plan)
        except NotImplementedError:
            self._executor = None  # a step the C++ executor lacks: run step by step
        self._one_in_one_out = len(plan.inputs) == 1 and len(plan.outputs) == 1

    @property
    def input_names(self) -> list:
        return list(self.plan.inputs)

    @property
    def output_names(self) -> list:
        return list(self.plan.outputs)

    def run(self, feeds: dict) -> dict:
        if self._executor is None:
            return self.run_steps(feeds)
        names = self.plan.inputs
        if len(feeds) != len(names) or any(n not in feeds for n in names):
            check_feeds(self.plan, feeds)  # raises, naming the missing or unknown input
        return dict(zip(self.plan.outputs, self._executor.run([feeds[n] for n in names])))

    def run_steps(self, feeds: dict) -> dict:
        """The plan run step by step by eightbit.ops (the same bits as ``run``)."""
        if self._packed is None:
            self._packed = {
                i: _ops.pack_conv(step_weights(s), np.zeros(s.consts["w"].shape[0], np.int8),
                                  s.attrs.get("group", 1))
                for i, s in enumerate(self.plan.steps) if s.op in ("conv", "linear")
            }
            self._packed.update({i: _ops.PackedWeights(np.ascontiguousarray(s.consts["w"].T), None)
                                 for i, s in enumerate(self.plan.steps) if s.op == "dynamic_linear"})
        return run_plan(self.plan, feeds, _ops, self._packed)

    def reference_run(self, feeds: dict) -> dict:
        return run_plan(self.plan, feeds, _reference)

    def __call__(self, x):
        if self._one_in_one_out and self._executor is not None:
            return self._executor.run((x,))[0]
        if len(self.plan.inputs) != 1:
            raise TypeError(f"the model has inputs {self.plan.inputs}: call run({{name: array}})")
        out = self.run({self.plan.inputs[0]: x})
        return out[self.plan.outputs[0]] if len(out) == 1 else tuple(out[n] for n in self.plan.outputs)

    def save(self, path) -> None:
        """Write the model to a ``.eb`` file (docs/format.md)."""
        file_format.save(self.plan, path, producer=f"eightbit {__version__}")

    @classmethod
    def load(cls, path) -> "QuantizedModel":
        """Read a ``.eb`` file; a truncated, corrupted or foreign file raises ModelFileError."""
        return cls(file_format.load(path))

    @property
    def size_bytes(self) -> int:
        """Bytes of the quantized constants (weights, scales, biases, tables)."""
        return self.plan.const_bytes()

    def summary(self) -> str:
        """One line per step: op, source node, output dtype / shape / quantization, constant bytes."""
        lines = [f"{'step':>4}  {'op':<16} {'node':<20} {'output':<28} {'dtype':<8} {'scale':>11} {'zp':>4} {'bytes':>9}"]
        for i, s in enumerate(self.plan.steps):
            t = self.plan.tensors[s.output]
            shape = "x".join("N" if d is None else str(d) for d in t.shape)
            scale = f"{t.scale:.5g}" if t.quantized else "-"
            zp = str(t.zero_point) if t.quantized else "-"
            nbytes = sum(int(np.asarray(v).nbytes) for v in s.consts.values())
            lines.append(f"{i:>4}  {s.op:<16} {s.source[:20]:<20} {(s.output[:18] + ' ' + shape)[:28]:<28} "
                         f"{str(t.dtype):<8} {scale:>11} {zp:>4} {nbytes:>9}")
        lines.append(f"constants: {self.size_bytes} bytes")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"QuantizedModel(inputs={self.plan.inputs}, outputs={self.plan.outputs}, "
                f"steps={len(self.plan.steps)}, bytes={self.size_bytes})")
