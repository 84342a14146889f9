"""Geometry the step kinds' shape rules share (model/steps/: each kind's ``shape`` computes the
output shape from its input specs and attributes; Plan.validate compares it with the declared
output spec, so a plan (or a hostile file) cannot declare geometry its steps do not produce), and
the per-sample size bound of every tensor. Shapes have None for the batch; 4-D quantized is NHWC."""
from __future__ import annotations

import math

MAX_SAMPLE_BYTES = 1 << 28  # per tensor and sample: far above any real activation


def ints(v, n: int, what: str, low: int) -> tuple:
    if not isinstance(v, (tuple, list)) or len(v) != n or not all(
            isinstance(i, int) and not isinstance(i, bool) and low <= i <= 1 << 20 for i in v):
        raise ValueError(f"{what} must be {n} ints in [{low}, 2^20], got {v!r}")
    return tuple(v)


def _window(size: int, kernel: int, stride: int, dilation: int, begin: int, end: int, ceil: bool) -> int:
    span = (kernel - 1) * dilation + 1
    if size + begin + end < span:
        raise ValueError(f"kernel extent {span} is larger than the padded input {size + begin + end}")
    if not ceil:
        return (size + begin + end - span) // stride + 1
    out = -(-(size + begin + end - span) // stride) + 1
    return out - 1 if (out - 1) * stride >= size + begin else out


def spatial(x: tuple, a: dict, kernel: tuple, ceil: bool) -> tuple:
    strides = ints(a.get("strides", (1, 1)), 2, "strides", 1)
    dil = ints(a.get("dilations", (1, 1)), 2, "dilations", 1)
    pads = ints(a.get("pads", (0, 0, 0, 0)), 4, "pads", 0)
    return tuple(_window(x[1 + i], kernel[i], strides[i], dil[i], pads[i], pads[2 + i], ceil) for i in range(2))


def no_empty_window(x: tuple, a: dict, kernel: tuple, out: tuple) -> None:
    """An average pool not counting its padding divides by the taps inside x: no window may lie
    wholly in the padding (0 / 0; ONNX Runtime refuses pads >= kernel)."""
    strides = ints(a.get("strides", (1, 1)), 2, "strides", 1)
    pads = ints(a.get("pads", (0, 0, 0, 0)), 4, "pads", 0)
    for i in range(2):
        if x[1 + i] <= 0 or pads[i] >= kernel[i] or (out[i] - 1) * strides[i] - pads[i] >= x[1 + i]:
            raise ValueError(f"with count_include_pad=0, a window on spatial axis {i} lies wholly in the padding "
                             f"(kernel {kernel[i]}, pads {pads[i]}, {pads[2 + i]}, input {x[1 + i]})")


def broadcast(a: tuple, b: tuple) -> tuple:
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)
    out = []
    for da, db in zip(a, b):  # None (the batch) only matches None or 1
        if da == db or db == 1:
            out.append(da)
        elif da == 1:
            out.append(db)
        else:
            raise ValueError(f"shapes {a} and {b} do not broadcast")
    return tuple(out)


def check_size(spec) -> None:
    per_sample = math.prod(spec.shape[1:]) * spec.dtype.itemsize
    if per_sample > MAX_SAMPLE_BYTES:
        raise ValueError(f"tensor {spec.name!r} of shape {spec.shape} needs {per_sample} bytes per sample "
                         f"(more than {MAX_SAMPLE_BYTES})")
