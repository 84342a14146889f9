"""256-entry tables: any elementwise function of a uint8 / int8 tensor, and QLinearConcat's
requantization of one input to the output's scale and zero point.

    make_lookup_table(fn, x_scale, x_zp, y_scale, y_zp, x_dtype, y_dtype)[i]:
        q = the x_dtype value whose byte is i (i = 0..255; for int8, i >= 128 is i - 256)
        d = float32(x_scale * float32(int32(q) - x_zp))         # DequantizeLinear, fp32
        table[i] = QuantizeLinear(float32(fn(d)), y_scale, y_zp)   # fp32 division, rne, saturate
    lookup_table(x, table) = table[x.view(uint8)]                   # eightbit.reference.lookup_table

This is how ONNX Runtime builds the tables of QLinearLeakyRelu, QLinearSigmoid and
QLinearConcat (QlinearBuildLookupTable): `fn` is called once on the float32 array of all 256
dequantized values and must return 256 values (converted to float32). NaN from fn maps to qmin.

``requantize_table`` is QLinearConcat's table (fn = identity, x_dtype = y_dtype), or None where
it is the identity (ONNX Runtime then copies the input): eightbit.ops and the lowering take it
from here.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .checks import per_tensor, positive_scale, quant_array, quant_dtype
from .rounding import quantize_per_tensor

__all__ = ["dequantized_bytes", "make_lookup_table", "requantize_table"]

_F32 = np.dtype(np.float32)


def dequantized_bytes(x_scale, x_zero_point, x_dtype) -> np.ndarray:
    """float32[256]: the dequantized value of every byte 0..255 read as x_dtype."""
    dt = quant_dtype(x_dtype, "x_dtype")
    s = per_tensor(positive_scale(x_scale, "x_scale"), "x_scale")
    zp = per_tensor(quant_array(x_zero_point, "x_zero_point", allowed=(dt,)), "x_zero_point")
    q = np.arange(256, dtype=np.uint8).view(dt).astype(np.int32)
    return (s * (q - np.int32(int(zp))).astype(np.float32)).astype(np.float32)


def make_lookup_table(fn, x_scale, x_zero_point, y_scale, y_zero_point, x_dtype, y_dtype) -> np.ndarray:
    """The 256-entry table of y_dtype for y = QuantizeLinear(fn(DequantizeLinear(x)))."""
    if not callable(fn):
        raise TypeError(f"fn must be callable (float32[256] -> 256 values), got {type(fn).__name__}")
    y_dt = quant_dtype(y_dtype, "y_dtype")
    y_s = per_tensor(positive_scale(y_scale, "y_scale"), "y_scale")
    y_zp = per_tensor(quant_array(y_zero_point, "y_zero_point", allowed=(y_dt,)), "y_zero_point")
    d = dequantized_bytes(x_scale, x_zero_point, x_dtype)
    out = np.asarray(fn(d.copy()))
    if out.shape != (256,):
        raise ValueError(f"fn must return 256 values (one per input byte), got shape {out.shape}")
    if out.dtype.kind not in "fiu":
        raise TypeError(f"fn must return real numbers, got dtype {out.dtype}")
    with np.errstate(invalid="ignore", over="ignore"):
        return quantize_per_tensor(out.astype(np.float32), y_s, y_zp, y_dt)


def _identity(d):
    return d


def _value(v, dtype: np.dtype):
    """v as a Python number when it is one value of `dtype` (a NumPy scalar, or an array of one
    element and rank <= 1), else None."""
    if type(v) is dtype.type:
        return v.item()
    if type(v) is np.ndarray and v.dtype == dtype and v.size == 1 and v.ndim <= 1:
        return v.item()
    return None


def requantize_table(x_scale, x_zero_point, y_scale, y_zero_point, dtype):
    """QLinearConcat's table from (x_scale, x_zero_point) to (y_scale, y_zero_point), both of
    ``dtype`` (uint8 / int8): ``make_lookup_table(identity, ...)``, read-only, or None when the
    table is the identity. Scales are float32 > 0 and zero points of ``dtype``, one value each
    (checked as make_lookup_table checks them); tables of NumPy scalars are cached by value."""
    dt = quant_dtype(dtype)
    key = (_value(x_scale, _F32), _value(x_zero_point, dt), _value(y_scale, _F32), _value(y_zero_point, dt))
    if None not in key and 0.0 < key[0] < math.inf and 0.0 < key[2] < math.inf:
        return _cached_requantize_table(dt.str, *key)
    return _requantize_table(x_scale, x_zero_point, y_scale, y_zero_point, dt)


@functools.lru_cache(maxsize=256)
def _cached_requantize_table(dtype: str, x_s: float, x_zp: int, y_s: float, y_zp: int):
    dt = np.dtype(dtype)
    return _requantize_table(np.float32(x_s), dt.type(x_zp), np.float32(y_s), dt.type(y_zp), dt)


def _requantize_table(x_scale, x_zero_point, y_scale, y_zero_point, dt: np.dtype):
    table = make_lookup_table(_identity, x_scale, x_zero_point, y_scale, y_zero_point, dt, dt)
    if np.array_equal(table, np.arange(256, dtype=np.uint8).view(dt)):
        return None
    table.setflags(write=False)
    return table
