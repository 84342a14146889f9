"""Exact float32 primitives that NumPy lacks: a correctly rounded fused multiply-add.

ONNX Runtime's x86 kernels for QLinearAdd (AVX2) and the logistic function (FMA3) use
`vfmadd`, which rounds a * b + c once. NumPy has no float32 fma, so it is built here:

    p = float64(a) * float64(b)           # exact: 24 + 24 significant bits < 53
    s = p + float64(c); e = TwoSum error  # s + e == p + c exactly
    s = round-to-odd(s, e)                # if e != 0 and s is even, step s one ulp toward e
    fma32(a, b, c) = float32(s)           # correctly rounded: 53 >= 2 * 24 + 2 (round-to-odd)
"""
from __future__ import annotations

import numpy as np


def fma32(a, b, c) -> np.ndarray:
    """float32(a * b + c) with one rounding (round half to even), elementwise, broadcasting."""
    a64 = np.asarray(a, np.float32).astype(np.float64)
    b64 = np.asarray(b, np.float32).astype(np.float64)
    c64 = np.asarray(c, np.float32).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        p = a64 * b64
        s = p + c64
        bb = s - p
        err = (p - (s - bb)) + (c64 - bb)
        odd = (np.asarray(s).view(np.int64) & 1) == 1
        step = np.nextafter(s, np.where(err > 0, np.inf, -np.inf))
        s = np.where((err != 0) & ~odd & np.isfinite(s), step, s)
        return np.asarray(s).astype(np.float32)
