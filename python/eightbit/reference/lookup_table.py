"""256-entry lookup tables for any elementwise function of a uint8 / int8 tensor.

    make_lookup_table(fn, x_scale, x_zp, y_scale, y_zp, x_dtype, y_dtype)[i]:
        q = the x_dtype value whose byte is i (i = 0..255; for int8, i >= 128 is i - 256)
        d = float32(x_scale * float32(int32(q) - x_zp))         # DequantizeLinear, fp32
        table[i] = QuantizeLinear(float32(fn(d)), y_scale, y_zp)   # fp32 division, rne, saturate
    lookup_table(x, table) = table[x.view(uint8)]

This is how ONNX Runtime builds the tables of QLinearLeakyRelu, QLinearSigmoid and
QLinearConcat (QlinearBuildLookupTable): `fn` is called once on the float32 array of all 256
dequantized values and must return 256 values (converted to float32). NaN from fn maps to qmin.
"""
from __future__ import annotations

import numpy as np

from ..numerics._checks import as_array, positive_scale, quant_array, quant_dtype
from .quantize_linear import quantize_linear


def _scalar(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.size != 1 or arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar (per-tensor), got shape {arr.shape}")
    return arr.reshape(())


def dequantized_bytes(x_scale, x_zero_point, x_dtype) -> np.ndarray:
    """float32[256]: the dequantized value of every byte 0..255 read as x_dtype."""
    dt = quant_dtype(x_dtype, "x_dtype")
    s = _scalar(positive_scale(x_scale, "x_scale"), "x_scale")
    zp = _scalar(quant_array(x_zero_point, "x_zero_point", allowed=(dt,)), "x_zero_point")
    q = np.arange(256, dtype=np.uint8).view(dt).astype(np.int32)
    return (s * (q - np.int32(int(zp))).astype(np.float32)).astype(np.float32)


def make_lookup_table(fn, x_scale, x_zero_point, y_scale, y_zero_point, x_dtype, y_dtype) -> np.ndarray:
    """The 256-entry table of y_dtype for y = QuantizeLinear(fn(DequantizeLinear(x)))."""
    if not callable(fn):
        raise TypeError(f"fn must be callable (float32[256] -> 256 values), got {type(fn).__name__}")
    y_dt = quant_dtype(y_dtype, "y_dtype")
    y_s = _scalar(positive_scale(y_scale, "y_scale"), "y_scale")
    y_zp = _scalar(quant_array(y_zero_point, "y_zero_point", allowed=(y_dt,)), "y_zero_point")
    d = dequantized_bytes(x_scale, x_zero_point, x_dtype)
    out = np.asarray(fn(d.copy()))
    if out.shape != (256,):
        raise ValueError(f"fn must return 256 values (one per input byte), got shape {out.shape}")
    if out.dtype.kind not in "fiu":
        raise TypeError(f"fn must return real numbers, got dtype {out.dtype}")
    with np.errstate(invalid="ignore", over="ignore"):
        return quantize_linear(out.astype(np.float32), y_s, y_zp)


def lookup_table(x, table) -> np.ndarray:
    """table[x] with x uint8/int8 indexed by its raw byte; table has 256 uint8/int8 entries."""
    x = quant_array(x, "x")
    t = quant_array(as_array(table, "table"), "table")
    if t.shape != (256,):
        raise ValueError(f"table must have shape (256,) (one entry per input byte), got {t.shape}")
    return t[x.view(np.uint8)]
