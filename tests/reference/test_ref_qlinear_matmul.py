"""eightbit.reference.qlinear_matmul / requantize_* against oracles written here independently:
int64 einsum for the accumulator, Python round() (half to even) + saturation for `float`, and
Python integers for the gemmlowp `fixed` pipeline."""
import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from eightbit.reference import qlinear_matmul, requantize_fixed, requantize_float

SIZES = (1, 2, 3, 15, 16, 17, 63, 64, 65, 255)


def rand(rng, dtype, shape):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape, dtype=np.int64).astype(dtype)


def acc_oracle(a, b, a_zp, b_zp):
    a64 = a.astype(np.int64) - int(a_zp)
    b64 = b.astype(np.int64) - np.asarray(b_zp, np.int64).reshape(1, -1)
    return np.einsum("mk,kn->mn", a64, b64)          # no wrap needed for these K


def float_requant_oracle(acc, mult_per_col, y_zp, dtype):
    """Round first, then saturate (equivalent to the spec's clamp-then-round for finite values)."""
    info = np.iinfo(dtype)
    out = np.empty(acc.shape, dtype)
    for (m, n), v in np.ndenumerate(acc):
        prod = np.float32(np.float32(v) * np.float32(mult_per_col[n]))
        out[m, n] = min(max(round(float(prod)) + int(y_zp), info.min), info.max)
    return out


def quantize_multiplier_oracle(real: float):
    if real == 0.0:
        return 0, 0
    q, e = math.frexp(real)
    m0 = int(Fraction(q) * 2**31 + Fraction(1, 2))   # q > 0: half away from zero == floor(+1/2)
    if m0 == 2**31:
        m0, e = 2**30, e + 1
    if e < -31:
        return 0, 0
    return m0, e


def fixed_scalar_oracle(x: int, m0: int, shift: int) -> int:
    left, right = max(shift, 0), max(-shift, 0)
    x = min(max(x * 2**left, -2**31), 2**31 - 1)
    if x == -2**31 and m0 == -2**31:
        high = 2**31 - 1
    else:
        high = (x * m0 + 2**30) >> 31                # floor(x*m0/2^31 + 1/2): gemmlowp SRDHM
    if right == 0:
        return high
    q, r = divmod(abs(high), 2**right)               # |high| / 2^right, ties away from zero
    q += 1 if 2 * r >= 2**right else 0
    return q if high >= 0 else -q


@pytest.mark.parametrize("a_dtype,b_dtype", [(np.uint8, np.uint8), (np.uint8, np.int8),
                                             (np.int8, np.int8), (np.int8, np.uint8)])
@pytest.mark.parametrize("y_dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (3, 17, 15), (16, 16, 64), (17, 65, 63),
                                   (2, 255, 3), (64, 3, 255), (15, 2, 16)])
def test_float_requant_matches_oracle(m, n, k, a_dtype, b_dtype, y_dtype):
    rng = np.random.default_rng(m * 7919 + n * 31 + k)
    a, b = rand(rng, a_dtype, (m, k)), rand(rng, b_dtype, (k, n))
    a_zp, b_zp, y_zp = rand(rng, a_dtype, ()), rand(rng, b_dtype, (n,)), rand(rng, y_dtype, ())
    a_s = np.float32(rng.uniform(1e-3, 0.1))
    b_s = rng.uniform(1e-3, 0.1, n).astype(np.float32)
    # a y_scale that leaves most outputs inside the range and some saturated at each end
    spread = float(np.abs(acc_oracle(a, b, a_zp, b_zp)).max()) * float(a_s) * float(b_s.max())
    y_s = np.float32(max(spread, 1e-6) / 200.0)
    y = qlinear_matmul(a, a_s, a_zp, b, b_s, b_zp, y_s, y_zp)
    assert y.dtype == y_dtype and y.shape == (m, n)
    mult = [np.float32(np.float32(a_s * b_s[j]) / y_s) for j in range(n)]
    np.testing.assert_array_equal(y, float_requant_oracle(acc_oracle(a, b, a_zp, b_zp), mult, y_zp, y_dtype))
    # per-tensor b parameters equal per-column ones repeated
    y_t = qlinear_matmul(a, a_s, a_zp, b, b_s[:1], b_zp[:1], y_s, y_zp)
    y_c = qlinear_matmul(a, a_s, a_zp, b, np.repeat(b_s[:1], n), np.repeat(b_zp[:1], n), y_s, y_zp)
    np.testing.assert_array_equal(y_t, y_c)


@pytest.mark.parametrize("y_dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (3, 17, 15), (17, 65, 63), (64, 3, 255)])
def test_fixed_requant_matches_integer_oracle(m, n, k, y_dtype):
    rng = np.random.default_rng(100 + m * n * k)
    a, b = rand(rng, np.uint8, (m, k)), rand(rng, np.int8, (k, n))
    a_zp, b_zp, y_zp = rand(rng, np.uint8, ()), rand(rng, np.int8, (n,)), rand(rng, y_dtype, ())
    a_s = np.float32(rng.uniform(1e-3, 0.1))
    b_s = rng.uniform(1e-3, 0.1, n).astype(np.float32)
    y_s = np.float32(rng.uniform(0.05, 3.0))
    y = qlinear_matmul(a, a_s, a_zp, b, b_s, b_zp, y_s, y_zp, requant="fixed")
    acc = acc_oracle(a, b, a_zp, b_zp)
    info = np.iinfo(y_dtype)
    expected = np.empty((m, n), y_dtype)
    for j in range(n):
        m0, shift = quantize_multiplier_oracle(float(a_s) * float(b_s[j]) / float(y_s))
        for i in range(m):
            v = fixed_scalar_oracle(int(acc[i, j]), m0, shift) + int(y_zp)
            expected[i, j] = min(max(v, info.min), info.max)
    np.testing.assert_array_equal(y, expected)


def test_requantize_float_ties_round_to_even_and_saturate():
    acc = np.array([[1, 3, 5, -1, -3, 1000, -1000]], np.int32)
    y = requantize_float(acc, np.float32(0.5), 10, np.uint8)            # 0.5, 1.5, 2.5, ... exact ties
    np.testing.assert_array_equal(y, [[10 + 0, 10 + 2, 10 + 2, 10 + 0, 10 - 2, 255, 0]])
    y = requantize_float(acc, np.float32(0.5), -128, np.int8)
    np.testing.assert_array_equal(y, [[-128, -126, -126, -128, -128, 127, -128]])


def test_requantize_float_converts_large_accumulators_to_float32_first():
    acc = np.array([2**24 + 1, -(2**24 + 3)], np.int32)                 # not representable in float32
    y = requantize_float(acc, np.float32(2.0**-24), 0, np.int8)
    # float32(2^24 + 1) == 2^24 -> exactly 1.0; float32(-(2^24+3)) == -(2^24+4) -> -1.0000002 -> -1
    np.testing.assert_array_equal(y, [1, -1])


def test_requantize_fixed_per_column():
    acc = np.array([[100, -100, 7], [-5, 2**30, -2**31]], np.int32)
    m0 = np.array([2**30, 1518500250, 2**31 - 1], np.int32)
    shift = np.array([-1, 3, -31], np.int32)
    y = requantize_fixed(acc, m0, shift, 3, np.int8)
    for (i, j), v in np.ndenumerate(acc):
        want = min(max(fixed_scalar_oracle(int(v), int(m0[j]), int(shift[j])) + 3, -128), 127)
        assert int(y[i, j]) == want, (i, j)


def test_one_dimensional_b_and_batch():
    rng = np.random.default_rng(5)
    a, b = rand(rng, np.uint8, (2, 3, 9)), rand(rng, np.int8, (9,))
    a_zp, b_zp, y_zp = np.uint8(7), np.array([4], np.int8), np.uint8(128)
    a_s, b_s, y_s = np.float32(0.02), np.array([0.03], np.float32), np.float32(0.01)
    y = qlinear_matmul(a, a_s, a_zp, b, b_s, b_zp, y_s, y_zp)
    assert y.shape == (2, 3)
    acc = np.einsum("bmk,k->bm", a.astype(np.int64) - 7, b.astype(np.int64) - 4)
    mult = np.float32(np.float32(a_s * b_s[0]) / y_s)
    want = [min(max(round(float(np.float32(np.float32(v) * mult))) + 128, 0), 255) for v in acc.ravel()]
    np.testing.assert_array_equal(y.ravel(), want)


def test_empty_k_gives_requantized_zeros():
    a = np.zeros((2, 0), np.uint8)
    b = np.zeros((0, 3), np.int8)
    y = qlinear_matmul(a, np.float32(1), np.uint8(9), b, np.float32(1), np.int8(0), np.float32(1), np.uint8(42))
    np.testing.assert_array_equal(y, np.full((2, 3), 42, np.uint8))
