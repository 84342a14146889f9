"""ONNX convolution attributes resolved to explicit 2-D geometry, and the
conversions between the NCHW API and the NHWC kernels.

Shared by ``eightbit.ops.conv_integer`` and ``eightbit.ops.qlinear_conv``:
``auto_pad``, default ``kernel_shape`` / ``strides`` / ``dilations`` /
``pads``, and 1-D convolutions (run as 2-D with height 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")
_LAYOUTS = ("NCHW", "NHWC")


@dataclass(frozen=True)
class ConvGeometry:
    """Explicit 2-D geometry: strides (h, w), dilations (h, w), pads (top, left, bottom, right)."""

    strides: tuple
    dilations: tuple
    pads: tuple
    spatial_dims: int  # 1 or 2, as given by the caller


def _ints(value, name: str, count: int, default: int) -> tuple:
    if value is None:
        return (default,) * count
    items = value if isinstance(value, (list, tuple)) else np.asarray(value).reshape(-1)
    values = tuple(int(v) for v in items)
    if len(values) != count:
        raise ValueError(f"{name}: expected {count} values, got {len(values)}")
    return values


def resolve(x_spatial: tuple, w_spatial: tuple, *, auto_pad, dilations, kernel_shape, pads, strides) -> ConvGeometry:
    """ONNX Conv attribute rules for an input of spatial shape ``x_spatial``."""
    n = len(x_spatial)
    if n not in (1, 2):
        raise ValueError(f"x: expected 1 or 2 spatial dimensions, got {n}")
    if auto_pad not in _AUTO_PADS:
        raise ValueError(f"auto_pad: expected one of {_AUTO_PADS}, got {auto_pad!r}")
    kernel = _ints(kernel_shape, "kernel_shape", n, 1) if kernel_shape is not None else tuple(w_spatial)
    if kernel != tuple(w_spatial):
        raise ValueError(f"kernel_shape: {kernel} does not match the weights' spatial shape {tuple(w_spatial)}")
    strides = _ints(strides, "strides", n, 1)
    dilations = _ints(dilations, "dilations", n, 1)
    if min(strides) < 1:
        raise ValueError(f"strides: must be >= 1, got {strides}")
    if min(dilations) < 1:
        raise ValueError(f"dilations: must be >= 1, got {dilations}")
    if auto_pad == "NOTSET":
        pads = _ints(pads, "pads", 2 * n, 0)
        if min(pads) < 0:
            raise ValueError(f"pads: must be >= 0, got {pads}")
        begin, end = pads[:n], pads[n:]
    elif pads is not None and any(int(p) != 0 for p in np.asarray(pads).reshape(-1)):
        raise ValueError(f"pads: cannot be combined with auto_pad={auto_pad!r}")
    elif auto_pad == "VALID":
        begin = end = (0,) * n
    else:
        begin, end = [], []
        for size, k, s, d in zip(x_spatial, kernel, strides, dilations):
            out = -(-size // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
            small, large = total // 2, total - total // 2
            begin.append(small if auto_pad == "SAME_UPPER" else large)
            end.append(large if auto_pad == "SAME_UPPER" else small)
    for size, k, d, b, e in zip(x_spatial, kernel, dilations, begin, end):
        if size + b + e < (k - 1) * d + 1:
            raise ValueError("w: the (dilated) kernel is larger than the padded input")
    if n == 1:
        return ConvGeometry((1, strides[0]), (1, dilations[0]), (0, begin[0], 0, end[0]), 1)
    return ConvGeometry(tuple(strides), tuple(dilations), (begin[0], begin[1], end[0], end[1]), 2)


def check_layout(layout: str) -> str:
    if layout not in _LAYOUTS:
        raise ValueError(f"layout: expected one of {_LAYOUTS}, got {layout!r}")
    return layout


def to_nhwc(x: np.ndarray, layout: str) -> np.ndarray:
    """The 4-D NHWC view the kernels read (1-D convolutions get height 1)."""
    if x.ndim == 3:
        x = x[:, :, np.newaxis, :] if layout == "NCHW" else x[:, np.newaxis, :, :]
    if x.ndim != 4:
        raise ValueError(f"x: expected a 3-D or 4-D tensor, got shape {x.shape}")
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1) if layout == "NCHW" else x)


def from_nhwc(y: np.ndarray, layout: str, spatial_dims: int) -> np.ndarray:
    if spatial_dims == 1:
        y = y[:, 0]
        return np.ascontiguousarray(y.transpose(0, 2, 1)) if layout == "NCHW" else y
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2)) if layout == "NCHW" else y
