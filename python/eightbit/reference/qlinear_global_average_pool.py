"""QLinearGlobalAveragePool (com.microsoft, opset 1), as ONNX Runtime / MLAS compute it.

    acc[n, c] = sum_{spatial} int32(x[n, c, ...]) - x_zp * S         # exact integer sum, S = image size
    scale     = float32(x_scale / float32(y_scale * float32(S)))
    y[n, c]   = clamp-then-round(float32(acc) * scale, y_zp)         # MlasRequantizeOutput

The spatial axes are kept with extent 1. layout="NHWC" = ORT's channels_last=1. ORT rejects
S >= 2^24 and scales with scale < 2^-32 or >= 256 ("out of computation range"); eightbit
rejects S >= 2^24 too (its int32 sum could wrap) and computes the rest with the same formula.
"""
from __future__ import annotations

import numpy as np

from ..numerics import window
from ..numerics.checks import per_tensor, positive_scale, quant_array
from .requantize import requantize_float


def global_average_from_nchw(x: np.ndarray, x_s, x_zp, y_s, y_zp) -> np.ndarray:
    """x [N, C, *spatial] (validated) -> y [N, C, 1, ...] of y_zp's dtype."""
    image = int(np.prod(x.shape[2:], dtype=np.int64))
    if image >= 1 << 24:
        raise ValueError(f"x has {image} spatial elements per channel; at most 2^24 - 1 are supported")
    if image == 0:
        raise ValueError(f"x must have a non-empty spatial extent, got shape {x.shape}")
    acc = x.reshape(x.shape[0], x.shape[1], -1).astype(np.int64).sum(axis=-1) - np.int64(int(x_zp)) * image
    scale = (x_s / (y_s * np.float32(image)).astype(np.float32)).astype(np.float32)
    y = requantize_float(acc.astype(np.int32), scale, y_zp, y_zp.dtype)
    return y.reshape(x.shape[:2] + (1,) * (x.ndim - 2))


def qlinear_global_average_pool(x, x_scale, x_zero_point, y_scale, y_zero_point, *, layout="NCHW") -> np.ndarray:
    x = quant_array(x, "x")
    xc = window.to_channels_first(x, layout, "x")
    x_s = per_tensor(positive_scale(x_scale, "x_scale"), "x_scale")
    y_s = per_tensor(positive_scale(y_scale, "y_scale"), "y_scale")
    x_zp = per_tensor(quant_array(x_zero_point, "x_zero_point", allowed=(x.dtype,)), "x_zero_point")
    y_zp = per_tensor(quant_array(y_zero_point, "y_zero_point", allowed=(x.dtype,)), "y_zero_point")
    y = global_average_from_nchw(xc, x_s, x_zp, y_s, y_zp)
    return window.from_channels_first(y, layout)
