"""lut: an elementwise function of a quantized tensor as a 256-entry table of output codes.

===  ==========================================================================================
lut  ``table``: 256 values of the output dtype, indexed by the input's byte; attrs: the float op
     it tabulates (``function``, and its ``attrs``; informative, and what the ONNX exporter
     writes with ``lut="op"``)
===  ==========================================================================================
"""
from __future__ import annotations

import numpy as np

from .common import MS
from .kind import StepKind

# lut function -> ONNX op of the default domain, for functions without parameters
_LUT_FLOAT_OPS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "hardswish": "HardSwish", "erf": "Erf"}


def _check(step, ins, out):
    t = np.asarray(step.consts["table"])
    if t.shape != (256,) or t.dtype != out.dtype:
        raise ValueError(f"table must be 256 values of {out.dtype}")


def _run(m, step, xs, ins, out, w):
    return m.lookup_table(xs[0], step.consts["table"])


def lut_function(step):
    """(ONNX op, attrs, extra inputs) of a lut step's float function, or None when the plan
    lacks its parameters (clip bounds, leaky_relu slope, gelu's approximation)."""
    fn = step.attrs.get("function")
    params = step.attrs.get("attrs")  # recorded by newer quantizers: the graph node's attrs
    if fn in _LUT_FLOAT_OPS:
        return _LUT_FLOAT_OPS[fn], {}, None
    if fn == "relu6":
        return "Clip", {}, (0.0, 6.0)
    if params is None:
        return None
    if fn == "clip":
        return "Clip", {}, (params.get("min"), params.get("max"))
    if fn == "leaky_relu":
        return "LeakyRelu", {"alpha": float(params["negative_slope"])}, None
    if fn == "gelu":
        return "Gelu", {"approximate": params.get("approximate", "none")}, None
    if fn == "hardsigmoid":
        return "HardSigmoid", {"alpha": float(params["alpha"]), "beta": float(params["beta"])}, None
    return None


def _export_ops(step, lut):
    """A gelu exported as the op needs Gelu's opset."""
    return {"gelu"} if lut == "op" and (lut_function(step) or ("",))[0] == "Gelu" else set()


def _export(ex, step, label):
    x, y = step.inputs[0], step.output
    fn = None if ex.lut == "table" else lut_function(step)
    if fn is None:
        # the table itself: Gather indexes by the byte; int8 codes are negative indices, which
        # Gather counts from the end, exactly as the byte value 256 + q
        idx = ex.tmp(f"{x}.index")
        ex.b.node("Cast", [x], [idx], f"{label}.index", to=6)  # INT32
        table = ex.b.const(f"{label}.table", step.consts["table"])
        ex.b.node("Gather", [table, idx], [y], label, axis=0)
        return
    op_type, attrs, clip = fn
    name = step.attrs.get("function")
    if ex.fmt == "qoperator" and name in ("sigmoid", "leaky_relu"):
        op = "QLinearSigmoid" if name == "sigmoid" else "QLinearLeakyRelu"
        ex.b.node(op, [x, *ex.qp(x), *ex.qp(y)], [y], label, domain=MS, **attrs)
        return
    f = ex.tmp(f"{y}.f32")
    ins = [ex.dq(x, label)]
    if clip is not None:
        ins += ["" if v is None else ex.b.const(f"{label}.{k}", np.float32(v)) for k, v in zip(("min", "max"), clip)]
    ex.b.node(op_type, ins, [f], label, **attrs)
    ex.q(f, y, label)


LUT = StepKind("lut", 1, "quant", consts=("table",), check=_check, shape=lambda step, ins: ins[0].shape, run=_run,
               lower=lambda step, ins, out: {"kind": "lut"}, export=_export, export_ops=_export_ops)
