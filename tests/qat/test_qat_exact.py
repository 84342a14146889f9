"""eightbit.torch.exact against the NumPy specification (eightbit.reference / eightbit.numerics),
bit for bit: random inputs, exact .5 ties (power-of-two scales), saturation at both ends,
per-channel scales, uint8 and int8, odd zero points, int32 wrap-around, and both the float32 and
the float64 accumulation paths. Codes are compared as values, floats by their bits."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from eightbit import reference as ref  # noqa: E402
from eightbit.numerics import (activation_range, clamp_then_round, float_multiplier,  # noqa: E402
                               make_lookup_table, qlinear_add_b_first)
from eightbit.reference._float32 import fma32 as np_fma32  # noqa: E402
from eightbit.reference.matmul_integer import wrap_int32  # noqa: E402
from eightbit.torch import exact as ex  # noqa: E402

F32 = np.float32
RANGE = {np.uint8: (0, 255), np.int8: (-128, 127)}
DTYPES = list(RANGE)


def T(a) -> torch.Tensor:
    """NumPy values -> float32 tensor (codes, scales, float inputs)."""
    return torch.from_numpy(np.array(a, dtype=np.float32))


def codes(rng, dt, shape) -> np.ndarray:
    lo, hi = RANGE[dt]
    return rng.integers(lo, hi + 1, shape).astype(dt)


def odd_zp(rng, dt) -> int:
    lo, hi = RANGE[dt]
    return int(rng.integers(lo, hi + 1) | 1)


def nudge(v: np.ndarray, rng) -> np.ndarray:
    """float32 values moved by up to 4 ulps each way (to search scales near a rounding tie)."""
    return (v.view(np.int32) + rng.integers(-4, 5, v.size).astype(np.int32)).view(F32)


def assert_codes(got: torch.Tensor, want: np.ndarray):
    assert got.dtype == torch.float32 and tuple(got.shape) == want.shape
    bad = got.numpy() != want.astype(np.float64)
    assert not bad.any(), f"{bad.sum()} of {bad.size} codes differ, e.g. {got.numpy()[bad][:5]} vs {want[bad][:5]}"


def assert_bits(got: torch.Tensor, want):
    """Same float32 bits (any NaN equals any NaN)."""
    want = np.asarray(want, np.float32)
    g = got.detach().numpy()
    assert g.dtype == np.float32 and g.shape == want.shape
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(g), nan)
    bad = (g.view(np.int32) != want.view(np.int32)) & ~nan
    assert not bad.any(), f"{bad.sum()} of {bad.size} differ, e.g. {g[bad][:5]} vs {want[bad][:5]}"


def assert_ints(got: torch.Tensor, want: np.ndarray):
    assert got.dtype == torch.float64
    assert np.array_equal(got.numpy(), want.astype(np.float64))


# ---------------------------------------------------------------------------------- rounding

def tie_values(rng, n=2000) -> np.ndarray:
    """Exact .5 ties, random values, NaN, infinities, signed zeros and huge values."""
    ties = np.arange(-400, 400) + F32(0.5)
    special = [np.nan, np.inf, -np.inf, 0.0, -0.0, 3e38, -3e38, 8388607.5, -8388607.5, 1e-45]
    return np.concatenate([ties, rng.normal(0, 150, n), special]).astype(F32)


@pytest.mark.parametrize("dt", DTYPES)
def test_clamp_round(dt):
    rng = np.random.default_rng(1)
    v = tie_values(rng)
    lo, hi = RANGE[dt]
    for zp in (lo, lo + 1, -3 if dt is np.int8 else 3, hi - 2, hi):
        assert_codes(ex.clamp_round(T(v), zp, lo, hi), clamp_then_round(v, np.int32(zp), dt))
    zps = np.array([odd_zp(rng, dt) for _ in range(4)])                  # per channel, as a tensor
    v4 = v[:4 * (v.size // 4)].reshape(4, -1)
    assert_codes(ex.clamp_round(T(v4), T(zps[:, None]), lo, hi), clamp_then_round(v4, zps[:, None], dt))


@pytest.mark.parametrize("dt", DTYPES)
def test_quantize_per_tensor_ties_and_division(dt):
    """Power-of-two scales put x / scale on exact .5 ties; for other scales x * (1 / scale) would
    round some near-tie quotients differently (checked, so the division is really tested)."""
    rng = np.random.default_rng(2)
    lo, hi = RANGE[dt]
    k = np.arange(-300, 300) + 0.5
    reciprocal_differs = 0
    for s in (F32(0.5), F32(2.0 ** -7), F32(1.0), F32(rng.uniform(0.001, 0.1)), F32(rng.uniform(0.1, 3))):
        zp = odd_zp(rng, dt)
        x = np.concatenate([(k * s).astype(F32), tie_values(rng) * s]).astype(F32)
        want = ref.quantize_linear(x, s, dt(zp))
        assert_codes(ex.quantize(T(x), T(s), zp, lo, hi), want)
        reciprocal_differs += int((clamp_then_round((x * (F32(1) / s)).astype(F32), zp, dt) != want).sum())
    assert reciprocal_differs > 0


@pytest.mark.parametrize("dt", DTYPES)
def test_quantize_dequantize_per_channel(dt):
    rng = np.random.default_rng(3)
    lo, hi = RANGE[dt]
    c = 5
    scale = np.array([0.5, 2.0 ** -6, *rng.uniform(0.001, 0.2, c - 2)], F32)
    zp = np.array([odd_zp(rng, dt) for _ in range(c)], dt)
    x = (rng.normal(0, 1, (2, c, 4, 6)) * scale[:, None, None] * 100).astype(F32)
    x[0, :, 0, :3] = (np.arange(3) + 0.5) * scale[:, None]                # ties
    s4, z4 = T(scale.reshape(1, c, 1, 1)), T(zp.reshape(1, c, 1, 1))
    q = ex.quantize(T(x), s4, z4, lo, hi)
    want = ref.quantize_linear(x, scale, zp, axis=1)
    assert_codes(q, want)
    assert {lo, hi} <= set(want.ravel().tolist())                         # saturates at both ends
    assert_bits(ex.dequantize(q, s4, z4), ref.dequantize_linear(want, scale, zp, axis=1))
    assert_bits(ex.dequantize(q[:, 1], T(scale[1]), int(zp[1])), ref.dequantize_linear(want[:, 1], scale[1], zp[1]))


def test_float_multiplier_two_roundings():
    rng = np.random.default_rng(4)
    x_s, y_s = F32(rng.uniform(0.001, 1)), F32(rng.uniform(0.001, 1))
    w_s = rng.uniform(1e-4, 1e-1, 20000).astype(F32)
    want = float_multiplier(x_s, w_s, y_s)
    assert_bits(ex.float_multiplier(T(x_s), T(w_s), T(y_s)), want)
    assert_bits(ex.float_multiplier(x_s, w_s[3], y_s), want[3])
    once = (np.float64(x_s) * w_s.astype(np.float64) / np.float64(y_s)).astype(F32)
    assert (once != want).any()                                           # the order matters


# ---------------------------------------------------------------------------------- accumulators

def test_wrap_int32_helper():
    v = np.array([0, 1, -1, 2**31 - 1, 2**31, -2**31, -2**31 - 1, 2**32, 2**32 + 5, -2**33 - 7, 3 * 2**40 + 11])
    assert_ints(ex._wrap_int32(torch.from_numpy(v.astype(np.float64))), wrap_int32(v))


def test_float64_to_float32_rounds_to_nearest_even():
    """requantize converts int32 values held in float64 to float32: must equal int32 -> float32."""
    base = np.array([2**24, 2**25, 2**26, 2**30, -2**24, -2**27, 2**31 - 256], np.int64)
    acc = (base[:, None] + np.arange(-9, 10)).ravel()
    acc = np.concatenate([acc, [2**31 - 1, -2**31]]).astype(np.int32)
    assert_bits(torch.from_numpy(acc.astype(np.float64)).to(torch.float32), acc.astype(F32))


CONV_CASES = [  # (C, O, k, stride, padding, dilation, groups, path)
    (4, 6, (3, 3), 1, (1, 1), 1, 1, torch.float32),
    (4, 6, (2, 3), (2, 1), (0, 1, 2, 1), (1, 2), 2, torch.float32),
    (6, 6, (3, 3), 2, (1, 0, 0, 2), 1, 6, torch.float32),
    (256, 4, (4, 4), 1, (1, 2), 1, 1, torch.float64),                    # K = 4096: float32 chunks
    (384, 6, (3, 3), 1, 1, 1, 3, torch.float64),                         # chunks within each group
]


@pytest.mark.parametrize("backend", ["conv2d", "gemm"])
@pytest.mark.parametrize("case", CONV_CASES, ids=[f"C{c[0]}k{c[2]}g{c[6]}" for c in CONV_CASES])
@pytest.mark.parametrize("xdt,wdt", [(x, w) for x in DTYPES for w in DTYPES])
def test_integer_conv2d(monkeypatch, xdt, wdt, case, backend):
    if backend == "gemm":                              # the non-CPU path, run on the CPU
        monkeypatch.setattr(ex, "_conv", ex._conv_gemm)
    c, o, k, stride, padding, dilation, groups, path = case
    rng = np.random.default_rng(5)
    x = codes(rng, xdt, (2, c, 7, 8))
    w = codes(rng, wdt, (o, c // groups) + k)
    bias = rng.integers(-2**31, 2**31, o).astype(np.int32)
    bias[0] = 2**31 - 1                                                   # pushes sums past int32
    x_zp = odd_zp(rng, xdt)
    pads = list(ex._pads4(padding))
    s2, d2 = ex._pair(stride), ex._pair(dilation)
    acc = ref.conv_integer(x, w, xdt(x_zp), None, pads=pads, strides=list(s2), dilations=list(d2), group=groups)
    want = wrap_int32(acc.astype(np.int64) + bias[:, None, None])
    one_pass = ex._float32_chunk(T(x) - x_zp, T(w), w[0, 0].size, w.shape[1]) == w.shape[1]
    assert one_pass == (path == torch.float32)        # else float32 chunks summed in float64
    b64 = torch.from_numpy(bias.astype(np.float64))                      # |bias| > 2^24: not float32
    got = ex.integer_conv2d(T(x), x_zp, T(w), b64, stride, padding, dilation, groups)
    assert_ints(got, want)
    assert_ints(ex.integer_conv2d(T(x), T(x_zp), T(w), None, stride, padding, dilation, groups), acc)


@pytest.mark.parametrize("k,path", [(48, torch.float32), (4096, torch.float64)])
@pytest.mark.parametrize("xdt,wdt", [(x, w) for x in DTYPES for w in DTYPES])
def test_integer_linear(xdt, wdt, k, path):
    rng = np.random.default_rng(6)
    x = codes(rng, xdt, (2, 3, k))
    w = codes(rng, wdt, (5, k))
    bias = rng.integers(-2**31, 2**31, 5).astype(np.int32)
    zp = odd_zp(rng, xdt)
    acc = ref.matmul_integer(x, w.T, xdt(zp), None)
    assert (ex._float32_chunk(T(x) - zp, T(w), 1, k) == k) == (path == torch.float32)
    assert_ints(ex.integer_linear(T(x), zp, T(w)), acc)
    assert_ints(ex.integer_linear(T(x), zp, T(w), torch.from_numpy(bias.astype(np.float64))),
                wrap_int32(acc.astype(np.int64) + bias))
    rows = x.reshape(6, k)
    zps = np.array([odd_zp(rng, xdt) for _ in range(6)], xdt)              # one zero point per row
    assert_ints(ex.integer_linear(T(rows), T(zps[:, None]), T(w)), ref.matmul_integer(rows, w.T, zps, None))


def test_int32_wraparound():
    """255 * -128 * 2^17 = -4278190080 wraps to 2^24, as int32 accumulation does."""
    k = 1 << 17
    x = np.full((2, k), 255, np.uint8)
    x[1, ::3] = 0
    w = np.full((3, k), -128, np.int8)
    w[2, ::2] = 127
    want = ref.matmul_integer(x, w.T, np.uint8(0), None)
    got = ex.integer_linear(T(x), 0, T(w))
    assert_ints(got, want)
    assert got[0, 0] == 2**24
    xc = np.full((1, 2048, 8, 8), 255, np.uint8)                          # conv: K = 2048 * 64 = 2^17
    wc = np.full((2, 2048, 8, 8), -128, np.int8)
    wc[1] = 127
    want = ref.conv_integer(xc, wc, np.uint8(0), None)
    got = ex.integer_conv2d(T(xc), 0, T(wc), None)
    assert_ints(got, want)
    assert got[0, 0, 0, 0] == 2**24


# ---------------------------------------------------------------------------------- requantization

@pytest.mark.parametrize("dt", DTYPES)
def test_requantize_ties_saturation_conversion(dt):
    rng = np.random.default_rng(7)
    lo, hi = RANGE[dt]
    acc = np.concatenate([np.arange(-600, 600), rng.integers(-2**31, 2**31, 3000),
                          2**24 + np.arange(-7, 8), -2**25 + np.arange(-7, 8), [2**31 - 1, -2**31]])
    acc = acc[: 8 * (acc.size // 8)].astype(np.int32).reshape(-1, 8)
    mult = np.array([0.5, 0.25, 2.0 ** -10, 2.0 ** -24, 1.0, *rng.uniform(1e-6, 0.3, 3)], F32)
    acc[-1, 4] = 2**24 + 1                       # converts to 2^24 (tie to even), then times 1.0
    for zp in (lo, odd_zp(rng, dt), hi):
        want = ref.requantize_float(acc, mult, dt(zp), dt)
        a64 = torch.from_numpy(acc.astype(np.float64))
        assert_codes(ex.requantize(a64, T(mult), zp, lo, hi), want)
        assert_codes(ex.requantize(a64, T(mult), zp, lo, hi, lo + 7, hi - 5), np.clip(want, lo + 7, hi - 5))
        assert {lo, hi} <= set(want.ravel().tolist())
    assert ex.requantize(torch.tensor([2.0**24 + 1]), T(1.0), 0, -2**31, 2**31)[0] == 2**24


def test_requantize_product_rounds_in_float32():
    """multiplier = float32((k + 0.5) / acc) puts float32(acc) * multiplier on (or next to) a tie:
    the float32 product, not the exact one, decides (they differ on many of these)."""
    rng = np.random.default_rng(20)
    acc = ((rng.integers(1000, 2**30, 4000) | 1) * rng.choice([-1, 1], 4000)).astype(np.int32)
    mult = np.abs((rng.integers(-100, 100, 4000) + 0.5) / acc).astype(F32)
    want = ref.requantize_float(acc, mult, np.int8(0), np.int8)
    assert_codes(ex.requantize(torch.from_numpy(acc.astype(np.float64)), T(mult), 0, -128, 127), want)
    exact = clamp_then_round((acc * mult.astype(np.float64)).astype(F32), np.int32(0), np.int8)
    assert (exact != want).sum() > 100


@pytest.mark.parametrize("activation", [None, "relu", "relu6", ("clip", -0.7, 2.5)])
@pytest.mark.parametrize("xdt,wdt,ydt", [(np.uint8, np.uint8, np.uint8), (np.uint8, np.int8, np.uint8),
                                         (np.int8, np.int8, np.int8), (np.uint8, np.int8, np.int8)])
@pytest.mark.parametrize("pow2", [False, True])
def test_qlinear_conv_and_matmul(xdt, wdt, ydt, activation, pow2):
    """integer_conv2d / integer_linear + float_multiplier + requantize = qlinear_conv / qlinear_matmul,
    per-channel weight scales; power-of-two scales make ties (the requantize test saturates)."""
    rng = np.random.default_rng(8)
    o = 6
    x = codes(rng, xdt, (2, 5, 6, 7))
    w = codes(rng, wdt, (o, 5, 3, 3))
    bias = rng.integers(-3000, 3000, o).astype(np.int32)
    x_zp, y_zp = odd_zp(rng, xdt), odd_zp(rng, ydt)
    x_s, w_s = F32(0.02), rng.uniform(0.002, 0.01, o).astype(F32)
    if pow2:
        x_s, w_s = F32(2.0 ** -4), (2.0 ** -rng.integers(5, 9, o)).astype(F32)
    acc = ref.conv_integer(x, w, xdt(x_zp), None, pads=[1, 0, 1, 2]).astype(np.int64) + bias[:, None, None]
    span = float(x_s) * float(w_s.max()) * float(acc.max() - acc.min()) / 200   # spreads over the codes
    y_s = F32(2.0 ** np.round(np.log2(span))) if pow2 else F32(span)
    qmin, qmax = RANGE[ydt]
    lo, hi = activation_range(activation, y_s, y_zp, ydt)
    want = ref.qlinear_conv(x, x_s, xdt(x_zp), w, w_s, None, y_s, ydt(y_zp), bias, pads=[1, 0, 1, 2],
                            activation=activation)
    acc = ex.integer_conv2d(T(x), x_zp, T(w), T(bias), 1, (1, 0, 1, 2))
    mult = ex.float_multiplier(T(x_s), T(w_s), T(y_s)).reshape(1, o, 1, 1)
    assert_codes(ex.requantize(acc, mult, y_zp, qmin, qmax, lo, hi), want)
    if activation is None:
        assert len(np.unique(want)) > 20
    a = x.reshape(-1, 21)[:, :9]
    bm = codes(rng, wdt, (9, o))
    want = ref.qlinear_matmul(a, x_s, xdt(x_zp), bm, w_s, wdt(0), y_s, ydt(y_zp))
    acc = ex.integer_linear(T(a), x_zp, T(bm.T))
    assert_codes(ex.requantize(acc, ex.float_multiplier(x_s, w_s, y_s), y_zp, qmin, qmax), want)


# ---------------------------------------------------------------------------------- fma32

def exact_f32(v: Fraction) -> float:
    """Round an exact rational to the nearest float32 (half to even); normal range only."""
    if v == 0:
        return 0.0
    e = abs(v.numerator).bit_length() - abs(v.denominator).bit_length()
    while abs(v) >= Fraction(2) ** (e + 1):
        e += 1
    while abs(v) < Fraction(2) ** e:
        e -= 1
    ulp = Fraction(2) ** (e - 23)
    return float(round(v / ulp) * ulp)          # round(): half to even on Fractions


def test_fma32_random_million():
    rng = np.random.default_rng(9)
    n = 1_000_000
    sign = lambda: rng.choice([-1.0, 1.0], n)  # noqa: E731
    a = (sign() * rng.uniform(1, 2, n) * 2.0 ** rng.integers(-40, 40, n)).astype(F32)
    b = (sign() * rng.uniform(1, 2, n) * 2.0 ** rng.integers(-40, 40, n)).astype(F32)
    p = a.astype(np.float64) * b
    third = n // 3
    c = np.empty(n, F32)
    c[:third] = sign()[:third] * np.abs(p[:third]) * 2.0 ** rng.integers(-60, 10, third)   # any relative size
    c[third:2 * third] = -(p[third:2 * third] * (1 + rng.integers(-64, 64, third) * 2.0 ** -24))  # cancellation
    c[2 * third:] = (sign() * rng.uniform(1, 2, n) * 2.0 ** rng.integers(-80, 80, n))[2 * third:]
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 3.4e38, -3.4e38, 1.0, 2.0 ** -70], F32)
    ga, gb, gc = (g.ravel() for g in np.meshgrid(special, special, special))
    a, b, c = np.concatenate([a, ga]), np.concatenate([b, gb]), np.concatenate([c, gc])
    want = np_fma32(a, b, c)
    assert_bits(ex.fma32(T(a), T(b), T(c)), want)
    with np.errstate(all="ignore"):
        unfused = ((a[:n] * b[:n]).astype(F32) + c[:n]).astype(F32)
    assert (unfused != want[:n]).sum() > n // 10         # one rounding, not two (double rounding: next test)


def test_fma32_exact_ties():
    """a * b with 25 significant bits (half an ulp below): a tie at c = 0 rounds to even; a tiny c
    lost by a float64 sum decides it. Checked against exact rational arithmetic."""
    rng = np.random.default_rng(10)
    ia = rng.integers(2**11, 2**12, 3000) * 2 + 1
    ib = rng.integers(2**11, 2**12, 3000) * 2 + 1
    a = np.ldexp(ia, rng.integers(-20, 20, 3000) - 12).astype(F32)
    b = np.ldexp(ib, rng.integers(-20, 20, 3000) - 12).astype(F32)
    p = a.astype(np.float64) * b
    c = np.where(np.arange(3000) % 3 == 0, 0.0, np.abs(p) * 2.0 ** -rng.integers(40, 80, 3000)
                 * np.where(np.arange(3000) % 3 == 1, 1.0, -1.0)).astype(F32)
    c[0] = 0.0
    a[:2], b[:2], c[:2] = F32(1 + 2**-12), F32(1 + 2**-12), [0.0, 2.0**-80]
    want = np.array([exact_f32(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z)))
                     for x, y, z in zip(a, b, c)], F32)
    assert want[0] == F32(1 + 2**-11) and want[1] == F32(1 + 2**-11 + 2**-23)
    assert_bits(ex.fma32(T(a), T(b), T(c)), want)
    assert_bits(T(np_fma32(a, b, c)), want)
    ties = (ia * ib).astype(object)
    assert sum(int(t).bit_length() == 25 for t in ties) > 100         # real ties at c = 0
    assert ((p + c).astype(F32) != want).sum() > 100                  # double rounding would fail


# ---------------------------------------------------------------------------------- elementwise

BINARY_SHAPES = [((3, 4, 5), (3, 4, 5)), ((3, 4, 5), (5,)), ((5,), (3, 4, 5)), ((3, 1, 5), (3, 4, 1)),
                 ((3, 4, 1), (3, 1, 5)), ((), (4, 5)), ((4, 5), ()), ((4, 1), (1,)), ((16, 1), (1, 16))]


def binary_trials(rng, dt):
    """(a_s, b_s, c_s, zps): power-of-two scales (ties) and random ones."""
    for trial in range(4):
        if trial % 2:
            a_s, b_s, c_s = F32(0.5), F32(0.25), F32(2.0 ** -int(rng.integers(0, 4)))
        else:
            a_s, b_s = F32(rng.uniform(0.01, 1)), F32(rng.uniform(0.01, 1))
            c_s = F32(rng.uniform(0.3, 1.5) * max(a_s, b_s))
        yield a_s, b_s, c_s, [odd_zp(rng, dt) for _ in range(3)]


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("sa,sb", BINARY_SHAPES, ids=[f"{a}x{b}" for a, b in BINARY_SHAPES])
def test_qlinear_add_broadcast(dt, sa, sb):
    rng = np.random.default_rng(11)
    lo, hi = RANGE[dt]
    a, b = codes(rng, dt, sa), codes(rng, dt, sb)
    for a_s, b_s, c_s, (za, zb, zc) in binary_trials(rng, dt):
        want = ref.qlinear_add(a, a_s, dt(za), b, b_s, dt(zb), c_s, dt(zc))
        got = ex.qlinear_add(T(a), T(a_s), za, T(b), T(b_s), zb, T(c_s), zc, lo, hi, qlinear_add_b_first(sa, sb))
        assert_codes(got, want)


def test_qlinear_add_operand_order():
    """Every byte pair with a broadcast along the innermost axis (b first) and not: the two orders
    differ on some outputs, and each matches the reference for its shapes."""
    rng = np.random.default_rng(12)
    vals = np.arange(256, dtype=np.uint8)
    col = vals.reshape(256, 1)
    full_a, full_b = np.repeat(vals, 256).reshape(256, 256), np.tile(vals, (256, 1))
    assert qlinear_add_b_first(col.shape, full_b.shape) and not qlinear_add_b_first(full_a.shape, full_b.shape)
    differ = 0
    for _ in range(4):
        a_s, b_s = F32(rng.uniform(0.01, 1)), F32(rng.uniform(0.01, 1))
        c_s = F32(rng.uniform(0.3, 1.5) * max(a_s, b_s))
        za, zb, zc = (int(v) for v in rng.integers(0, 256, 3))
        args = (T(a_s), za, T(full_b), T(b_s), zb, T(c_s), zc, 0, 255)
        b_first = ex.qlinear_add(T(col), *args, True)
        a_first = ex.qlinear_add(T(full_a), *args, False)
        assert_codes(b_first, ref.qlinear_add(col, a_s, np.uint8(za), full_b, b_s, np.uint8(zb), c_s, np.uint8(zc)))
        assert_codes(a_first, ref.qlinear_add(full_a, a_s, np.uint8(za), full_b, b_s, np.uint8(zb), c_s, np.uint8(zc)))
        differ += int((b_first != a_first).sum())
    assert differ > 0


@pytest.mark.parametrize("dt", DTYPES)
def test_qlinear_mul_every_byte_pair(dt):
    """Power-of-two scales (ratio 2^-3..2^-5: exact .5 ties, odd c_zp) and random ones; the
    products span about 40 times the code range, so both ends saturate."""
    rng = np.random.default_rng(13)
    lo, hi = RANGE[dt]
    a = np.arange(256, dtype=np.uint8).view(dt).reshape(256, 1)
    b = a.reshape(1, 256)
    seen = set()
    for trial in range(4):
        a_s, b_s = F32(0.5), F32(0.25)
        c_s = F32(2.0 ** int(rng.integers(0, 3)))
        if trial % 2:
            a_s, b_s = F32(rng.uniform(0.01, 1)), F32(rng.uniform(0.01, 1))
            c_s = F32(a_s * b_s * rng.uniform(20, 60))
        za, zb, zc = (odd_zp(rng, dt) for _ in range(3))
        want = ref.qlinear_mul(a, a_s, dt(za), b, b_s, dt(zb), c_s, dt(zc))
        assert_codes(ex.qlinear_mul(T(a), T(a_s), za, T(b), T(b_s), zb, T(c_s), zc, lo, hi), want)
        seen |= set(want.ravel().tolist())
    assert {lo, hi} <= seen


def test_qlinear_mul_ratio_rounding_order():
    """ratio = float32(float32(a_s * b_s) / c_s): scales searched so that p = 7 * 11 lands next to a
    tie where a_s * float32(b_s / c_s) would round to another code."""
    rng = np.random.default_rng(21)
    a_s, b_s = (rng.uniform(0.01, 1, 100000).astype(F32) for _ in range(2))
    ab = (a_s * b_s).astype(F32)
    c_s = nudge((ab / F32(50.5 / 77)).astype(F32), rng)
    code = lambda r: np.rint((F32(77) * r).astype(F32))  # noqa: E731
    hits = np.flatnonzero(code((ab / c_s).astype(F32)) != code((a_s * (b_s / c_s).astype(F32)).astype(F32)))
    assert hits.size > 100
    a, b = np.array([7, 9], np.uint8), np.array([11, 4], np.uint8)
    for i in hits[:20]:
        want = ref.qlinear_mul(a, a_s[i], np.uint8(0), b, b_s[i], np.uint8(0), c_s[i], np.uint8(0))
        assert_codes(ex.qlinear_mul(T(a), T(a_s[i]), 0, T(b), T(b_s[i]), 0, T(c_s[i]), 0, 0, 255), want)


@pytest.mark.parametrize("xdt,ydt", [(x, y) for x in DTYPES for y in DTYPES])
def test_lookup(xdt, ydt):
    rng = np.random.default_rng(14)
    q = np.arange(256, dtype=np.uint8).view(xdt)[rng.permutation(256)].reshape(4, 64)
    qmin = RANGE[xdt][0]
    for fn in (np.tanh, lambda d: np.where(d >= 0, d, F32(0.1) * d)):
        table = make_lookup_table(fn, F32(0.05), xdt(odd_zp(rng, xdt)), F32(0.01), ydt(odd_zp(rng, ydt)), xdt, ydt)
        want = ref.lookup_table(q, table)
        assert_codes(ex.lookup(T(q), table, qmin), want)
        assert_codes(ex.lookup(T(q), torch.from_numpy(table.astype(np.int64)), qmin), want)


# ---------------------------------------------------------------------------------- pools

@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 4, 1, 1), (2, 2, 16, 16)])
def test_global_avg_pool(dt, shape):
    rng = np.random.default_rng(15)
    lo, hi = RANGE[dt]
    x = codes(rng, dt, shape)
    for x_s, y_s in ((F32(0.1), F32(0.03)), (F32(0.5), F32(2.0 ** -3)), (F32(0.02), F32(1e-4))):
        x_zp, y_zp = odd_zp(rng, dt), odd_zp(rng, dt)
        want = ref.qlinear_global_average_pool(x, x_s, dt(x_zp), y_s, dt(y_zp))
        assert_codes(ex.global_avg_pool(T(x), T(x_s), x_zp, T(y_s), y_zp, lo, hi), want)


def test_global_avg_pool_sum_wraps_like_int32():
    x = np.full((1, 1, 4096, 2057), 255, np.uint8)                    # 255 * S > 2^31
    want = ref.qlinear_global_average_pool(x, F32(1.0), np.uint8(0), F32(1.0), np.uint8(0))
    assert_codes(ex.global_avg_pool(T(x), T(1.0), 0, T(1.0), 0, 0, 255), want)
    with pytest.raises(ValueError):
        ex.global_avg_pool(torch.zeros(1).expand(1, 1, 4096, 4096), T(1.0), 0, T(1.0), 0, 0, 255)


def test_global_avg_pool_scale_rounding_order():
    """scale = float32(x_s / float32(y_s * S)): scales searched so that acc = 1001 (S = 9) lands
    next to a tie where float32(x_s / y_s) / S would round to another code."""
    rng = np.random.default_rng(22)
    y_s = rng.uniform(0.01, 1, 100000).astype(F32)
    x_s = nudge((F32(50.5 / 1001) * y_s * F32(9)).astype(F32), rng)
    code = lambda s: np.rint((F32(1001) * s).astype(F32))  # noqa: E731
    hits = np.flatnonzero(code((x_s / (y_s * F32(9)).astype(F32)).astype(F32))
                          != code(((x_s / y_s).astype(F32) / F32(9)).astype(F32)))
    assert hits.size > 100
    x = np.array([255, 255, 255, 236, 0, 0, 0, 0, 0], np.uint8).reshape(1, 1, 3, 3)   # sums to 1001
    for i in hits[:20]:
        want = ref.qlinear_global_average_pool(x, x_s[i], np.uint8(0), y_s[i], np.uint8(0))
        assert_codes(ex.global_avg_pool(T(x), T(x_s[i]), 0, T(y_s[i]), 0, 0, 255), want)


POOL_CASES = [  # kernel, stride, pads [t, l, b, r], ceil_mode
    ((3, 3), 1, [1, 1, 1, 1], False),
    ((2, 3), (2, 2), [0, 1, 1, 0], True),
    ((3, 2), (3, 2), None, True),                 # ceil-mode windows run past the end
    ((2, 2), 1, [2, 2, 2, 2], False),             # corner windows hold no input tap
    ((2, 2), (2, 2), None, False),                # count 4: power-of-two scales tie
    ((7, 8), None, None, False),                  # whole image: the global formula
    ((7, 8), None, [1, 0, 0, 0], False),          # whole image but padded: the float formula
]


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("count_include_pad", [False, True])
@pytest.mark.parametrize("case", POOL_CASES, ids=[str(i) for i in range(len(POOL_CASES))])
def test_avg_pool2d(dt, case, count_include_pad):
    kernel, stride, pads, ceil_mode = case
    rng = np.random.default_rng(16)
    lo, hi = RANGE[dt]
    x = codes(rng, dt, (2, 3, 7, 8))
    strides = None if stride is None else list(ex._pair(stride))
    for x_s, y_s in ((F32(0.1), F32(0.03)), (F32(0.5), F32(2.0 ** -1)), (F32(0.02), F32(2e-4))):
        x_zp, y_zp = odd_zp(rng, dt), odd_zp(rng, dt)
        with np.errstate(invalid="ignore"):           # windows without input taps: 0 / 0 -> qmin
            want = ref.qlinear_average_pool(x, x_s, dt(x_zp), y_s, dt(y_zp), kernel_shape=list(kernel),
                                            strides=strides, pads=pads, ceil_mode=int(ceil_mode),
                                            count_include_pad=int(count_include_pad))
        got = ex.avg_pool2d(T(x), T(x_s), x_zp, T(y_s), y_zp, lo, hi, kernel, stride, pads, ceil_mode,
                            count_include_pad)
        assert_codes(got, want)


# ---------------------------------------------------------------------------------- dynamic

def dynamic_rows(rng, k) -> np.ndarray:
    rows = [rng.normal(0, 3, k), np.zeros(k), rng.uniform(0.5, 2, k), -rng.uniform(0.5, 2, k),
            np.r_[1e-45, np.zeros(k - 1)], np.r_[-3e38, 3e38, np.zeros(k - 2)], np.r_[-0.0, np.zeros(k - 1)],
            rng.normal(0, 1e-3, k), (np.arange(k) - 100) * 0.5]
    return np.array(rows, F32)


@pytest.mark.parametrize("k", [0, 300])
def test_dynamic_quantize_rows(k):
    x = dynamic_rows(np.random.default_rng(17), k) if k else np.zeros((3, 0), F32)
    q, s, z = ex.dynamic_quantize_rows(T(x))
    wq, ws, wz = ref.dynamic_quantize_rows(x)
    assert_codes(q, wq)
    assert_bits(s, ws)
    assert_codes(z, wz)
    if k:
        assert ws[4] == 0 and wz[4] == 255 and np.isinf(ws[5])        # underflow and overflow rows
    with pytest.raises(ValueError):
        ex.dynamic_quantize_rows(T([[1.0, np.nan]]))


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("k,path", [(40, torch.float32), (4096, torch.float64)])
def test_dynamic_linear(k, path, activation):
    rng = np.random.default_rng(18)
    x = (rng.normal(0, 1, (2, 3, k)) * rng.uniform(0.01, 10, (2, 3, 1))).astype(F32)
    x[1, 2] = 0.0
    x[0, 0, :] = 0.0
    x[0, 0, 0] = 1e-45                  # scale underflows to 0: y = acc * 0 = -0.0 for acc < 0
    x[0, 1, :2] = -3e38, 3e38           # scale inf: y = 0 * inf = NaN (ReLU: NaN -> 0)
    n = 7
    w = rng.integers(-127, 128, (n, k)).astype(np.int8)
    w_s = rng.uniform(1e-3, 1e-1, n).astype(F32)
    bias = rng.normal(0, 1, n).astype(F32)
    xs = T(ref.dynamic_quantize_rows(x.reshape(6, k))[0]) - 128
    assert (ex._float32_chunk(xs, T(w), 1, k) == k) == (path == torch.float32)
    for ws, b in ((w_s, bias), (w_s[0], None)):
        with np.errstate(invalid="ignore"):                             # 0 * inf
            want = ref.quantized_linear(x, w, ws, b, activation)
        got = ex.dynamic_linear(T(x), T(w), T(ws), None if b is None else T(b), activation)
        assert_bits(got, want)
    with pytest.raises(ValueError):
        ex.dynamic_linear(T(x), T(w), T(w_s), None, "gelu")
