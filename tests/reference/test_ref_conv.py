"""eightbit.reference.conv_integer / qlinear_conv against an independent direct-loop int64 oracle."""
import itertools

import numpy as np
import pytest

import eightbit.reference as R

F = np.float32


def rand(rng, dtype, shape):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape, dtype=np.int64).astype(dtype)


def wrap32(v):
    return (((np.asarray(v, dtype=np.int64) + 2**31) % 2**32) - 2**31).astype(np.int32)


def oracle_conv2d(x, w, x_zp, w_zp, group, strides, dilations, pads):
    """Plain loops over every output, channel and tap; taps outside x contribute nothing."""
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = strides, dilations, pads
    oh = (h + pt + pb - ((kh - 1) * dh + 1)) // sh + 1
    ow = (wd + pl + pr - ((kw - 1) * dw + 1)) // sw + 1
    wz = np.broadcast_to(np.asarray(w_zp, np.int64), (m,))
    y = np.zeros((n, m, oh, ow), np.int64)
    mg = m // group
    for b, o in itertools.product(range(n), range(m)):
        g = o // mg
        for i, j in itertools.product(range(oh), range(ow)):
            total = 0
            for ci, p, q in itertools.product(range(cg), range(kh), range(kw)):
                r, s = i * sh - pt + p * dh, j * sw - pl + q * dw
                if 0 <= r < h and 0 <= s < wd:
                    total += (int(x[b, g * cg + ci, r, s]) - int(x_zp)) * (int(w[o, ci, p, q]) - int(wz[o]))
            y[b, o, i, j] = total
    return y


CASES = [  # (C, M, H, W, k, group, strides, dilations, pads)
    (1, 1, 1, 1, (1, 1), 1, (1, 1), (1, 1), (0, 0, 0, 0)),
    (3, 4, 7, 7, (3, 3), 1, (1, 1), (1, 1), (1, 1, 1, 1)),
    (3, 2, 7, 6, (3, 3), 1, (2, 2), (1, 1), (0, 1, 2, 0)),       # asymmetric pads
    (4, 4, 7, 7, (3, 3), 2, (1, 2), (2, 1), (2, 0, 1, 2)),       # groups, dilation, mixed strides
    (4, 4, 6, 5, (3, 3), 4, (1, 1), (1, 1), (1, 1, 1, 1)),       # depthwise
    (3, 6, 5, 5, (3, 3), 3, (2, 1), (1, 1), (1, 1, 0, 0)),       # depthwise, multiplier 2
    (2, 3, 5, 8, (1, 5), 1, (1, 2), (1, 2), (0, 3, 0, 3)),
    (17, 2, 2, 2, (2, 2), 1, (1, 1), (1, 1), (0, 0, 0, 0)),
    (2, 2, 13, 13, (5, 5), 2, (2, 2), (2, 2), (2, 2, 2, 2)),
    (3, 3, 2, 7, (7, 7), 1, (1, 1), (1, 1), (3, 3, 3, 3)),
]


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
@pytest.mark.parametrize("x_dtype,w_dtype", [(np.uint8, np.int8), (np.uint8, np.uint8), (np.int8, np.int8),
                                             (np.int8, np.uint8)])
def test_conv_integer_matches_direct_loops(case, x_dtype, w_dtype):
    c, m, h, wd, k, group, strides, dil, pads = case
    rng = np.random.default_rng(c * 100 + m * 10 + h)
    x = rand(rng, x_dtype, (2, c, h, wd))
    w = rand(rng, w_dtype, (m, c // group) + k)
    x_zp, w_zp = rand(rng, x_dtype, ()), rand(rng, w_dtype, (m,))
    attrs = dict(group=group, strides=list(strides), dilations=list(dil), pads=list(pads))
    want = wrap32(oracle_conv2d(x, w, x_zp, w_zp, group, strides, dil, pads))
    got = R.conv_integer(x, w, x_zp, w_zp, **attrs)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want)
    # channels-last in and out, weights unchanged
    got_nhwc = R.conv_integer(np.moveaxis(x, 1, -1), w, x_zp, w_zp, layout="NHWC", **attrs)
    np.testing.assert_array_equal(got_nhwc, np.moveaxis(want, 1, -1))
    # scalar weight zero point
    np.testing.assert_array_equal(R.conv_integer(x, w, x_zp, w_zp[0], **attrs),
                                  wrap32(oracle_conv2d(x, w, x_zp, w_zp[0], group, strides, dil, pads)))


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("size,k,s,d", [(7, 3, 1, 1), (7, 3, 2, 1), (8, 4, 3, 1), (6, 2, 2, 1), (9, 3, 2, 2), (5, 1, 3, 1)])
def test_auto_pad_is_explicit_padding(auto_pad, size, k, s, d):
    """ONNX: SAME_* output = ceil(in / s), total pad = max(0, (out-1)*s + (k-1)*d + 1 - in), the odd
    pixel at the end (UPPER) or the start (LOWER); VALID = no padding."""
    rng = np.random.default_rng(size * 31 + k)
    x, w = rand(rng, np.uint8, (1, 2, size, size)), rand(rng, np.int8, (3, 2, k, k))
    dk = (k - 1) * d + 1
    if auto_pad == "VALID":
        pads = (0, 0, 0, 0)
    else:
        out = -(-size // s)
        total = max(0, (out - 1) * s + dk - size)
        small, big = total // 2, total - total // 2
        first, last = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
        pads = (first, first, last, last)
    want = wrap32(oracle_conv2d(x, w, np.uint8(3), np.int8(-2), 1, (s, s), (d, d), pads))
    got = R.conv_integer(x, w, np.uint8(3), np.int8(-2), auto_pad=auto_pad, strides=[s, s], dilations=[d, d])
    np.testing.assert_array_equal(got, want)
    if auto_pad != "VALID":
        assert got.shape[2:] == (-(-size // s),) * 2


def test_conv_1d_and_3d_match_2d_embedding():
    rng = np.random.default_rng(5)
    x, w = rand(rng, np.uint8, (2, 3, 11)), rand(rng, np.int8, (4, 3, 3))
    got = R.conv_integer(x, w, np.uint8(7), None, pads=[2, 1], strides=[2], dilations=[2])
    want = wrap32(oracle_conv2d(x[:, :, None], w[:, :, None], 7, 0, 1, (1, 2), (1, 2), (0, 2, 0, 1)))[:, :, 0]
    np.testing.assert_array_equal(got, want)
    x3, w3 = rand(rng, np.int8, (1, 2, 1, 5, 6)), rand(rng, np.int8, (2, 2, 1, 3, 3))
    got3 = R.conv_integer(x3, w3, np.int8(1), np.int8(2), pads=[0, 1, 1, 0, 1, 1])
    want3 = wrap32(oracle_conv2d(x3[:, :, 0], w3[:, :, 0], 1, 2, 1, (1, 1), (1, 1), (1, 1, 1, 1)))
    np.testing.assert_array_equal(got3[:, :, 0], want3)


def test_accumulator_wraps_like_int32():
    c = 40_000 // 9 + 1                       # 4445 channels * 9 taps * 255 * 255 > 2^31
    x = np.full((1, c, 3, 3), 255, np.uint8)
    w = np.full((1, c, 3, 3), 255, np.uint8)
    exact = c * 9 * 255 * 255
    assert exact > 2**31
    np.testing.assert_array_equal(R.conv_integer(x, w), np.full((1, 1, 1, 1), exact - 2**32, np.int32))


def independent_requant(acc, x_s, w_s, y_s, y_zp, dtype):
    """ORT float requantization written out: fp32 multiplier (x*w)/y, fp32 product, rne, + zp, sat."""
    mult = (np.float32(x_s) * np.asarray(w_s, F)).astype(F) / F(y_s)
    v = acc.astype(F) * mult.astype(F).reshape(1, -1, 1, 1)
    info = np.iinfo(dtype)
    return np.clip(np.rint(v.astype(np.float64)) + int(y_zp), info.min, info.max).astype(dtype)


@pytest.mark.parametrize("case", CASES[1:6], ids=[f"case{i}" for i in range(1, 6)])
def test_qlinear_conv_is_conv_plus_bias_then_requant(case):
    c, m, h, wd, k, group, strides, dil, pads = case
    rng = np.random.default_rng(77 + c)
    x, w = rand(rng, np.uint8, (2, c, h, wd)), rand(rng, np.int8, (m, c // group) + k)
    x_zp, w_zp, y_zp = np.uint8(128), rand(rng, np.int8, (m,)), np.uint8(rng.integers(100, 156))
    x_s, w_s = F(0.02), rng.uniform(0.001, 0.01, m).astype(F)
    bias = rng.integers(-20000, 20000, m).astype(np.int32)
    acc = oracle_conv2d(x, w, x_zp, w_zp, group, strides, dil, pads) + bias.reshape(1, -1, 1, 1)
    y_s = F(np.std(acc) * x_s * np.mean(w_s) / 110)          # +-2 sigma = +-220 steps: both ends saturate
    attrs = dict(group=group, strides=list(strides), dilations=list(dil), pads=list(pads))
    want = independent_requant(wrap32(acc), x_s, w_s, y_s, y_zp, np.uint8)
    got = R.qlinear_conv(x, x_s, x_zp, w, w_s, w_zp, y_s, y_zp, bias, **attrs)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)
    assert (want == 0).any() and (want == 255).any() and ((want > 0) & (want < 255)).any()
    got_nhwc = R.qlinear_conv(np.moveaxis(x, 1, -1), x_s, x_zp, w, w_s, w_zp, y_s, y_zp, bias, layout="NHWC", **attrs)
    np.testing.assert_array_equal(got_nhwc, np.moveaxis(want, 1, -1))
    # fixed-point requantization: within one step of the exact real product everywhere
    fixed = R.qlinear_conv(x, x_s, x_zp, w, w_s, w_zp, y_s, y_zp, bias, requant="fixed", **attrs)
    real = wrap32(acc).astype(np.float64) * (np.float64(x_s) * w_s.astype(np.float64) / np.float64(y_s)).reshape(1, -1, 1, 1)
    exact = np.clip(np.floor(real + 0.5) + int(y_zp), 0, 255)
    assert np.max(np.abs(fixed.astype(np.int64) - exact)) <= 1
    assert np.mean(fixed == exact) > 0.99


@pytest.mark.parametrize("activation", ["relu", "relu6", ("clip", -0.5, 1.25), ("clip", 0.3, 0.3)])
@pytest.mark.parametrize("y_dtype", [np.uint8, np.int8])
def test_fused_activation_clamps_the_requantized_range(activation, y_dtype):
    rng = np.random.default_rng(9)
    x, w = rand(rng, np.uint8, (1, 3, 6, 6)), rand(rng, np.int8, (4, 3, 3, 3))
    y_s, y_zp = F(0.05), y_dtype(10)
    plain = R.qlinear_conv(x, F(0.01), np.uint8(100), w, F(0.01), np.int8(0), y_s, y_zp, pads=[1, 1, 1, 1])
    got = R.qlinear_conv(x, F(0.01), np.uint8(100), w, F(0.01), np.int8(0), y_s, y_zp, pads=[1, 1, 1, 1],
                         activation=activation)
    info = np.iinfo(y_dtype)
    q = lambda v: int(np.clip(np.rint(np.float32(v) / y_s) + 10, info.min, info.max))  # noqa: E731
    lo, hi = {"relu": (10, info.max), "relu6": (10, q(6.0))}.get(activation, (None, None))
    if lo is None:
        lo, hi = q(activation[1]), q(activation[2])
    np.testing.assert_array_equal(got, np.clip(plain, lo, hi).astype(y_dtype))
    assert (plain < lo).any() or lo == info.min
    assert (plain > hi).any() or hi == info.max


def bad(**over):
    args = dict(x=np.zeros((1, 4, 5, 5), np.uint8), x_scale=F(1), x_zero_point=np.uint8(0),
                w=np.zeros((2, 2, 3, 3), np.int8), w_scale=F(1), w_zero_point=np.int8(0), y_scale=F(1),
                y_zero_point=np.uint8(0), B=None)
    kw = dict(group=2)
    for key, value in over.items():
        (args if key in args else kw)[key] = value
    return lambda: R.qlinear_conv(*args.values(), **kw)


BAD = [
    (bad(group=3), ValueError, "divisible by group"),
    (bad(group=0), ValueError, "group must be positive"),
    (bad(group=1), ValueError, "input channels per group"),
    (bad(w=np.zeros((3, 2, 3, 3), np.int8)), ValueError, "output channels of w (3) are not divisible"),
    (bad(w=np.zeros((2, 2, 7, 3), np.int8)), ValueError, "larger than the padded input"),
    (bad(strides=[0, 1]), ValueError, "strides must be positive"),
    (bad(dilations=[1, -1]), ValueError, "dilations must be positive"),
    (bad(strides=[1]), ValueError, "strides must have 2 entries"),
    (bad(pads=[1, 1]), ValueError, "pads must have 4 entries"),
    (bad(pads=[-1, 0, 0, 0]), ValueError, "pads must be non-negative"),
    (bad(auto_pad="SAME"), ValueError, "auto_pad"),
    (bad(auto_pad="VALID", pads=[0, 0, 0, 0]), ValueError, "pads cannot be given"),
    (bad(kernel_shape=[2, 2]), ValueError, "kernel_shape"),
    (bad(B=np.zeros(2, np.int64)), TypeError, "B must have dtype int32"),
    (bad(B=np.zeros(3, np.int32)), ValueError, "B must have shape (2,)"),
    (bad(w_scale=np.ones(3, F)), ValueError, "w_scale"),
    (bad(x_scale=np.ones(2, F)), ValueError, "x_scale must be a scalar"),
    (bad(y_scale=F(0)), ValueError, "y_scale"),
    (bad(w_zero_point=np.zeros(3, np.int8)), ValueError, "w_zero_point"),
    (bad(w_zero_point=np.uint8(0)), TypeError, "w_zero_point must have dtype int8"),
    (bad(x_zero_point=np.int8(0)), TypeError, "x_zero_point must have dtype uint8"),
    (bad(x=np.zeros((1, 4, 5, 5), np.float32)), TypeError, "x must have dtype"),
    (bad(x=np.zeros((4, 5), np.uint8)), ValueError, "x must have rank >= 3"),
    (bad(w=np.zeros((2, 2, 3), np.int8)), ValueError, "w must have rank 4"),
    (bad(activation="gelu"), ValueError, "activation"),
    (bad(activation=("clip", 1.0, 0.0)), ValueError, "lo <= hi"),
    (bad(requant="double"), ValueError, "requant"),
    (bad(layout="NCWH"), ValueError, "layout"),
    (lambda: R.conv_integer(np.zeros((1, 2, 4, 4), np.uint8), np.zeros((1, 2, 2, 2), np.uint8), None,
                            np.zeros(2, np.uint8)), ValueError, "w_zero_point"),
]


@pytest.mark.parametrize("call,exc,text", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_input_raises_named_error(call, exc, text):
    with pytest.raises(exc) as info:
        call()
    assert text in str(info.value)
