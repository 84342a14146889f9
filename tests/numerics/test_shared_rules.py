"""The public build-time rules of eightbit.numerics (requant.py, clamp.py, tables.py, broadcast.py)
against oracles computed here (tests/numerics/_numerics_oracles.py: Fractions and Python integers).
eightbit.reference, eightbit.ops, the lowering and the exporter take these rules from here; the
tests of those layers check that their results agree bit for bit."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from eightbit.numerics import (activation_range, make_lookup_table, qlinear_add_b_first, requant_multipliers,
                               requantize_table)

import _numerics_oracles as orc

F32 = np.float32
RANGES = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}


# ---- requant.py ----------------------------------------------------------------------------------

def test_requant_multipliers_float_is_ort_float32_order():
    rng = np.random.default_rng(0)
    for _ in range(200):
        x, y = F32(rng.uniform(1e-3, 1)), F32(rng.uniform(1e-3, 1))
        w = rng.uniform(1e-4, 1e-1, 5).astype(F32)
        got = requant_multipliers(x, w, y, "float")
        assert got.dtype == np.float32 and got.shape == (5,)
        for c in range(5):
            want = orc.f32_div(orc.f32(orc.f32(x) * orc.f32(w[c])), y)    # float32(float32(x * w) / y)
            assert Fraction(float(got[c])) == want


def test_requant_multipliers_fixed_is_tflite_on_the_float64_real():
    rng = np.random.default_rng(1)
    for _ in range(200):
        x, y = F32(rng.uniform(1e-3, 1)), F32(rng.uniform(1e-3, 1))
        w = rng.uniform(1e-4, 1e-1, 4).astype(F32)
        m0, shift = requant_multipliers(x, w, y, "fixed")
        assert m0.dtype == np.int32 and shift.dtype == np.int32 and m0.shape == shift.shape == (4,)
        for c in range(4):
            real = float(x) * float(w[c]) / float(y)                            # float64, x * w first
            assert (int(m0[c]), int(shift[c])) == orc.quantize_multiplier(real)


def test_requant_multipliers_keep_a_scalar_scalar_and_check_their_arguments():
    assert requant_multipliers(F32(0.5), F32(0.25), F32(0.125), "float").shape == ()
    with pytest.raises(ValueError, match="requant"):
        requant_multipliers(F32(1), F32(1), F32(1), "double")
    with pytest.raises(ValueError, match="w_scale must be finite and > 0"):
        requant_multipliers(F32(1), np.array([1, 0], F32), F32(1))
    with pytest.raises(ValueError, match="x_scale and y_scale must be scalars"):
        requant_multipliers(np.ones(2, F32), F32(1), F32(1))


# ---- clamp.py ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_activation_range_by_the_oracle(dtype):
    qmin, qmax = RANGES[np.dtype(dtype)]
    zp = 37 if dtype == np.uint8 else -90
    for s in (0.0523, 0.07, 6 / 13.5, 6 / 12.5, 0.1):
        q = lambda v: orc.quantize_value(v, s, zp, qmin, qmax)   # noqa: E731
        assert activation_range(None, F32(s), dtype(zp), dtype) == (qmin, qmax)
        assert activation_range("relu", F32(s), dtype(zp), dtype) == (max(qmin, zp), qmax)
        assert activation_range("relu6", F32(s), dtype(zp), dtype) == (max(qmin, zp), q(6.0))
        for lo, hi in ((-0.6, 5.05), (0.3, 4.44), (-2.49, -0.6)):
            assert activation_range(("clip", lo, hi), F32(s), np.array(zp, dtype), dtype) == (q(lo), q(hi))
            # bounds as float32 scalars or 0-d arrays mean the same
            assert activation_range(("clip", F32(lo), np.array(hi)), F32(s), dtype(zp), dtype) == \
                (q(float(F32(lo))), q(hi))


@pytest.mark.parametrize("activation", [("clip", float("nan"), 1.0), ("clip", 0.0, float("inf")), ("clip", 1.0, 0.0),
                                        ("clip", True, 2.0), ("clip", "0", 1.0), ("clip", None, 1.0)])
def test_activation_range_refuses_bounds_without_an_int8_meaning(activation):
    with pytest.raises(ValueError, match="activation: clip bounds must be finite with lo <= hi"):
        activation_range(activation, F32(0.1), np.uint8(3), np.uint8)


def test_activation_range_refuses_unknown_activations():
    for activation in ("gelu", ("clip", 0.0), ["clip", 0.0, 1.0]):
        with pytest.raises(ValueError, match="activation: expected None, 'relu', 'relu6'"):
            activation_range(activation, F32(0.1), np.uint8(3), np.uint8)


# ---- tables.py -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_requantize_table_is_the_identity_table_or_none(dtype):
    dt = np.dtype(dtype)
    assert requantize_table(F32(0.1), dt.type(3), F32(0.1), dt.type(3), dt) is None
    t = requantize_table(F32(0.1), dt.type(3), F32(0.2), dt.type(-7 if dtype == np.int8 else 9), dt)
    want = make_lookup_table(lambda d: d, F32(0.1), dt.type(3), F32(0.2),
                             dt.type(-7 if dtype == np.int8 else 9), dt, dt)
    assert t.dtype == dt and not t.flags.writeable
    np.testing.assert_array_equal(t, want)
    qmin, qmax = RANGES[dt]
    for i in range(256):                                   # table[i] = Q(0.1 * (q_i - 3)), exactly
        q = int(np.array(i, np.uint8).view(dt))
        d = orc.f32(orc.f32(0.1) * (q - 3))
        assert int(t[i]) == orc.quantize_value(d, 0.2, -7 if dtype == np.int8 else 9, qmin, qmax)
    # arrays and scalars of the same values give the same (cached) table
    same = requantize_table(np.array([0.1], F32), np.array([3], dt), F32(0.2),
                            dt.type(-7 if dtype == np.int8 else 9), dt)
    assert same is t


def test_requantize_table_checks_what_it_cannot_cache():
    with pytest.raises(ValueError, match="x_scale"):
        requantize_table(F32(0), np.uint8(0), F32(1), np.uint8(0), np.uint8)
    with pytest.raises(TypeError, match="x_zero_point must have dtype uint8"):
        requantize_table(F32(1), np.int8(0), F32(1), np.uint8(0), np.uint8)


# ---- broadcast.py --------------------------------------------------------------------------------

@pytest.mark.parametrize("a, b, b_first", [
    ((2, 3), (2, 3), False), ((2, 1), (2, 3), True), ((2, 3), (2, 1), False), ((), (4,), True),
    ((4,), (), False), ((1,), (), True), ((2, 3, 1, 1), (2, 3, 4, 4), True), ((2, 3, 4, 4), (1, 3, 1, 1), False),
    ((1, 1, 5), (3, 4, 5), False), ((3, 1, 1), (3, 4, 1), True),
])
def test_qlinear_add_b_first(a, b, b_first):
    assert qlinear_add_b_first(a, b) is b_first
