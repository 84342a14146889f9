"""The output shape each plan step computes from its input specs and attributes: Plan.validate
compares it with the declared output spec, so a plan (or a hostile file) cannot declare
geometry its steps do not produce. Shapes have None for the batch; 4-D quantized is NHWC."""
from __future__ import annotations

import math

MAX_SAMPLE_BYTES = 1 << 28  # per tensor and sample: far above any real activation


def _ints(v, n: int, what: str, low: int) -> tuple:
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


def _spatial(x: tuple, a: dict, kernel: tuple, ceil: bool) -> tuple:
    strides = _ints(a.get("strides", (1, 1)), 2, "strides", 1)
    dil = _ints(a.get("dilations", (1, 1)), 2, "dilations", 1)
    pads = _ints(a.get("pads", (0, 0, 0, 0)), 4, "pads", 0)
    return tuple(_window(x[1 + i], kernel[i], strides[i], dil[i], pads[i], pads[2 + i], ceil) for i in range(2))


def _no_empty_window(x: tuple, a: dict, kernel: tuple, out: tuple) -> None:
    """An average pool not counting its padding divides by the taps inside x: no window may lie
    wholly in the padding (0 / 0; ONNX Runtime refuses pads >= kernel)."""
    strides = _ints(a.get("strides", (1, 1)), 2, "strides", 1)
    pads = _ints(a.get("pads", (0, 0, 0, 0)), 4, "pads", 0)
    for i in range(2):
        if x[1 + i] <= 0 or pads[i] >= kernel[i] or (out[i] - 1) * strides[i] - pads[i] >= x[1 + i]:
            raise ValueError(f"with count_include_pad=0, a window on spatial axis {i} lies wholly in the padding "
                             f"(kernel {kernel[i]}, pads {pads[i]}, {pads[2 + i]}, input {x[1 + i]})")


def _broadcast(a: tuple, b: tuple) -> tuple:
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


def infer(step, ins: list) -> tuple | None:
    """The output shape of ``step`` given its input TensorSpecs; None when the op's output shape
    is checked elsewhere (float steps: the float graph re-infers it when they run)."""
    op, a = step.op, step.attrs
    x = ins[0].shape if ins else ()
    if op == "quantize":
        return (x[0], x[2], x[3], x[1]) if len(x) == 4 else x
    if op == "dequantize":
        return (x[0], x[3], x[1], x[2]) if len(x) == 4 else x
    if op in ("conv", "linear", "dynamic_linear"):
        w = step.consts["w"].shape
        if op != "conv":                      # x [N, ..., K] -> [N, ..., O], not 4-D (NHWC)
            if len(x) < 2 or (len(x) == 4 and op == "linear") or x[-1] != w[1]:
                raise ValueError(f"input {x} does not match weights {w}")
            return tuple(x[:-1]) + (w[0],)
        group = a.get("group", 1)
        if len(x) != 4 or not isinstance(group, int) or group < 1 or x[3] != w[1] * group or w[0] % group:
            raise ValueError(f"input {x} does not match weights {w} with group {group!r}")
        return (x[0],) + _spatial(x, a, w[2:], False) + (w[0],)
    if op in ("add", "mul"):
        return _broadcast(ins[0].shape, ins[1].shape)
    if op in ("max_pool", "avg_pool"):
        if len(x) != 4:
            raise ValueError(f"pooling needs a 4-D NHWC input, got {x}")
        kernel = _ints(a.get("kernel"), 2, "kernel", 1)
        out = _spatial(x, a, kernel, bool(a.get("ceil_mode", 0)))
        if op == "avg_pool" and not a.get("count_include_pad", 1):
            _no_empty_window(x, a, kernel, out)
        return (x[0],) + out + (x[3],)
    if op == "global_avg_pool":
        if len(x) != 4:
            raise ValueError(f"global pooling needs a 4-D NHWC input, got {x}")
        return (x[0], 1, 1, x[3])
    if op == "concat":
        axis = a.get("axis")
        if not isinstance(axis, int) or not 1 <= axis < len(x):
            raise ValueError(f"axis {axis!r} is out of range for rank {len(x)}")
        for s in ins[1:]:
            if len(s.shape) != len(x) or any(d != e for i, (d, e) in enumerate(zip(x, s.shape)) if i != axis):
                raise ValueError(f"inputs {x} and {s.shape} differ outside axis {axis}")
        return x[:axis] + (sum(s.shape[axis] for s in ins),) + x[axis + 1:]
    if op == "softmax":
        axis = a.get("axis")
        if isinstance(axis, bool) or not isinstance(axis, int) or not -len(x) <= axis < len(x) or axis % len(x) == 0:
            raise ValueError(f"axis {axis!r} must name a dimension of rank {len(x)} other than the batch (0)")
        return x
    if op == "lut":
        return x
    if op == "reshape":
        shape = a.get("shape")
        if not isinstance(shape, (tuple, list)) or not shape or not all(
                isinstance(d, int) and d > 0 for d in shape[1:]):
            raise ValueError(f"shape must be (batch, positive ints...), got {shape!r}")
        if math.prod(x[1:]) != math.prod(shape[1:]):
            raise ValueError(f"cannot reshape {x} to {tuple(shape)}")
        out = (x[0],) + tuple(shape[1:])
        return (out[0], out[2], out[3], out[1]) if len(out) == 4 and ins[0].quantized else out
    return None


def check_size(spec) -> None:
    per_sample = math.prod(spec.shape[1:]) * spec.dtype.itemsize
    if per_sample > MAX_SAMPLE_BYTES:
        raise ValueError(f"tensor {spec.name!r} of shape {spec.shape} needs {per_sample} bytes per sample "
                         f"(more than {MAX_SAMPLE_BYTES})")
