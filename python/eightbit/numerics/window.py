"""Sliding-window geometry shared by convolution and pooling (ONNX Conv / Pool attribute rules),
used by eightbit.reference and eightbit.cnn_ops.

For each spatial axis i with input size n, kernel k, stride s, dilation d and explicit pads
(b, e) (`pads` = [b_1, ..., b_r, e_1, ..., e_r] as in ONNX):

    dk = (k - 1) * d + 1                                     # dilated kernel extent
    NOTSET:      out = floor((n + b + e - dk) / s) + 1       # ceil(...) with ceil_mode=1 (pools),
                                                             # dropping a last window that would
                                                             # start in the end padding
    VALID:       b = e = 0; out = floor((n - dk) / s) + 1
    SAME_UPPER:  out = ceil(n / s); total = max(0, (out - 1) * s + dk - n); b = total // 2; e = total - b
    SAME_LOWER:  as SAME_UPPER with b = total - total // 2 (the odd pixel goes first)

Output position o reads input positions o * s - b + j * d for j in [0, k).
"""
from __future__ import annotations

import numpy as np

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")
LAYOUTS = ("NCHW", "NHWC")


def _int_list(value, name: str, length: int, default: int) -> list[int]:
    if value is None:
        return [default] * length
    try:
        out = [v for v in value]
    except TypeError as exc:
        raise TypeError(f"{name} must be a sequence of integers, got {type(value).__name__}") from exc
    for v in out:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must contain integers, got {v!r}")
    if len(out) != length:
        raise ValueError(f"{name} must have {length} entries (one per spatial axis), got {len(out)}")
    return [int(v) for v in out]


def check_layout(layout) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return layout


def to_channels_first(x: np.ndarray, layout: str, name: str) -> np.ndarray:
    """NHWC (channels last) -> NCHW view; NCHW unchanged. x must have rank >= 3."""
    if x.ndim < 3:
        raise ValueError(f"{name} must have rank >= 3 ([N, C, spatial...] or [N, spatial..., C]), "
                         f"got shape {x.shape}")
    if check_layout(layout) == "NHWC":
        return np.moveaxis(x, -1, 1)
    return x


def from_channels_first(y: np.ndarray, layout: str) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(y, 1, -1) if layout == "NHWC" else y)


def resolve(spatial, kernel, *, auto_pad="NOTSET", dilations=None, pads=None, strides=None,
            ceil_mode=0, input_name="x"):
    """Return (pads_begin, pads_end, out_sizes, strides, dilations) as lists of ints, validating
    every attribute (ValueError / TypeError naming it)."""
    r = len(spatial)
    if auto_pad not in AUTO_PADS:
        raise ValueError(f"auto_pad must be one of {AUTO_PADS}, got {auto_pad!r}")
    if ceil_mode not in (0, 1, False, True):
        raise ValueError(f"ceil_mode must be 0 or 1, got {ceil_mode!r}")
    strides = _int_list(strides, "strides", r, 1)
    dilations = _int_list(dilations, "dilations", r, 1)
    if any(s <= 0 for s in strides):
        raise ValueError(f"strides must be positive, got {strides}")
    if any(d <= 0 for d in dilations):
        raise ValueError(f"dilations must be positive, got {dilations}")
    if any(k <= 0 for k in kernel):
        raise ValueError(f"kernel_shape must be positive, got {list(kernel)}")
    if pads is not None and auto_pad != "NOTSET":
        raise ValueError(f"pads cannot be given together with auto_pad={auto_pad!r}")
    explicit = _int_list(pads, "pads", 2 * r, 0)
    if any(p < 0 for p in explicit):
        raise ValueError(f"pads must be non-negative, got {explicit}")
    begin, end, out = [], [], []
    for i in range(r):
        n, k, s, d = int(spatial[i]), int(kernel[i]), strides[i], dilations[i]
        dk = (k - 1) * d + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            o = -(-n // s)
            total = max(0, (o - 1) * s + dk - n)
            b = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            begin.append(b)
            end.append(total - b)
            out.append(o)
            continue
        b, e = (0, 0) if auto_pad == "VALID" else (explicit[i], explicit[r + i])
        span = n + b + e - dk
        if span < 0:
            raise ValueError(f"kernel (dilated extent {dk} on spatial axis {i}) is larger than the "
                             f"padded input {input_name} ({n} + pads {b} + {e})")
        if ceil_mode:
            o = -(-span // s) + 1
            if (o - 1) * s >= n + b:          # last window would start in the end padding
                o -= 1
        else:
            o = span // s + 1
        begin.append(b)
        end.append(e)
        out.append(o)
    return begin, end, out, strides, dilations


def windows(xp: np.ndarray, kernel, out, strides, dilations) -> np.ndarray:
    """xp [N, C, *padded] -> read-only view [N, C, *out, *kernel] of the taps of every window.
    xp must be large enough for every window (the caller pads)."""
    r = len(kernel)
    ext = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    need = [(o - 1) * s + e for o, s, e in zip(out, strides, ext)]
    slices = (slice(None), slice(None)) + tuple(slice(0, max(nd, e)) for nd, e in zip(need, ext))
    v = np.lib.stride_tricks.sliding_window_view(xp[slices], ext, axis=tuple(range(2, 2 + r)))
    sel = (slice(None), slice(None)) + tuple(slice(0, o * s, s) for o, s in zip(out, strides)) \
        + tuple(slice(None, None, d) for d in dilations)
    return v[sel]


def pad_spatial(x: np.ndarray, begin, end, value) -> np.ndarray:
    """Pad the spatial axes (2..) of x [N, C, ...] with `value` (broadcast scalar or per-channel)."""
    if not any(begin) and not any(end):
        return x
    shape = list(x.shape[:2]) + [n + b + e for n, b, e in zip(x.shape[2:], begin, end)]
    out = np.empty(shape, dtype=x.dtype)
    out[...] = value
    inner = (slice(None), slice(None)) + tuple(slice(b, b + n) for b, n in zip(begin, x.shape[2:]))
    out[inner] = x
    return out
