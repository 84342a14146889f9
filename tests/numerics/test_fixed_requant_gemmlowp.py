"""requant="fixed" against an independent gemmlowp / TFLite model, written in Python integers.

The oracle (tests/numerics/_numerics_oracles.py) follows TFLite's QuantizeMultiplier (frexp, q *
2^31 rounded half away from zero, the 2^31 carry, the shift < -31 underflow),
gemmlowp's SaturatingRoundingDoublingHighMul and RoundingDivideByPOT, composed as TFLite's
MultiplyByQuantizedMultiplier, with the real multiplier double(s_x) * double(s_w[m]) /
double(s_y) as TFLite's PopulateConvolutionQuantizationParams computes it. Compared on random and
tie values against eightbit.numerics.fixed_point, eightbit.reference.requantize_fixed, and
qlinear_matmul / qlinear_conv with requant="fixed" (reference and the C++ ops on every ISA),
with accumulators computed here in int64.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import eightbit as eb
from eightbit.numerics import fixed_point

import _numerics_oracles as orc

F32 = np.float32
RANGES = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}


def _random_reals(rng, n):
    """Log-uniform reals over every shift eightbit accepts, and float32 scale ratios as layers have."""
    logs = rng.uniform(-45.0, 29.99, n // 2)
    reals = list(2.0 ** logs)
    s = rng.uniform(1e-4, 0.1, (n - n // 2, 3)).astype(F32)
    reals += [float(a) * float(b) / float(c) for a, b, c in s]
    return np.array(reals)


def test_quantize_multiplier_random_reals():
    rng = np.random.default_rng(201)
    reals = _random_reals(rng, 3000)
    m0, shift = fixed_point.quantize_multiplier(reals)
    want = [orc.quantize_multiplier(float(r)) for r in reals]
    np.testing.assert_array_equal(m0, [w[0] for w in want])
    np.testing.assert_array_equal(shift, [w[1] for w in want])
    assert sum(w == (0, 0) for w in want) > 50            # the underflow branch is exercised


def test_srdhm_random():
    rng = np.random.default_rng(202)
    a = rng.integers(orc.INT32_MIN, orc.INT32_MAX, 4000, endpoint=True)
    b = np.concatenate([rng.integers(0, orc.INT32_MAX, 2000, endpoint=True),
                        rng.integers(orc.INT32_MIN, orc.INT32_MAX, 2000, endpoint=True)])
    a[:3], b[:3] = orc.INT32_MIN, [orc.INT32_MIN, orc.INT32_MAX, 0]
    got = fixed_point.srdhm(a, b)
    np.testing.assert_array_equal(got, [orc.srdhm(int(x), int(y)) for x, y in zip(a, b)])


def test_rounding_divide_by_pot_random():
    rng = np.random.default_rng(203)
    x = rng.integers(orc.INT32_MIN, orc.INT32_MAX, 4000, endpoint=True)
    e = rng.integers(0, 32, 4000)
    got = fixed_point.rounding_divide_by_pot(x, e)
    np.testing.assert_array_equal(got, [orc.rounding_divide_by_pot(int(v), int(k)) for v, k in zip(x, e)])


def test_multiply_by_quantized_multiplier_random():
    rng = np.random.default_rng(204)
    reals = _random_reals(rng, 2000)
    qm = [orc.quantize_multiplier(float(r)) for r in reals]
    m0 = np.array([q[0] for q in qm], np.int64)
    shift = np.array([q[1] for q in qm], np.int64)
    # accumulators of every size, including ones the left shift saturates
    x = (rng.integers(-(2**31), 2**31, 2000) >> rng.integers(0, 31, 2000)).astype(np.int64)
    got = fixed_point.multiply_by_quantized_multiplier(x, m0, shift)
    np.testing.assert_array_equal(got, [orc.multiply_by_quantized_multiplier(int(a), int(m), int(s))
                                        for a, m, s in zip(x, m0, shift)])


@pytest.mark.parametrize("dtype, zp", [(np.uint8, 0), (np.uint8, 131), (np.int8, 0), (np.int8, -100)])
def test_reference_requantize_fixed_per_column(dtype, zp):
    rng = np.random.default_rng(205)
    qmin, qmax = RANGES[np.dtype(dtype)]
    reals = 2.0 ** rng.uniform(-20, 2, 16)
    acc = (rng.integers(-(2**31), 2**31, (64, 16)) >> rng.integers(8, 31, (64, 1))).astype(np.int32)
    qm = [orc.quantize_multiplier(float(r)) for r in reals]
    got = eb.reference.requantize_fixed(acc, np.array([q[0] for q in qm], np.int32),
                                        np.array([q[1] for q in qm], np.int32), zp, dtype)
    want = [[orc.requantize_fixed(int(acc[i, j]), float(reals[j]), zp, qmin, qmax) for j in range(16)]
            for i in range(64)]
    np.testing.assert_array_equal(got, want)


# ---- through the ops --------------------------------------------------------------------------------

def _matmul_case(rng, a_dtype, y_dtype, per_column):
    m, k, n = 9, 37, 11
    info_a = np.iinfo(a_dtype)
    a = rng.integers(info_a.min, info_a.max, (m, k), endpoint=True).astype(a_dtype)
    b = rng.integers(-128, 127, (k, n), endpoint=True).astype(np.int8)
    a_zp = np.array(rng.integers(info_a.min, info_a.max, endpoint=True), a_dtype)
    a_s = F32(rng.uniform(0.005, 0.05))
    b_s = rng.uniform(0.002, 0.03, n).astype(F32) if per_column else F32(rng.uniform(0.002, 0.03))
    y_zp = np.array(rng.integers(*RANGES[np.dtype(y_dtype)], endpoint=True) // 2, y_dtype)
    acc = (a.astype(np.int64) - int(a_zp)) @ b.astype(np.int64)
    y_s = F32(np.abs(acc).max() * float(a_s) * float(np.max(b_s)) / 120.0)       # mostly in range
    return a, a_s, a_zp, b, b_s, y_s, y_zp, acc


def _matmul_expected(acc, a_s, b_s, y_s, y_zp):
    qmin, qmax = RANGES[y_zp.dtype]
    b_col = np.broadcast_to(np.asarray(b_s, F32), (acc.shape[1],))
    reals = [float(a_s) * float(bs) / float(y_s) for bs in b_col]
    return np.array([[orc.requantize_fixed(int(acc[i, j]), reals[j], int(y_zp), qmin, qmax)
                      for j in range(acc.shape[1])] for i in range(acc.shape[0])])


@pytest.mark.parametrize("a_dtype, y_dtype, per_column", [
    (np.uint8, np.uint8, False), (np.uint8, np.uint8, True), (np.int8, np.int8, True), (np.uint8, np.int8, True)])
def test_qlinear_matmul_fixed_random(isa, a_dtype, y_dtype, per_column):
    rng = np.random.default_rng(206)
    for _ in range(3):
        a, a_s, a_zp, b, b_s, y_s, y_zp, acc = _matmul_case(rng, a_dtype, y_dtype, per_column)
        want = _matmul_expected(acc, a_s, b_s, y_s, y_zp)
        assert len(np.unique(want)) > 40                                   # not all saturated
        for impl in (eb.reference, eb.ops):
            got = impl.qlinear_matmul(a, a_s, a_zp, b, b_s, np.int8(0), y_s, y_zp, requant="fixed")
            np.testing.assert_array_equal(got, want, err_msg=impl.__name__)


def test_qlinear_matmul_fixed_ties(isa):
    # a_scale = b_scale = 1, y_scale = 2^(r+1): real = 2^-(r+1), M0 = 2^30, shift = -r. Then
    # srdhm(acc, 2^30) = acc / 2 with a tie toward +inf for odd acc, and the divide by 2^r ties away
    # from zero whenever acc / 2 is an odd multiple of 2^(r-1): both gemmlowp roundings on ties.
    a = np.arange(256, dtype=np.uint8).reshape(16, 16)
    c = [1, -1, 2, -2, 4, -4, 8, -8, 16, -16, 3, -3]
    b = np.zeros((16, len(c)), np.int8)
    b[[0, 3, 6, 9, 12, 15, 1, 4, 7, 10, 13, 2], range(len(c))] = c          # acc = (a[:, k] - 128) * c
    acc = (a.astype(np.int64) - 128) @ b.astype(np.int64)
    for r in range(0, 5):
        for y_zp in (np.uint8(128), np.int8(0), np.int8(-31)):
            qmin, qmax = RANGES[y_zp.dtype]
            a_in = a if y_zp.dtype == np.uint8 else (a.astype(np.int16) - 128).astype(np.int8)
            a_zp = np.uint8(128) if y_zp.dtype == np.uint8 else np.int8(0)
            y_s = F32(2.0 ** (r + 1))
            assert orc.quantize_multiplier(1.0 / float(y_s)) == (2**30, -r)
            want = [[orc.clamp(orc.multiply_by_quantized_multiplier(int(v), 2**30, -r) + int(y_zp), qmin, qmax)
                     for v in row] for row in acc]
            srdhm_ties = sum(int(v) % 2 for v in acc.ravel())
            shift_ties = sum(orc.is_tie(Fraction(orc.srdhm(int(v), 2**30), 2**r)) for v in acc.ravel()) if r else 0
            assert srdhm_ties > 20 and (r == 0 or shift_ties > 8), (srdhm_ties, shift_ties)
            for impl in (eb.reference, eb.ops):
                got = impl.qlinear_matmul(a_in, F32(1), a_zp, b, F32(1), np.int8(0), y_s, y_zp, requant="fixed")
                np.testing.assert_array_equal(got, want, err_msg=f"{impl.__name__} r={r} {y_zp.dtype}")


def _conv_acc(x, x_zp, w, B, pads):
    """int64 NCHW convolution (stride 1, group 1) computed with explicit taps."""
    n, c, h, wd = x.shape
    m, _, kh, kw = w.shape
    t, l, btm, r = pads
    xp = np.full((n, c, h + t + btm, wd + l + r), int(x_zp), np.int64)
    xp[:, :, t:t + h, l:l + wd] = x
    xp -= int(x_zp)
    oh, ow = h + t + btm - kh + 1, wd + l + r - kw + 1
    acc = np.zeros((n, m, oh, ow), np.int64)
    for i in range(kh):
        for j in range(kw):
            acc += np.einsum("nchw,mc->nmhw", xp[:, :, i:i + oh, j:j + ow], w[:, :, i, j].astype(np.int64))
    return acc + B.astype(np.int64).reshape(1, m, 1, 1)


@pytest.mark.parametrize("y_dtype", [np.uint8, np.int8])
def test_qlinear_conv_fixed_random(isa, y_dtype):
    rng = np.random.default_rng(207)
    x = rng.integers(0, 255, (2, 5, 7, 6), endpoint=True).astype(np.uint8)
    w = rng.integers(-127, 127, (8, 5, 3, 3), endpoint=True).astype(np.int8)
    x_zp, x_s = np.uint8(119), F32(0.0213)
    w_s = rng.uniform(0.001, 0.02, 8).astype(F32)
    B = rng.integers(-5000, 5000, 8).astype(np.int32)
    pads = (1, 0, 1, 2)
    acc = _conv_acc(x, x_zp, w, B, pads)
    y_zp = np.array(RANGES[np.dtype(y_dtype)][0] + 100, y_dtype)
    y_s = F32(0.23)
    qmin, qmax = RANGES[np.dtype(y_dtype)]
    reals = [float(x_s) * float(ws) / float(y_s) for ws in w_s]
    want = np.empty(acc.shape, np.int64)
    for idx in np.ndindex(*acc.shape):
        want[idx] = orc.requantize_fixed(int(acc[idx]), reals[idx[1]], int(y_zp), qmin, qmax)
    assert len(np.unique(want)) > 60
    for impl in (eb.reference, eb.ops):
        got = impl.qlinear_conv(x, x_s, x_zp, w, w_s, np.zeros(8, np.int8), y_s, y_zp, B, pads=pads,
                                requant="fixed")
        np.testing.assert_array_equal(got, want, err_msg=impl.__name__)


def _multiplier_tie_accumulators(m_true: int, right: int, count: int):
    """Accumulators x whose output with M0 = m_true differs from the output with M0 = m_true - 1
    (the half-to-even M0 when q * 2^31 is a tie with an even floor): srdhm(x, m_true) lands exactly
    on a RoundingDivideByPOT tie s, and srdhm(x, m_true - 1) one below it (above it for x < 0)."""
    found = []
    j = 40
    while len(found) < count and j < 120:
        for sign in (1, -1):
            s_tie = sign * (2 * j + 1) << (right - 1)
            est = ((2 * s_tie - 1) << 30) // m_true if sign > 0 else ((2 * s_tie + 1) << 30) // m_true
            for x in range(est - 3, est + 4):
                if not orc.INT32_MIN <= x <= orc.INT32_MAX:
                    continue
                right_out = orc.multiply_by_quantized_multiplier(x, m_true, -right)
                wrong_out = orc.multiply_by_quantized_multiplier(x, m_true - 1, -right)
                if right_out != wrong_out and abs(right_out) < 100:
                    found.append((x, right_out))
                    break
        j += 1
    return found[:count]


@pytest.mark.parametrize("y_dtype", [np.uint8, np.int8])
def test_multiplier_tie_reaches_the_output(isa, y_dtype):
    # x_scale * w_scale = 65537 * 32769 / 2^32 = (2^31 + 98305) / 2^32, exactly (float32 inputs,
    # product exact in double); y_scale 2^23. q * 2^31 = 2^30 + 49152.5: M0 = 2^30 + 49153 (half
    # away from zero), shift -23. Half to even would give 2^30 + 49152: the accumulators below (the
    # conv's bias, on an all-zero-point input) turn that one-unit M0 difference into a different code.
    x_s, w_s, y_s = F32(65537 * 2.0**-17), F32(32769 * 2.0**-15), F32(2.0**23)
    real = float(x_s) * float(w_s) / float(y_s)
    m_true, shift = orc.quantize_multiplier(real)
    assert (m_true, shift) == (2**30 + 49153, -23)
    assert orc.is_tie(Fraction(real) * 2**23 * 2**31)
    cases = _multiplier_tie_accumulators(m_true, 23, 8)
    assert len(cases) >= 6 and {np.sign(o) for _, o in cases} == {1, -1}, cases
    B = np.array([x for x, _ in cases], np.int32)
    m = len(cases)
    zp_val = 0 if y_dtype == np.int8 else 128
    y_zp = np.array(zp_val, y_dtype)
    x = np.full((1, 1, 2, 2), 7, np.uint8)                    # == x_zp: the conv sum is 0, acc = B
    w = np.ones((m, 1, 1, 1), np.int8)
    want = np.array([o + zp_val for _, o in cases]).reshape(1, m, 1, 1) * np.ones((1, 1, 2, 2), np.int64)
    assert int(fixed_point.quantize_multiplier(real)[0]) == m_true
    for impl in (eb.reference, eb.ops):
        got = impl.qlinear_conv(x, x_s, np.uint8(7), w, w_s, np.int8(0), y_s, y_zp, B, requant="fixed")
        np.testing.assert_array_equal(got, want, err_msg=impl.__name__)
