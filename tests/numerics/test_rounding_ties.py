"""Exact .5 ties through every rounding step of eightbit.numerics and the reference quantize paths.

Each rounding in eightbit has one documented tie rule (docs/numerics.md):

    quantize_multiplier        M0 = round_half_away(q * 2^31)
    srdhm                      ties toward +infinity (floor(a*b / 2^31 + 1/2))
    rounding_divide_by_pot     ties away from zero
    everything float32 -> int  round half to even (weights, zero points, QuantizeLinear,
                               requantize_float, DynamicQuantizeLinear, lookup tables, biases)

Random inputs almost never land on a tie, so a helper rounding ties the wrong way passes random
tests. Every case below is an exact tie (asserted), positive and negative, small and at the
largest magnitudes the helper accepts; expectations come from tests/numerics/_numerics_oracles.py
(Python integers and Fractions, no eightbit code). Each random-tie test also asserts that the
usual wrong tie rules would disagree on many of its cases, so it keeps its power if the data
generator changes.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import eightbit as eb
from eightbit.numerics import fixed_point, qparams
from eightbit.quantizer import quantize_bias

import _numerics_oracles as orc

F32 = np.float32
RANGES = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}


def _wrong_rules(values, right):
    """How many of the exact ties in `values` each wrong tie rule would round differently."""
    rules = {"half_even": orc.round_half_even, "half_away": orc.round_half_away, "half_up": orc.round_half_up,
             "half_down": lambda r: -orc.round_half_up(-Fraction(r))}
    out = {}
    for name, rule in rules.items():
        if rule is right:
            continue
        out[name] = sum(rule(v) != right(v) for v in values)
    return out


# ---- quantize_multiplier: M0 = round_half_away(q * 2^31) -------------------------------------------

@pytest.mark.parametrize("exponent", [-31, -24, -9, -1, 0, 1, 7, 29, 30])
def test_quantize_multiplier_hand_ties(exponent):
    # q * 2^31 = 2^30 + 0.5 (even floor: half-even gives 2^30), 2^31 - 1.5 (even floor: half-even
    # gives 2^31 - 2), 2^30 + 1.5 (odd floor: the rules agree), 2^31 - 0.5 (half away carries to 2^31)
    cases = {
        (2**31 + 1): (2**30 + 1, exponent),
        (2**32 - 3): (2**31 - 1, exponent),
        (2**31 + 3): (2**30 + 2, exponent),
        (2**32 - 1): (2**30, exponent + 1),       # 2^31 after rounding: M0 = 2^30, shift + 1
    }
    for numerator, want in cases.items():
        real = numerator * 2.0 ** (exponent - 32)              # exact in float64 (32-bit numerator)
        assert orc.is_tie(Fraction(real) / Fraction(2) ** exponent * 2**31)
        if want[1] > 30:                                       # real rounds up to 2^30: rejected
            with pytest.raises(ValueError):
                fixed_point.quantize_multiplier(real)
            continue
        assert orc.quantize_multiplier(real) == want
        m0, shift = fixed_point.quantize_multiplier(real)
        assert (int(m0), int(shift)) == want, (hex(numerator), exponent)


def test_quantize_multiplier_underflow_boundary():
    # e = -31 is kept; e = -32 gives (0, 0) (every int32 product rounds to 0) - also for ties
    tie = (2**31 + 1) * 2.0 ** (-31 - 32)
    m0, shift = fixed_point.quantize_multiplier(np.array([tie, tie / 2, 2.0**-32, 2.0**-33]))
    assert [int(v) for v in m0] == [2**30 + 1, 0, 2**30, 0]
    assert [int(v) for v in shift] == [-31, 0, -31, 0]


def test_quantize_multiplier_random_ties():
    rng = np.random.default_rng(101)
    k = rng.integers(2**30, 2**31, 600)
    e = rng.integers(-31, 31, 600)
    real = np.array([float((2 * int(kk) + 1) * Fraction(2) ** (int(ee) - 32)) for kk, ee in zip(k, e)])
    ties = [Fraction(2 * int(kk) + 1, 2) for kk in k]                           # q * 2^31
    assert all(orc.is_tie(t) for t in ties)
    wrong = _wrong_rules(ties, orc.round_half_away)
    assert wrong["half_even"] > 200 and wrong["half_down"] == 600, wrong       # the test's power
    keep = (e < 30) | (k < 2**31 - 1)                 # the one 2^31 carry at e = 30 is rejected
    m0, shift = fixed_point.quantize_multiplier(real[keep])
    want = [orc.quantize_multiplier(float(r)) for r in real[keep]]
    np.testing.assert_array_equal(m0, [w[0] for w in want])
    np.testing.assert_array_equal(shift, [w[1] for w in want])


# ---- srdhm: floor(a*b / 2^31 + 1/2), ties toward +infinity ------------------------------------------

def _srdhm_ties(rng, n_per_split=12):
    """(a, b) with a * b an odd multiple of 2^30 (a*b / 2^31 is a .5 tie), both signs, all splits
    of the 2^30 between a and b, and the largest magnitudes."""
    pairs = [(2**31 - 1, 2**30), (-(2**31 - 1), 2**30), (2**30, 2**31 - 1), (-(2**30), 2**31 - 1),
             (1, 2**30), (-1, 2**30), (3, 2**30), (-3, 2**30), (-(2**31 - 1), 2**30)]
    for p in range(31):
        for _ in range(n_per_split):
            a_odd = 2 * int(rng.integers(0, 2**(30 - p))) + 1
            b_odd = 2 * int(rng.integers(0, 2**p)) + 1
            a, b = a_odd << p, b_odd << (30 - p)
            if a > orc.INT32_MAX or b > orc.INT32_MAX:
                continue
            sa, sb = rng.choice([-1, 1], 2)
            pairs.append((int(sa) * a, int(sb) * b))
    return pairs


def test_srdhm_random_ties_round_toward_plus_infinity():
    rng = np.random.default_rng(102)
    pairs = _srdhm_ties(rng)
    ties = [Fraction(a * b, 2**31) for a, b in pairs]
    assert all(orc.is_tie(t) for t in ties)
    wrong = _wrong_rules(ties, orc.round_half_up)
    assert wrong["half_even"] > 100 and wrong["half_away"] > 100 and wrong["half_down"] == len(ties), wrong
    a = np.array([p[0] for p in pairs], np.int64)
    b = np.array([p[1] for p in pairs], np.int64)
    got = fixed_point.srdhm(a, b)
    want = [orc.srdhm(x, y) for x, y in pairs]
    assert want == [orc.round_half_up(t) for t in ties]       # the two oracles agree on ties
    np.testing.assert_array_equal(got, want)


def test_srdhm_hand_ties():
    # a*b / 2^31 = 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, and +-(2^31 - 1) / 2 (the largest tie)
    a = np.array([2**15, -2**15, 3 * 2**15, -3 * 2**15, 5 * 2**15, -5 * 2**15, 2**31 - 1, -(2**31 - 1)])
    b = np.array([2**15] * 6 + [2**30] * 2)
    np.testing.assert_array_equal(fixed_point.srdhm(a, b), [1, 0, 2, -1, 3, -2, 2**30, -(2**30) + 1])


# ---- rounding_divide_by_pot: ties away from zero ------------------------------------------------------

def test_rounding_divide_by_pot_ties_every_exponent():
    rng = np.random.default_rng(103)
    xs, es = [], []
    for e in range(1, 32):
        half = 1 << (e - 1)
        odd = 2 * rng.integers(0, 2**(31 - e), 20) + 1 if e < 31 else np.ones(20, np.int64)
        cand = [int(o) * half for o in odd]
        cand += [half, 3 * half, orc.INT32_MAX - half + 1, orc.INT32_MIN + half]   # smallest, largest
        for x in cand:
            for s in (1, -1):
                v = s * x
                if orc.INT32_MIN <= v <= orc.INT32_MAX:
                    xs.append(v)
                    es.append(e)
    ties = [Fraction(x, 2**e) for x, e in zip(xs, es)]
    assert all(orc.is_tie(t) for t in ties)
    wrong = _wrong_rules(ties, orc.round_half_away)
    assert wrong["half_even"] > 400 and wrong["half_up"] > 400 and wrong["half_down"] > 400, wrong
    got = fixed_point.rounding_divide_by_pot(np.array(xs, np.int64), np.array(es, np.int64))
    np.testing.assert_array_equal(got, [orc.rounding_divide_by_pot(x, e) for x, e in zip(xs, es)])
    # by hand: 5/2, -5/2, 6/4 (1.5), -6/4, (2^31 - 2^30) / 2^31 = 0.5, -2^30 / 2^31 = -0.5
    np.testing.assert_array_equal(
        fixed_point.rounding_divide_by_pot(np.array([5, -5, 6, -6, 2**30, -2**30]), np.array([1, 1, 2, 2, 31, 31])),
        [3, -3, 2, -2, 1, -1])


# ---- multiply_by_quantized_multiplier: both roundings on ties ---------------------------------------

def test_multiply_by_quantized_multiplier_ties_in_both_roundings():
    rng = np.random.default_rng(104)
    xs, m0s, shifts = [], [], []
    # right-shift tie: M0 = 2^30 halves x exactly (x even), then x/2 = odd * 2^(r-1) is a tie of RDBPOT(r)
    for r in range(1, 31):
        for _ in range(8):
            odd = 2 * int(rng.integers(0, max(1, 2**(30 - r)))) + 1
            for s in (1, -1):
                xs.append(s * (odd << r))
                m0s.append(2**30)
                shifts.append(-r)
    # SRDHM tie (no right shift): x odd and x * 2^left * M0 an odd multiple of 2^30, i.e.
    # M0 = 2^30 (left 0) or 3 * 2^(30 - left): the high multiply is exactly (odd) / 2
    for left in (0, 1, 3, 12):
        m0 = 2**30 if left == 0 else 3 * 2**(30 - left)
        for _ in range(16):
            odd = 2 * int(rng.integers(0, 2**(27 - left))) + 1
            for s in (1, -1):
                xs.append(s * odd)
                m0s.append(m0)
                shifts.append(left)
    got = fixed_point.multiply_by_quantized_multiplier(np.array(xs, np.int64), np.array(m0s, np.int64),
                                                      np.array(shifts, np.int64))
    want = [orc.multiply_by_quantized_multiplier(x, m, s) for x, m, s in zip(xs, m0s, shifts)]
    np.testing.assert_array_equal(got, want)
    # every case is a tie: of the final division (first part) or of the high multiply (second)
    n_right = 30 * 8 * 2
    for x, m, s in zip(xs[:n_right], m0s[:n_right], shifts[:n_right]):
        assert orc.is_tie(Fraction(orc.srdhm(x, m), 2**-s))
    for x, m, s in zip(xs[n_right:], m0s[n_right:], shifts[n_right:]):
        assert orc.is_tie(Fraction(x * 2**s * m, 2**31))


# ---- quantize_weight_symmetric: rne(w / scale) -----------------------------------------------------

def test_quantize_weight_symmetric_hand_ties():
    # max |w| = 127 -> scale 1.0 exactly, so w / scale is w: exact ties at 0.5, 1.5, 2.5 ... 126.5
    row = [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 125.5, 126.5, -125.5, -126.5, 127.0]
    want = [0, 2, 2, 0, -2, -2, 126, 126, -126, -126, 127]
    w = np.array([row, [-v for v in row], [v / 2 for v in row], [v * 2**-12 for v in row]], F32)
    w_q, scale = qparams.quantize_weight_symmetric(w)
    np.testing.assert_array_equal(scale, F32([1.0, 1.0, 0.5, 2.0**-12]))
    np.testing.assert_array_equal(w_q[0], want)
    np.testing.assert_array_equal(w_q[1], [-v for v in want])
    np.testing.assert_array_equal(w_q[2], want)
    np.testing.assert_array_equal(w_q[3], want)
    w_q, scale = qparams.quantize_weight_symmetric(w[:1], per_channel=False)
    assert scale == F32(1.0)
    np.testing.assert_array_equal(w_q[0], want)


@pytest.mark.parametrize("per_channel", [True, False])
def test_quantize_weight_symmetric_random_ties(per_channel):
    rng = np.random.default_rng(105)
    rows = 12
    k = rng.integers(-20, 21, rows) if per_channel else np.full(rows, int(rng.integers(-20, 21)))
    halves = rng.integers(-127, 127, (rows, 40)) + 0.5                         # exact .5 ties in [-126.5, 126.5]
    w = (np.concatenate([halves, np.full((rows, 1), 127.0)], axis=1) * 2.0 ** k[:, None]).astype(F32)
    w_q, scale = qparams.quantize_weight_symmetric(w, per_channel=per_channel)
    if per_channel:
        np.testing.assert_array_equal(scale, (2.0 ** k).astype(F32))
    else:
        assert scale.shape == () and scale == F32(2.0 ** k[0])
    ties = [Fraction(float(v)) for v in halves.ravel()]
    wrong = _wrong_rules(ties, orc.round_half_even)
    assert min(wrong["half_up"], wrong["half_away"], wrong["half_down"]) > 100, wrong
    np.testing.assert_array_equal(w_q[:, :40], np.array([orc.round_half_even(t) for t in ties]).reshape(rows, 40))
    assert np.all(w_q[:, 40] == 127)


# ---- choose_qparams: zp = rne(qmin - mn / scale) ---------------------------------------------------

@pytest.mark.parametrize("lo, hi, zp_u8, zp_i8", [
    (-1.25, 126.25, 2, -126),      # scale 0.5, -mn/scale = 2.5: rne -> 2; int8: -125.5 -> -126
    (-1.75, 125.75, 4, -124),      # 3.5 -> 4; int8 -124.5 -> -124
    (-63.25, 64.25, 126, -2),      # 126.5 -> 126; int8 -1.5 -> -2
    (-126.75, 0.75, 254, 126),     # 253.5 -> 254; int8 125.5 -> 126
    (-0.25, 127.25, 0, -128),      # 0.5 -> 0; int8 -127.5 -> -128 (half up would give -127)
])
def test_choose_qparams_zero_point_ties(lo, hi, zp_u8, zp_i8):
    for dtype, want in ((np.uint8, zp_u8), (np.int8, zp_i8)):
        qmin, _ = RANGES[np.dtype(dtype)]
        scale, zp = qparams.choose_qparams(lo, hi, dtype)
        assert scale == F32(0.5)
        initial = qmin - Fraction(lo) / Fraction(1, 2)
        assert orc.is_tie(initial) and orc.round_half_even(initial) == want
        assert type(zp) is np.dtype(dtype).type and int(zp) == want


# ---- reference (and C++) QuantizeLinear: clamp-then-round, rne -------------------------------------

def _tie_grid(scale: float, zp: int, dtype) -> tuple[np.ndarray, list]:
    """float32 x whose x / scale is every .5 tie of the representable range (and one step past it),
    with the expected codes from the Fraction oracle."""
    qmin, qmax = RANGES[np.dtype(dtype)]
    halves = [Fraction(2 * j + 1, 2) for j in range(qmin - zp - 2, qmax - zp + 1)]
    x = np.array([float(h * Fraction(scale)) for h in halves], F32)
    assert all(Fraction(float(v)) / Fraction(scale) == h for v, h in zip(x, halves))    # exact ties
    return x, [orc.quantize_value(float(v), scale, zp, qmin, qmax) for v in x]


QL_CASES = [(1.0, 0, np.uint8), (0.5, 128, np.uint8), (2.0**-7, 255, np.uint8), (8.0, 37, np.uint8),
            (1.0, 0, np.int8), (0.25, -128, np.int8), (2.0**-10, 127, np.int8), (4.0, -100, np.int8)]


@pytest.mark.parametrize("scale, zp, dtype", QL_CASES)
def test_quantize_linear_ties_to_even(scale, zp, dtype):
    x, want = _tie_grid(scale, zp, dtype)
    wrong = _wrong_rules([Fraction(float(v)) / Fraction(scale) for v in x], orc.round_half_even)
    assert min(wrong.values()) > len(x) // 3, wrong
    for impl in (eb.reference, eb.ops):
        got = impl.quantize_linear(x, F32(scale), np.array(zp, dtype))
        np.testing.assert_array_equal(got, want, err_msg=impl.__name__)


def test_quantize_linear_ties_by_hand():
    # the largest magnitudes at the largest magnitudes: 254.5 -> 254 (uint8, zp 0), -127.5 -> -128 and 126.5 -> 126
    np.testing.assert_array_equal(eb.reference.quantize_linear(F32([254.5, 253.5, 0.5]), F32(1), np.uint8(0)),
                                  [254, 254, 0])
    np.testing.assert_array_equal(eb.ops.quantize_linear(F32([-127.5, 126.5, -0.5, -1.5]), F32(1), np.int8(0)),
                                  [-128, 126, 0, -2])


def test_quantize_linear_ties_per_axis():
    x0, w0 = _tie_grid(0.5, 128, np.uint8)
    x1, w1 = _tie_grid(2.0**-7, 3, np.uint8)
    n = min(len(x0), len(x1))
    x = np.stack([x0[:n], x1[:n]])
    for impl in (eb.reference, eb.ops):
        got = impl.quantize_linear(x, F32([0.5, 2.0**-7]), np.array([128, 3], np.uint8), axis=0)
        np.testing.assert_array_equal(got, [w0[:n], w1[:n]], err_msg=impl.__name__)


# ---- requantize_float: rne(float32(acc) * multiplier) + zp ------------------------------------------

@pytest.mark.parametrize("dtype, zp", [(np.uint8, 0), (np.uint8, 200), (np.int8, 0), (np.int8, -120)])
def test_requantize_float_ties(dtype, zp):
    qmin, qmax = RANGES[np.dtype(dtype)]
    # multiplier 0.5: every odd accumulator is a tie; 0.25: acc = 2 mod 4 are ties
    acc = np.arange(2 * (qmin - zp) - 6, 2 * (qmax - zp) + 7, dtype=np.int32)
    for mult in (0.5, 0.25):
        want = [orc.clamp(orc.round_half_even(Fraction(int(a)) * Fraction(mult)) + zp, qmin, qmax) for a in acc]
        got = eb.reference.requantize_float(acc, F32(mult), zp, dtype)
        np.testing.assert_array_equal(got, want)
    # large accumulators: float32(acc) is exact below 2^24; acc * 2^-17 ties at odd multiples of 2^16
    acc = np.array([3 * 2**16, -3 * 2**16, 5 * 2**16, -5 * 2**16, 253 * 2**16, -255 * 2**16], np.int32)
    want = [orc.clamp(orc.round_half_even(Fraction(int(a), 2**17)) + zp, qmin, qmax) for a in acc]
    np.testing.assert_array_equal(eb.reference.requantize_float(acc, F32(2.0**-17), zp, dtype), want)


def test_qlinear_matmul_float_requant_ties(isa):
    # a_scale = b_scale = 1, y_scale = 2: multiplier exactly 0.5, so every odd accumulator is a tie
    a = np.arange(0, 256, dtype=np.uint8).reshape(16, 16)
    b = np.zeros((16, 8), np.int8)
    b[[0, 3, 5, 6, 9, 12, 14, 15], range(8)] = [1, -1, 3, -3, 1, -1, 1, 3]   # acc = (a[:, k] - 3) * c
    acc = (a.astype(np.int64) - 3) @ b.astype(np.int64)
    for y_zp in (np.uint8(0), np.uint8(131), np.int8(0), np.int8(-77)):
        qmin, qmax = RANGES[y_zp.dtype]
        a_in = a if y_zp.dtype == np.uint8 else (a.astype(np.int16) - 128).astype(np.int8)
        a_zp = np.uint8(3) if y_zp.dtype == np.uint8 else np.int8(3 - 128)
        want = [[orc.clamp(orc.round_half_even(Fraction(int(v), 2)) + int(y_zp), qmin, qmax) for v in row]
                for row in acc]
        assert sum(int(v) % 2 for v in acc.ravel()) > 30                    # plenty of ties
        for impl in (eb.reference, eb.ops):
            got = impl.qlinear_matmul(a_in, F32(1), a_zp, b, F32(1), np.int8(0), F32(2), y_zp)
            np.testing.assert_array_equal(got, want, err_msg=f"{impl.__name__} {y_zp.dtype} {int(y_zp)}")


# ---- DynamicQuantizeLinear: zp and values round half to even ---------------------------------------

def test_dynamic_quantize_linear_ties():
    # mn = -1.25, mx = 126.25 -> scale 0.5, zp = rne(2.5) = 2; x / 0.5 has .5 ties everywhere
    x = np.array([-1.25, 126.25, 0.25, -0.25, 0.75, -0.75, 1.25, 62.25, 62.75, 125.75], F32)
    want_q = [orc.clamp(orc.round_half_even(Fraction(float(v)) * 2) + 2, 0, 255) for v in x]
    assert want_q[:4] == [0, 254, 2, 2]           # -2.5 -> -2, 252.5 -> 252, +-0.5 -> 0 (plus zp 2)
    for impl in (eb.reference, eb.ops):
        q, scale, zp = impl.dynamic_quantize_linear(x)
        assert scale == F32(0.5) and int(zp) == 2, impl.__name__
        np.testing.assert_array_equal(q, want_q, err_msg=impl.__name__)
    rows = np.stack([x, x * 2, x / 4])                  # scales 0.5, 1, 0.125: the same ties per row
    for impl in (eb.reference, eb.ops):
        q, scale, zp = impl.dynamic_quantize_rows(rows)
        np.testing.assert_array_equal(scale, F32([0.5, 1.0, 0.125]))
        np.testing.assert_array_equal(zp, [2, 2, 2])
        np.testing.assert_array_equal(q, [want_q] * 3, err_msg=impl.__name__)


# ---- lookup tables and quantized biases -------------------------------------------------------------

@pytest.mark.parametrize("x_dtype, x_zp, y_dtype, y_zp", [
    (np.uint8, 128, np.uint8, 128), (np.int8, 0, np.int8, 0), (np.uint8, 3, np.int8, -5)])
def test_lookup_table_identity_ties(x_dtype, x_zp, y_dtype, y_zp):
    # x_scale 0.5, y_scale 1: the table of the identity is rne((q - x_zp) / 2) + y_zp, half of it ties
    qmin, qmax = RANGES[np.dtype(y_dtype)]
    table = eb.reference.make_lookup_table(lambda d: d, F32(0.5), np.array(x_zp, x_dtype), F32(1.0),
                                           np.array(y_zp, y_dtype), x_dtype, y_dtype)
    codes = np.arange(256, dtype=np.uint8).view(x_dtype).astype(int)
    want = [orc.clamp(orc.round_half_even(Fraction(int(c) - x_zp, 2)) + y_zp, qmin, qmax) for c in codes]
    np.testing.assert_array_equal(table, want)
    x = np.arange(256, dtype=np.uint8).view(x_dtype)
    np.testing.assert_array_equal(eb.ops.lookup_table(x, table), want)


def test_quantize_bias_ties_to_even():
    class Node:
        name = "n"
    # bias scale = x_scale * w_scale = 0.5 * [1, 0.25, 2^-20]: b / scale lands on .5 ties
    w_scale = F32([1.0, 0.25, 2.0**-20])
    for b_unit, want in (([0.25, 0.0625, 2.0**-22], [0, 0, 0]),           # 0.5 -> 0
                         ([0.75, 0.1875, 3 * 2.0**-22], [2, 2, 2]),       # 1.5 -> 2
                         ([1.25, 0.3125, 5 * 2.0**-22], [2, 2, 2]),       # 2.5 -> 2
                         ([-0.75, -0.1875, -3 * 2.0**-22], [-2, -2, -2]),
                         ([-1.25, -0.3125, -5 * 2.0**-22], [-2, -2, -2])):
        got = quantize_bias(Node(), np.array(b_unit, F32), F32(0.5), w_scale, 3)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, want)
    # large magnitudes (exact in float32): 2^20 + 0.5 -> 2^20, -(2^20) - 1.5 -> -(2^20) - 2
    got = quantize_bias(Node(), np.array([F32(2.0**20 + 0.5)], F32), F32(1.0), F32([1.0]), 1)
    assert int(got[0]) == 2**20                    # 1048576.5 -> even
    got = quantize_bias(Node(), np.array([F32(-(2.0**20) - 1.5)], F32), F32(1.0), F32([1.0]), 1)
    assert int(got[0]) == -(2**20) - 2


# ---- requantize_fixed (reference) on ties of both roundings ----------------------------------------

def test_requantize_fixed_reference_ties():
    rng = np.random.default_rng(106)
    # M0 = 2^30 (0.5), shift -r: acc = odd * 2^r -> final RDBPOT tie; acc odd -> SRDHM tie
    for dtype, zp in ((np.uint8, 100), (np.int8, -3)):
        qmin, qmax = RANGES[np.dtype(dtype)]
        for r in range(0, 9):
            odd = 2 * rng.integers(-(2**8), 2**8, 64) + 1
            acc = np.concatenate([odd << r, odd]).astype(np.int32)
            got = eb.reference.requantize_fixed(acc, np.int32(2**30), np.int32(-r), zp, dtype)
            want = [orc.clamp(orc.multiply_by_quantized_multiplier(int(a), 2**30, -r) + zp, qmin, qmax) for a in acc]
            np.testing.assert_array_equal(got, want, err_msg=f"r={r}")


# ---- the oracle's own float32 arithmetic agrees with IEEE float32 -----------------------------------

def test_oracle_float32_division_is_ieee():
    rng = np.random.default_rng(107)
    a = (rng.standard_normal(500) * 10.0 ** rng.integers(-8, 8, 500)).astype(F32)
    b = np.abs(rng.standard_normal(500) * 10.0 ** rng.integers(-8, 8, 500)).astype(F32) + F32(1e-30)
    for x, y in zip(a, b):
        assert orc.f32(float(x)) == Fraction(float(x))
        assert orc.f32_div(float(x), float(y)) == Fraction(float(F32(x / y)))
