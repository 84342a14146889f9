"""The quantized execution plan: what ``eb.quantize`` produces, what executors run and what the
``.eb`` file stores.

A plan is plain data: tensor specs (dtype, shape, quantization parameters) and a list of steps in
execution order, each naming its input and output tensors, with plain-Python attributes and NumPy
constants. Inside the plan, 4-D activations are NHWC (the kernels' layout); the plan's inputs and
outputs are float32 in the float graph's own layout (NCHW), and the ``quantize`` / ``dequantize``
steps at the boundary convert.

Steps (``Step.op``), all on per-tensor quantized uint8/int8 tensors unless stated:

==================  ===========================================================================
quantize            float32 input (NCHW when 4-D) -> quantized (NHWC when 4-D)
dequantize          quantized (NHWC when 4-D) -> float32 (NCHW when 4-D)
conv                QLinearConv, NHWC. consts: ``w`` int8 OIHW, ``w_scale`` float32 [O],
                    ``bias`` int32 [O]. attrs: strides, pads (top, left, bottom, right),
                    dilations, group, activation (None, "relu", "relu6", ("clip", lo, hi))
linear              x [N, ..., K] (not 4-D) times ``w`` int8 [O, K] (PyTorch layout), + ``bias``
                    int32 [O], requantized per output channel (``w_scale`` [O]); attrs: activation.
                    Exactly QLinearConv with a 1x1 kernel on each row [K, 1, 1]
add, mul            com.microsoft QLinearAdd / QLinearMul (numpy broadcasting)
max_pool            MaxPool (output keeps the input's quantization); attrs: kernel, strides,
                    pads, dilations, ceil_mode
avg_pool            QLinearAveragePool; attrs: kernel, strides, pads, ceil_mode, count_include_pad
global_avg_pool     QLinearGlobalAveragePool, output [N, 1, 1, C]
concat              QLinearConcat; attrs: axis (of the plan's layout)
lut                 256-entry table lookup; consts: ``table`` of the output dtype; attrs: the
                    float op it tabulates (``function``, and its ``attrs``; informative)
reshape             attrs: shape (batch dim as -1 or None); a 4-D NHWC input is put back in
                    NCHW order first, so the result is the float graph's reshape
softmax             float32 -> float32 along attrs["axis"]
dynamic_linear      float32 x [N, ..., K] -> float32 [N, ..., O]: each row quantized at run time (uint8,
                    DynamicQuantizeLinear), ``w`` int8 [O, K], ``w_scale`` float32 [O], ``bias``
                    float32 [O]; attrs: activation (None or "relu"), granularity ("row", default,
                    or "tensor": the whole input with one scale, as ORT's quantize_dynamic models).
                    reference.quantized_linear
float               a float graph node left float32 (excluded, or no int8 step for it): attrs
                    "op" and "attrs", consts as in the graph IR (graph/ir.py); float inputs
==================  ===========================================================================

conv and linear also take attrs["requant"]: "float" (ONNX Runtime, default) or "fixed" (TFLite).
Float32 tensors inside the plan are in the float graph's layout. Dimension 0 of every tensor is
the batch (None in specs): executors size their memory per sample.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import plan_shapes

QUANT_DTYPES = (np.dtype(np.uint8), np.dtype(np.int8))
FLOAT = np.dtype(np.float32)

# op -> (number of inputs or None for any, required consts, output kind)
STEP_OPS = {
    "quantize": (1, (), "quant"),
    "dequantize": (1, (), "float"),
    "conv": (1, ("w", "w_scale", "bias"), "quant"),
    "linear": (1, ("w", "w_scale", "bias"), "quant"),
    "add": (2, (), "quant"),
    "mul": (2, (), "quant"),
    "max_pool": (1, (), "quant"),
    "avg_pool": (1, (), "quant"),
    "global_avg_pool": (1, (), "quant"),
    "concat": (None, (), "quant"),
    "lut": (1, ("table",), "quant"),
    "reshape": (1, (), "same"),
    "softmax": (1, (), "float"),
    "float": (None, (), "float"),
    "dynamic_linear": (1, ("w", "w_scale", "bias"), "float"),
}


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the plan. ``shape`` has None for the batch dimension; quantized tensors
    carry their per-tensor ``scale`` (float32 > 0) and ``zero_point`` (in ``dtype``'s range)."""

    name: str
    dtype: np.dtype
    shape: tuple
    scale: float | None = None
    zero_point: int | None = None

    @property
    def quantized(self) -> bool:
        return self.dtype in QUANT_DTYPES


@dataclass
class Step:
    op: str
    inputs: tuple
    output: str
    attrs: dict = field(default_factory=dict)
    consts: dict = field(default_factory=dict)
    source: str = ""  # the float graph node this step implements (summaries, errors)
    # The C++ executor's record of this step, every numerics rule resolved (model/lowering.py);
    # None until lowered.
    lowered: dict | None = None


@dataclass
class Plan:
    tensors: dict          # name -> TensorSpec
    steps: list            # Step, in execution order
    inputs: list           # names of the float32 graph inputs
    outputs: list          # names of the float32 graph outputs

    def validate(self) -> "Plan":
        """Check that every step reads defined tensors of the right kind and carries its
        constants; raise ValueError naming the step otherwise. Returns self."""
        for spec in self.tensors.values():
            plan_shapes.check_size(spec)
        defined = set()
        for name in self.inputs:
            spec = self._spec(name, "plan input")
            if spec.dtype != FLOAT:
                raise ValueError(f"plan input {name!r} must be float32, got {spec.dtype}")
            defined.add(name)
        for i, step in enumerate(self.steps):
            where = f"step {i} ({step.op}, from {step.source or '?'})"
            if step.op not in STEP_OPS:
                raise ValueError(f"{where}: unknown op {step.op!r}")
            arity, consts, kind = STEP_OPS[step.op]
            if arity is not None and len(step.inputs) != arity:
                raise ValueError(f"{where}: expected {arity} input(s), got {len(step.inputs)}")
            for name in step.inputs:
                if name not in defined:
                    raise ValueError(f"{where}: input {name!r} is not computed before this step")
            missing = [c for c in consts if c not in step.consts]
            if missing:
                raise ValueError(f"{where}: missing constant(s) {missing}")
            out = self._spec(step.output, where)
            _check_consts(step, out, where)
            try:
                want = plan_shapes.infer(step, [self.tensors[n] for n in step.inputs])
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
            if want is not None and tuple(want) != tuple(out.shape):
                raise ValueError(f"{where}: computes shape {want}, but output {step.output!r} declares {out.shape}")
            first = self.tensors[step.inputs[0]] if step.inputs else None
            if step.op == "float":
                _check_float_node(step, [self.tensors[n] for n in step.inputs], out, where)
            if step.op in ("reshape", "max_pool") and first.quantized and (
                    (out.scale, out.zero_point) != (first.scale, first.zero_point)):
                raise ValueError(f"{where}: copies bytes, so its output must keep the input's scale and zero point")
            expected = {"quant": out.quantized, "float": out.dtype == FLOAT,
                        "same": first is not None and out.dtype == first.dtype}[kind]
            if not expected:
                raise ValueError(f"{where}: output {step.output!r} has the wrong dtype {out.dtype}")
            if out.quantized and (out.scale is None or not out.scale > 0 or out.zero_point is None):
                raise ValueError(f"{where}: output {step.output!r} lacks a positive scale / zero point")
            if step.output in defined:
                raise ValueError(f"{where}: output {step.output!r} is written twice")
            defined.add(step.output)
        for name in self.outputs:
            if name not in defined or self.tensors[name].dtype != FLOAT:
                raise ValueError(f"plan output {name!r} must be a float32 tensor computed by a step")
        return self

    def _spec(self, name: str, where: str) -> TensorSpec:
        if name not in self.tensors:
            raise ValueError(f"{where}: tensor {name!r} has no spec")
        return self.tensors[name]

    def const_bytes(self) -> int:
        """Bytes of all constants (the weights a saved model holds)."""
        return sum(int(np.asarray(v).nbytes) for s in self.steps for v in s.consts.values())


def _check_consts(step: Step, out: TensorSpec, where: str) -> None:
    """dtype and shape of the constants a step reads (a file may hold anything)."""
    c = step.consts
    if step.op in ("conv", "linear"):
        w, ws, b = (np.asarray(c[k]) for k in ("w", "w_scale", "bias"))
        ndim = 4 if step.op == "conv" else 2
        if w.dtype != np.int8 or w.ndim != ndim or w.shape[0] == 0:
            raise ValueError(f"{where}: w must be a {ndim}-D int8 array with output channels first, "
                             f"got {w.dtype} {w.shape}")
        o = w.shape[0]
        if ws.dtype != np.float32 or ws.shape != (o,) or not np.all((ws > 0) & (ws < np.inf)):
            raise ValueError(f"{where}: w_scale must be {o} positive finite float32 values")
        if b.dtype != np.int32 or b.shape != (o,):
            raise ValueError(f"{where}: bias must be {o} int32 values")
        _check_activation(step.attrs.get("activation"), where)
    elif step.op == "dynamic_linear":
        w, ws, b = (np.asarray(c[k]) for k in ("w", "w_scale", "bias"))
        if w.dtype != np.int8 or w.ndim != 2 or w.shape[0] == 0:
            raise ValueError(f"{where}: w must be a 2-D int8 array [O, K], got {w.dtype} {w.shape}")
        o = w.shape[0]
        if ws.dtype != np.float32 or ws.shape != (o,) or not np.all((ws > 0) & (ws < np.inf)):
            raise ValueError(f"{where}: w_scale must be {o} positive finite float32 values")
        if b.dtype != np.float32 or b.shape != (o,) or not np.all(np.isfinite(b)):
            raise ValueError(f"{where}: bias must be {o} finite float32 values")
        if step.attrs.get("activation") not in (None, "relu"):
            raise ValueError(f"{where}: activation must be None or 'relu'")
        if step.attrs.get("granularity", "row") not in ("row", "tensor"):
            raise ValueError(f"{where}: granularity must be 'row' or 'tensor'")
    elif step.op == "lut":
        t = np.asarray(c["table"])
        if t.shape != (256,) or t.dtype != out.dtype:
            raise ValueError(f"{where}: table must be 256 values of {out.dtype}")


def _check_activation(act, where: str) -> None:
    """None, "relu", "relu6" or ("clip", lo, hi) with finite lo <= hi: what every executor takes
    (a NaN bound would be read differently by each)."""
    if act is None or (isinstance(act, str) and act in ("relu", "relu6")):
        return
    if isinstance(act, tuple) and len(act) == 3 and act[0] == "clip" and all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and np.isfinite(v)
            for v in act[1:]) and act[1] <= act[2]:
        return
    raise ValueError(f"{where}: activation must be None, 'relu', 'relu6' or ('clip', lo, hi) with finite "
                     f"lo <= hi, got {act!r}")


def float_node_graph(step: Step, ins: list):
    """A float step's node as a one-node float Graph with inputs in0, in1, ..."""
    from ..graph import Graph

    g = Graph("float step")
    inputs = [g.input(f"in{i}", spec.shape) for i, spec in enumerate(ins)]
    g.output(g.add_node(step.attrs["op"], inputs, step.attrs["attrs"], step.consts, name=step.source or "node"))
    return g


def _check_float_node(step: Step, ins: list, out: TensorSpec, where: str) -> None:
    """A float step must be a valid float graph node producing its declared output shape."""
    if not isinstance(step.attrs.get("op"), str) or not isinstance(step.attrs.get("attrs"), dict):
        raise ValueError(f"{where}: a float step needs attrs 'op' (str) and 'attrs' (dict)")
    if any(spec.dtype != FLOAT for spec in ins):
        raise ValueError(f"{where}: a float step reads float32 tensors")
    try:
        g = float_node_graph(step, ins)
    except Exception as e:  # the graph builder's own message: which attribute or shape is wrong
        raise ValueError(f"{where}: not a valid float node: {type(e).__name__}: {e}") from None
    if tuple(g.tensors[g.outputs[0]].shape) != tuple(out.shape):
        raise ValueError(f"{where}: computes shape {g.tensors[g.outputs[0]].shape}, but declares {out.shape}")
