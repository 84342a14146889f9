"""QLinearAveragePool (com.microsoft, opset 1), as ONNX Runtime 1.32 computes it.

If the kernel covers the whole (unpadded) input and every pad is 0, ORT runs
QLinearGlobalAveragePool's integer formula (qlinear_global_average_pool.py). Otherwise, in float32:

    d[i]  = float32(x_scale * float32(int32(x[i]) - x_zp))        # dequantize every element
    sum   = 0; for each tap of the window in row-major order that lies inside x: sum = float32(sum + d)
    count = prod(kernel_shape) if count_include_pad else number of taps inside x
    avg   = float32(sum / float32(count))
    y     = sat(rne(float32(float32(avg / y_scale) + float32(y_zp))))    # zp added before rounding

Windows follow the ONNX pooling geometry of eightbit.numerics.window (pads, strides, auto_pad, ceil_mode; a
ceil_mode window that would start in the end padding is dropped). With count_include_pad and
ceil_mode, ORT divides by the full kernel size even for a window that reaches past the end
padding; eightbit does the same. layout="NHWC" = ORT's channels_last=1.
"""
from __future__ import annotations

import numpy as np

from ..numerics import window
from ..numerics.checks import per_tensor, positive_scale, quant_array
from ..numerics.rounding import clamp_then_round
from .qlinear_global_average_pool import global_average_from_nchw


def kernel_list(kernel_shape, rank: int) -> list[int]:
    if kernel_shape is None:
        raise ValueError("kernel_shape is required")
    try:
        k = [v for v in kernel_shape]
    except TypeError as exc:
        raise TypeError(f"kernel_shape must be a sequence of integers, got {type(kernel_shape).__name__}") from exc
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in k):
        raise TypeError(f"kernel_shape must contain integers, got {k}")
    if len(k) != rank:
        raise ValueError(f"kernel_shape must have {rank} entries (one per spatial axis of x), got {len(k)}")
    if any(v <= 0 for v in k):
        raise ValueError(f"kernel_shape must be positive, got {k}")
    return [int(v) for v in k]


def qlinear_average_pool(x, x_scale, x_zero_point, y_scale, y_zero_point, *, kernel_shape, auto_pad="NOTSET",
                         ceil_mode=0, count_include_pad=0, pads=None, strides=None, layout="NCHW") -> np.ndarray:
    x = quant_array(x, "x")
    xc = window.to_channels_first(x, layout, "x")
    x_s = per_tensor(positive_scale(x_scale, "x_scale"), "x_scale")
    y_s = per_tensor(positive_scale(y_scale, "y_scale"), "y_scale")
    x_zp = per_tensor(quant_array(x_zero_point, "x_zero_point", allowed=(x.dtype,)), "x_zero_point")
    y_zp = per_tensor(quant_array(y_zero_point, "y_zero_point", allowed=(x.dtype,)), "y_zero_point")
    if count_include_pad not in (0, 1, False, True):
        raise ValueError(f"count_include_pad must be 0 or 1, got {count_include_pad!r}")
    kernel = kernel_list(kernel_shape, xc.ndim - 2)
    begin, end, out, strides, dil = window.resolve(xc.shape[2:], kernel, auto_pad=auto_pad, pads=pads,
                                                   strides=strides, ceil_mode=ceil_mode)
    if list(xc.shape[2:]) == kernel and not any(begin) and not any(end):
        return window.from_channels_first(global_average_from_nchw(xc, x_s, x_zp, y_s, y_zp), layout)
    # pad the end far enough for ceil_mode windows that run past the end padding
    end = [max(e, (o - 1) * s + k - n - b) for e, o, s, k, n, b in zip(end, out, strides, kernel, xc.shape[2:], begin)]
    d = (x_s * (xc.astype(np.int32) - np.int32(int(x_zp))).astype(np.float32)).astype(np.float32)
    inside = window.pad_spatial(np.ones((1, 1) + xc.shape[2:], np.int64), begin, end, 0)
    d = window.pad_spatial(d, begin, end, np.float32(0.0))
    taps = window.windows(d, kernel, out, strides, dil)              # [N, C, *out, *k]
    r = len(kernel)
    flat = taps.reshape(taps.shape[:2 + r] + (-1,))
    total = np.zeros(flat.shape[:-1], np.float32)
    for t in range(flat.shape[-1]):                                   # float32 sum, row-major tap order
        total = (total + flat[..., t]).astype(np.float32)
    if count_include_pad:
        count = np.float32(np.prod(kernel))
    else:
        count = window.windows(inside, kernel, out, strides, dil).reshape((1, 1) + tuple(out) + (-1,))
        count = count.sum(axis=-1).astype(np.float32)
    avg = (total / count).astype(np.float32)
    v = ((avg / y_s).astype(np.float32) + np.float32(int(y_zp))).astype(np.float32)
    y = clamp_then_round(v, np.int32(0), x.dtype)
    return window.from_channels_first(y, layout)
