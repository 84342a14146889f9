"""QuantizedModel: a validated Plan, lowered and read by the C++ model reader into the plan executor,
which runs it in one call."""
from __future__ import annotations

import time

import numpy as np

from ..runtime import core as _core
from .. import ops as _ops
from .. import reference as _reference
from .._version import __version__
from . import file_format
from .execute import check_feeds, pack_weights, run_plan
from .float_graph import float_node_graph
from .lowering import lower
from .plan import Plan


def _host_function(plan: Plan, i: int):
    """The Python function of a float step the C++ float steps do not cover (a host step): the
    float graph executor, built once, run on every call."""
    step = plan.steps[i]
    graph = float_node_graph(step, [plan.tensors[n] for n in step.inputs])

    def run(xs):
        return np.asarray(graph.run({f"in{j}": x for j, x in enumerate(xs)}), np.float32)
    return run


def build_executor(plan: Plan, max_arena_bytes: int | None = None):
    """The C++ executor of a validated plan, through the one path every model takes: lowered,
    written as ``.eb`` bytes and read by the C++ model reader. Raises ModelFileError (a ValueError)
    for a plan whose shapes or parameters do not fit together, NotImplementedError for a plan the
    executor cannot run."""
    return _executor_of(lower(plan), max_arena_bytes)


def _executor_of(lowered: Plan, max_arena_bytes):
    return _core.build_model(file_format.encode(lowered), _arena_limit(max_arena_bytes),
                             lambda i: _host_function(lowered, i))


def _arena_limit(max_arena_bytes) -> int:
    if max_arena_bytes is None:
        return 0  # the reader's default
    if isinstance(max_arena_bytes, bool) or not isinstance(max_arena_bytes, (int, np.integer)) or max_arena_bytes < 1:
        raise ValueError(f"max_arena_bytes must be a positive int, got {max_arena_bytes!r}")
    return int(max_arena_bytes)


class QuantizedModel:
    """An int8 model: ``qm(x)`` for a single-input model (float in, float out, the float graph's
    layout), ``qm.run({name: array})`` for any. ``qm.reference_run`` computes the same with
    ``eightbit.reference`` (NumPy), which ``run`` matches bit for bit; ``qm.run_steps`` runs the
    plan step by step with ``eightbit.ops`` (one C++ call per step: for debugging)."""

    def __init__(self, plan: Plan, *, max_arena_bytes: int | None = None):
        """``max_arena_bytes``: the intermediate tensor bytes one batch item may need (default
        4 GiB); a plan that needs more raises ModelFileError."""
        plan = plan.validate()
        try:
            plan = lower(plan)
            executor = _executor_of(plan, max_arena_bytes)
        except NotImplementedError:
            executor = None  # a step the C++ executor lacks: run step by step
        self._init(plan, executor)

    def _init(self, plan: Plan, executor) -> None:
        self.plan = plan
        self._executor = executor
        self._packed = None
        self._one_in_one_out = len(plan.inputs) == 1 and len(plan.outputs) == 1
        self._monitor = None  # the active Monitor (qm.monitor())
        self.tradeoffs = []   # the mixed-precision candidates eb.quantize(accuracy_budget=) measured

    @property
    def float_nodes(self) -> list:
        """Nodes with an int8 form that run in float32 (excluded, kept float by an accuracy budget
        or by eb.quantize's safe defaults), in plan order. Ops without an int8 form (layer_norm,
        bmm, softmax, ...) always run in float32 and are not listed. The quantizer marks such
        steps (attrs ``int8_form``), so a saved model keeps the list."""
        return [s.source for s in self.plan.steps if s.op == "float" and s.attrs.get("int8_form")]

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
        if self._monitor is not None:
            return dict(zip(self.plan.outputs, self._monitored_run([feeds[n] for n in names])))
        return dict(zip(self.plan.outputs, self._executor.run([feeds[n] for n in names])))

    def _monitored_run(self, xs) -> list:
        """executor.run, its wall time and batch size recorded by the active Monitor."""
        start = time.perf_counter()
        out = self._executor.run(xs)
        monitor = self._monitor
        if monitor is not None:
            monitor.record(time.perf_counter() - start, int(np.shape(out[0])[0]) if out and np.ndim(out[0]) else 0)
        return out

    def run_steps(self, feeds: dict, return_all: bool = False) -> dict:
        """The plan run step by step by eightbit.ops (the same bits as ``run``); ``return_all``:
        every plan tensor as the plan holds it (quantized ones as integers, 4-D ones NHWC)."""
        if self._packed is None:
            self._packed = pack_weights(self.plan, _ops)
        return run_plan(self.plan, feeds, _ops, self._packed, return_all)

    def reference_run(self, feeds: dict) -> dict:
        return run_plan(self.plan, feeds, _reference)

    def __call__(self, x):
        if self._one_in_one_out and self._executor is not None:
            if self._monitor is not None:
                return self._monitored_run((x,))[0]
            return self._executor.run((x,))[0]
        if len(self.plan.inputs) != 1:
            raise TypeError(f"the model has inputs {self.plan.inputs}: call run({{name: array}})")
        out = self.run({self.plan.inputs[0]: x})
        return out[self.plan.outputs[0]] if len(out) == 1 else tuple(out[n] for n in self.plan.outputs)

    def save(self, path) -> None:
        """Write the model to a ``.eb`` file (docs/format.md)."""
        file_format.save(self.plan, path, producer=f"eightbit {__version__}")

    @classmethod
    def load(cls, path, *, max_arena_bytes: int | None = None) -> "QuantizedModel":
        """Read a ``.eb`` file with the C++ reader (memory-mapped: the plan's constants are views
        of the file, only the packed weights take memory of their own). A truncated, corrupted,
        hostile or foreign file raises ModelFileError, as does a model needing more than
        ``max_arena_bytes`` (default 4 GiB) of intermediate tensors per batch item."""
        file, plan = file_format.read(path)
        return cls._from_file(file, plan, max_arena_bytes)

    @classmethod
    def _from_file(cls, file, plan: Plan, max_arena_bytes: int | None = None) -> "QuantizedModel":
        """The model of a ModelFile the C++ reader checked and its Plan (``file_format.read``)."""
        try:
            executor = file.build(_arena_limit(max_arena_bytes), lambda i: _host_function(plan, i))
        except NotImplementedError:
            executor = None
        qm = cls.__new__(cls)
        qm._init(plan, executor)
        return qm

    @property
    def size_bytes(self) -> int:
        """Bytes of the quantized constants (weights, scales, biases, tables)."""
        return self.plan.const_bytes()

    def summary(self) -> str:
        """One line per step: op, source node, output tensor, shape, dtype, quantization, the bits
        per weight of a layer with weights, constant bytes (as stored: packed codes count their
        bits). Columns are as wide as their longest entry: no name is cut."""
        from ..accuracy.report import format_table

        rows = []
        for i, s in enumerate(self.plan.steps):
            t = self.plan.tensors[s.output]
            shape = "x".join("N" if d is None else str(d) for d in t.shape)
            scale = f"{t.scale:.5g}" if t.quantized else "-"
            zp = str(t.zero_point) if t.quantized else "-"
            nbytes = file_format.stored_bytes(s)
            bits = step_weight_bits(s)
            rows.append((i, s.op, s.source, s.output, shape, str(t.dtype), scale, zp, "-" if bits is None else bits,
                         nbytes))
        header = ["step", "op", "node", "output", "shape", "dtype", "scale", "zp", "w bits", "bytes"]
        return format_table(header, rows) + f"\nconstants: {self.size_bytes} bytes"

    def profile(self, x, repeats: int = 10):
        """Per-step wall time of the C++ executor on ``x`` (an array, or {name: array}): a
        ``Profile`` with one row per plan step (index, op, source node, median seconds over
        ``repeats`` runs, share of the total, GOP/s of conv / linear / dynamic_linear steps).
        The clock runs only in this profiled run; ``qm(x)`` times nothing per step."""
        from ..accuracy.profile import profile_model

        return profile_model(self, x, repeats)

    def monitor(self, window: int | None = None):
        """Start counting, on every ``qm(x)`` / ``qm.run`` from now on, each quantized tensor's
        elements, saturated codes and (where float values enter int8) values outside the
        calibrated range, and each call's latency: a ``Monitor`` (``stats()``, ``as_dict()`` for a
        metrics endpoint, ``latency_ms()``, ``reset()``, ``stop()``, a context manager). Rising rates in production show drift away from the calibration data. ``window``: the
        calls the latency percentiles cover (default 10 000). Called while a monitor is active,
        returns that monitor, reset (with the new ``window`` when given)."""
        from ..accuracy.monitor import LATENCY_WINDOW, Monitor

        if self._monitor is not None and self._monitor.active:
            self._monitor.reset(window)
            return self._monitor
        self._monitor = Monitor(self, LATENCY_WINDOW if window is None else window)
        return self._monitor

    def __repr__(self) -> str:
        return (f"QuantizedModel(inputs={self.plan.inputs}, outputs={self.plan.outputs}, "
                f"steps={len(self.plan.steps)}, bytes={self.size_bytes})")


_INT8_WEIGHT_STEPS = ("conv", "linear", "dynamic_linear")


def step_weight_bits(step) -> int | None:
    """Bits per weight of a plan step with weights: 8 (int8 layers), 1 (binary), the grid's bits
    (block-quantized), 32 (a float layer); None for a step without weights."""
    if step.op in _INT8_WEIGHT_STEPS:
        return int(step.attrs.get("w_bits", 8))
    if step.op in ("binary_conv", "binary_linear"):
        return 1
    if step.op == "blockwise_linear":
        return int(step.attrs.get("bits", 4))
    if step.op == "float" and "weight" in step.consts:
        return 32
    return None
