"""DequantizeLinear (ONNX opset 10-21) for uint8/int8 (and int32 with zero point 0).

    y = float32(int32(x) - int32(x_zero_point)) * x_scale        # float32 multiply
"""
from __future__ import annotations

import numpy as np

from ..numerics.checks import as_array, positive_scale, quant_array
from ._axis import per_axis_params

_DEQUANT_DTYPES = (np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.int32))


def dequantize_linear(x, x_scale, x_zero_point=None, axis=1, block_size=0) -> np.ndarray:
    """Float32 values of quantized x. x_zero_point (if given) must have x's dtype and x_scale's
    shape; per-tensor, per-axis or blocked as in quantize_linear. For int32 x the zero point must
    be 0."""
    xq = quant_array(x, "x", allowed=_DEQUANT_DTYPES)
    scale = positive_scale(x_scale, "x_scale")
    if x_zero_point is None:
        zp = np.zeros(scale.shape, dtype=xq.dtype)
    else:
        zp = quant_array(x_zero_point, "x_zero_point", allowed=(xq.dtype,))
        if xq.dtype == np.int32 and np.any(zp != 0):
            raise ValueError("x_zero_point must be 0 when x is int32 (ONNX DequantizeLinear)")
    scale, zp = per_axis_params(xq, scale, zp, axis, "x_scale", "x_zero_point", block_size)
    centered = (xq.astype(np.int64) - zp.astype(np.int64)).astype(np.float32)
    return (centered * scale).astype(np.float32)
