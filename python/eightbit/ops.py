"""ONNX operators on NumPy arrays, computed by the C++ core.

Each function has the semantics, input names and input order of the ONNX
operator it is named after (``docs/numerics.md`` gives every formula), and
returns bit-identical results to the same function in ``eightbit.reference``.
Wherever a ``b`` matrix is accepted, an ``eightbit.PackedWeights`` (weights
packed once with ``eightbit.pack_weights``) is accepted too. The CNN companion
operators (QLinearAdd, pools, tables, ...) live in ``eightbit.cnn_ops``.
"""

from __future__ import annotations

import numpy as np

from . import cnn_ops as _cnn_ops
from . import reference as _reference
from .binary import binary_qlinear, binary_qlinear_conv  # noqa: F401  (the plan's binary steps)
from .lowbit import blockwise_linear_codes as blockwise_linear  # noqa: F401  (the plan's blockwise_linear)
from . import conv as _conv
from .cnn_ops import (lookup_table, make_lookup_table, max_pool, qlinear_add, qlinear_average_pool,
                      qlinear_concat, qlinear_global_average_pool, qlinear_leaky_relu, qlinear_mul,
                      qlinear_sigmoid)
from .numerics.checks import all_positive_finite, check_outliers
from .numerics.clamp import activation_range
from .numerics.requant import requant_multipliers
from .reference.int8_attention import dynamic_bmm, softmax_bmm  # noqa: F401  (C++: the plan's steps,
from .runtime import core as _core                                 # csrc/runtime/steps/attention.cpp)

__all__ = [
    "quantize_linear",
    "dequantize_linear",
    "dynamic_quantize_linear",
    "dynamic_quantize_rows",
    "matmul_integer",
    "qlinear_matmul",
    "conv_integer",
    "qlinear_conv",
    *_cnn_ops.__all__,
]

PackedWeights = _core.PackedWeights
PackedConvWeights = _core.PackedConvWeights
_INT8_TYPES = (np.dtype(np.uint8), np.dtype(np.int8))


def _array(x, name: str) -> np.ndarray:
    if isinstance(x, (PackedWeights, PackedConvWeights)):
        raise TypeError(f"{name}: packed weights are only accepted for b / w")
    return np.asarray(x)


def _int8_array(x, name: str) -> np.ndarray:
    x = _array(x, name)
    if x.dtype not in _INT8_TYPES:
        raise TypeError(f"{name}: expected uint8 or int8, got {x.dtype}")
    return x


def _scale(x, name: str) -> np.ndarray:
    s = _array(x, name)
    if s.dtype.kind != "f":
        raise TypeError(f"{name}: expected a float32 scale, got {s.dtype}")
    s = s.astype(np.float32, copy=False)
    if s.ndim > 1:
        raise ValueError(f"{name}: expected a scalar or a 1-D array, got shape {s.shape}")
    if not all_positive_finite(s):
        raise ValueError(f"{name}: every scale must be positive and finite")
    return s


def _zero_point(zp, name: str, dtype, size: int) -> np.ndarray:
    """Zero point as int32 of `size` entries (1 = per tensor), checked against `dtype`."""
    if zp is None:
        return np.zeros(size, np.int32)
    z = _array(zp, name)
    if z.dtype != np.dtype(dtype):
        raise TypeError(f"{name}: expected {np.dtype(dtype)} (the dtype of its tensor), got {z.dtype}")
    if z.size != size:
        raise ValueError(f"{name}: expected {size} value(s) to match the scale, got shape {z.shape}")
    return z.astype(np.int32).reshape(size)


def _axis_params(x: np.ndarray, scale: np.ndarray, axis: int, scale_name: str):
    """(normalized axis, per_axis) for QuantizeLinear / DequantizeLinear."""
    per_axis = scale.ndim == 1 and scale.size > 1
    if not per_axis:
        return 0, False
    if not isinstance(axis, (int, np.integer)) or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis: {axis!r} is out of range for a {x.ndim}-D input")
    axis = int(axis) % x.ndim
    if scale.size != x.shape[axis]:
        raise ValueError(
            f"{scale_name}: per-axis scale has {scale.size} values but x.shape[{axis}] is {x.shape[axis]}"
        )
    return axis, True


def quantize_linear(x, y_scale, y_zero_point=None, axis=1, block_size=0) -> np.ndarray:
    """ONNX QuantizeLinear: ``y = saturate(round_half_even(x / y_scale) + y_zero_point)``.

    Per tensor (scalar scale) or per axis (1-D scale along ``axis``). The
    output dtype is the zero point's (uint8 when absent). ``block_size`` > 0
    (opset 21 blocked scales) runs eightbit.reference's NumPy code.
    """
    if block_size:
        return _reference.quantize_linear(x, y_scale, y_zero_point, axis, block_size)
    x = _array(x, "x")
    if x.dtype.kind != "f":
        raise TypeError(f"x: expected float32, got {x.dtype}")
    x = x.astype(np.float32, copy=False)
    scale = _scale(y_scale, "y_scale")
    out_dtype = np.dtype(np.uint8) if y_zero_point is None else _int8_array(y_zero_point, "y_zero_point").dtype
    axis, per_axis = _axis_params(x, scale, axis, "y_scale")
    zp = _zero_point(y_zero_point, "y_zero_point", out_dtype, scale.size)
    return _core.quantize_linear(x, scale.reshape(-1), zp, axis, per_axis, out_dtype == np.int8)


def dequantize_linear(x, x_scale, x_zero_point=None, axis=1, block_size=0) -> np.ndarray:
    """ONNX DequantizeLinear: ``y = (x - x_zero_point) * x_scale`` in float32."""
    if block_size:       # opset 21 blocked scales: eightbit.reference's NumPy code
        return _reference.dequantize_linear(x, x_scale, x_zero_point, axis, block_size)
    x = _array(x, "x")
    if x.dtype not in _INT8_TYPES and x.dtype != np.int32:
        raise TypeError(f"x: expected uint8, int8 or int32, got {x.dtype}")
    scale = _scale(x_scale, "x_scale")
    axis, per_axis = _axis_params(x, scale, axis, "x_scale")
    if x.dtype == np.int32 and x_zero_point is not None and np.any(np.asarray(x_zero_point) != 0):
        raise ValueError("x_zero_point: must be 0 for int32 input (ONNX DequantizeLinear)")
    zp = _zero_point(x_zero_point, "x_zero_point", x.dtype, scale.size)
    return _core.dequantize_linear(x, scale.reshape(-1), zp, axis, per_axis)


def dynamic_quantize_linear(x):
    """ONNX DynamicQuantizeLinear: uint8 ``y`` with the scale and zero point
    computed from ``x``'s range (extended to include 0), as ONNX Runtime does.

    Returns ``(y, y_scale, y_zero_point)``; the last two are 0-d arrays.
    """
    x = _array(x, "x")
    if x.dtype.kind != "f":
        raise TypeError(f"x: expected float32, got {x.dtype}")
    y, scale, zp = _core.dynamic_quantize_linear(x.astype(np.float32, copy=False))
    return y, np.array(scale, dtype=np.float32), np.array(zp, dtype=np.uint8)


def dynamic_quantize_rows(x):
    """DynamicQuantizeLinear applied to each row of a 2-D ``x`` on its own
    (the input quantization of ``QuantizedLinear``; not an ONNX op).

    Returns ``(y uint8 [M, K], scale float32 [M], zero_point uint8 [M])``.
    """
    x = _array(x, "x")
    if x.dtype.kind != "f":
        raise TypeError(f"x: expected float32, got {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"x: expected a 2-D [rows, K] array, got shape {x.shape}")
    return _core.dynamic_quantize_rows(x.astype(np.float32, copy=False))


def _check_packed_zero_point(b: PackedWeights, b_zero_point) -> None:
    if b_zero_point is None:
        return
    z = _array(b_zero_point, "b_zero_point")
    if z.dtype != b.dtype:
        raise TypeError(f"b_zero_point: expected {b.dtype} (the dtype of b), got {z.dtype}")
    n = b.shape[1]
    if z.size not in (1, n) or not np.array_equal(
        np.broadcast_to(z.reshape(-1), (n,)), np.broadcast_to(b.zero_point.reshape(-1), (n,))
    ):
        raise ValueError("b_zero_point: differs from the zero point b was packed with; repack the weights")


def _row_zero_point(a_zero_point, a: np.ndarray, rows: int, batch: int):
    """a_zero_point for the flattened [batch * rows, K] A: scalar stays, per-row repeats per batch."""
    if a_zero_point is None:
        return None
    z = _int8_array(a_zero_point, "a_zero_point")
    if z.dtype != a.dtype:
        raise TypeError(f"a_zero_point: expected {a.dtype} (the dtype of a), got {z.dtype}")
    if z.size == 1:
        return z.reshape(())
    if z.size != rows:
        raise ValueError(f"a_zero_point: expected a scalar or {rows} values (one per row of a), got shape {z.shape}")
    return np.tile(z.reshape(rows), batch)


def _matmul_2d(a, b, a_zero_point, b_zero_point, compute, out_dtype):
    """Shared ONNX MatMul shape handling: 1-D promotion and batch broadcasting.

    ``compute(a2d, packed_b, a_zp)`` runs one 2-D product of dtype ``out_dtype``.
    """
    a = _int8_array(a, "a")
    if a.ndim == 0:
        raise ValueError("a: expected at least 1 dimension")
    packed = isinstance(b, PackedWeights)
    if packed:
        _check_packed_zero_point(b, b_zero_point)
    else:
        b = _int8_array(b, "b")
        if b.ndim == 0:
            raise ValueError("b: expected at least 1 dimension")
    a_vec, b_vec = a.ndim == 1, (not packed and b.ndim == 1)
    a2 = a[np.newaxis, :] if a_vec else a
    b2 = b if packed else (b[:, np.newaxis] if b_vec else b)
    K = a2.shape[-1]
    b_shape = b2.shape
    if b_shape[-2] != K:
        raise ValueError(f"a: inner dimension K={K} does not match b's K={b_shape[-2]}")
    M, N = a2.shape[-2], b_shape[-1]

    if packed or b2.ndim == 2:
        pb = b2 if packed else PackedWeights(np.ascontiguousarray(b2), b_zero_point)
        batch_shape = a2.shape[:-2]
        batch = int(np.prod(batch_shape)) if batch_shape else 1
        y = compute(a2.reshape(batch * M, K), pb, _row_zero_point(a_zero_point, a2, M, batch))
        y = y.reshape(*batch_shape, M, N)
    else:
        batch_shape = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
        a_b = np.broadcast_to(a2, (*batch_shape, M, K))
        b_b = np.broadcast_to(b2, (*batch_shape, K, N))
        zp = _row_zero_point(a_zero_point, a2, M, 1)
        y = np.empty((*batch_shape, M, N), out_dtype)
        for idx in np.ndindex(*batch_shape):
            pb = PackedWeights(np.ascontiguousarray(b_b[idx]), b_zero_point)
            y[idx] = compute(np.ascontiguousarray(a_b[idx]), pb, zp)
    if a_vec:
        y = y[..., 0, :]
    if b_vec:
        y = y[..., 0]
    return y


def matmul_integer(a, b, a_zero_point=None, b_zero_point=None) -> np.ndarray:
    """ONNX MatMulInteger: ``(a - a_zero_point) @ (b - b_zero_point)`` in int32.

    ``a`` and ``b`` are uint8 or int8 (any pair); ``a_zero_point`` is a scalar
    or one per row of ``a``; ``b_zero_point`` a scalar or one per column of
    ``b``. Batch dimensions broadcast as in ONNX MatMul. ``b`` may be a
    ``PackedWeights`` (then ``b_zero_point`` may be omitted).
    """
    if isinstance(b, PackedWeights) and type(a) is np.ndarray and a.ndim == 2 and b_zero_point is None:
        return _core.matmul_integer(a, b, a_zero_point)  # the hot path: no Python-side work
    return _matmul_2d(a, b, a_zero_point, b_zero_point, _core.matmul_integer, np.int32)


def qlinear_matmul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point, *, requant="float"):
    """ONNX QLinearMatMul: the int32 product of MatMulInteger, requantized to
    ``y_zero_point``'s dtype.

    ``requant="float"`` (default) is ONNX Runtime's float32 requantization;
    ``requant="fixed"`` is TFLite's integer-only fixed-point multiplier
    (docs/numerics.md). ``b_scale`` / ``b_zero_point`` may be per column.
    """
    if requant not in ("float", "fixed"):
        raise ValueError(f"requant: expected 'float' or 'fixed', got {requant!r}")
    a_s = _scale(a_scale, "a_scale")
    if a_s.size != 1:
        raise ValueError("a_scale: expected a scalar (per-row A scales are not supported, as in ONNX Runtime)")
    b_s = _scale(b_scale, "b_scale")
    y_s = _scale(y_scale, "y_scale")
    if y_s.size != 1:
        raise ValueError("y_scale: expected a scalar")
    y_zp = _int8_array(y_zero_point, "y_zero_point")
    if y_zp.size != 1:
        raise ValueError("y_zero_point: expected a scalar")
    n = b.shape[1] if isinstance(b, PackedWeights) else np.shape(b)[-1]
    if b_s.size not in (1, n):
        raise ValueError(f"b_scale: expected a scalar or {n} values (one per column of b), got {b_s.size}")
    y_signed = y_zp.dtype == np.int8
    zp_value = int(y_zp.reshape(()))

    if requant == "float":
        mult = np.ascontiguousarray(requant_multipliers(a_s, b_s.reshape(-1), y_s, "float"))

        def compute(a2, pb, azp):
            return _core.qlinear_matmul(a2, azp, pb, mult, zp_value, y_signed)
    else:
        m0, shift = requant_multipliers(a_s, b_s.reshape(-1), y_s, "fixed")
        m0 = np.ascontiguousarray(m0, np.int32).reshape(-1)
        shift = np.ascontiguousarray(shift, np.int32).reshape(-1)

        def compute(a2, pb, azp):
            return _core.qlinear_matmul_fixed(a2, azp, pb, m0, shift, zp_value, y_signed)

    return _matmul_2d(a, b, a_zero_point, b_zero_point, compute, y_zp.dtype)


def pack_conv(w, w_zero_point=None, group=1) -> PackedConvWeights:
    """OIHW (or OIW) uint8/int8 weights packed for the convolution kernels."""
    w = _int8_array(w, "w")
    if w.ndim == 3:
        w = w[:, :, np.newaxis, :]
    if w.ndim != 4:
        raise ValueError(f"w: expected [C_out, C_in / group, kH, kW] weights, got shape {w.shape}")
    if isinstance(group, bool) or not isinstance(group, (int, np.integer)):
        raise TypeError(f"group: expected an int, got {type(group).__name__}")
    return PackedConvWeights(np.ascontiguousarray(w), w_zero_point, int(group))


def _conv_setup(x, w, w_zero_point, group, layout, attrs):
    """Validated NHWC input, packed weights and explicit geometry for one conv call."""
    layout = _conv.check_layout(layout)
    x = _int8_array(x, "x")
    if x.ndim not in (3, 4):
        raise ValueError(f"x: expected a 3-D or 4-D tensor, got shape {x.shape}")
    if isinstance(w, PackedConvWeights):
        if group != w.group:
            raise ValueError(f"group: {group} differs from the group the weights were packed with ({w.group})")
        if w_zero_point is not None:
            z = _array(w_zero_point, "w_zero_point")
            if z.dtype != w.dtype:
                raise TypeError(f"w_zero_point: expected {w.dtype} (the dtype of w), got {z.dtype}")
            oc, packed_zp = w.shape[0], w.zero_point.reshape(-1)
            if z.size not in (1, oc) or not (z.reshape(-1) == packed_zp).all():
                raise ValueError("w_zero_point: differs from the zero point w was packed with; repack the weights")
        packed = w
        w_spatial = w.shape[2:] if x.ndim == 4 else w.shape[3:]
    else:
        w_arr = _int8_array(w, "w")
        if w_arr.ndim != x.ndim:
            raise ValueError(f"w: expected {x.ndim}-D weights for a {x.ndim}-D input, got shape {w_arr.shape}")
        packed = pack_conv(w_arr, w_zero_point, group)
        w_spatial = w_arr.shape[2:]
    x_spatial = x.shape[2:] if layout == "NCHW" else x.shape[1:-1]
    geometry = _conv.resolve(tuple(x_spatial), tuple(w_spatial), **attrs)
    return _conv.to_nhwc(x, layout), packed, geometry, layout


def conv_integer(x, w, x_zero_point=None, w_zero_point=None, *, auto_pad="NOTSET", dilations=None, group=1,
                 kernel_shape=None, pads=None, strides=None, layout="NCHW"):
    """ONNX ConvInteger: int32 convolution of ``(x - x_zero_point)`` with ``(w - w_zero_point)``.

    1-D or 2-D; any stride, dilation, asymmetric padding, group count; ``auto_pad`` SAME_UPPER,
    SAME_LOWER, VALID. ``layout="NHWC"`` takes and returns channels-last tensors (weights stay
    OIHW). ``w`` may be a ``PackedConvWeights`` from ``eightbit.pack_conv_weights``.
    """
    attrs = dict(auto_pad=auto_pad, dilations=dilations, kernel_shape=kernel_shape, pads=pads, strides=strides)
    x4, packed, geo, layout = _conv_setup(x, w, w_zero_point, group, layout, attrs)
    if x_zero_point is not None and _array(x_zero_point, "x_zero_point").size != 1:
        raise ValueError("x_zero_point: expected a scalar (per-tensor)")
    y = _core.conv_integer_nhwc(x4, x_zero_point, packed, geo.strides, geo.dilations, geo.pads)
    return _conv.from_nhwc(y, layout, geo.spatial_dims)


def qlinear_conv(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B=None, *,
                 auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None,
                 activation=None, layout="NCHW", requant="float"):
    """ONNX QLinearConv: the ConvInteger accumulator plus the int32 bias ``B``,
    requantized to ``y_zero_point``'s dtype (per-channel ``w_scale`` allowed).

    ``activation`` (None, "relu", "relu6" or ("clip", lo, hi)) is fused as a clamp of the
    output: its bounds are quantized with ``y_scale`` / ``y_zero_point`` as QuantizeLinear
    does (``eightbit.numerics.clamp``). ``requant`` as in ``qlinear_matmul``.
    """
    key = _conv_call_key(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B, auto_pad,
                         dilations, group, kernel_shape, pads, strides, activation, layout, requant)
    try:
        call = _CONV_CALLS.get(key) if key is not None else None
    except TypeError:                             # an unhashable argument
        key = call = None
    if call is None:
        call = _qlinear_conv_call(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B,
                                  auto_pad, dilations, group, kernel_shape, pads, strides, activation, layout, requant)
        if key is not None:
            if len(_CONV_CALLS) >= _CONV_CALLS_MAX:
                _CONV_CALLS.clear()
            _CONV_CALLS[key] = (None,) + call[1:]
    packed, geo, mult, m0, shift, y_zp, y_signed, qmin, qmax = call
    if key is not None:
        packed = w                                # the cache keeps no weights
    x4 = x if layout == "NHWC" and x.ndim == 4 and x.flags.c_contiguous else _conv.to_nhwc(x, layout)
    y = _core.qlinear_conv_nhwc(x4, x_zero_point, packed, geo.strides, geo.dilations, geo.pads, mult, m0, shift, B,
                                y_zp, y_signed, qmin, qmax)
    return _conv.from_nhwc(y, layout, geo.spatial_dims)


# What qlinear_conv resolves from its arguments (geometry, multipliers, clamp bounds), by the
# arguments themselves: a repeated call (one layer, one input shape) skips the Python checks.
_CONV_CALLS: dict = {}
_CONV_CALLS_MAX = 4096


def _conv_call_key(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B, *attrs):
    """The cache key of a call whose x is an ndarray and w packed weights (None: the full path).
    Each scale and zero point enters with its type (np.uint8(0) and np.int8(0) are equal but give
    different outputs), arrays by dtype, shape and bytes; list attributes as tuples. May be
    unhashable (a list of arrays...): the caller then takes the full path."""
    if type(x) is not np.ndarray or type(w) is not PackedConvWeights:
        return None
    if B is not None and (type(B) is not np.ndarray or B.dtype != np.int32 or B.shape != (w.shape[0],)):
        return None                               # the full path says what is wrong with B
    params = []
    for v in (x_scale, x_zero_point, w_scale, w_zero_point, y_scale, y_zero_point):
        if type(v) is np.ndarray:
            if v.size > 4096:
                return None
            params.append((v.dtype, v.shape, v.tobytes()))
        else:
            params.append((type(v), v))
    attrs = [tuple(a) if type(a) is list else a for a in attrs]
    packed_zp = None if w_zero_point is None else w.zero_point.tobytes()   # checked against w's
    return (x.dtype, x.shape, w.shape, w.group, packed_zp, *params, *attrs)


def _qlinear_conv_call(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B, auto_pad,
                       dilations, group, kernel_shape, pads, strides, activation, layout, requant):
    """Every check of a qlinear_conv call; (packed weights, geometry, multipliers or (m0, shift),
    output zero point, signed, clamp bounds)."""
    if requant not in ("float", "fixed"):
        raise ValueError(f"requant: expected 'float' or 'fixed', got {requant!r}")
    attrs = dict(auto_pad=auto_pad, dilations=dilations, kernel_shape=kernel_shape, pads=pads, strides=strides)
    _, packed, geo, layout = _conv_setup(x, w, w_zero_point, group, layout, attrs)
    oc = packed.shape[0]
    x_s, w_s, y_s = _scale(x_scale, "x_scale"), _scale(w_scale, "w_scale"), _scale(y_scale, "y_scale")
    if x_s.size != 1:
        raise ValueError("x_scale: expected a scalar")
    if y_s.size != 1:
        raise ValueError("y_scale: expected a scalar")
    if w_s.size not in (1, oc):
        raise ValueError(f"w_scale: expected a scalar or {oc} values (one per output channel), got {w_s.size}")
    if x_zero_point is not None and _array(x_zero_point, "x_zero_point").size != 1:
        raise ValueError("x_zero_point: expected a scalar (per-tensor)")
    y_zp = _int8_array(y_zero_point, "y_zero_point")
    if y_zp.size != 1:
        raise ValueError("y_zero_point: expected a scalar")
    y_zp = y_zp.reshape(())
    if B is not None:
        B = _array(B, "B")
        if B.dtype != np.int32:
            raise TypeError(f"B: expected int32, got {B.dtype}")
    qmin, qmax = activation_range(activation, y_s, y_zp, y_zp.dtype)
    mult = m0 = shift = None
    if requant == "float":
        mult = np.ascontiguousarray(requant_multipliers(x_s, w_s.reshape(-1), y_s, "float"))
        mult.setflags(write=False)
    else:
        m0, shift = requant_multipliers(x_s, w_s.reshape(-1), y_s, "fixed")
        m0 = np.ascontiguousarray(m0, np.int32).reshape(-1)
        shift = np.ascontiguousarray(shift, np.int32).reshape(-1)
        m0.setflags(write=False)
        shift.setflags(write=False)
    return packed, geo, mult, m0, shift, int(y_zp), y_zp.dtype == np.int8, qmin, qmax


def quantized_linear(x_f32, w_q_int8, w_scale_f32, bias_f32=None, activation=None, granularity="row",
                     outlier_cols=None, outlier_w=None) -> np.ndarray:
    """Dynamic int8 linear layer, ``eightbit.reference.quantized_linear`` in C++: each row of x
    (granularity="tensor": the whole of x) quantized to uint8 at run time (DynamicQuantizeLinear),
    times int8 weights [N, K] (or a ``PackedWeights`` of their transpose), dequantized with
    per-channel ``w_scale``, plus bias, optional ReLU; ``outlier_cols`` / ``outlier_w``: input
    columns computed in float32 (the reference's formula, here in NumPy float32 after the int8
    product). Returns float32 [..., N]."""
    if activation not in (None, "relu"):
        raise ValueError(f"activation: expected None or 'relu', got {activation!r}")
    if granularity not in ("row", "tensor"):
        raise ValueError(f"granularity: expected 'row' or 'tensor', got {granularity!r}")
    x = _array(x_f32, "x_f32")
    if x.dtype != np.float32:
        if x.dtype.kind != "f":
            raise TypeError(f"x_f32: expected float32, got {x.dtype}")
        x = x.astype(np.float32)
    packed = w_q_int8 if isinstance(w_q_int8, PackedWeights) else None
    if packed is None:
        w = _int8_array(w_q_int8, "w_q_int8")
        if w.dtype != np.int8 or w.ndim != 2:
            raise ValueError(f"w_q_int8: expected 2-D int8 [N, K] weights, got {w.dtype} {w.shape}")
        packed = PackedWeights(np.ascontiguousarray(w.T), None)
    k, n = packed.shape
    if x.ndim == 0 or x.shape[-1] != k:
        raise ValueError(f"x_f32: expected shape [..., {k}], got {x.shape}")
    w_s = np.broadcast_to(_scale(w_scale_f32, "w_scale_f32"), (n,)).astype(np.float32)
    bias = None if bias_f32 is None else np.ascontiguousarray(_array(bias_f32, "bias_f32"), np.float32)
    if bias is not None and bias.shape != (n,):
        raise ValueError(f"bias_f32: expected shape ({n},), got {bias.shape}")
    rows = np.ascontiguousarray(x.reshape(-1, k))
    cols, w_out = check_outliers(outlier_cols, outlier_w, n, k)
    if cols.size:
        if not np.all(np.isfinite(rows[:, cols])):
            raise ValueError("x_f32 holds NaN or infinity (dynamic quantization needs finite values)")
        kept, rows = rows, rows.copy()
        rows[:, cols] = 0.0
    y = _core.quantized_linear(rows, packed, w_s, bias, activation == "relu" and not cols.size,
                               granularity == "tensor")
    if cols.size:
        for j, c in enumerate(cols):
            y = (y + kept[:, c:c + 1] * w_out[:, j]).astype(np.float32)
        if activation == "relu":
            y = np.where(y > 0, y, np.float32(0.0)).astype(np.float32)
    return y.reshape(*x.shape[:-1], n)
