"""Chosen scales and zero points, checked against values worked out by hand.

choose_qparams for asymmetric uint8 / int8, symmetric, ranges not containing 0 and degenerate
ranges; then the same parameters where eb.quantize puts them (qm.plan.tensors[...]) for min-max
and percentile calibration, and the percentile's order statistic on small arrays. The expected
zero points are literals (the hand working is in the comments, and re-derived with Fractions in
the test so a typo cannot hide); an off-by-one zero point or order statistic changes a literal.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

import eightbit as eb
from eightbit.calibrate import Calibrator
from eightbit.calibrate.histogram import HistogramObserver
from eightbit.calibrate.percentile import histogram_quantile, percentile_range
from eightbit.numerics import qparams

import _numerics_oracles as orc

F32 = np.float32
U8, I8 = np.uint8, np.int8
QRANGE = {np.dtype(U8): (0, 255), np.dtype(I8): (-128, 127)}


def f32_scale(num: float, den: float) -> np.float32:
    return F32(F32(num) / F32(den))


# (lo, hi, dtype, symmetric, scale as float32(num) / float32(den), zero point)
HAND = [
    # asymmetric: scale = (mx - mn) / 255, zp = rne(qmin - mn / scale)
    (-1.0, 3.0, U8, False, (4.0, 255.0), 64),        # 1 / (4/255) = 63.75 -> 64
    (-1.0, 3.0, I8, False, (4.0, 255.0), -64),       # -128 + 63.75 = -64.25 -> -64
    (-64.0, 191.0, U8, False, (255.0, 255.0), 64),   # scale exactly 1
    (-64.0, 191.0, I8, False, (255.0, 255.0), -64),
    (-3.0, 0.1, U8, False, (3.1, 255.0), 247),       # 3 * 255 / 3.1 = 246.77 -> 247
    (-3.0, 0.1, I8, False, (3.1, 255.0), 119),       # -128 + 246.77 = 118.77 -> 119
    (-0.2, 10.0, U8, False, (10.2, 255.0), 5),       # 0.2 * 255 / 10.2 = 5
    (-0.2, 10.0, I8, False, (10.2, 255.0), -123),
    (-7.0, 1.0, U8, False, (8.0, 255.0), 223),       # 7 * 255 / 8 = 223.125 -> 223
    (-7.0, 1.0, I8, False, (8.0, 255.0), 95),        # -128 + 223.125 -> 95
    (-63.5, 191.5, U8, False, (255.0, 255.0), 64),   # scale 1: 63.5 -> 64 (exact tie, to even)
    (-62.5, 192.5, I8, False, (255.0, 255.0), -66),  # -128 + 62.5 = -65.5 -> -66 (half up: -65)
    # ranges not containing 0: widened to include it
    (0.5, 2.0, U8, False, (2.0, 255.0), 0),          # [0, 2]
    (0.5, 2.0, I8, False, (2.0, 255.0), -128),
    (-4.0, -1.0, U8, False, (4.0, 255.0), 255),      # [-4, 0]: 0 is the top code
    (-4.0, -1.0, I8, False, (4.0, 255.0), 127),
    # symmetric: scale = max|range| / 127, zp 0 (int8) or 128 (uint8)
    (-3.0, 1.0, I8, True, (3.0, 127.0), 0),
    (-1.0, 2.54, I8, True, (2.54, 127.0), 0),
    (-1.0, 2.54, U8, True, (2.54, 127.0), 128),
    (0.5, 2.0, I8, True, (2.0, 127.0), 0),
    (-4.0, -1.0, U8, True, (4.0, 127.0), 128),
    # degenerate
    (0.0, 0.0, U8, False, (1.0, 1.0), 0),            # all zero: scale 1, zp qmin
    (0.0, 0.0, I8, False, (1.0, 1.0), -128),
    (0.0, 0.0, I8, True, (1.0, 1.0), 0),
    (0.0, 0.0, U8, True, (1.0, 1.0), 128),
    (5.0, 5.0, U8, False, (5.0, 255.0), 0),          # one value: [0, 5]
    (-2.0, -2.0, U8, False, (2.0, 255.0), 255),      # [-2, 0]
    (-2.0, -2.0, I8, True, (2.0, 127.0), 0),
]


@pytest.mark.parametrize("lo, hi, dtype, symmetric, scale, zp", HAND)
def test_choose_qparams_hand_worked(lo, hi, dtype, symmetric, scale, zp):
    got_scale, got_zp = qparams.choose_qparams(lo, hi, dtype, symmetric=symmetric)
    assert type(got_zp) is np.dtype(dtype).type and type(got_scale) is np.float32
    assert got_scale == f32_scale(*scale), (got_scale, f32_scale(*scale))
    assert int(got_zp) == zp
    # the hand working, redone exactly: zp is the rounded real position of 0 on the float32 grid
    qmin, qmax = QRANGE[np.dtype(dtype)]
    mn, mx = min(Fraction(float(F32(lo))), 0), max(Fraction(float(F32(hi))), 0)
    if symmetric:
        assert zp == (0 if dtype is I8 else 128)
    elif mn == mx:
        assert zp == qmin
    else:
        s = Fraction(float(f32_scale(*scale)))
        initial = qmin - orc.f32(mn / s)
        assert zp == orc.clamp(orc.round_half_even(initial), qmin, qmax)
        # decisive: mn and mx land within half a step of qmin and qmax (zp off by one breaks this)
        assert abs(mn / s + zp - qmin) <= Fraction(1, 2) + Fraction(1, 10**4)
        assert abs(mx / s + zp - qmax) <= Fraction(1, 2) + Fraction(1, 10**4)
    # real 0 is exactly representable: quantize(0) == zp, dequantize(zp) == 0
    assert int(eb.reference.quantize_linear(F32([0.0]), got_scale, np.array(got_zp))[0]) == zp


def test_choose_qparams_errors():
    with pytest.raises(ValueError, match="too small"):
        qparams.choose_qparams(-1e-36, 1e-36)           # scale 7.8e-39: subnormal
    with pytest.raises(ValueError, match="too wide"):
        qparams.choose_qparams(-3e38, 3e38)
    with pytest.raises(ValueError, match="<="):
        qparams.choose_qparams(1.0, -1.0)


def test_calibrator_qparams_are_choose_qparams():
    cal = Calibrator("minmax")
    cal.observe("a", np.array([-1.0, 0.5, 3.0], F32))
    cal.observe("a", np.array([2.0, -0.25], F32))
    cal.observe("b", np.array([0.5, 2.0], F32))
    assert cal.ranges() == {"a": (-1.0, 3.0), "b": (0.0, 2.0)}
    q = cal.qparams("uint8")
    assert q["a"] == (f32_scale(4.0, 255.0), U8(64)) and q["b"] == (f32_scale(2.0, 255.0), U8(0))
    q = cal.qparams("int8")
    assert q["a"] == (f32_scale(4.0, 255.0), I8(-64)) and q["b"] == (f32_scale(2.0, 255.0), I8(-128))


# ---- inside eb.quantize: min-max ----------------------------------------------------------------------

def _linear_graph():
    """y = 2 x + 1 on 4 features: the output range is 2 * range(x) + 1, exactly in float32."""
    g = eb.Graph()
    x = g.input("x", (None, 4))
    g.output(g.linear(x, 2 * np.eye(4, dtype=F32), np.ones(4, F32), name="fc"))
    return g


CALIB = [np.array([[-1.0, 0.5, 3.0, 2.0], [0.0, 1.0, -0.5, 2.5]], F32),
         np.array([[0.25, -0.75, 1.5, 2.75]], F32)]          # x in [-1, 3], y = 2x + 1 in [-1, 7]


@pytest.mark.parametrize("dtype, x_zp, y_zp", [
    ("uint8", 64, 32),        # x: 63.75 -> 64; y: 1 / (8/255) = 31.875 -> 32
    ("int8", -64, -96),       # x: -64.25 -> -64; y: -128 + 31.875 = -96.125 -> -96
])
def test_quantize_minmax_plan_qparams(dtype, x_zp, y_zp):
    qm = eb.quantize(_linear_graph(), CALIB, activation_dtype=dtype, min_sqnr=None)
    t = qm.plan.tensors
    assert t["x:q"].dtype == np.dtype(dtype) and t["fc:q"].dtype == np.dtype(dtype)
    assert F32(t["x:q"].scale) == f32_scale(4.0, 255.0) and t["x:q"].zero_point == x_zp
    assert F32(t["fc:q"].scale) == f32_scale(8.0, 255.0) and t["fc:q"].zero_point == y_zp
    (lin,) = [s for s in qm.plan.steps if s.op == "linear"]
    np.testing.assert_array_equal(lin.consts["w_scale"], np.full(4, f32_scale(2.0, 127.0)))
    np.testing.assert_array_equal(lin.consts["w"], 127 * np.eye(4, dtype=np.int8))
    # bias = rne(1 / float32(x_scale * w_scale)) = rne(4048.25...) = 4048
    bias_scale = Fraction(float(F32(f32_scale(4.0, 255.0) * f32_scale(2.0, 127.0))))
    assert orc.round_half_even(1 / bias_scale) == 4048
    np.testing.assert_array_equal(lin.consts["bias"], [4048] * 4)


def test_quantize_minmax_symmetric_plan_qparams():
    qm = eb.quantize(_linear_graph(), CALIB, activation_symmetric=True, min_sqnr=None)
    t = qm.plan.tensors
    assert F32(t["x:q"].scale) == f32_scale(3.0, 127.0) and t["x:q"].zero_point == 0
    assert F32(t["fc:q"].scale) == f32_scale(7.0, 127.0) and t["fc:q"].zero_point == 0


# ---- percentile: which order statistic ----------------------------------------------------------------

# counts per unit bin [0,1) .. [6,7), values clamped to [1.2, 6.9]; n = 10, cum = 0 2 2 5 6 6 10.
# fraction f -> rank r = 1 + 9 f -> k = round(r) -> bin j holding the k-th value -> position inside it.
COUNTS = np.array([0, 2, 0, 3, 1, 0, 4], np.int64)
QUANTILES = [
    (0.0, 1.4),        # r 1,    k 1:  bin 1 [1.2, 2), 2 values: 1.2 + (1 - 0.5) / 2 * 0.8
    (0.15, 1.8),       # r 2.35, k 2:  bin 1: 1.2 + 1.5 / 2 * 0.8
    (0.35, 3.5),       # r 4.15, k 4:  bin 3 [3, 4), 3 values, 2 before: 3 + 1.5 / 3
    (0.6, 4.5),        # r 6.4,  k 6:  bin 4 [4, 5), 1 value, 5 before: 4 + 0.5
    (0.8, 6.3375),     # r 8.2,  k 8:  bin 6 [6, 6.9), 4 values, 6 before: 6 + 1.5 / 4 * 0.9
    (1.0, 6.7875),     # r 10,   k 10: bin 6: 6 + 3.5 / 4 * 0.9
]


@pytest.mark.parametrize("fraction, want", QUANTILES)
def test_histogram_quantile_hand_worked(fraction, want):
    got = histogram_quantile(COUNTS, 0.0, 1.0, fraction, 1.2, 6.9)
    assert got == pytest.approx(want, abs=1e-12)


def test_percentile_range_picks_the_nearest_order_statistic():
    # values -10..-1, 1..10 (n = 20), 20 bins: T = 10 (1 + 2^-20), width w = 1 + 2^-20, so value v
    # sits alone in bin [(v - 1) w, v w) (v > 0) or [v w, (v + 1) w) (v < 0).
    # p = 90: hi rank 1 + 0.9 * 19 = 18.1 -> 18th value = 8 -> middle of its bin, 7.5 w;
    #         lo rank 1 + 0.1 * 19 = 2.9 -> 3rd value = -8 -> -7.5 w.
    # (the 17th / 19th value would give 6.5 w / 8.5 w; bin edges 7 w / 8 w.)
    x = np.concatenate([np.arange(-10, 0), np.arange(1, 11)]).astype(F32)
    obs = HistogramObserver(bins=20, method="percentile", percentile=90.0)
    obs.update(x[::-1].copy())
    w = 1.0 + 2.0**-20
    lo, hi = obs.compute_range()
    assert hi == pytest.approx(7.5 * w, abs=1e-12) and lo == pytest.approx(-7.5 * w, abs=1e-12)
    assert percentile_range(obs.histogram(), 90.0) == (lo, hi)
    # p = 97.5: r = 1 + 0.975 * 19 = 19.525 -> k = 20 -> value 10, in bin [9 w, 10 w) cut at max 10:
    # (9 w + 10) / 2; lo: r = 1.475 -> k = 1 -> value -10: (-10 - 9 w) / 2
    lo, hi = percentile_range(obs.histogram(), 97.5)
    assert hi == pytest.approx((9 * w + 10) / 2, abs=1e-12) and lo == pytest.approx(-(9 * w + 10) / 2, abs=1e-12)
    # symmetric: |x| = 1..10 twice; r = 1 + 0.9 * 19 = 18.1 -> k 18 -> |x| = 9 (1 1 2 2 ... 9 9 10 10)
    # in bin [8 w, 9 w) with 2 values and 16 before: 8 w + (18 - 16 - 0.5) / 2 * w = 8.75 w
    lo, hi = percentile_range(obs.histogram(), 90.0, symmetric=True)
    assert hi == pytest.approx(8.75 * w, abs=1e-12) and lo == pytest.approx(-8.75 * w, abs=1e-12)


def test_quantize_percentile_plan_qparams():
    # x: -5..-1 and 1..15 (n = 20); default 2048 bins: T = 15 (1 + 2^-20), w = T / 1024.
    # p = 90: hi -> 18th value = 13, in bin floor(13 / w) = 887: hi = 887.5 w (= 13.0005...)
    #         lo -> 3rd value = -3, in bin floor(-3 / w) = -205: lo = -204.5 w (= -2.9956...)
    # uint8: scale = (hi - lo) / 255 = 1092 w / 255; zp = rne(204.5 * 255 / 1092) = rne(47.755) = 48
    x = np.concatenate([np.arange(-5, 0), np.arange(1, 16)]).astype(F32).reshape(20, 1)
    g = eb.Graph()
    xin = g.input("x", (None, 1))
    g.output(g.linear(xin, np.ones((1, 1), F32), name="fc"))
    xr = x[::-1]                       # the first batch holds the maximum: T is set once, never widened
    qm = eb.quantize(g, [xr[:7], xr[7:]], method="percentile", percentile=90.0, min_sqnr=None)
    w = 15.0 * (1.0 + 2.0**-20) / 1024
    assert math.floor(13 / w) == 887 and math.floor(-3 / w) == -205
    hi, lo = F32(887.5 * w), F32(-204.5 * w)
    spec = qm.plan.tensors["x:q"]
    want_scale = F32(F32(hi - lo) / F32(255.0))
    assert F32(spec.scale) == pytest.approx(want_scale, rel=1e-6)
    assert spec.zero_point == 48
    # the neighbours' ranges (12 or 14, -2 or -4) give scales at least 3 % away
    for h, lw in ((12.5, -3.0), (14.5, -3.0), (13.0, -2.0), (13.0, -4.0)):
        assert abs(F32(h - lw) / 255 - want_scale) > 0.03 * want_scale
