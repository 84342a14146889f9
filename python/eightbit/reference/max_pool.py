"""MaxPool (ONNX opset 12+) on uint8 / int8 tensors: exact, the maximum of the integers.

    y[n, c, o] = max over the taps j of window o that lie inside x of x[n, c, o*s - b + j*d]

Window geometry (kernel_shape, strides, dilations, pads, auto_pad, ceil_mode) as in eightbit.numerics.window.
Padded taps never win (a window with no tap inside x, possible only with pads >= kernel extent,
gives the dtype's minimum). layout="NHWC": x and y channels-last.
"""
from __future__ import annotations

import numpy as np

from ..numerics import window
from ..numerics.checks import quant_array
from .qlinear_average_pool import kernel_list


def max_pool(x, *, kernel_shape, auto_pad="NOTSET", ceil_mode=0, dilations=None, pads=None, strides=None,
             layout="NCHW") -> np.ndarray:
    x = quant_array(x, "x")
    xc = window.to_channels_first(x, layout, "x")
    kernel = kernel_list(kernel_shape, xc.ndim - 2)
    begin, end, out, strides, dil = window.resolve(xc.shape[2:], kernel, auto_pad=auto_pad, pads=pads,
                                                   strides=strides, dilations=dilations, ceil_mode=ceil_mode)
    ext = [(k - 1) * d + 1 for k, d in zip(kernel, dil)]
    end = [max(e, (o - 1) * s + k - n - b) for e, o, s, k, n, b in zip(end, out, strides, ext, xc.shape[2:], begin)]
    xp = window.pad_spatial(xc, begin, end, np.iinfo(x.dtype).min)
    taps = window.windows(xp, kernel, out, strides, dil)
    r = len(kernel)
    y = taps.max(axis=tuple(range(2 + r, 2 + 2 * r))) if taps.size else np.empty(taps.shape[:2 + r], x.dtype)
    return window.from_channels_first(y.astype(x.dtype), layout)
