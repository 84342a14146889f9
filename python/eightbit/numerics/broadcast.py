"""QLinearAdd's operand order: which input ONNX Runtime's kernel adds first.

ONNX Runtime's x86 QLinearAdd computes fma(P, r_P, fma(Q, r_Q, fixed)) with (P, Q) = (a, b),
except when its Broadcaster marks input 0 as the scalar of each innermost span (its
``IsInput0Scalar``): then (P, Q) = (b, a). The order only changes outputs next to a rounding tie,
but it changes them; eightbit.reference, eightbit.ops and the lowering take it from here.
"""
from __future__ import annotations

__all__ = ["qlinear_add_b_first"]


def qlinear_add_b_first(shape_a, shape_b) -> bool:
    """True when ONNX Runtime's QLinearAdd of a of `shape_a` and b of `shape_b` takes b's terms
    first: its Broadcaster's first non-trivial axis from the right (or the last common axis) has
    extent 1 in a. The rule only compares extents with 1."""
    ra, rb = len(shape_a), len(shape_b)
    if ra == 0:
        return True
    if rb == 0:
        return shape_a[-1] <= 1
    common = min(ra, rb)
    for i in range(common):
        da, db = shape_a[-1 - i], shape_b[-1 - i]
        if max(da, db) == 1 and i + 1 < common:
            continue
        return da <= 1
    return True  # pragma: no cover - the loop always returns
