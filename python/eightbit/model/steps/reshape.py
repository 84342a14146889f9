"""reshape: the float graph's reshape (flatten, view) of one tensor, quantized or float32.

=======  ========================================================================================
reshape  attrs: shape (batch dim as -1 or None); a 4-D NHWC input is put back in NCHW order first,
         so the result is the float graph's reshape. A quantized output keeps the input's scale
         and zero point
=======  ========================================================================================
"""
from __future__ import annotations

import math

import numpy as np

from .common import to_nchw, to_nhwc
from .kind import StepKind


def _shape(step, ins):
    x, shape = ins[0].shape, step.attrs.get("shape")
    if not isinstance(shape, (tuple, list)) or not shape or not all(
            isinstance(d, int) and d > 0 for d in shape[1:]):
        raise ValueError(f"shape must be (batch, positive ints...), got {shape!r}")
    if math.prod(x[1:]) != math.prod(shape[1:]):
        raise ValueError(f"cannot reshape {x} to {tuple(shape)}")
    out = (x[0],) + tuple(shape[1:])
    return (out[0], out[2], out[3], out[1]) if len(out) == 4 and ins[0].quantized else out


def _run(m, step, xs, ins, out, w):
    x = to_nchw(xs[0]) if ins[0].quantized else xs[0]
    shape = tuple(-1 if d is None else d for d in step.attrs["shape"])
    y = x.reshape((x.shape[0],) + shape[1:])
    return to_nhwc(y) if out.quantized else y


def _export(ex, step, label):
    # the plan's reshape is the float graph's (NCHW order), which is ONNX's Reshape here;
    # dim 0 (the batch) is copied
    shape = [0] + [-1 if d is None else int(d) for d in step.attrs["shape"][1:]]
    ex.b.node("Reshape", [step.inputs[0], ex.int_const(f"{label}.shape", shape, np.int64)], [step.output], label)


RESHAPE = StepKind("reshape", 1, "same", copies=True, shape=_shape, run=_run,
                   lower=lambda step, ins, out: {"kind": "reshape"}, export=_export)
