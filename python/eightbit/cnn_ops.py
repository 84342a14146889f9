"""The CNN companion operators of ``eightbit.ops``, computed by the C++ core.

QLinearAdd, QLinearMul, MaxPool (uint8 / int8), QLinearAveragePool,
QLinearGlobalAveragePool, QLinearConcat, QLinearLeakyRelu, QLinearSigmoid and
byte lookup tables. Each function takes the arguments of the function of the
same name in ``eightbit.reference`` and returns bit-identical results
(``docs/numerics.md``, "CNN operators"); arguments are checked with the
reference's own checks before the C++ core sees them.

The pooling kernels work channels-last: ``layout="NCHW"`` input is transposed to
channels-last and the result back (``layout="NHWC"`` skips both copies). Pools
take 1, 2 or 3 spatial axes. Leaky ReLU, sigmoid and concatenation are 256-entry
tables built in Python by the reference (O(256)) and applied in C++.
"""

from __future__ import annotations

import numpy as np

from . import _core
from . import reference as _ref
from .numerics._checks import as_array, positive_scale, quant_array
from .reference import _window
from .reference._qlinear_binary import check_binary
from .reference.lookup_table import make_lookup_table
from .reference.qlinear_add import _ort_input0_broadcast
from .reference.qlinear_average_pool import _scalar, kernel_list

__all__ = [
    "qlinear_add",
    "qlinear_mul",
    "qlinear_average_pool",
    "qlinear_global_average_pool",
    "qlinear_concat",
    "qlinear_leaky_relu",
    "qlinear_sigmoid",
    "max_pool",
    "lookup_table",
    "make_lookup_table",
]

_MAX_POOL_AXES = 3
_MAX_GLOBAL_PIXELS = 1 << 24


# ------------------------------------------------------------------------------ elementwise

def qlinear_add(a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point) -> np.ndarray:
    """com.microsoft QLinearAdd: quantized ``a + b`` with numpy broadcasting, as ONNX Runtime's
    AVX2 kernel computes it (including its fma order, which depends on which input broadcasts)."""
    a, b, (a_s, a_zp, b_s, b_zp, c_s, c_zp) = check_binary(
        a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point)
    return _core.qlinear_add(a, float(a_s), int(a_zp), b, float(b_s), int(b_zp), float(c_s), int(c_zp),
                             _ort_input0_broadcast(a.shape, b.shape))


def qlinear_mul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point) -> np.ndarray:
    """com.microsoft QLinearMul: quantized ``a * b`` with numpy broadcasting."""
    a, b, (a_s, a_zp, b_s, b_zp, c_s, c_zp) = check_binary(
        a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point)
    return _core.qlinear_mul(a, float(a_s), int(a_zp), b, float(b_s), int(b_zp), float(c_s), int(c_zp))


# ------------------------------------------------------------------------------------ pools

class _PoolInput:
    """x as the kernels' 5-D [N, D, H, W, C] array and the window attributes padded to 3 axes."""

    def __init__(self, x: np.ndarray, layout: str, kernel, begin, end, strides, dilations):
        xc = _window.to_channels_first(x, layout, "x")
        self.layout, self.batch, self.channels = layout, xc.shape[0], xc.shape[1]
        rank = xc.ndim - 2
        if rank > _MAX_POOL_AXES:
            raise ValueError(f"x: at most {_MAX_POOL_AXES} spatial axes are supported, got {rank} (shape {x.shape})")
        lead = [1] * (_MAX_POOL_AXES - rank)
        last = np.ascontiguousarray(np.moveaxis(xc, 1, -1))            # no copy for NHWC input
        self.x5 = last.reshape((self.batch, *lead, *xc.shape[2:], self.channels))
        self.kernel, self.strides, self.dilations = lead + list(kernel), lead + list(strides), lead + list(dilations)
        self.pads = [0] * len(lead) + list(begin) + [0] * len(lead) + list(end)

    def output(self, y5: np.ndarray, out) -> np.ndarray:
        y = y5.reshape((self.batch, *out, self.channels))
        return np.ascontiguousarray(np.moveaxis(y, -1, 1)) if self.layout == "NCHW" else y


def _spatial(x: np.ndarray, layout: str):
    return _window.to_channels_first(x, layout, "x").shape[2:]


def max_pool(x, *, kernel_shape, auto_pad="NOTSET", ceil_mode=0, dilations=None, pads=None, strides=None,
             layout="NCHW") -> np.ndarray:
    """ONNX MaxPool on uint8 / int8: the maximum of each window's in-bounds taps."""
    x = quant_array(x, "x")
    spatial = _spatial(x, layout)
    kernel = kernel_list(kernel_shape, len(spatial))
    begin, end, out, strides, dil = _window.resolve(spatial, kernel, auto_pad=auto_pad, pads=pads, strides=strides,
                                                    dilations=dilations, ceil_mode=ceil_mode)
    p = _PoolInput(x, layout, kernel, begin, end, strides, dil)
    y5 = _core.max_pool_ndhwc(p.x5, p.kernel, p.strides, p.dilations, p.pads, bool(ceil_mode))
    return p.output(y5, out)


def qlinear_average_pool(x, x_scale, x_zero_point, y_scale, y_zero_point, *, kernel_shape, auto_pad="NOTSET",
                         ceil_mode=0, count_include_pad=0, pads=None, strides=None, layout="NCHW") -> np.ndarray:
    """com.microsoft QLinearAveragePool (ONNX Runtime's float32 formula, or its integer one when the
    window is the whole unpadded image)."""
    x = quant_array(x, "x")
    spatial = _spatial(x, layout)
    x_s = _scalar(positive_scale(x_scale, "x_scale"), "x_scale")
    y_s = _scalar(positive_scale(y_scale, "y_scale"), "y_scale")
    x_zp = _scalar(quant_array(x_zero_point, "x_zero_point", allowed=(x.dtype,)), "x_zero_point")
    y_zp = _scalar(quant_array(y_zero_point, "y_zero_point", allowed=(x.dtype,)), "y_zero_point")
    if count_include_pad not in (0, 1, False, True):
        raise ValueError(f"count_include_pad must be 0 or 1, got {count_include_pad!r}")
    kernel = kernel_list(kernel_shape, len(spatial))
    begin, end, out, strides, _ = _window.resolve(spatial, kernel, auto_pad=auto_pad, pads=pads, strides=strides,
                                                  ceil_mode=ceil_mode)
    if list(spatial) == kernel and not any(begin) and not any(end) and int(np.prod(kernel)) >= _MAX_GLOBAL_PIXELS:
        raise ValueError(f"x has {int(np.prod(kernel))} spatial elements per channel; at most 2^24 - 1 are supported")
    p = _PoolInput(x, layout, kernel, begin, end, strides, [1] * len(kernel))
    y5 = _core.qlinear_average_pool_ndhwc(p.x5, float(x_s), int(x_zp), float(y_s), int(y_zp), p.kernel, p.strides,
                                          p.pads, bool(ceil_mode), bool(count_include_pad))
    return p.output(y5, out)


def qlinear_global_average_pool(x, x_scale, x_zero_point, y_scale, y_zero_point, *, layout="NCHW") -> np.ndarray:
    """com.microsoft QLinearGlobalAveragePool: ONNX Runtime's exact integer sum, then one float32
    requantization; the spatial axes are kept with extent 1. NCHW input is summed in place (each
    channel's pixels are contiguous), NHWC input channel-vectorised."""
    x = quant_array(x, "x")
    spatial = _spatial(x, layout)
    x_s = _scalar(positive_scale(x_scale, "x_scale"), "x_scale")
    y_s = _scalar(positive_scale(y_scale, "y_scale"), "y_scale")
    x_zp = _scalar(quant_array(x_zero_point, "x_zero_point", allowed=(x.dtype,)), "x_zero_point")
    y_zp = _scalar(quant_array(y_zero_point, "y_zero_point", allowed=(x.dtype,)), "y_zero_point")
    pixels = int(np.prod(spatial, dtype=np.int64))
    if pixels >= _MAX_GLOBAL_PIXELS:
        raise ValueError(f"x has {pixels} spatial elements per channel; at most 2^24 - 1 are supported")
    if pixels == 0:
        raise ValueError(f"x must have a non-empty spatial extent, got shape {x.shape}")
    n = x.shape[0]
    c = x.shape[1] if layout == "NCHW" else x.shape[-1]
    ones = (1,) * len(spatial)
    if layout == "NCHW":
        y = _core.qlinear_global_average_pool(np.ascontiguousarray(x).reshape(n * c, pixels, 1), float(x_s),
                                              int(x_zp), float(y_s), int(y_zp))
        return y.reshape((n, c) + ones)
    y = _core.qlinear_global_average_pool(np.ascontiguousarray(x).reshape(n, pixels, c), float(x_s), int(x_zp),
                                          float(y_s), int(y_zp))
    return y.reshape((n,) + ones + (c,))


# ---------------------------------------------------------------------------- lookup tables

def lookup_table(x, table) -> np.ndarray:
    """``table[x]`` with uint8 / int8 ``x`` indexed by its raw byte; ``table`` has 256 uint8 / int8
    entries (e.g. from ``make_lookup_table``) and gives the output dtype."""
    x = quant_array(x, "x")
    t = quant_array(as_array(table, "table"), "table")
    if t.shape != (256,):
        raise ValueError(f"table must have shape (256,) (one entry per input byte), got {t.shape}")
    return _core.lookup_table(x, t)


def _all_bytes(dtype) -> np.ndarray:
    """The 256 values of `dtype` in byte order: an elementwise op applied to it is its table."""
    return np.arange(256, dtype=np.uint8).view(dtype)


def qlinear_leaky_relu(x, x_scale, x_zero_point, y_scale, y_zero_point, *, alpha=0.01) -> np.ndarray:
    """com.microsoft QLinearLeakyRelu (ONNX Runtime's 256-entry table)."""
    x = quant_array(x, "x")
    table = _ref.qlinear_leaky_relu(_all_bytes(x.dtype), x_scale, x_zero_point, y_scale, y_zero_point, alpha=alpha)
    return _core.lookup_table(x, table)


def qlinear_sigmoid(x, x_scale, x_zero_point, y_scale, y_zero_point) -> np.ndarray:
    """com.microsoft QLinearSigmoid (ONNX Runtime's FMA3 logistic kernel, as a 256-entry table)."""
    x = quant_array(x, "x")
    table = _ref.qlinear_sigmoid(_all_bytes(x.dtype), x_scale, x_zero_point, y_scale, y_zero_point)
    return _core.lookup_table(x, table)


def _identity(d):
    return d


def qlinear_concat(y_scale, y_zero_point, inputs, *, axis) -> np.ndarray:
    """com.microsoft QLinearConcat: each (tensor, scale, zero_point) input requantized to
    (y_scale, y_zero_point) through its identity table (copied when that table is the identity),
    then concatenated along ``axis``."""
    y_zp = quant_array(y_zero_point, "y_zero_point")
    try:
        triples = list(inputs)
    except TypeError as exc:
        raise TypeError("inputs must be a sequence of (tensor, scale, zero_point) triples") from exc
    if not triples:
        raise ValueError("inputs must contain at least one (tensor, scale, zero_point) triple")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an integer, got {type(axis).__name__}")
    identity = _all_bytes(y_zp.dtype)
    tensors, tables = [], []
    for i, triple in enumerate(triples):
        if not isinstance(triple, (tuple, list)) or len(triple) != 3:
            raise ValueError(f"inputs[{i}] must be a (tensor, scale, zero_point) triple")
        t, s, zp = triple
        t = quant_array(t, f"inputs[{i}] tensor", allowed=(y_zp.dtype,))
        zp = quant_array(zp, f"inputs[{i}] zero_point", allowed=(y_zp.dtype,))
        table = make_lookup_table(_identity, s, zp, y_scale, y_zero_point, t.dtype, y_zp.dtype)
        tensors.append(t)
        tables.append(None if np.array_equal(table, identity) else table)
    rank = tensors[0].ndim
    if not -rank <= axis < rank:
        raise ValueError(f"axis must be in [{-rank}, {rank}) for inputs of rank {rank}, got {axis}")
    axis = int(axis) % rank
    shapes = [t.shape for t in tensors]
    if any(len(s) != rank or s[:axis] + s[axis + 1:] != shapes[0][:axis] + shapes[0][axis + 1:] for s in shapes):
        raise ValueError(f"inputs must have equal shapes except along axis {axis}, got {shapes}")
    return _core.concat(tensors, tables, axis)
