"""The CNN companion operators of ``eightbit.ops``, computed by the C++ core.

QLinearAdd, QLinearMul, MaxPool (uint8 / int8), QLinearAveragePool,
QLinearGlobalAveragePool, QLinearConcat, QLinearLeakyRelu, QLinearSigmoid and
byte lookup tables. Each function takes the arguments of the function of the
same name in ``eightbit.reference`` and returns bit-identical results
(``docs/numerics.md``, "CNN operators"); arguments are checked with the
reference's own checks (``eightbit.numerics.checks``) before the C++ core sees them.

The pooling kernels work channels-last: ``layout="NCHW"`` input is transposed to
channels-last and the result back (``layout="NHWC"`` skips both copies). Pools
take 1, 2 or 3 spatial axes. Leaky ReLU, sigmoid and concatenation are 256-entry
tables built in Python (O(256): leaky ReLU and sigmoid by the reference, concatenation's by
``eightbit.numerics.tables``) and applied in C++.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from . import reference as _ref
from .numerics import window
from .numerics.broadcast import qlinear_add_b_first
from .numerics.checks import as_array, check_binary, per_tensor, positive_scale, quant_array
from .numerics.tables import make_lookup_table, requantize_table
from .reference.qlinear_average_pool import kernel_list
from .reference.qlinear_concat import concat_triples
from .runtime import core as _core

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
_QUANT_DTYPES = (np.dtype(np.uint8), np.dtype(np.int8))
_SCALE, _ZP = True, False


# --------------------------------------------------------------------------- argument checks
# The reference's checks cost tens of microseconds (NumPy on scalars), as much as a kernel on a
# 56x56x128 tensor. Well-typed scalars (a float32 scale > 0, a zero point of the tensor's dtype,
# as numpy scalars or 1-element arrays) take a fast path; anything else goes through the
# reference's checks, which convert it or raise their named error.

def _item(v, dtype):
    """v as a Python number when it is one value of `dtype` (numpy scalar or <= 1-D, 1 element)."""
    if type(v) is dtype.type:
        return v.item()
    if type(v) is np.ndarray and v.dtype == dtype and v.size == 1 and v.ndim <= 1:
        return v.item()
    return None


def _fast_params(dtype, *params):
    """[(value, _SCALE or _ZP)] as Python numbers, or None when one needs the reference's checks."""
    out = []
    for value, is_scale in params:
        v = _item(value, np.dtype(np.float32) if is_scale else dtype)
        if v is None or (is_scale and not 0.0 < v < math.inf):
            return None
        out.append(v)
    return out


def _scalar_params(dtype, x_scale, x_zero_point, y_scale, y_zero_point):
    """(x_scale, x_zp, y_scale, y_zp) of a unary op as Python numbers, checked as the reference does."""
    fast = _fast_params(dtype, (x_scale, _SCALE), (x_zero_point, _ZP), (y_scale, _SCALE), (y_zero_point, _ZP))
    if fast is not None:
        return fast
    x_s = per_tensor(positive_scale(x_scale, "x_scale"), "x_scale")
    y_s = per_tensor(positive_scale(y_scale, "y_scale"), "y_scale")
    x_zp = per_tensor(quant_array(x_zero_point, "x_zero_point", allowed=(dtype,)), "x_zero_point")
    y_zp = per_tensor(quant_array(y_zero_point, "y_zero_point", allowed=(dtype,)), "y_zero_point")
    return [float(x_s), int(x_zp), float(y_s), int(y_zp)]


def _broadcasts(a_shape, b_shape) -> bool:
    try:
        np.broadcast_shapes(a_shape, b_shape)
    except ValueError:
        return False
    return True


def _binary_args(a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point):
    """(a, b, [a_s, a_zp, b_s, b_zp, c_s, c_zp]) checked as the reference's check_binary does."""
    if (type(a) is np.ndarray and type(b) is np.ndarray and a.dtype in _QUANT_DTYPES and b.dtype == a.dtype
            and (a.shape == b.shape or _broadcasts(a.shape, b.shape))):
        fast = _fast_params(a.dtype, (a_scale, _SCALE), (a_zero_point, _ZP), (b_scale, _SCALE),
                            (b_zero_point, _ZP), (c_scale, _SCALE), (c_zero_point, _ZP))
        if fast is not None:
            return a, b, fast
    a, b, params = check_binary(a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point)
    return a, b, [p.item() for p in params]


# ------------------------------------------------------------------------------ elementwise

def qlinear_add(a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point) -> np.ndarray:
    """com.microsoft QLinearAdd: quantized ``a + b`` with numpy broadcasting, as ONNX Runtime's
    AVX2 kernel computes it (including its fma order, which depends on which input broadcasts)."""
    a, b, (a_s, a_zp, b_s, b_zp, c_s, c_zp) = _binary_args(
        a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point)
    return _core.qlinear_add(a, a_s, a_zp, b, b_s, b_zp, c_s, c_zp, qlinear_add_b_first(a.shape, b.shape))


def qlinear_mul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point) -> np.ndarray:
    """com.microsoft QLinearMul: quantized ``a * b`` with numpy broadcasting."""
    a, b, (a_s, a_zp, b_s, b_zp, c_s, c_zp) = _binary_args(
        a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point)
    return _core.qlinear_mul(a, a_s, a_zp, b, b_s, b_zp, c_s, c_zp)


# ------------------------------------------------------------------------------------ pools

def _spatial(x: np.ndarray, layout: str) -> tuple:
    """The spatial extents of x (checks the layout and rank as the reference does)."""
    if window.check_layout(layout) == "NCHW" and x.ndim >= 3:
        return x.shape[2:]
    if x.ndim >= 3:
        return x.shape[1:-1]
    return window.to_channels_first(x, layout, "x").shape[2:]  # raises the reference's error


class _PoolInput:
    """x as the kernels' 5-D [N, D, H, W, C] array and the window attributes padded to 3 axes."""

    def __init__(self, x: np.ndarray, layout: str, kernel, begin, end, strides, dilations):
        rank = x.ndim - 2
        if rank > _MAX_POOL_AXES:
            raise ValueError(f"x: at most {_MAX_POOL_AXES} spatial axes are supported, got {rank} (shape {x.shape})")
        self.layout = layout
        if layout == "NCHW":
            x = x.transpose(0, *range(2, x.ndim), 1)           # a view; the copy below makes it NHWC
        self.batch, self.channels = x.shape[0], x.shape[-1]
        lead = [1] * (_MAX_POOL_AXES - rank)
        self.x5 = np.ascontiguousarray(x).reshape((self.batch, *lead, *x.shape[1:-1], self.channels))
        self.kernel, self.strides, self.dilations = lead + list(kernel), lead + list(strides), lead + list(dilations)
        self.pads = [0] * len(lead) + list(begin) + [0] * len(lead) + list(end)

    def output(self, y5: np.ndarray, out) -> np.ndarray:
        y = y5.reshape((self.batch, *out, self.channels))
        if self.layout == "NCHW":
            return np.ascontiguousarray(y.transpose(0, y.ndim - 1, *range(1, y.ndim - 1)))
        return y


def max_pool(x, *, kernel_shape, auto_pad="NOTSET", ceil_mode=0, dilations=None, pads=None, strides=None,
             layout="NCHW") -> np.ndarray:
    """ONNX MaxPool on uint8 / int8: the maximum of each window's in-bounds taps."""
    x = quant_array(x, "x")
    spatial = _spatial(x, layout)
    kernel = kernel_list(kernel_shape, len(spatial))
    begin, end, out, strides, dil = window.resolve(spatial, kernel, auto_pad=auto_pad, pads=pads, strides=strides,
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
    x_s, x_zp, y_s, y_zp = _scalar_params(x.dtype, x_scale, x_zero_point, y_scale, y_zero_point)
    if count_include_pad not in (0, 1, False, True):
        raise ValueError(f"count_include_pad must be 0 or 1, got {count_include_pad!r}")
    kernel = kernel_list(kernel_shape, len(spatial))
    begin, end, out, strides, _ = window.resolve(spatial, kernel, auto_pad=auto_pad, pads=pads, strides=strides,
                                                 ceil_mode=ceil_mode)
    if list(spatial) == kernel and not any(begin) and not any(end) and math.prod(kernel) >= _MAX_GLOBAL_PIXELS:
        raise ValueError(f"x has {math.prod(kernel)} spatial elements per channel; at most 2^24 - 1 are supported")
    p = _PoolInput(x, layout, kernel, begin, end, strides, [1] * len(kernel))
    y5 = _core.qlinear_average_pool_ndhwc(p.x5, x_s, x_zp, y_s, y_zp, p.kernel, p.strides, p.pads, bool(ceil_mode),
                                          bool(count_include_pad))
    return p.output(y5, out)


def qlinear_global_average_pool(x, x_scale, x_zero_point, y_scale, y_zero_point, *, layout="NCHW") -> np.ndarray:
    """com.microsoft QLinearGlobalAveragePool: ONNX Runtime's exact integer sum, then one float32
    requantization; the spatial axes are kept with extent 1. NCHW input is summed in place (each
    channel's pixels are contiguous), NHWC input channel-vectorised."""
    x = quant_array(x, "x")
    spatial = _spatial(x, layout)
    params = _scalar_params(x.dtype, x_scale, x_zero_point, y_scale, y_zero_point)
    pixels = math.prod(spatial)
    if pixels >= _MAX_GLOBAL_PIXELS:
        raise ValueError(f"x has {pixels} spatial elements per channel; at most 2^24 - 1 are supported")
    if pixels == 0:
        raise ValueError(f"x must have a non-empty spatial extent, got shape {x.shape}")
    n = x.shape[0]
    c = x.shape[1] if layout == "NCHW" else x.shape[-1]
    ones = (1,) * len(spatial)
    if layout == "NCHW":
        y = _core.qlinear_global_average_pool(np.ascontiguousarray(x).reshape(n * c, pixels, 1), *params)
        return y.reshape((n, c) + ones)
    y = _core.qlinear_global_average_pool(np.ascontiguousarray(x).reshape(n, pixels, c), *params)
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


# Tables are cached by their parameters (as Python numbers: hashable, and exactly the float32 /
# integer values the reference sees), so a repeated call does not rebuild them; a miss builds
# the table with the reference, whose checks raise for bad values (errors are not cached).

@functools.lru_cache(maxsize=256)
def _leaky_relu_table(dtype, x_s, x_zp, y_s, y_zp, alpha):
    dt = np.dtype(dtype)
    return _frozen(_ref.qlinear_leaky_relu(_all_bytes(dt), np.float32(x_s), dt.type(x_zp), np.float32(y_s),
                                           dt.type(y_zp), alpha=np.float32(alpha)))


@functools.lru_cache(maxsize=256)
def _sigmoid_table(dtype, x_s, x_zp, y_s, y_zp):
    dt = np.dtype(dtype)
    return _frozen(_ref.qlinear_sigmoid(_all_bytes(dt), np.float32(x_s), dt.type(x_zp), np.float32(y_s),
                                        dt.type(y_zp)))


def _frozen(table: np.ndarray) -> np.ndarray:
    table.setflags(write=False)
    return table


def _float32_value(v):
    """A float32 or Python float (as the reference converts it), else None."""
    if type(v) is float:
        return float(np.float32(v))
    return _item(v, np.dtype(np.float32))


def qlinear_leaky_relu(x, x_scale, x_zero_point, y_scale, y_zero_point, *, alpha=0.01) -> np.ndarray:
    """com.microsoft QLinearLeakyRelu (ONNX Runtime's 256-entry table)."""
    x = quant_array(x, "x")
    fast = _fast_params(x.dtype, (x_scale, _SCALE), (x_zero_point, _ZP), (y_scale, _SCALE), (y_zero_point, _ZP))
    a = _float32_value(alpha)
    if fast is not None and a is not None:
        table = _leaky_relu_table(x.dtype.str, *fast, a)
    else:
        table = _ref.qlinear_leaky_relu(_all_bytes(x.dtype), x_scale, x_zero_point, y_scale, y_zero_point,
                                        alpha=alpha)
    return _core.lookup_table(x, table)


def qlinear_sigmoid(x, x_scale, x_zero_point, y_scale, y_zero_point) -> np.ndarray:
    """com.microsoft QLinearSigmoid (ONNX Runtime's FMA3 logistic kernel, as a 256-entry table)."""
    x = quant_array(x, "x")
    fast = _fast_params(x.dtype, (x_scale, _SCALE), (x_zero_point, _ZP), (y_scale, _SCALE), (y_zero_point, _ZP))
    if fast is not None:
        table = _sigmoid_table(x.dtype.str, *fast)
    else:
        table = _ref.qlinear_sigmoid(_all_bytes(x.dtype), x_scale, x_zero_point, y_scale, y_zero_point)
    return _core.lookup_table(x, table)


def qlinear_concat(y_scale, y_zero_point, inputs, *, axis) -> np.ndarray:
    """com.microsoft QLinearConcat: each (tensor, scale, zero_point) input requantized to
    (y_scale, y_zero_point) through its identity table (copied when that table is the identity),
    then concatenated along ``axis``."""
    y_zp = quant_array(y_zero_point, "y_zero_point")
    triples = concat_triples(inputs, axis)
    dt = y_zp.dtype
    tensors, tables = [], []
    for i, triple in enumerate(triples):
        if not isinstance(triple, (tuple, list)) or len(triple) != 3:
            raise ValueError(f"inputs[{i}] must be a (tensor, scale, zero_point) triple")
        t, s, zp = triple
        t = quant_array(t, f"inputs[{i}] tensor", allowed=(dt,))
        zp = quant_array(zp, f"inputs[{i}] zero_point", allowed=(dt,))
        tensors.append(t)
        tables.append(requantize_table(s, zp, y_scale, y_zero_point, dt))
    rank = tensors[0].ndim
    if not -rank <= axis < rank:
        raise ValueError(f"axis must be in [{-rank}, {rank}) for inputs of rank {rank}, got {axis}")
    axis = int(axis) % rank
    shapes = [t.shape for t in tensors]
    if any(len(s) != rank or s[:axis] + s[axis + 1:] != shapes[0][:axis] + shapes[0][axis + 1:] for s in shapes):
        raise ValueError(f"inputs must have equal shapes except along axis {axis}, got {shapes}")
    return _core.concat(tensors, tables, axis)
