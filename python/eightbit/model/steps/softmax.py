"""softmax: a float island inside a quantized plan (it runs on the dequantized input).

=======  ========================================================================================
softmax  float32 x [, mask] -> float32: softmax(x * scale + mask) along attrs["axis"] (any
         dimension but the batch); attrs["scale"] None or a float, the mask (a second input,
         NumPy broadcasting to x) only with the last axis: attention's scores, fused by
         graph.passes.fuse_masked_softmax. The reference is NumPy's exp / sum formula on the
         float32 x * scale + mask; the executor's is within a few float32 ulp
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
    scale = step.attrs.get("scale")
    if scale is not None and not (isinstance(scale, float) and np.isfinite(scale)):
        raise ValueError(f"scale must be a finite float or None, got {scale!r}")
    if len(ins) not in (1, 2):
        raise ValueError(f"expected 1 input (or 2 with a mask), got {len(ins)}")
    if len(ins) == 2:
        m = ins[1].shape
        if axis % len(x) != len(x) - 1:
            raise ValueError("a mask goes with a softmax over the last axis")
        if len(m) != len(x) or any(b not in (1, a) for a, b in zip(x[1:], m[1:])):
            raise ValueError(f"mask {m} must broadcast to x {x} (same rank, extents 1 or x's)")
    return x


def _run(m, step, xs, ins, out, w):
    x = xs[0].astype(np.float32, copy=False)
    if step.attrs.get("scale") is not None:
        x = x * np.float32(step.attrs["scale"])
    if len(xs) == 2:
        x = x + xs[1]
    e = np.exp(x - x.max(axis=step.attrs["axis"], keepdims=True))
    return (e / e.sum(axis=step.attrs["axis"], keepdims=True)).astype(np.float32)


def _export(ex, step, label):
    b, scores = ex.b, step.inputs[0]
    if step.attrs.get("scale") is not None:
        scaled = ex.tmp(f"{step.output}.scaled")
        b.node("Mul", [scores, b.const(f"{label}.scale", np.float32(step.attrs["scale"]))], [scaled], f"{label}.scale")
        scores = scaled
    if len(step.inputs) == 2:
        masked = ex.tmp(f"{step.output}.masked")
        b.node("Add", [scores, step.inputs[1]], [masked], f"{label}.mask_add")
        scores = masked
    b.node("Softmax", [scores], [step.output], label, axis=int(step.attrs["axis"]))


SOFTMAX = StepKind("softmax", None, "float", shape=_shape, run=_run,
                   lower=lambda step, ins, out: softmax_record(step.attrs["axis"], len(out.shape),
                                                               step.attrs.get("scale")),
                   export=_export)
