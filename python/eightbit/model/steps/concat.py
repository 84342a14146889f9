"""concat: QLinearConcat of quantized tensors, each input requantized to the output's scale and
zero point.

======  =========================================================================================
concat  QLinearConcat; attrs: axis (of the plan's layout: NHWC for 4-D, never 0, the batch). The
        lowering records a 256-entry requantization table per input (None where it is the
        identity)
======  =========================================================================================
"""
from __future__ import annotations

from ...numerics.tables import requantize_table
from .common import MS, qp, scale_zp
from .kind import StepKind

_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


def _shape(step, ins):
    x, axis = ins[0].shape if ins else (), step.attrs.get("axis")
    if not isinstance(axis, int) or not 1 <= axis < len(x):
        raise ValueError(f"axis {axis!r} is out of range for rank {len(x)}")
    for s in ins[1:]:
        if s.dtype != ins[0].dtype:
            raise ValueError(f"inputs of dtypes {ins[0].dtype} and {s.dtype}: QLinearConcat takes one dtype")
        if len(s.shape) != len(x) or any(d != e for i, (d, e) in enumerate(zip(x, s.shape)) if i != axis):
            raise ValueError(f"inputs {x} and {s.shape} differ outside axis {axis}")
    return x[:axis] + (sum(s.shape[axis] for s in ins),) + x[axis + 1:]


def _run(m, step, xs, ins, out, w):
    parts = [(x, *qp(spec)) for x, spec in zip(xs, ins)]
    return m.qlinear_concat(*qp(out), parts, axis=step.attrs["axis"])


def _tables(ins, out) -> list:
    """Per input: QLinearConcat's requantization table, or None where it is the identity."""
    return [requantize_table(*scale_zp(s), *scale_zp(out), out.dtype) for s in ins]


def _lower(step, ins, out):
    return {"kind": "concat", "axis": int(step.attrs["axis"]) % len(out.shape), "tables": _tables(ins, out)}


def _export(ex, step, label):
    y = step.output
    axis = int(step.attrs["axis"])
    if len(ex.spec(y).shape) == 4:
        axis = _NHWC_TO_NCHW_AXIS[axis]
    if ex.fmt == "qoperator":
        ins = [v for x in step.inputs for v in (x, *ex.qp(x))]
        ex.b.node("QLinearConcat", [*ex.qp(y), *ins], [y], label, domain=MS, axis=axis)
    else:
        f = ex.tmp(f"{y}.f32")
        ex.b.node("Concat", [ex.dq(x, label) for x in step.inputs], [f], label, axis=axis)
        ex.q(f, y, label)


CONCAT = StepKind("concat", None, "quant", shape=_shape, run=_run, lower=_lower, export=_export)
