"""eightbit.reference's CNN companion ops against independent oracles: direct loops, exact
rational arithmetic (fractions), float64 math, and the ops' defining properties."""
import itertools
from fractions import Fraction

import numpy as np
import pytest

import eightbit.reference as R
from eightbit.reference._float32 import fma32
from eightbit.reference.qlinear_sigmoid import mlas_logistic

F = np.float32


def rand(rng, dtype, shape):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape, dtype=np.int64).astype(dtype)


def fma_exact(a, b, c):
    """float32(a*b + c) rounded once, by exact rationals and a search over neighbouring floats."""
    r = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    f = np.float32(float(r))
    cands = [np.nextafter(f, F(-np.inf)), f, np.nextafter(f, F(np.inf))]
    return min(cands, key=lambda v: (abs(Fraction(float(v)) - r), int(np.float32(v).view(np.int32)) & 1))


def test_fma32_is_correctly_rounded():
    rng = np.random.default_rng(1)
    a, b, c = (rng.normal(0, 1, 3000) * 2.0 ** rng.integers(-20, 20, 3000)).astype(F).reshape(3, -1)
    c[::3] = (-(a[::3].astype(np.float64) * b[::3])).astype(F)          # cancellation
    c[1::3] = (a[1::3].astype(np.float64) * b[1::3] * 2.0**-25).astype(F)  # c near half an ulp of a*b
    got = fma32(a, b, c)
    want = np.array([fma_exact(x, y, z) for x, y, z in zip(a, b, c)], F)
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, (a * b + c).astype(F)), "inputs never distinguish fma from mul+add"


def test_mlas_logistic_is_close_to_the_logistic_function():
    x = np.linspace(-30, 30, 20001).astype(F)
    exact = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    assert np.max(np.abs(mlas_logistic(x) - exact)) < 2e-7


def real_add(a, a_s, a_zp, b, b_s, b_zp, c_s, c_zp):
    return (np.float64(a_s) * (a.astype(np.float64) - int(a_zp)) + np.float64(b_s) * (b.astype(np.float64) - int(b_zp))) \
        / np.float64(c_s) + int(c_zp)


def real_mul(a, a_s, a_zp, b, b_s, b_zp, c_s, c_zp):
    return np.float64(a_s) * np.float64(b_s) * (a.astype(np.float64) - int(a_zp)) * (b.astype(np.float64) - int(b_zp)) \
        / np.float64(c_s) + int(c_zp)


@pytest.mark.parametrize("op,real", [("qlinear_add", real_add), ("qlinear_mul", real_mul)])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_add_mul_round_the_real_result_except_next_to_ties(op, real, dtype):
    """The float32 formula equals sat(round(real result)) wherever the real result is not within
    float32 error of a .5 tie, and is never more than one step away."""
    rng = np.random.default_rng(2)
    vals = np.arange(256, dtype=np.uint8).view(dtype)
    a, b = np.repeat(vals, 256), np.tile(vals, 256)
    info = np.iinfo(dtype)
    for _ in range(10):
        a_s, b_s = F(rng.uniform(0.01, 1)), F(rng.uniform(0.01, 1))
        c_s = F(rng.uniform(0.3, 1.5) * max(a_s, b_s) * (1 if op == "qlinear_add" else 100 * max(a_s, b_s)))
        zps = [rand(rng, dtype, ()) for _ in range(3)]
        got = getattr(R, op)(a, a_s, zps[0], b, b_s, zps[1], c_s, zps[2]).astype(np.int64)
        v = real(a, a_s, zps[0], b, b_s, zps[1], c_s, zps[2])
        want = np.clip(np.rint(v), info.min, info.max)
        far = np.abs(np.abs(v - np.floor(v)) - 0.5) > 1e-4 * np.maximum(1, np.abs(v))
        np.testing.assert_array_equal(got[far], want[far])
        assert np.all(np.abs(got - want) <= 1)


def test_add_mul_broadcast_like_numpy():
    rng = np.random.default_rng(3)
    a, b = rand(rng, np.uint8, (2, 1, 4)), rand(rng, np.uint8, (3, 1))
    for op in (R.qlinear_add, R.qlinear_mul):
        y = op(a, F(0.1), np.uint8(3), b, F(0.2), np.uint8(5), F(0.3), np.uint8(7))
        assert y.shape == (2, 3, 4) and y.dtype == np.uint8
        for i, j, k in itertools.product(range(2), range(3), range(4)):
            assert y[i, j, k] == op(a[i, 0, k:k + 1], F(0.1), np.uint8(3), b[j], F(0.2), np.uint8(5), F(0.3), np.uint8(7))[0]


def loop_avg_pool(x, x_s, x_zp, y_s, y_zp, k, s, pads, count_include_pad):
    """2-D NCHW QLinearAveragePool by loops: fp32 dequantize, fp32 running sum, divide, quantize."""
    n, c, h, w = x.shape
    pt, pl, pb, pr = pads
    oh, ow = (h + pt + pb - k[0]) // s[0] + 1, (w + pl + pr - k[1]) // s[1] + 1
    info = np.iinfo(x.dtype)
    y = np.zeros((n, c, oh, ow), x.dtype)
    for b, ch, i, j in itertools.product(range(n), range(c), range(oh), range(ow)):
        total, count = F(0), 0
        for p, q in itertools.product(range(k[0]), range(k[1])):
            r, t = i * s[0] - pt + p, j * s[1] - pl + q
            if 0 <= r < h and 0 <= t < w:
                total = F(total + F(x_s * F(int(x[b, ch, r, t]) - int(x_zp))))
                count += 1
        avg = F(total / F(k[0] * k[1] if count_include_pad else count))
        y[b, ch, i, j] = np.clip(np.rint(F(F(avg / y_s) + F(int(y_zp)))), info.min, info.max)
    return y


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_average_pool_matches_loops(count_include_pad, dtype):
    rng = np.random.default_rng(4)
    for k, s, pads in [((3, 3), (1, 1), (1, 1, 1, 1)), ((2, 3), (2, 1), (0, 1, 1, 2)), ((3, 2), (2, 2), (2, 0, 0, 1))]:
        x = rand(rng, dtype, (2, 3, 7, 6))
        args = (x, F(0.05), rand(rng, dtype, ()), F(0.03), rand(rng, dtype, ()))
        got = R.qlinear_average_pool(*args, kernel_shape=list(k), strides=list(s), pads=list(pads),
                                     count_include_pad=count_include_pad)
        np.testing.assert_array_equal(got, loop_avg_pool(*args, k, s, pads, count_include_pad))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_global_average_pool_is_integer_sum_then_float_scale(dtype):
    rng = np.random.default_rng(5)
    x = rand(rng, dtype, (2, 4, 5, 7))
    x_zp, y_zp = rand(rng, dtype, ()), rand(rng, dtype, ())
    got = R.qlinear_global_average_pool(x, F(0.07), x_zp, F(0.05), y_zp)
    acc = x.astype(np.int64).sum(axis=(2, 3)) - int(x_zp) * 35
    scale = F(F(0.07) / F(F(0.05) * F(35)))
    info = np.iinfo(dtype)
    want = np.clip(np.rint(acc.astype(F) * scale) + int(y_zp), info.min, info.max).astype(dtype)
    np.testing.assert_array_equal(got, want.reshape(2, 4, 1, 1))
    # a kernel covering the whole image with no pads takes the same integer path
    np.testing.assert_array_equal(R.qlinear_average_pool(x, F(0.07), x_zp, F(0.05), y_zp, kernel_shape=[5, 7]),
                                  want.reshape(2, 4, 1, 1))
    np.testing.assert_array_equal(R.qlinear_global_average_pool(np.moveaxis(x, 1, -1), F(0.07), x_zp, F(0.05), y_zp,
                                                                layout="NHWC"), want.reshape(2, 1, 1, 4))


def test_max_pool_matches_loops_with_ceil_mode_and_dilation():
    rng = np.random.default_rng(6)
    x = rand(rng, np.int8, (1, 2, 7, 8))
    k, s, d, pads = (2, 3), (2, 2), (2, 1), (1, 0, 1, 1)
    got = R.max_pool(x, kernel_shape=list(k), strides=list(s), dilations=list(d), pads=list(pads), ceil_mode=1)
    h, w = 7, 8
    oh = -(-(h + 2 - ((k[0] - 1) * d[0] + 1)) // s[0]) + 1
    ow = -(-(w + 1 - ((k[1] - 1) * d[1] + 1)) // s[1]) + 1
    oh -= (oh - 1) * s[0] >= h + pads[0]
    ow -= (ow - 1) * s[1] >= w + pads[1]
    want = np.full((1, 2, oh, ow), -128, np.int8)
    for c, i, j in itertools.product(range(2), range(oh), range(ow)):
        for p, q in itertools.product(range(k[0]), range(k[1])):
            r, t = i * s[0] - pads[0] + p * d[0], j * s[1] - pads[1] + q * d[1]
            if 0 <= r < h and 0 <= t < w:
                want[0, c, i, j] = max(want[0, c, i, j], x[0, c, r, t])
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("x_dtype,y_dtype", list(itertools.product([np.uint8, np.int8], repeat=2)))
def test_lookup_table_is_quantize_of_fn_of_dequantize(x_dtype, y_dtype):
    x_zp, y_zp = x_dtype(3), y_dtype(-5 if y_dtype == np.int8 else 5)
    table = R.make_lookup_table(np.tanh, F(0.03), x_zp, F(1 / 120), y_zp, x_dtype, y_dtype)
    assert table.shape == (256,) and table.dtype == y_dtype
    q = np.arange(256, dtype=np.uint8).view(x_dtype)
    d = F(0.03) * (q.astype(np.int32) - 3).astype(F)
    info = np.iinfo(y_dtype)
    want = np.clip(np.rint(np.tanh(d).astype(F) / F(1 / 120)) + int(y_zp), info.min, info.max)
    np.testing.assert_array_equal(table, want)
    x = np.random.default_rng(7).integers(0, 256, (3, 50)).astype(np.uint8).view(x_dtype)
    np.testing.assert_array_equal(R.lookup_table(x, table), want[x.view(np.uint8)])


def test_leaky_relu_sigmoid_concat_are_their_tables():
    x = np.arange(256, dtype=np.uint8)
    leaky = R.qlinear_leaky_relu(x, F(0.1), np.uint8(128), F(0.05), np.uint8(100), alpha=0.25)
    d = F(0.1) * (x.astype(np.int32) - 128).astype(F)
    real = np.where(d >= 0, d, F(0.25) * d).astype(F)
    np.testing.assert_array_equal(leaky, np.clip(np.rint(real / F(0.05)) + 100, 0, 255))
    sig = R.qlinear_sigmoid(x, F(0.1), np.uint8(128), F(1 / 256), np.uint8(0))
    exact = 1 / (1 + np.exp(-d.astype(np.float64)))
    assert np.max(np.abs(sig - np.clip(np.rint(exact * 256), 0, 255))) <= 1
    a, b = x[:100].reshape(4, 25), x[100:].reshape(4, 39)
    cat = R.qlinear_concat(F(0.1), np.uint8(128), [(a, F(0.1), np.uint8(128)), (b, F(0.2), np.uint8(28))], axis=-1)
    np.testing.assert_array_equal(cat[:, :25], a)                       # same parameters: a copy
    np.testing.assert_array_equal(cat[:, 25:], np.clip(2 * (b.astype(np.int32) - 28) + 128, 0, 255))


u8 = np.uint8
BAD = [
    (lambda: R.qlinear_add(np.zeros(3, u8), F(1), u8(0), np.zeros(3, np.int8), F(1), np.int8(0), F(1), u8(0)), TypeError, "b must have dtype uint8"),
    (lambda: R.qlinear_add(np.zeros(3, u8), F(1), u8(0), np.zeros(4, u8), F(1), u8(0), F(1), u8(0)), ValueError, "do not broadcast"),
    (lambda: R.qlinear_mul(np.zeros(3, u8), np.ones(2, F), u8(0), np.zeros(3, u8), F(1), u8(0), F(1), u8(0)), ValueError, "a_scale must be a scalar"),
    (lambda: R.qlinear_mul(np.zeros(3, u8), F(1), u8(0), np.zeros(3, u8), F(1), u8(0), F(0), u8(0)), ValueError, "c_scale"),
    (lambda: R.qlinear_add(np.zeros(3, u8), F(1), np.int8(0), np.zeros(3, u8), F(1), u8(0), F(1), u8(0)), TypeError, "a_zero_point"),
    (lambda: R.qlinear_average_pool(np.zeros((1, 1, 4, 4), u8), F(1), u8(0), F(1), u8(0), kernel_shape=[2]), ValueError, "kernel_shape must have 2"),
    (lambda: R.qlinear_average_pool(np.zeros((1, 1, 4, 4), u8), F(1), u8(0), F(1), u8(0), kernel_shape=[5, 5]), ValueError, "larger than the padded input"),
    (lambda: R.qlinear_average_pool(np.zeros((1, 1, 4, 4), u8), F(1), u8(0), F(1), u8(0), kernel_shape=[2, 2], strides=[0, 1]), ValueError, "strides must be positive"),
    (lambda: R.qlinear_average_pool(np.zeros((1, 1, 4, 4), u8), F(1), u8(0), F(1), u8(0), kernel_shape=[2, 2], count_include_pad=2), ValueError, "count_include_pad"),
    (lambda: R.max_pool(np.zeros((1, 1, 4, 4), u8), kernel_shape=[2, 2], dilations=[0, 1]), ValueError, "dilations must be positive"),
    (lambda: R.max_pool(np.zeros((1, 1, 4, 4), u8), kernel_shape=[2, 2], ceil_mode=2), ValueError, "ceil_mode"),
    (lambda: R.max_pool(np.zeros((4, 4), u8), kernel_shape=[2, 2]), ValueError, "x must have rank >= 3"),
    (lambda: R.max_pool(np.zeros((1, 1, 4, 4), np.float32), kernel_shape=[2, 2]), TypeError, "x must have dtype"),
    (lambda: R.qlinear_global_average_pool(np.zeros((1, 1, 4), u8), F(1), u8(0), np.ones(2, F), u8(0)), ValueError, "y_scale must be a scalar"),
    (lambda: R.qlinear_global_average_pool(np.zeros((1, 1, 4), u8), F(1), u8(0), F(1), u8(0), layout="CHW"), ValueError, "layout"),
    (lambda: R.lookup_table(np.zeros(3, u8), np.zeros(255, u8)), ValueError, "table must have shape (256,)"),
    (lambda: R.make_lookup_table(lambda d: d[:3], F(1), u8(0), F(1), u8(0), u8, u8), ValueError, "fn must return 256"),
    (lambda: R.make_lookup_table(None, F(1), u8(0), F(1), u8(0), u8, u8), TypeError, "fn must be callable"),
    (lambda: R.make_lookup_table(np.tanh, F(1), u8(0), F(1), np.int8(0), u8, u8), TypeError, "y_zero_point"),
    (lambda: R.qlinear_concat(F(1), u8(0), [(np.zeros((2, 2), u8), F(1), u8(0)), (np.zeros((3, 3), u8), F(1), u8(0))], axis=0), ValueError, "equal shapes"),
    (lambda: R.qlinear_concat(F(1), u8(0), [(np.zeros((2, 2), u8), F(1))], axis=0), ValueError, "triple"),
    (lambda: R.qlinear_concat(F(1), u8(0), [(np.zeros((2, 2), np.int8), F(1), u8(0))], axis=0), TypeError, "inputs[0] tensor"),
    (lambda: R.qlinear_concat(F(1), u8(0), [(np.zeros((2, 2), u8), F(1), u8(0))], axis=2), ValueError, "axis"),
    (lambda: R.qlinear_leaky_relu(np.zeros(3, u8), F(1), u8(0), F(1), u8(0), alpha=np.nan), ValueError, "alpha"),
]


@pytest.mark.parametrize("call,exc,text", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_input_raises_named_error(call, exc, text):
    with pytest.raises(exc) as info:
        call()
    assert text in str(info.value)
