"""Independent oracles for the numerics tests: Python integers and fractions.Fraction only.

Nothing here imports eightbit. The formulas are written from their published sources, not from
eightbit's code:

* TFLite ``QuantizeMultiplier`` (tensorflow/lite/kernels/internal/quantization_util.cc):
  ``q = frexp(real, &shift); q_fixed = TfLiteRound(q * 2^31)`` (std::round: half away from zero),
  ``q_fixed == 2^31 -> q_fixed /= 2, ++shift``; ``shift < -31 -> shift = 0, q_fixed = 0``.
* gemmlowp ``SaturatingRoundingDoublingHighMul`` (fixedpoint.h): int64 product, nudge
  ``ab >= 0 ? 2^30 : 1 - 2^30``, C division (truncation) by 2^31, INT32_MIN * INT32_MIN saturates.
* gemmlowp ``RoundingDivideByPOT``: round to nearest, ties away from zero.
* TFLite ``MultiplyByQuantizedMultiplier``: left shift (eightbit saturates it to int32, as its
  docs/numerics.md states), SRDHM, then RoundingDivideByPOT by the right shift.

Round half to even is written with Fraction (exact), not with numpy.rint.
"""
from __future__ import annotations

import math
from fractions import Fraction

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


# ---- rounding of exact rationals -----------------------------------------------------------------

def round_half_even(r) -> int:
    """Nearest integer to the exact rational r, ties to even."""
    r = Fraction(r)
    fl = math.floor(r)
    frac = r - fl
    if frac > Fraction(1, 2) or (frac == Fraction(1, 2) and fl % 2 == 1):
        return fl + 1
    return fl


def round_half_away(r) -> int:
    """Nearest integer to the exact rational r, ties away from zero (C's std::round)."""
    r = Fraction(r)
    n = math.floor(abs(r) + Fraction(1, 2))
    return n if r >= 0 else -n


def round_half_up(r) -> int:
    """Nearest integer, ties toward +infinity: floor(r + 1/2)."""
    return math.floor(Fraction(r) + Fraction(1, 2))


def is_tie(r) -> bool:
    r = Fraction(r)
    return r - math.floor(r) == Fraction(1, 2)


def clamp(v: int, lo: int, hi: int) -> int:
    return lo if v < lo else hi if v > hi else v


# ---- gemmlowp / TFLite fixed point --------------------------------------------------------------

def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier in exact arithmetic: (m0, shift), real ~= m0 * 2^(shift - 31)."""
    if real == 0.0:
        return 0, 0
    # frexp done by hand on the exact rational: real = q * 2^e with q in [1/2, 1)
    r = Fraction(real)
    e = r.numerator.bit_length() - r.denominator.bit_length()
    q = r / Fraction(2) ** e
    while q >= 1:
        q /= 2
        e += 1
    while q < Fraction(1, 2):
        q *= 2
        e -= 1
    m0 = round_half_away(q * 2**31)
    if m0 == 2**31:
        m0 //= 2
        e += 1
    if e < -31:
        return 0, 0
    return m0, e


def c_div(n: int, d: int) -> int:
    """C integer division (truncation toward zero), d > 0."""
    q = abs(n) // d
    return q if n >= 0 else -q


def srdhm(a: int, b: int) -> int:
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return c_div(ab + nudge, 1 << 31)


def rounding_divide_by_pot(x: int, exponent: int) -> int:
    return round_half_away(Fraction(x, 1 << exponent))


def multiply_by_quantized_multiplier(x: int, m0: int, shift: int) -> int:
    left, right = max(shift, 0), max(-shift, 0)
    scaled = clamp(x * (1 << left), INT32_MIN, INT32_MAX)
    return rounding_divide_by_pot(srdhm(scaled, m0), right)


def requantize_fixed(acc: int, real: float, zp: int, qmin: int, qmax: int) -> int:
    m0, shift = quantize_multiplier(real)
    return clamp(multiply_by_quantized_multiplier(acc, m0, shift) + zp, qmin, qmax)


# ---- float32 helpers (exact) ---------------------------------------------------------------------

def f32(v) -> Fraction:
    """The float32 nearest to v (ties to even), as an exact Fraction. v: a Python/NumPy number
    (converted from its double value) or a Fraction (rounded once)."""
    if isinstance(v, Fraction):
        return Fraction(_f32_of_fraction(v))
    if isinstance(v, int):
        return Fraction(_f32_of_fraction(Fraction(v)))
    return Fraction(_f32_of_fraction(Fraction(float(v))))


def _f32_of_fraction(r: Fraction) -> float:
    """Correctly rounded float32 of an exact rational (normal range; enough for these tests)."""
    if r == 0:
        return 0.0
    sign = -1 if r < 0 else 1
    a = abs(r)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    while Fraction(2) ** (e + 1) <= a:
        e += 1
    ulp = Fraction(2) ** (e - 23)                      # 24 significant bits
    return sign * float(round_half_even(a / ulp) * ulp)


def f32_div(a, b) -> Fraction:
    """float32(a) / float32(b) rounded once to float32 (IEEE division), exactly."""
    return Fraction(_f32_of_fraction(f32(a) / f32(b)))


def quantize_value(v, scale, zp: int, qmin: int, qmax: int) -> int:
    """ONNX QuantizeLinear of one real v: sat(rne(float32(v) / float32(scale)) + zp), fp32 division."""
    return clamp(round_half_even(f32_div(v, scale)) + zp, qmin, qmax)
