"""Operand checks shared by the com.microsoft QLinearAdd / QLinearMul references."""
from __future__ import annotations

import numpy as np

from ..numerics._checks import positive_scale, quant_array


def scalar_param(value, name: str, kind: str, dtype=None) -> np.ndarray:
    """A per-tensor scale (kind "scale", float32 > 0) or zero point (kind "zp", of `dtype`)."""
    if kind == "scale":
        arr = positive_scale(value, name)
    else:
        arr = quant_array(value, name, allowed=(np.dtype(dtype),))
    if arr.size != 1 or arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar (per-tensor), got shape {arr.shape}")
    return arr.reshape(())


def check_binary(a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point):
    """Validate both operands (same dtype, broadcastable) and their per-tensor parameters."""
    a = quant_array(a, "a")
    b = quant_array(b, "b", allowed=(a.dtype,))
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError as exc:
        raise ValueError(f"a {a.shape} and b {b.shape} do not broadcast") from exc
    params = (scalar_param(a_scale, "a_scale", "scale"), scalar_param(a_zero_point, "a_zero_point", "zp", a.dtype),
              scalar_param(b_scale, "b_scale", "scale"), scalar_param(b_zero_point, "b_zero_point", "zp", a.dtype),
              scalar_param(c_scale, "c_scale", "scale"), scalar_param(c_zero_point, "c_zero_point", "zp", a.dtype))
    return a, b, params
