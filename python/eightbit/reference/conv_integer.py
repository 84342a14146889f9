"""ConvInteger (ONNX opset 10): exact integer convolution with zero points.

    y[n, m, o] = wrap_int32( sum_{c, j} (int64(x_pad[n, g*Cg + c, o*s - b + j*d]) - x_zp)
                                        * (int64(w[m, c, j]) - w_zp[m]) )

over the Cg = C / group input channels of output channel m's group g = m // (M / group) and every
kernel tap j. Padded positions hold x_zp, so they contribute exactly zero. x_zp is a scalar; w_zp
a scalar or one per output channel (ONNX allows both; ONNX Runtime 1.32 takes a scalar only).
x and w are each uint8 or int8, the zero points of their operand's dtype; the result is int32,
wrapped as int32 accumulation wraps. Any number of spatial axes >= 1; layout="NHWC" means x and
y are channels-last while w stays [M, C/group, k...] (OIHW).

The sum is a float64 matrix product of the zero-point-shifted operands: every term is an integer
of magnitude <= 255 * 255 and every partial sum stays below 2^53, so it is exact.
"""
from __future__ import annotations

import numpy as np

from ..numerics import window
from ..numerics.checks import as_array, quant_array, scalar_or_vector
from .matmul_integer import wrap_int32


def _group(group) -> int:
    if isinstance(group, bool) or not isinstance(group, (int, np.integer)):
        raise TypeError(f"group must be an integer, got {type(group).__name__}")
    if group <= 0:
        raise ValueError(f"group must be positive, got {group}")
    return int(group)


def check_conv_operands(x, w, group, kernel_shape, layout):
    """Validate x / w / group / kernel_shape; return (x as NCHW view, w, group)."""
    x = quant_array(x, "x")
    w = quant_array(w, "w")
    x = window.to_channels_first(x, layout, "x")
    group = _group(group)
    if w.ndim != x.ndim:
        raise ValueError(f"w must have rank {x.ndim} ([M, C/group, kernel...]) for x of rank {x.ndim}, "
                         f"got shape {w.shape}")
    c_in, m = x.shape[1], w.shape[0]
    if c_in % group:
        raise ValueError(f"input channels of x ({c_in}) are not divisible by group ({group})")
    if m % group:
        raise ValueError(f"output channels of w ({m}) are not divisible by group ({group})")
    if w.shape[1] * group != c_in:
        raise ValueError(f"w has {w.shape[1]} input channels per group but x has {c_in} channels "
                         f"in {group} group(s) (expected w.shape[1] == {c_in // group})")
    if kernel_shape is not None and [int(k) for k in kernel_shape] != list(w.shape[2:]):
        raise ValueError(f"kernel_shape {list(kernel_shape)} does not match w's spatial shape {list(w.shape[2:])}")
    if any(k == 0 for k in w.shape[2:]):
        raise ValueError(f"w must have a non-empty kernel, got shape {w.shape}")
    return x, w, group


def weight_zero_point(zp, w: np.ndarray, name: str = "w_zero_point") -> np.ndarray:
    """Scalar or one per output channel, of w's dtype -> int64 array of shape () or (M,)."""
    if zp is None:
        return np.zeros((), np.int64)
    arr = quant_array(as_array(zp, name), name, allowed=(w.dtype,))
    return scalar_or_vector(arr, name, w.shape[0], "output channel of w (M)").astype(np.int64)


def input_zero_point(zp, x: np.ndarray, name: str = "x_zero_point") -> np.int64:
    if zp is None:
        return np.int64(0)
    arr = quant_array(as_array(zp, name), name, allowed=(x.dtype,))
    if arr.size != 1 or arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar (per-tensor), got shape {arr.shape}")
    return np.int64(arr.reshape(()))


def conv_accumulate(x: np.ndarray, w: np.ndarray, x_zp: np.int64, w_zp: np.ndarray, group: int, *,
                    auto_pad, dilations, pads, strides) -> np.ndarray:
    """Exact int64 sums [N, M, *out] for validated NCHW x, OIHW w (not yet wrapped)."""
    kernel = list(w.shape[2:])
    begin, end, out, strides, dilations = window.resolve(
        x.shape[2:], kernel, auto_pad=auto_pad, dilations=dilations, pads=pads, strides=strides)
    n, c_in, m = x.shape[0], x.shape[1], w.shape[0]
    cg, mg = c_in // group, m // group
    xs = (x.astype(np.int64) - x_zp)                                  # padded taps become exactly 0
    xs = window.pad_spatial(xs, begin, end, 0)
    ws = w.astype(np.int64) - w_zp.reshape((-1,) + (1,) * (w.ndim - 1))
    taps = window.windows(xs, kernel, out, strides, dilations)       # [N, C, *out, *k]
    r = len(kernel)
    # [N, *out, C, *k] so that one group's (C/group, *k) block is contiguous in the last axes
    taps = np.moveaxis(taps, 1, 1 + r)
    rows = int(np.prod(out, dtype=np.int64)) * n
    k_len = cg * int(np.prod(kernel, dtype=np.int64))
    acc = np.empty((rows, m), np.int64)
    for g in range(group):
        patch = taps[(slice(None),) * (1 + r) + (slice(g * cg, (g + 1) * cg),)]
        patch = patch.reshape(rows, k_len).astype(np.float64)
        wg = ws[g * mg:(g + 1) * mg].reshape(mg, k_len).astype(np.float64)
        acc[:, g * mg:(g + 1) * mg] = (patch @ wg.T).astype(np.int64)
    return np.moveaxis(acc.reshape([n] + out + [m]), -1, 1)          # [N, M, *out]


def conv_integer(x, w, x_zero_point=None, w_zero_point=None, *, auto_pad="NOTSET", dilations=None,
                 group=1, kernel_shape=None, pads=None, strides=None, layout="NCHW") -> np.ndarray:
    """int32 convolution of (x - x_zero_point) with (w - w_zero_point); ONNX ConvInteger."""
    x, w, group = check_conv_operands(x, w, group, kernel_shape, layout)
    x_zp = input_zero_point(x_zero_point, x)
    w_zp = weight_zero_point(w_zero_point, w)
    acc = conv_accumulate(x, w, x_zp, w_zp, group, auto_pad=auto_pad, dilations=dilations,
                          pads=pads, strides=strides)
    return window.from_channels_first(wrap_int32(acc), layout)
