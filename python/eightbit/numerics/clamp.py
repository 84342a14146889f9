"""The clamp bounds of a fused activation (ReLU, ReLU6, Clip) on a quantized output.

A fused activation narrows the output's integer range [qmin, qmax] to

    None:             [qmin, qmax]
    "relu":           [max(qmin, y_zp), qmax]          # y_zp is the quantized real 0
    "relu6":          [max(qmin, y_zp), Q(6.0)]
    ("clip", lo, hi): [Q(lo), Q(hi)]                   # lo <= hi, both finite

where Q(v) = QuantizeLinear(float32(v), y_scale, y_zp) (true float32 division, round half to even,
saturating). Because the requantized value is rne(v) + y_zp saturated, clamping it to [Q(lo), Q(hi)]
equals quantizing min(max(real, lo), hi). eightbit.reference, eightbit.ops, the lowering and the
ONNX exporter all take their bounds from ``activation_range``.
"""
from __future__ import annotations

import math
from numbers import Real

import numpy as np

from .checks import quant_dtype
from .rounding import quantize_per_tensor

__all__ = ["activation_range"]


def _bound(v) -> float | None:
    """A clip bound as a Python float, or None when it is not a finite real number."""
    if isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "fiu":
        v = v.item()
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (Real, np.integer, np.floating)):
        return None
    try:
        f = float(v)
    except (OverflowError, ValueError):
        return None
    return f if math.isfinite(f) else None


def activation_range(activation, y_scale, y_zero_point, dtype) -> tuple[int, int]:
    """[lo, hi] (Python ints within ``dtype``'s range) that the fused ``activation`` clamps an
    output of scale ``y_scale`` (float32 > 0, one value) and zero point ``y_zero_point`` (an
    integer of ``dtype``, uint8 or int8) to. ValueError for an unknown activation or clip bounds
    that are not finite with lo <= hi."""
    info = np.iinfo(quant_dtype(dtype))
    scale = np.asarray(y_scale, np.float32).reshape(())
    zp = int(np.asarray(y_zero_point).reshape(()))
    if activation is None:
        return int(info.min), int(info.max)

    def q(v: float) -> int:
        return int(quantize_per_tensor(np.float32(v), scale, np.int32(zp), info.dtype))

    if isinstance(activation, str) and activation == "relu":
        return max(int(info.min), zp), int(info.max)
    if isinstance(activation, str) and activation == "relu6":
        return max(int(info.min), zp), q(6.0)
    if isinstance(activation, tuple) and len(activation) == 3 and activation[0] == "clip":
        lo, hi = _bound(activation[1]), _bound(activation[2])
        if lo is None or hi is None or not lo <= hi:
            # a NaN or infinite bound has no int8 meaning
            raise ValueError(f"activation: clip bounds must be finite with lo <= hi, got "
                             f"({activation[1]}, {activation[2]})")
        return q(lo), q(hi)
    raise ValueError(f"activation: expected None, 'relu', 'relu6' or ('clip', lo, hi), got {activation!r}")
