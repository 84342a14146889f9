"""Clamp-then-round: the one float32 -> integer step every quantizing op shares (docs/numerics.md).

    lo = float32(qmin - zp);  hi = float32(qmax - zp)
    v  = v > lo ? v : lo        # NaN -> lo, as MLAS's maxps does
    v  = v < hi ? v : hi
    q  = int32(rne(v)) + zp
"""
from __future__ import annotations

import numpy as np


def clamp_then_round(v: np.ndarray, zero_point: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """v float32 (any shape), zero_point int (broadcastable to v) -> array of `dtype`."""
    info = np.iinfo(dtype)
    zp = np.asarray(zero_point).astype(np.int32)
    lo = (np.int32(info.min) - zp).astype(np.float32)
    hi = (np.int32(info.max) - zp).astype(np.float32)
    v = v.astype(np.float32, copy=False)
    v = np.where(v > lo, v, lo)
    v = np.where(v < hi, v, hi)
    q = np.rint(v).astype(np.int32) + zp          # rint: round half to even
    return q.astype(dtype)


def quantize_per_tensor(x, scale, zero_point, dtype) -> np.ndarray:
    """QuantizeLinear with one (already checked) scale and zero point:

        y = clamp-then-round(float32(x) / float32(scale), zero_point)   # true float32 division
    """
    with np.errstate(over="ignore", invalid="ignore"):     # huge |x| / scale saturates
        v = (np.asarray(x, np.float32) / np.float32(scale)).astype(np.float32)
    return clamp_then_round(v, zero_point, dtype)
