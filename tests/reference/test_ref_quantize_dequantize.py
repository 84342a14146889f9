"""quantize_linear / dequantize_linear / dynamic_quantize_* against scalar oracles written here."""
import numpy as np
import pytest

from eightbit.reference import (dequantize_linear, dynamic_quantize_linear, dynamic_quantize_rows,
                                quantize_linear)

F = np.float32


def quantize_oracle(x, scale, zp, dtype):
    """Per element: float32 division, NaN -> qmin, round half to even (Python round), saturate."""
    info = np.iinfo(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        v = np.float32(np.float32(x) / np.float32(scale))
    if np.isnan(v):
        return info.min
    if np.isinf(v):
        return info.max if v > 0 else info.min
    return min(max(round(float(v)) + int(zp), info.min), info.max)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_quantize_per_tensor_ties_saturation_and_specials(dtype):
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype)
    ties = np.arange(-300, 300, dtype=F) + F(0.5)
    x = np.concatenate([ties, rng.normal(0, 100, 500).astype(F), [0, -0.0, np.nan, np.inf, -np.inf, 3e38]]).astype(F)
    for zp in (info.min, 0, info.max, 3):
        for scale in (F(1.0), F(0.5), F(rng.uniform(0.01, 3))):
            y = quantize_linear(x, scale, np.array(zp, dtype))
            assert y.dtype == dtype
            np.testing.assert_array_equal(y, [quantize_oracle(v, scale, zp, dtype) for v in x])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_quantize_near_ties_uses_true_division(dtype):
    """Values a few ulps from (k + 0.5) * scale: only true float32 division rounds like the oracle
    (x * (1 / scale) differs on some of them)."""
    rng = np.random.default_rng(5)
    for _ in range(20):
        scale = F(rng.uniform(0.01, 4.0))
        x = ((rng.integers(-100, 100, 400) + F(0.5)) * scale).astype(F)
        steps = rng.integers(-2, 3, x.size)
        for i, st in enumerate(steps):
            for _ in range(abs(int(st))):
                x[i] = np.nextafter(x[i], F(np.inf) if st > 0 else F(-np.inf))
        zp = np.array(3, dtype)
        y = quantize_linear(x, scale, zp)
        np.testing.assert_array_equal(y, [quantize_oracle(v, scale, 3, dtype) for v in x])


def test_quantize_default_zero_point_is_uint8():
    y = quantize_linear(np.array([-1.0, 0.0, 1.0, 300.0], F), F(1.0))
    assert y.dtype == np.uint8
    np.testing.assert_array_equal(y, [0, 0, 1, 255])


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
def test_quantize_dequantize_per_axis(axis):
    rng = np.random.default_rng(2)
    x = rng.normal(0, 3, (3, 4, 5)).astype(F)
    c = x.shape[axis]
    scale = rng.uniform(0.01, 0.1, c).astype(F)
    zp = rng.integers(-128, 128, c).astype(np.int8)
    y = quantize_linear(x, scale, zp, axis=axis)
    for idx, v in np.ndenumerate(x):
        ch = idx[axis]
        assert int(y[idx]) == quantize_oracle(v, scale[ch], zp[ch], np.int8)
    d = dequantize_linear(y, scale, zp, axis=axis)
    assert d.dtype == np.float32
    for idx, q in np.ndenumerate(y):
        ch = idx[axis]
        assert d[idx] == np.float32(np.float32(int(q) - int(zp[ch])) * scale[ch])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_dequantize_all_codes(dtype):
    info = np.iinfo(dtype)
    x = np.arange(info.min, info.max + 1).astype(dtype)
    for zp in (info.min, 0, info.max):
        scale = F(0.0371)
        d = dequantize_linear(x, scale, np.array(zp, dtype))
        np.testing.assert_array_equal(d, [np.float32(np.float32(int(v) - zp) * scale) for v in x])


def test_dequantize_int32_bias():
    x = np.array([-2**31, -1, 0, 2**31 - 1], np.int32)
    d = dequantize_linear(x, F(0.5))
    np.testing.assert_array_equal(d, [np.float32(float(v)) * F(0.5) for v in x])


def dynamic_oracle(x):
    """ORT's GetQuantizationParameter + MlasQuantizeLinear, one scalar at a time."""
    mn = F(min(float(x.min()) if x.size else 0.0, 0.0))
    mx = F(max(float(x.max()) if x.size else 0.0, 0.0))
    scale = F(1.0) if mx == mn else F(F(mx - mn) / F(255.0))
    initial = F(F(0.0) - F(mn / scale))
    zp = int(round(float(min(max(initial, F(0.0)), F(255.0)))))
    return [quantize_oracle(v, scale, zp, np.uint8) for v in x.ravel()], scale, zp


@pytest.mark.parametrize("case", ["random", "positive", "negative", "zeros", "single", "tiny", "empty"])
def test_dynamic_quantize_linear(case):
    rng = np.random.default_rng(3)
    x = {
        "random": rng.normal(0.3, 2.0, (7, 9)),
        "positive": rng.uniform(0.5, 4.0, 40),
        "negative": -rng.uniform(0.5, 4.0, 40),
        "zeros": np.zeros(6),
        "single": np.array([2.5]),
        "tiny": np.array([-1e-30, 3e-31, 0.0]),
        "empty": np.zeros((0, 3)),
    }[case].astype(F)
    y, scale, zp = dynamic_quantize_linear(x)
    want_y, want_scale, want_zp = dynamic_oracle(x)
    assert y.dtype == np.uint8 and y.shape == x.shape
    assert scale.dtype == np.float32 and scale.shape == () and zp.dtype == np.uint8 and zp.shape == ()
    assert scale == want_scale and int(zp) == want_zp
    np.testing.assert_array_equal(y.ravel(), want_y)


def test_dynamic_quantize_rows_equals_per_row_dynamic_quantize_linear():
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, (6, 33)).astype(F)
    x[2] = 0.0
    x[3] = np.abs(x[3])
    q, s, z = dynamic_quantize_rows(x)
    assert q.shape == (6, 33) and s.shape == (6,) and z.shape == (6,)
    assert s.dtype == np.float32 and z.dtype == np.uint8
    for r in range(6):
        want_y, want_s, want_z = dynamic_oracle(x[r])
        assert s[r] == want_s and int(z[r]) == want_z
        np.testing.assert_array_equal(q[r], want_y)
    q0, s0, z0 = dynamic_quantize_rows(np.zeros((3, 0), F))
    assert q0.shape == (3, 0)
    np.testing.assert_array_equal(s0, [1, 1, 1])
    np.testing.assert_array_equal(z0, [0, 0, 0])
