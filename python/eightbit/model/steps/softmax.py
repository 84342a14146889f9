"""softmax: a float island inside a quantized plan (it runs on the dequantized input).

=======  ========================================================================================
softmax  float32 -> float32 along attrs["axis"] (any dimension but the batch). The reference is
         NumPy's exp / sum formula; the executor computes in double and rounds once (within a few
         float32 ulp)
=======  ========================================================================================
"""
from __future__ import annotations

import numpy as np

from .common import softmax_record
from .kind import StepKind


def _shape(step, ins):
    x, axis = ins[0].shape, step.attrs.get("axis")
    if isinstance(axis, bool) or not isinstance(axis, int) or not -len(x) <= axis < len(x) or axis % len(x) == 0:
        raise ValueError(f"axis {axis!r} must name a dimension of rank {len(x)} other than the batch (0)")
    return x


def _run(m, step, xs, ins, out, w):
    x = xs[0].astype(np.float32, copy=False)
    e = np.exp(x - x.max(axis=step.attrs["axis"], keepdims=True))
    return (e / e.sum(axis=step.attrs["axis"], keepdims=True)).astype(np.float32)


def _export(ex, step, label):
    ex.b.node("Softmax", [step.inputs[0]], [step.output], label, axis=int(step.attrs["axis"]))


SOFTMAX = StepKind("softmax", 1, "float", shape=_shape, run=_run,
                   lower=lambda step, ins, out: softmax_record(step.attrs["axis"], len(out.shape)), export=_export)
