"""The quantize kernels' quotient x / scale (kernels/elementwise.h): on the AVX2 and AVX-512 units a
multiply and two Markstein fma corrections instead of a divide, which must round exactly as the
IEEE division NumPy does (np.float32(x) / np.float32(scale)), on every path this CPU runs.
docs/numerics.md, "The quotient x / scale", has the proof; tools/check_divide_by_scale.cpp the
exhaustive checks run once."""
import numpy as np
import pytest

import eightbit as eb
from eightbit import _core, reference

F32 = np.float32
ALL_MANTISSAS = np.arange(1 << 23, dtype=np.uint32)


def _bits(u):
    return np.asarray(u, np.uint32).view(np.float32)


def _same(got, want, what):
    bad = np.flatnonzero(got.view(np.uint32) != want.view(np.uint32))
    assert bad.size == 0, f"{what}: {bad.size} quotients differ, first at {bad[:5]}"


def _check(x, s, what):
    x = np.ascontiguousarray(x, np.float32)
    s = np.ascontiguousarray(np.broadcast_to(np.asarray(s, np.float32), x.shape))
    with np.errstate(all="ignore"):
        want = x / s
    _same(_core.divide_by_scale(x, s), want, what)


def _scales(exponent):
    """Every scale significand, times 2^exponent."""
    return _bits(((127 + exponent) << 23) | ALL_MANTISSAS)


HARD_X_SIGNIFICANDS = np.uint32([0, (1 << 23) - 1, 1, 1 << 22, 0x2AAAAA, 0x555555, 0x7FFFFE, 0x000003])


@pytest.mark.parametrize("exponent,stride", [(-7, 1), (0, 1), (-126, 61), (124, 61)])
def test_every_scale_significand_against_hard_x(isa, exponent, stride):
    """All 2^23 significands of the scale in one binade (every 61st at the domain's ends) against x
    whose significand is 1, 2 - ulp, 1 + ulp, 1.5, ... (rotating over the scales), at quotient
    exponents near 0 and far from it, both signs."""
    s = _scales(exponent)[::stride]
    idx = np.arange(s.size)
    for rot in range(3):
        xm = HARD_X_SIGNIFICANDS[(idx + rot) % HARD_X_SIGNIFICANDS.size]
        xe = np.clip(exponent + np.int64([0, 9, -30, 1, -1])[(idx // 7 + rot) % 5], -126, 127)
        x = _bits(((127 + xe).astype(np.uint32) << 23) | xm)
        x[idx % 2 == 1] *= -1
        _check(x, s, f"hard x, scales 2^{exponent}, rotation {rot}")


def test_every_scale_significand_near_rounding_ties(isa):
    """x with x / scale within a few ulps of a midpoint between two floats (the hard cases of the
    corrections), for every scale significand: x = RN(scale * m) and its neighbours."""
    s = _scales(-6)
    rng = np.random.default_rng(7)
    for _ in range(1):
        # m: a midpoint at 25 significant bits, at a random exponent around the quantizer's range
        m = (((rng.integers(1 << 23, 1 << 24, s.size) << 1) | 1).astype(np.float64)
             * np.exp2(rng.integers(-30, 8, s.size) - 24.0))
        x = (s.astype(np.float64) * m).astype(np.float32)
        for step in (-1, 0, 1):
            xs = x.view(np.uint32).astype(np.int64) + step
            _check(xs.astype(np.uint32).view(np.float32), s, f"near ties, step {step}")


def test_random_pairs(isa):
    rng = np.random.default_rng(3)
    n = 1 << 20
    for _ in range(2):
        x = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
        s = (rng.integers(0, 0xFF << 23, n, dtype=np.uint64) + 1).astype(np.uint32).view(np.float32)  # > 0
        _check(x[np.isfinite(x)], s[np.isfinite(x)], "random finite bit patterns")
        # The quantizer's regime: activations against scales range / 255.
        x = (rng.standard_normal(n) * np.exp2(rng.integers(-20, 20, n))).astype(np.float32)
        s = (np.abs(rng.standard_normal(n)) * np.exp2(rng.integers(-20, 10, n)) + 1e-30).astype(np.float32)
        _check(x, s, "normal values")


def test_edges(isa):
    tiny, big = np.finfo(F32).tiny, np.finfo(F32).max
    sub = _bits([1, 2, 3, 0x7FFFFF, 0x400000])
    xs = np.concatenate([
        F32([0.0, -0.0, 1.0, -1.0, tiny, -tiny, big, -big, np.nextafter(tiny, F32(0)), 2.0 ** -100,
             np.nextafter(F32(2.0 ** -100), F32(0)), 2.0 ** 100, 3e38, 1e-38, 1e-40, 1e-45, 255.0, 127.5]),
        sub, -sub,
    ])
    ss = np.concatenate([
        F32([tiny, np.nextafter(tiny, F32(1)), 2.0 ** -125, 2.0 ** -100, 2.0 ** -90,
             np.nextafter(F32(2.0 ** -90), F32(0)), 1e-30, 1e-10, 3e-3, 1.0, np.nextafter(F32(2), F32(0)), 1.5, 8.0, 8.000001, 1e10, 2.0 ** 124,
             np.nextafter(F32(2.0 ** 124), F32(0)), np.nextafter(F32(2.0 ** 124), F32(np.inf)), 2.0 ** 126, big]),
        sub,
    ])
    x, s = np.meshgrid(xs, ss)
    _check(x.ravel(), s.ravel(), "edges")


def test_special_values_keep_the_division(isa):
    x = F32([np.nan, np.inf, -np.inf, 1.0, -0.0])
    for s in F32([1e-3, 1.0, 1e30]):
        with np.errstate(all="ignore"):
            want = x / s
        got = _core.divide_by_scale(x, np.full(5, s, F32))
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        _same(got[~np.isnan(want)], want[~np.isnan(want)], "specials")


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_quantize_linear_per_axis_over_every_scale_significand(isa, dtype):
    """QuantizeLinear (the checked kernel, blocks of 256 with a magnitude check) with one channel per
    scale significand (every 8th), x on and one ulp beside rounding ties of x / scale."""
    s = _scales(-7)[::8].copy()
    rng = np.random.default_rng(5)
    k = rng.integers(-140, 140, (4, s.size)).astype(np.float64) + 0.5
    x = (k * s).astype(np.float32)
    x = np.stack([x, np.nextafter(x, F32(np.inf)), np.nextafter(x, F32(-np.inf))], axis=2).reshape(4, s.size, 3)
    lo, hi = (0, 256) if dtype == np.uint8 else (-128, 128)
    zp = rng.integers(lo, hi, s.size).astype(dtype)
    got = eb.ops.quantize_linear(x, s, zp, axis=1)
    want = reference.quantize_linear(x, s, zp, axis=1)
    np.testing.assert_array_equal(got, want)


def test_quantize_linear_blocks_with_values_outside_the_band(isa):
    """A huge value, an infinity or a NaN sends only its block of 256 to the division."""
    rng = np.random.default_rng(6)
    for special in (np.inf, -np.inf, np.nan, 3e38, -3e38, 1e-45, 1e-39):
        x = (rng.standard_normal(1000) * 40).astype(np.float32)
        x[rng.integers(0, 1000, 3)] = special
        for scale in (F32(0.3), F32(1e-20), F32(2.0 ** -91), F32(1e30)):
            want = reference.quantize_linear(x, scale, np.uint8(128))
            np.testing.assert_array_equal(eb.ops.quantize_linear(x, scale, np.uint8(128)), want)


def test_dynamic_rows_at_every_magnitude(isa):
    """DynamicQuantizeLinear per row (the bounded kernel: no check) with rows from 1e-38 to 1e37,
    rows holding subnormals, zeros and -0, and scales that leave the FMA domain."""
    rng = np.random.default_rng(8)
    rows = []
    for e in range(-128, 125, 3):
        r = (rng.standard_normal(67) * np.exp2(e)).astype(np.float32)
        r[rng.integers(0, 67, 4)] = rng.choice(F32([0.0, -0.0, 1e-45, -3e-42, 1e-39]), 4)
        rows.append(r)
    x = np.stack(rows)
    for got, want in zip(_core.dynamic_quantize_rows(x), reference.dynamic_quantize_rows(x)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    for got, want in zip(eb.ops.dynamic_quantize_linear(x), reference.dynamic_quantize_linear(x)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_dynamic_range_every_length_and_position(isa):
    """The range kernels (four accumulators, masked or scalar tails): every length to 200, values
    that set the minimum or the maximum at every position, -0 and NaN / infinity anywhere."""
    rng = np.random.default_rng(9)
    for n in range(1, 201):
        x = rng.standard_normal(n).astype(np.float32)
        for pos in {0, n // 3, n - 1, min(n - 1, 63), min(n - 1, 64)}:
            for v in (F32(-50.0), F32(50.0)):
                y = x.copy()
                y[pos] = v
                for got, want in zip(eb.ops.dynamic_quantize_linear(y), reference.dynamic_quantize_linear(y)):
                    np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=f"n={n} pos={pos}")
            for bad in (np.nan, np.inf, -np.inf):
                y = x.copy()
                y[pos] = bad
                with pytest.raises(ValueError):
                    eb.ops.dynamic_quantize_linear(y)
    for row in (F32([-0.0] * 70), F32([-1.0] * 70), F32([2.0] * 70), F32([0.0, -0.0] * 40)):
        for got, want in zip(eb.ops.dynamic_quantize_linear(row), reference.dynamic_quantize_linear(row)):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
