"""Integer-only requantization arithmetic: TFLite / gemmlowp fixed-point semantics.

A real multiplier is stored as a Q0.31 integer M0 in [2^30, 2^31) and a power-of-two `shift`,
real ~= M0 * 2^(shift - 31).  Applying it to an int32 x (gemmlowp's two roundings):

    x = saturate_int32(x * 2^max(shift, 0))
    x = srdhm(x, M0)                         # round(x * M0 / 2^31), ties toward +infinity
    x = rounding_divide_by_pot(x, max(-shift, 0))   # round(x / 2^e), ties away from zero

All functions are vectorised over NumPy arrays and compute in int64, which holds every
intermediate exactly; results are returned as int32.
"""
from __future__ import annotations

import numpy as np

from .checks import as_array

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1

__all__ = ["quantize_multiplier", "srdhm", "rounding_divide_by_pot",
           "multiply_by_quantized_multiplier"]


def _int32_valued(value, name: str) -> np.ndarray:
    arr = as_array(value, name)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
    wide = arr.astype(np.int64)
    if wide.size and (wide.min() < INT32_MIN or wide.max() > INT32_MAX):
        raise ValueError(f"{name} must hold int32 values, found values outside [-2^31, 2^31)")
    return wide


def quantize_multiplier(real) -> tuple[np.ndarray, np.ndarray]:
    """Decompose real >= 0 into (m0, shift) with real ~= m0 * 2^(shift - 31) (TFLite QuantizeMultiplier).

        q, e = frexp(real)                   # q in [0.5, 1)
        m0   = round_half_away(q * 2^31)     # in [2^30, 2^31]
        m0 == 2^31  ->  m0 = 2^30, e += 1
        e < -31     ->  m0 = 0, e = 0        # every int32 product rounds to 0
        real == 0   ->  m0 = 0, e = 0

    `real` is converted to float64. It must be finite and >= 0, and the resulting shift must be
    <= 30 (real < 2^30), else ValueError. Returns int32 arrays of real's shape.
    """
    r = as_array(real, "real")
    if r.dtype.kind not in "fiu" or r.dtype == np.bool_:
        raise TypeError(f"real must be a real floating-point array, got dtype {r.dtype}")
    r = r.astype(np.float64)
    if not np.all(np.isfinite(r)) or np.any(r < 0):
        raise ValueError("real must be finite and >= 0")
    q, e = np.frexp(r)                                     # float64, int32
    m0 = np.floor(q * np.float64(1 << 31) + 0.5).astype(np.int64)   # q >= 0: half away == floor(+0.5)
    e = e.astype(np.int64)
    carry = m0 == (1 << 31)
    m0 = np.where(carry, np.int64(1 << 30), m0)
    e = np.where(carry, e + 1, e)
    if np.any(e > 30):
        raise ValueError("real must be < 2^30: its shift would exceed 30, which "
                         "multiply_by_quantized_multiplier cannot apply without overflow")
    underflow = e < -31
    m0 = np.where(underflow, np.int64(0), m0)
    e = np.where(underflow | (m0 == 0), np.int64(0), e)
    return m0.astype(np.int32), e.astype(np.int32)


def _trunc_div_pow2(n: np.ndarray, bits: int) -> np.ndarray:
    """n / 2^bits rounded toward zero (C integer division), n int64."""
    return np.where(n >= 0, n >> bits, -((-n) >> bits))


def srdhm(a, b) -> np.ndarray:
    """Saturating rounding doubling high multiply (gemmlowp SaturatingRoundingDoublingHighMul).

        a == b == -2^31  ->  2^31 - 1
        otherwise        ->  trunc((a*b + nudge) / 2^31),  nudge = 2^30 if a*b >= 0 else 1 - 2^30

    i.e. floor(a * b / 2^31 + 1/2): round to nearest with ties toward +infinity (the negative
    nudge 1 - 2^30 plus truncation rounds -0.5 up to 0, not away from zero). a, b int32-valued.
    """
    a64 = _int32_valued(a, "a")
    b64 = _int32_valued(b, "b")
    ab = a64 * b64                                       # |ab| <= 2^62: exact in int64
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    high = _trunc_div_pow2(ab + nudge, 31)
    overflow = (a64 == INT32_MIN) & (b64 == INT32_MIN)
    return np.where(overflow, np.int64(INT32_MAX), high).astype(np.int32)


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """x / 2^exponent rounded to nearest, ties away from zero (gemmlowp RoundingDivideByPOT).

        mask      = 2^exponent - 1
        remainder = x & mask
        threshold = (mask >> 1) + (1 if x < 0 else 0)
        result    = (x >> exponent) + (1 if remainder > threshold else 0)   # >> is arithmetic

    x int32-valued, exponent in [0, 31].
    """
    x64 = _int32_valued(x, "x")
    e64 = _int32_valued(exponent, "exponent")
    if e64.size and (e64.min() < 0 or e64.max() > 31):
        raise ValueError("exponent must be in [0, 31]")
    mask = (np.int64(1) << e64) - 1
    remainder = x64 & mask
    threshold = (mask >> 1) + (x64 < 0).astype(np.int64)
    return ((x64 >> e64) + (remainder > threshold).astype(np.int64)).astype(np.int32)


def multiply_by_quantized_multiplier(x, m0, shift) -> np.ndarray:
    """round(x * m0 * 2^(shift - 31)) the gemmlowp way (TFLite MultiplyByQuantizedMultiplier).

        left  = max(shift, 0);  right = max(-shift, 0)
        y = rounding_divide_by_pot(srdhm(saturate_int32(x * 2^left), m0), right)

    x, m0 int32-valued (m0 >= 0), shift in [-31, 30]; all broadcast together. Returns int32.
    """
    x64 = _int32_valued(x, "x")
    m64 = _int32_valued(m0, "m0")
    s64 = _int32_valued(shift, "shift")
    if m64.size and m64.min() < 0:
        raise ValueError("m0 must be >= 0")
    if s64.size and (s64.min() < -31 or s64.max() > 30):
        raise ValueError("shift must be in [-31, 30]")
    left = np.maximum(s64, 0)
    right = np.maximum(-s64, 0)
    scaled = np.clip(x64 << left, INT32_MIN, INT32_MAX)   # |x| < 2^31, left <= 30: no int64 overflow
    return rounding_divide_by_pot(srdhm(scaled, m64), right)
