"""Requantization of int32 accumulators to uint8/int8: `float` (ONNX Runtime) and `fixed` (TFLite).

float:  v = float32(acc) * multiplier[n];  y = clamp-then-round(v, zero_point)
fixed:  y = sat(multiply_by_quantized_multiplier(acc, m0[n], shift[n]) + zero_point)

Per-column parameters broadcast over the last axis of acc; scalars apply to everything.
"""
from __future__ import annotations

import numpy as np

from ..numerics.checks import as_array, float_array, int_in_range, quant_dtype
from ..numerics.fixed_point import multiply_by_quantized_multiplier
from ..numerics.rounding import clamp_then_round


def _accumulator(acc) -> np.ndarray:
    arr = as_array(acc, "acc_int32")
    if arr.dtype != np.int32:
        raise TypeError(f"acc_int32 must have dtype int32, got {arr.dtype}")
    return arr


def _per_column(param: np.ndarray, acc: np.ndarray, name: str) -> np.ndarray:
    if param.ndim == 0 or (param.ndim == 1 and param.shape[0] == 1):
        return param.reshape(())
    n = acc.shape[-1] if acc.ndim else None
    if param.ndim == 1 and param.shape[0] == n:
        return param
    raise ValueError(f"{name} must be a scalar or have shape ({n},) (one per column of acc), "
                     f"got shape {param.shape}")


def requantize_float(acc_int32, multiplier_f32, zero_point, dtype) -> np.ndarray:
    """clamp-then-round(float32(acc) * multiplier, zero_point) as `dtype` (uint8 or int8).
    multiplier is float32 (finite, >= 0), scalar or one per column."""
    acc = _accumulator(acc_int32)
    dt = quant_dtype(dtype)
    zp = int_in_range(zero_point, "zero_point", dt)
    mult = float_array(multiplier_f32, "multiplier_f32")
    if not np.all(np.isfinite(mult)) or np.any(mult < 0):
        raise ValueError("multiplier_f32 must be finite and >= 0")
    mult = _per_column(mult, acc, "multiplier_f32")
    v = (acc.astype(np.float32) * mult).astype(np.float32)      # int32 -> float32 rounds to nearest even
    return clamp_then_round(v, np.int32(zp), dt)


def requantize_fixed(acc_int32, quantized_multiplier_int32, shift_int32, zero_point, dtype) -> np.ndarray:
    """sat_dtype(multiply_by_quantized_multiplier(acc, m0, shift) + zero_point); integer only.
    m0 in [0, 2^31), shift in [-31, 30]; scalars or one per column."""
    acc = _accumulator(acc_int32)
    dt = quant_dtype(dtype)
    zp = int_in_range(zero_point, "zero_point", dt)
    m0 = as_array(quantized_multiplier_int32, "quantized_multiplier_int32")
    shift = as_array(shift_int32, "shift_int32")
    for arr, name in ((m0, "quantized_multiplier_int32"), (shift, "shift_int32")):
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
    m0 = _per_column(m0, acc, "quantized_multiplier_int32")
    shift = _per_column(shift, acc, "shift_int32")
    scaled = multiply_by_quantized_multiplier(acc, m0, shift).astype(np.int64)
    info = np.iinfo(dt)
    return np.clip(scaled + zp, info.min, info.max).astype(dt)
