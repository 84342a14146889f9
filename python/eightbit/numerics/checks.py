"""Argument checks shared by eightbit.numerics, eightbit.reference and eightbit.ops.

Every check raises TypeError (wrong kind of object or dtype) or ValueError (right kind, wrong value
or shape) with one sentence naming the argument, what was found and what was expected.
Nothing here computes; it only guards the formulas elsewhere.
"""
from __future__ import annotations

import math

import numpy as np

QUANT_DTYPES = (np.dtype(np.uint8), np.dtype(np.int8))


def as_array(value, name: str) -> np.ndarray:
    """Return `value` as an ndarray (no copy when it already is one)."""
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except Exception as exc:  # pragma: no cover - numpy's own message is kept
        raise TypeError(f"{name} must be array-like, got {type(value).__name__}") from exc


def float_array(value, name: str) -> np.ndarray:
    """A real floating (or integer, which converts exactly enough) array cast to float32."""
    arr = as_array(value, name)
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise TypeError(f"{name} must be a real floating-point array, got dtype {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def finite_float_array(value, name: str) -> np.ndarray:
    arr = float_array(value, name)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, found NaN or infinity")
    return arr


def quant_array(value, name: str, allowed=QUANT_DTYPES) -> np.ndarray:
    """An integer array whose dtype is one of `allowed` (uint8/int8 by default); never converted."""
    arr = as_array(value, name)
    if arr.dtype not in allowed:
        names = " or ".join(str(d) for d in allowed)
        raise TypeError(f"{name} must have dtype {names}, got {arr.dtype}")
    return arr


def quant_dtype(dtype, name: str = "dtype") -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name} must be numpy.uint8 or numpy.int8, got {dtype!r}") from exc
    if dt not in QUANT_DTYPES:
        raise TypeError(f"{name} must be numpy.uint8 or numpy.int8, got {dt}")
    return dt


def all_positive_finite(arr: np.ndarray) -> bool:
    """Every value in (0, inf); NaN fails both comparisons.  Scalars skip NumPy's reductions
    (per-call validation of an op's scales is otherwise a large part of a small op's time)."""
    if arr.size == 1:
        return 0.0 < float(arr.reshape(-1)[0]) < math.inf
    return bool(((arr > 0) & (arr < np.inf)).all())


def positive_scale(value, name: str) -> np.ndarray:
    """Scale(s) as float32; each must be finite and > 0 (after the float32 conversion)."""
    arr = float_array(value, name)
    if not all_positive_finite(arr):
        raise ValueError(f"{name} must be finite and > 0, got {arr.ravel()[:8].tolist()}")
    return arr


def per_tensor(arr: np.ndarray, name: str) -> np.ndarray:
    """A scale or zero point that must be one value (shape () or (1,)), returned with shape ()."""
    if arr.size != 1 or arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar (per-tensor), got shape {arr.shape}")
    return arr.reshape(())


def scalar_param(value, name: str, kind: str, dtype=None) -> np.ndarray:
    """A per-tensor scale (kind "scale", float32 > 0) or zero point (kind "zp", of `dtype`)."""
    if kind == "scale":
        arr = positive_scale(value, name)
    else:
        arr = quant_array(value, name, allowed=(np.dtype(dtype),))
    return per_tensor(arr, name)


def check_binary(a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point):
    """The operands of QLinearAdd / QLinearMul: a and b of one dtype (uint8 / int8) that broadcast,
    and per-tensor scales and zero points. Returns (a, b, (a_s, a_zp, b_s, b_zp, c_s, c_zp))."""
    a = quant_array(a, "a")
    b = quant_array(b, "b", allowed=(a.dtype,))
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError as exc:
        raise ValueError(f"a {a.shape} and b {b.shape} do not broadcast") from exc
    params = (scalar_param(a_scale, "a_scale", "scale"), scalar_param(a_zero_point, "a_zero_point", "zp", a.dtype),
              scalar_param(b_scale, "b_scale", "scale"), scalar_param(b_zero_point, "b_zero_point", "zp", a.dtype),
              scalar_param(c_scale, "c_scale", "scale"), scalar_param(c_zero_point, "c_zero_point", "zp", a.dtype))
    return a, b, params


def scalar_or_vector(arr: np.ndarray, name: str, length: int, what: str) -> np.ndarray:
    """Accept a scalar (shape () or (1,)) or a vector of `length`; return shape () or (length,)."""
    if arr.ndim == 0:
        return arr
    if arr.ndim == 1 and arr.shape[0] == 1:
        return arr.reshape(())
    if arr.ndim == 1 and arr.shape[0] == length:
        return arr
    raise ValueError(f"{name} must be a scalar or have shape ({length},) (one per {what}), "
                     f"got shape {arr.shape}")


def int_in_range(value, name: str, dtype: np.dtype) -> int:
    """A Python integer (or integer numpy scalar / 0-d array) that fits `dtype`."""
    arr = as_array(value, name)
    if arr.ndim != 0 or arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer scalar, got {arr.dtype} array of shape {arr.shape}")
    info = np.iinfo(dtype)
    v = int(arr)
    if not info.min <= v <= info.max:
        raise ValueError(f"{name} must be in [{info.min}, {info.max}] for {np.dtype(dtype)}, got {v}")
    return v


def check_outliers(outlier_cols, outlier_w, n: int, k: int):
    """(int64 column indices [J], float32 weights [N, J]) checked; empty for none."""
    if outlier_cols is None and outlier_w is None:
        return np.zeros(0, np.int64), np.zeros((n, 0), np.float32)
    if outlier_cols is None or outlier_w is None:
        raise ValueError("outlier_cols and outlier_w go together")
    cols = np.asarray(outlier_cols)
    if cols.ndim != 1 or not np.issubdtype(cols.dtype, np.integer):
        raise ValueError(f"outlier_cols must be a 1-D integer array, got {cols.dtype} {cols.shape}")
    cols = cols.astype(np.int64)
    if cols.size and (cols[0] < 0 or cols[-1] >= k or np.any(np.diff(cols) <= 0)):
        raise ValueError(f"outlier_cols must be distinct ascending columns in [0, {k})")
    w_out = float_array(outlier_w, "outlier_w")
    if w_out.shape != (n, cols.size) or not np.all(np.isfinite(w_out)):
        raise ValueError(f"outlier_w must be {n} x {cols.size} finite float32 values, got {w_out.shape}")
    return cols, w_out
