"""eightbit.numerics: qparams and fixed-point helpers against Python integer / Fraction oracles."""
import math
from fractions import Fraction

import numpy as np
import pytest

from eightbit.numerics import (choose_qparams, float_multiplier, multiply_by_quantized_multiplier,
                               quantize_multiplier, quantize_weight_symmetric,
                               rounding_divide_by_pot, srdhm)

F = np.float32
I32 = (-2**31, 2**31 - 1)


def srdhm_oracle(a, b):
    if a == b == -2**31:
        return 2**31 - 1
    ab = a * b
    nudge = 2**30 if ab >= 0 else 1 - 2**30
    q = abs(ab + nudge) // 2**31                     # C++ division truncates toward zero
    return q if ab + nudge >= 0 else -q


def rdbpot_oracle(x, e):
    r = Fraction(x, 2**e)
    fl = math.floor(r)
    frac = r - fl
    if frac > Fraction(1, 2) or (frac == Fraction(1, 2) and x > 0):
        return fl + 1
    return fl


def test_srdhm_edge_values():
    vals = [-2**31, -2**31 + 1, -2**30, -3, -1, 0, 1, 3, 2**30, 2**31 - 1, 1518500250, -1518500250]
    a = np.array([x for x in vals for _ in vals], np.int64)
    b = np.array([y for _ in vals for y in vals], np.int64)
    got = srdhm(a, b)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, [srdhm_oracle(int(x), int(y)) for x, y in zip(a, b)])


def test_srdhm_ties_round_up():
    # a*b/2^31 exactly -0.5, 0.5, -1.5: gemmlowp gives 0, 1, -1
    np.testing.assert_array_equal(srdhm(np.array([-2**15, 2**15, -3 * 2**15]), np.array([2**15] * 3)), [0, 1, -1])


def test_rounding_divide_by_pot_all_exponents():
    rng = np.random.default_rng(0)
    xs = np.concatenate([rng.integers(*I32, 200, endpoint=True), [-2**31, 2**31 - 1, -1, 1, 0, -5, 5, -6, 6]])
    for e in range(32):
        got = rounding_divide_by_pot(xs, e)
        np.testing.assert_array_equal(got, [rdbpot_oracle(int(x), e) for x in xs], err_msg=f"exponent {e}")


@pytest.mark.parametrize("real", [1e-12, 2.0**-32, 2.0**-31 * 0.75, 1e-5, 0.25, 0.3, 0.5, 0.999999999999,
                                  1.0, 1.5, 12345.678, 2.0**29, 0.0])
def test_quantize_multiplier_against_frexp_oracle(real):
    m0, shift = quantize_multiplier(real)
    assert m0.dtype == np.int32 and shift.dtype == np.int32 and m0.shape == ()
    q, e = math.frexp(real)
    want = int(Fraction(q) * 2**31 + Fraction(1, 2))
    if want == 2**31:
        want, e = 2**30, e + 1
    if e < -31 or want == 0:
        want, e = 0, 0
    assert (int(m0), int(shift)) == (want, e)
    if want:
        assert 2**30 <= int(m0) < 2**31
        assert abs(Fraction(int(m0)) * Fraction(2) ** (int(shift) - 31) - Fraction(real)) <= Fraction(2) ** (int(shift) - 32)


def test_quantize_multiplier_rejects_bad_values():
    for bad in (-1.0, np.nan, np.inf, 2.0**30):
        with pytest.raises(ValueError):
            quantize_multiplier(bad)
    m0, shift = quantize_multiplier(np.array([0.5, 0.75], np.float32))
    np.testing.assert_array_equal(m0, [2**30, 3 * 2**29])
    np.testing.assert_array_equal(shift, [0, 0])


def test_multiply_by_quantized_multiplier_saturates_left_shift():
    # x * 2^left overflows int32 -> saturated before the high multiply
    got = multiply_by_quantized_multiplier(np.array([2**30, -2**30]), np.int32(2**30), np.int32(2))
    want = [srdhm_oracle(2**31 - 1, 2**30), srdhm_oracle(-2**31, 2**30)]
    np.testing.assert_array_equal(got, want)


def test_quantize_weight_symmetric_per_channel():
    rng = np.random.default_rng(1)
    w = rng.normal(0, 1, (5, 3, 2, 2)).astype(F)
    w[2] = 0.0
    w_q, scale = quantize_weight_symmetric(w)
    assert w_q.dtype == np.int8 and scale.dtype == np.float32 and scale.shape == (5,)
    for n in range(5):
        amax = F(np.abs(w[n]).max())
        want_scale = F(1.0) if amax == 0 else F(amax / F(127.0))
        assert scale[n] == want_scale
        for idx, v in np.ndenumerate(w[n]):
            assert int(w_q[n][idx]) == min(max(round(float(F(v / want_scale))), -127), 127)
    assert np.abs(w_q.astype(np.int32)).max() == 127 and np.all(w_q[2] == 0)


def test_quantize_weight_symmetric_per_tensor_and_errors():
    w = np.array([[0.5, -2.0], [1.0, 0.25]], F)
    w_q, scale = quantize_weight_symmetric(w, per_channel=False)
    assert scale.shape == () and scale == F(F(2.0) / F(127.0))
    np.testing.assert_array_equal(w_q, [[32, -127], [64, 16]])      # 0.5*63.5=31.75->32, 15.875->16
    with pytest.raises(ValueError, match="finite"):
        quantize_weight_symmetric(np.array([[np.nan]], F))
    with pytest.raises(ValueError, match="too small"):
        quantize_weight_symmetric(np.array([[1e-40, 0.0]], F))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_choose_qparams_asymmetric_matches_ort_formula(dtype):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(2)
    for lo, hi in [(-1.0, 3.0), (0.5, 2.0), (-4.0, -1.0), (-2.5, 0.001)] + [tuple(sorted(rng.normal(0, 3, 2))) for _ in range(20)]:
        scale, zp = choose_qparams(lo, hi, dtype)
        mn, mx = F(min(F(lo), F(0))), F(max(F(hi), F(0)))
        want_scale = F(F(mx - mn) / F(info.max - info.min))
        initial = F(F(info.min) - F(mn / want_scale))
        want_zp = round(float(min(max(initial, F(info.min)), F(info.max))))
        assert scale == want_scale and int(zp) == want_zp and type(zp) is np.dtype(dtype).type
        # real 0 is exactly representable
        assert F(F(int(zp) - int(zp)) * scale) == 0.0


def test_choose_qparams_symmetric_and_degenerate():
    s, z = choose_qparams(-3.0, 1.0, np.int8, symmetric=True)
    assert s == F(F(3.0) / F(127.0)) and int(z) == 0
    s, z = choose_qparams(-1.0, 2.54, np.uint8, symmetric=True)
    assert s == F(F(2.54) / F(127.0)) and int(z) == 128
    assert choose_qparams(0.0, 0.0, np.uint8) == (F(1.0), np.uint8(0))
    assert choose_qparams(0.0, 0.0, np.int8) == (F(1.0), np.int8(-128))
    assert choose_qparams(0.0, 0.0, np.int8, symmetric=True) == (F(1.0), np.int8(0))
    with pytest.raises(ValueError, match="<="):
        choose_qparams(2.0, 1.0)
    with pytest.raises(ValueError, match="finite"):
        choose_qparams(-np.inf, 1.0)
    with pytest.raises(ValueError, match="too wide"):
        choose_qparams(-3e38, 3e38)
    with pytest.raises(ValueError, match="too small"):
        choose_qparams(0.0, 1e-40)
    with pytest.raises(TypeError):
        choose_qparams(0.0, 1.0, np.int16)


def test_float_multiplier_is_float32_in_ort_order():
    a, b, y = F(0.1), np.array([0.3, 0.7], F), F(0.07)
    m = float_multiplier(a, b, y)
    assert m.dtype == np.float32 and m.shape == (2,)
    np.testing.assert_array_equal(m, [F(F(a * b[0]) / y), F(F(a * b[1]) / y)])
    with pytest.raises(ValueError):
        float_multiplier(F(0.0), b, y)
