"""QuantizeLinear (ONNX opset 10-21, uint8/int8 outputs), ONNX Runtime's float32 arithmetic.

    v = float32(x) / y_scale                  # true float32 division, not x * (1/scale)
    y = clamp-then-round(v, y_zero_point)     # saturating, round half to even, NaN -> qmin
"""
from __future__ import annotations

import numpy as np

from ..numerics.checks import as_array, float_array, positive_scale, quant_array
from ..numerics.rounding import clamp_then_round
from ._axis import per_axis_params


def quantize_linear(x, y_scale, y_zero_point=None, axis=1, block_size=0) -> np.ndarray:
    """Quantize float x to y_zero_point's dtype (uint8 when absent).

    Per-tensor when y_scale is a scalar (or has one element); per-axis when it is 1-D of length
    x.shape[axis]; blocked with ``block_size`` (opset 21, see _axis.per_axis_params). y_zero_point
    must have y_scale's shape. x is converted to float32 first.
    """
    x32 = float_array(x, "x")
    scale = positive_scale(y_scale, "y_scale")
    if y_zero_point is None:
        zp = np.zeros(scale.shape, dtype=np.uint8)
    else:
        zp = quant_array(y_zero_point, "y_zero_point")
    scale, zp = per_axis_params(x32, scale, zp, axis, "y_scale", "y_zero_point", block_size)
    with np.errstate(over="ignore", invalid="ignore"):     # huge |x|/scale saturates below
        v = (x32 / scale).astype(np.float32)
    return clamp_then_round(v, zp, zp.dtype)
