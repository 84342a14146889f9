"""Binary (+-1) 2-D convolution.

test_reference_*: eightbit.reference.binary_conv2d against an independent oracle (a float64 window
loop over explicitly padded +-1 sign arrays), hand-counted cases and the 1x1 == binary_linear identity.
test_api_*: eightbit.binary.pack_binary_conv_weights / binary_conv2d on every kernel path, bit-identical
with the reference in NCHW and NHWC. The reference results are cached across the ISA runs (they do
not depend on the ISA), so the whole file stays within a few seconds per path.
"""
import functools
import zlib

import numpy as np
import pytest

import eightbit as eb
from eightbit import reference as R

F = np.float32
F32_TINY = F(np.finfo(np.float32).smallest_subnormal)


def seed(params):
    """A seed that does not change between runs (str hashes are randomised per process)."""
    return zlib.crc32(repr(params).encode())


def api():
    """eightbit.binary, imported when a test needs it (the reference tests run without it)."""
    from eightbit import binary as B
    return B


def signs(x, threshold=0.0):
    """+-1 as float64, -1 where x < threshold (float32 compare, threshold broadcast per channel)."""
    x = np.asarray(x, F)
    thr = np.asarray(threshold, F)
    if thr.ndim == 1:
        thr = thr.reshape(-1, 1, 1)
    return np.where(x < thr, -1.0, 1.0)


def direct_conv(x, w, threshold=0.0, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), pad_value=0.0):
    """Independent oracle: int64 [N, O, OH, OW] sums, one output position at a time, over a padded
    array built by hand (pad_value everywhere, the signs of x copied into the middle)."""
    sx, sw = signs(x, threshold), signs(w)
    n, c, h, wd = sx.shape
    o, _, kh, kw = sw.shape
    top, left, bottom, right = pads
    xp = np.full((n, c, h + top + bottom, wd + left + right), float(pad_value))
    xp[:, :, top:top + h, left:left + wd] = sx
    oh = (h + top + bottom - ((kh - 1) * dilations[0] + 1)) // strides[0] + 1
    ow = (wd + left + right - ((kw - 1) * dilations[1] + 1)) // strides[1] + 1
    out = np.zeros((n, o, oh, ow), np.int64)
    for a in range(oh):
        for b in range(ow):
            rows = a * strides[0] + np.arange(kh) * dilations[0]
            cols = b * strides[1] + np.arange(kw) * dilations[1]
            patch = xp[:, :, rows][:, :, :, cols]                           # [N, C, kh, kw]
            out[:, :, a, b] = np.tensordot(patch, sw, axes=([1, 2, 3], [1, 2, 3])).astype(np.int64)
    return out


def float32_layer(dot, scale, bias=None):
    """float32(dot) * scale[o], then + bias[o]: each step exact in float64, then rounded to float32."""
    s = scale.astype(np.float64).reshape(-1, 1, 1)
    y = (dot.astype(F).astype(np.float64) * s).astype(F)
    if bias is not None:
        y = (y.astype(np.float64) + bias.astype(np.float64).reshape(-1, 1, 1)).astype(F)
    return y


def random_values(rng, shape, specials=True):
    """Normal float32 values; with `specials`, +-0.0 and +-smallest subnormal mixed in."""
    x = rng.standard_normal(shape).astype(F)
    if specials:
        mask = rng.random(shape) < 0.1
        x[mask] = rng.choice(np.array([0.0, -0.0, F32_TINY, -F32_TINY], F), int(mask.sum()))
    return x


def random_scale(rng, o):
    return (np.abs(rng.standard_normal(o)) + 0.05).astype(F)


def assert_same_bits(got, expected):
    assert got.dtype == expected.dtype and got.shape == expected.shape, (got.dtype, got.shape, expected.shape)
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


# --- the reference against the oracle -----------------------------------------------------------------

# (N, C, H, W, O, kh, kw, strides, pads, dilations)
GEOMETRIES = [
    (1, 3, 5, 5, 4, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1)),
    (2, 3, 7, 6, 5, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1)),
    (1, 4, 8, 8, 3, 3, 3, (1, 1), (2, 2, 2, 2), (2, 2)),
    (1, 5, 7, 9, 2, 3, 2, (2, 1), (0, 1, 2, 0), (1, 2)),      # asymmetric pads, mixed stride/dilation
    (2, 63, 4, 4, 3, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1)),
    (1, 64, 5, 4, 2, 1, 1, (2, 2), (1, 0, 0, 1), (1, 1)),     # 1x1 with padding: border outputs are all pad
    (1, 65, 5, 5, 3, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1)),
    (1, 130, 4, 5, 2, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1)),
    (1, 2, 6, 6, 3, 5, 5, (1, 1), (2, 2, 2, 2), (1, 1)),
    (1, 3, 3, 3, 2, 5, 5, (1, 1), (1, 1, 1, 1), (1, 1)),      # kernel == padded input: one output
    (1, 3, 4, 9, 2, 1, 3, (3, 2), (0, 3, 0, 0), (1, 3)),
]


@pytest.mark.parametrize("pad_value", [0.0, 1.0])
@pytest.mark.parametrize("geom", GEOMETRIES, ids=[f"g{i}" for i in range(len(GEOMETRIES))])
def test_reference_matches_direct_oracle(geom, pad_value):
    n, c, h, wd, o, kh, kw, strides, pads, dilations = geom
    rng = np.random.default_rng(seed(geom))
    x = random_values(rng, (n, c, h, wd))
    w = random_values(rng, (o, c, kh, kw))
    scale = random_scale(rng, o)
    bias = rng.standard_normal(o).astype(F)
    per_channel = rng.standard_normal(c).astype(F)
    per_channel[::2] = x[0, ::2, 0, 0]                       # ties: x == threshold is +1
    kw_args = dict(strides=strides, pads=pads, dilations=dilations, pad_value=pad_value)
    for thr in (0.0, F(0.3), per_channel):
        dot = direct_conv(x, w, thr, **kw_args)
        for b in (None, bias):
            got = R.binary_conv2d(x, w, scale, thr, b, **kw_args)
            assert_same_bits(got, float32_layer(dot, scale, b))


@pytest.mark.parametrize("c", [3, 63, 64, 65, 130])
@pytest.mark.parametrize("pad_value", [0.0, 1.0])
def test_reference_all_negative_and_all_positive(c, pad_value):
    """Hand counts for a 3x3 pad-1 conv on a 4x5 image: a corner window holds 4 image taps and 5
    padded ones, an edge window 6 and 3, an interior window 9 and 0."""
    taps = np.full((4, 5), 9)
    taps[0, :] -= 3
    taps[-1, :] -= 3
    taps[:, 0] -= 3
    taps[:, -1] -= 3
    taps[[0, 0, -1, -1], [0, -1, 0, -1]] += 1                 # the corners lost 5, not 6
    padded = 9 - taps
    pos, neg = np.full((1, c, 4, 5), 2.0, F), np.full((1, c, 4, 5), -3.0, F)
    w_pos, w_neg = np.full((2, c, 3, 3), 0.5, F), np.full((2, c, 3, 3), -0.5, F)
    one = np.ones(2, F)
    pad_term = padded * c if pad_value == 1.0 else 0
    for x, x_sign in ((pos, 1), (neg, -1)):
        for w, w_sign in ((w_pos, 1), (w_neg, -1)):
            expected = w_sign * (x_sign * taps * c + pad_term)
            got = R.binary_conv2d(x, w, one, pads=(1, 1, 1, 1), pad_value=pad_value)
            np.testing.assert_array_equal(got, np.broadcast_to(expected.astype(F), (1, 2, 4, 5)))
            np.testing.assert_array_equal(direct_conv(x, w, pads=(1, 1, 1, 1), pad_value=pad_value)[0, 0],
                                          expected)


def test_reference_tiny_hand_case():
    """C = 1, 2x2 kernel over a 3x3 image, no padding, written out by hand."""
    x = np.array([[1.0, -1.0, 2.0], [-0.0, -2.0, 3.0], [4.0, 5.0, -6.0]], F)[None, None]
    w = np.array([[1.0, -1.0], [-1.0, 1.0]], F)[None, None]
    # signs: [[+, -, +], [+, -, +], [+, +, -]]
    # (0,0): +1*+1 + -1*-1 + -1*+1 + +1*-1 = 0;  (0,1): -1 - 1 + 1 + 1 = 0
    # (1,0): +1 + 1 - 1 + 1 = 2;                (1,1): -1 - 1 - 1 - 1 = -4
    got = R.binary_conv2d(x, w, np.array([2.0], F))
    np.testing.assert_array_equal(got, np.array([[[[0, 0], [4, -8]]]], F))


def test_reference_1x1_equals_binary_linear():
    rng = np.random.default_rng(7)
    x = random_values(rng, (2, 70, 3, 4))
    w = random_values(rng, (9, 70, 1, 1))
    scale, bias = random_scale(rng, 9), rng.standard_normal(9).astype(F)
    thr = rng.standard_normal(70).astype(F)
    got = R.binary_conv2d(x, w, scale, thr, bias)
    rows = np.moveaxis(x, 1, -1)                                             # [N, H, W, C]
    lin = R.binary_linear(rows, R.pack_signs(w[:, :, 0, 0]), 70, scale, thr, bias)
    assert_same_bits(got, np.ascontiguousarray(np.moveaxis(lin, -1, 1)))


@pytest.mark.parametrize("h,k,s,d,b,e", [(7, 3, 1, 1, 0, 0), (7, 3, 2, 1, 1, 1), (8, 3, 2, 1, 1, 1),
                                         (5, 5, 1, 1, 2, 2), (9, 3, 3, 2, 0, 2), (1, 1, 1, 1, 0, 0),
                                         (1, 3, 1, 1, 1, 1), (6, 2, 4, 3, 1, 0)])
def test_reference_output_size(h, k, s, d, b, e):
    x = np.ones((1, 2, h, h + 1), F)
    w = np.ones((1, 2, k, k), F)
    y = R.binary_conv2d(x, w, np.ones(1, F), strides=(s, s), pads=(b, b, e, e), dilations=(d, d))
    oh = (h + b + e - ((k - 1) * d + 1)) // s + 1
    ow = (h + 1 + b + e - ((k - 1) * d + 1)) // s + 1
    assert y.shape == (1, 1, oh, ow) and y.dtype == np.float32


def test_reference_pads_are_top_left_bottom_right():
    """ONNX order (x1_begin, x2_begin, x1_end, x2_end): a 1x1 kernel shows where the zeros went."""
    x = np.ones((1, 1, 2, 3), F)
    w = np.ones((1, 1, 1, 1), F)
    y = R.binary_conv2d(x, w, np.ones(1, F), pads=(1, 2, 3, 4))[0, 0]
    assert y.shape == (2 + 1 + 3, 3 + 2 + 4)
    expected = np.zeros_like(y)
    expected[1:3, 2:5] = 1
    np.testing.assert_array_equal(y, expected)
    y1 = R.binary_conv2d(x, w, np.ones(1, F), pads=(1, 2, 3, 4), pad_value=1.0)[0, 0]
    np.testing.assert_array_equal(y1, np.ones_like(y1))


def test_reference_rounds_twice_not_fused():
    x = -np.ones((1, 3, 1, 1), F)                                       # x = w = all -1: dot = 3
    scale = np.array([F(1) + F(2.0**-23)], F)
    bias = np.array([-3.0], F)
    got = R.binary_conv2d(x, x, scale, bias=bias)
    assert got[0, 0, 0, 0] == F(F(3) * scale[0] - F(3.0))
    assert got[0, 0, 0, 0] != F(3.0 * float(scale[0]) - 3.0)


def test_reference_input_is_converted_to_float32_first():
    """float64 -1e-300 becomes -0.0 (+1); integer inputs keep their signs."""
    x = np.array([-1e-300, -1e-30, 2.0])[None, :, None, None]           # C = 3
    w = np.ones((1, 3, 1, 1))
    assert R.binary_conv2d(x, w, np.ones(1, F))[0, 0, 0, 0] == 1.0      # +1 - 1 + 1
    wi = np.array([-3, 0, 5], np.int32).reshape(1, 3, 1, 1)
    assert R.binary_conv2d(np.ones((1, 3, 1, 1), F), wi, np.ones(1, F))[0, 0, 0, 0] == 1.0


X = np.ones((1, 3, 5, 5), F)
W = np.ones((2, 3, 3, 3), F)
S = np.ones(2, F)


def nan_at(a, where):
    a = a.copy()
    a[where] = np.nan
    return a


@pytest.mark.parametrize("call,exc,text", [
    (lambda: R.binary_conv2d(X[0], W, S), ValueError, "x must be 4-D"),
    (lambda: R.binary_conv2d(X[None], W, S), ValueError, "x must be 4-D"),
    (lambda: R.binary_conv2d(X, W[0], S), ValueError, "w must be 4-D"),
    (lambda: R.binary_conv2d(X[:, :2], W, S), ValueError, "channels"),
    (lambda: R.binary_conv2d(nan_at(X, (0, 1, 2, 3)), W, S), ValueError, "NaN"),
    (lambda: R.binary_conv2d(X, nan_at(W, (1, 2, 0, 0)), S), ValueError, "NaN"),
    (lambda: R.binary_conv2d(X, W, S, threshold=F(np.nan)), ValueError, "threshold"),
    (lambda: R.binary_conv2d(X, W, S, threshold=np.zeros(2, F)), ValueError, "threshold"),
    (lambda: R.binary_conv2d(X, W, S, threshold=np.zeros(4, F)), ValueError, "threshold"),
    (lambda: R.binary_conv2d(X, W, np.ones(3, F)), ValueError, "scale"),
    (lambda: R.binary_conv2d(X, W, F(1.0)), ValueError, "scale"),
    (lambda: R.binary_conv2d(X, W, np.array([1, 0], F)), ValueError, "scale"),
    (lambda: R.binary_conv2d(X, W, np.array([1, -1], F)), ValueError, "scale"),
    (lambda: R.binary_conv2d(X, W, np.array([1, np.inf], F)), ValueError, "scale"),
    (lambda: R.binary_conv2d(X, W, np.array([np.nan, 1], F)), ValueError, "scale"),
    (lambda: R.binary_conv2d(X, W, S, bias=np.ones(3, F)), ValueError, "bias"),
    (lambda: R.binary_conv2d(X, W, S, pad_value=0.5), ValueError, "pad_value"),
    (lambda: R.binary_conv2d(X, W, S, pad_value=-1.0), ValueError, "pad_value"),
    (lambda: R.binary_conv2d(X, W, S, pad_value=float("nan")), ValueError, "pad_value"),
    (lambda: R.binary_conv2d(X, W, S, pads=(0, -1, 0, 0)), ValueError, "pads"),
    (lambda: R.binary_conv2d(X, W, S, pads=(1, 1)), ValueError, "pads"),
    (lambda: R.binary_conv2d(X, W, S, strides=(0, 1)), ValueError, "strides"),
    (lambda: R.binary_conv2d(X, W, S, dilations=(1, 0)), ValueError, "dilations"),
    (lambda: R.binary_conv2d(X, np.ones((2, 3, 6, 3), F), S), ValueError, "larger"),
    (lambda: R.binary_conv2d(X, W, S, dilations=(3, 1)), ValueError, "larger"),
    (lambda: R.binary_conv2d(np.full((1, 3, 2, 2), "a"), W[:, :, :1, :1], S), TypeError, "x"),
    (lambda: R.binary_conv2d(X, W.astype(np.bool_), S), TypeError, "w"),
    (lambda: R.binary_conv2d(X, W, S, pad_value="0"), TypeError, "pad_value"),
])
def test_reference_rejects(call, exc, text):
    with pytest.raises(exc, match=text):
        call()


def test_reference_pad_value_accepts_ints():
    a = R.binary_conv2d(X, W, S, pads=(1, 1, 1, 1), pad_value=1)
    b = R.binary_conv2d(X, W, S, pads=(1, 1, 1, 1), pad_value=np.float32(1.0))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, np.full((1, 2, 5, 5), 27, F))


# --- the public API on every kernel path -----------------------------------------------------------

# (N, C, H, W, O, k, stride, pad, threshold kind)  -- square kernels / strides / symmetric pads
API_CASES = [
    (1, 3, 9, 9, 8, 3, 1, 1, "zero"),           # ResNet stem-like, C = 3
    (2, 3, 8, 7, 32, 3, 2, 1, "channel"),
    (1, 16, 7, 7, 9, 3, 1, 1, "scalar"),
    (2, 16, 6, 6, 64, 1, 1, 0, "channel"),
    (1, 63, 6, 5, 1, 3, 1, 1, "channel"),
    (2, 64, 6, 6, 8, 3, 2, 1, "zero"),
    (1, 65, 5, 6, 9, 3, 1, 1, "scalar"),
    (1, 64, 7, 7, 32, 1, 2, 0, "zero"),         # 1x1 stride 2 (ResNet downsample shortcut)
    (1, 128, 5, 5, 32, 3, 1, 1, "channel"),
    (2, 128, 6, 6, 9, 3, 2, 1, "scalar"),
    (1, 256, 4, 4, 64, 3, 1, 1, "channel"),
    (1, 256, 3, 3, 8, 1, 1, 0, "zero"),
    (1, 16, 9, 8, 9, 5, 1, 2, "channel"),       # 5x5
    (2, 65, 7, 7, 8, 5, 2, 2, "scalar"),
    (1, 64, 6, 6, 1, 5, 1, 0, "zero"),
]


@functools.lru_cache(maxsize=None)
def api_inputs(case):
    n, c, h, wd, o, k, *_ = case
    rng = np.random.default_rng(seed(case))
    x = random_values(rng, (n, c, h, wd))
    w = random_values(rng, (o, c, k, k), specials=False)
    bias = rng.standard_normal(o).astype(F)
    thr = {"zero": 0.0, "scalar": F(-0.25),
           "channel": rng.standard_normal(c).astype(F) * F(0.5)}[case[-1]]
    if case[-1] == "channel":
        thr[::3] = x[0, ::3, 0, 0]                                       # ties: +1
    return x, w, bias, thr


_EXPECTED = {}


def expected(case, scale, pad_value, with_bias):
    """The reference result, computed once per (case, scale, pad_value, bias) for all ISAs."""
    key = (case, scale.tobytes(), pad_value, with_bias)
    if key not in _EXPECTED:
        x, w, bias, thr = api_inputs(case)
        _, _, _, _, _, _, s, p, _ = case
        _EXPECTED[key] = R.binary_conv2d(x, w, scale, thr, bias if with_bias else None, strides=(s, s),
                                         pads=(p, p, p, p), pad_value=pad_value)
    return _EXPECTED[key]


@pytest.mark.parametrize("pad_value", [0.0, 1.0])
@pytest.mark.parametrize("case", API_CASES, ids=["n{}c{}h{}w{}o{}k{}s{}p{}-{}".format(*c) for c in API_CASES])
def test_api_bit_identical(isa, case, pad_value):
    B = api()
    n, c, h, wd, o, k, s, p, _ = case
    x, w, bias, thr = api_inputs(case)
    packed = B.pack_binary_conv_weights(w)
    assert (packed.out_channels, packed.in_channels, tuple(packed.kernel_shape)) == (o, c, (k, k))
    for with_bias in (False, True):
        b = bias if with_bias else None
        want = expected(case, packed.scale, pad_value, with_bias)
        got = B.binary_conv2d(x, packed, thr, b, strides=(s, s), pads=(p, p, p, p), dilations=(1, 1),
                              pad_value=pad_value)
        assert_same_bits(got, want)
        got_nhwc = B.binary_conv2d(x.transpose(0, 2, 3, 1), packed, thr, b, strides=(s, s),
                                   pads=(p, p, p, p), pad_value=pad_value, layout="NHWC")
        assert_same_bits(got_nhwc, np.ascontiguousarray(want.transpose(0, 2, 3, 1)))


@pytest.mark.parametrize("o,c,k", [(1, 3, 3), (9, 65, 3), (32, 64, 1), (8, 16, 5)])
def test_api_packed_weights(o, c, k):
    B = api()
    rng = np.random.default_rng(o * 1000 + c)
    w = random_values(rng, (o, c, k, k), specials=False)
    packed = B.pack_binary_conv_weights(w)
    assert (packed.out_channels, packed.in_channels, tuple(packed.kernel_shape)) == (o, c, (k, k))
    assert packed.scale.dtype == np.float32 and packed.scale.shape == (o,)
    np.testing.assert_allclose(packed.scale, np.abs(w.astype(np.float64)).mean(axis=(1, 2, 3)), rtol=1e-6)
    scale = random_scale(rng, o)
    explicit = B.pack_binary_conv_weights(w, scale=scale)
    np.testing.assert_array_equal(explicit.scale, scale)
    assert explicit.scale.dtype == np.float32


def test_api_defaults(isa):
    """threshold 0, no bias, stride / dilation 1, no padding, pad_value 0, NCHW."""
    B = api()
    rng = np.random.default_rng(5)
    x = random_values(rng, (1, 65, 6, 7))
    w = random_values(rng, (9, 65, 3, 3))
    scale = random_scale(rng, 9)
    packed = B.pack_binary_conv_weights(w, scale=scale)
    want = R.binary_conv2d(x, w, scale)
    assert_same_bits(B.binary_conv2d(x, packed), want)
    assert_same_bits(B.binary_conv2d(x, packed, 0.0, None, strides=None, pads=None, dilations=None), want)
    assert_same_bits(want, float32_layer(direct_conv(x, w), scale))


@pytest.mark.parametrize("geom", GEOMETRIES[:4] + GEOMETRIES[5:6] + GEOMETRIES[10:],
                         ids=["g0", "g1", "g2", "g3", "g5", "g10"])
def test_api_dilation_and_asymmetric_pads(isa, geom):
    B = api()
    n, c, h, wd, o, kh, kw, strides, pads, dilations = geom
    rng = np.random.default_rng(sum(geom[:7]))
    x = random_values(rng, (n, c, h, wd))
    w = random_values(rng, (o, c, kh, kw), specials=False)
    packed = B.pack_binary_conv_weights(w)
    assert tuple(packed.kernel_shape) == (kh, kw)
    for pad_value in (0.0, 1.0):
        kw_args = dict(strides=strides, pads=pads, dilations=dilations, pad_value=pad_value)
        want = R.binary_conv2d(x, w, packed.scale, F(0.1), None, **kw_args)
        assert_same_bits(B.binary_conv2d(x, packed, F(0.1), **kw_args), want)
        assert_same_bits(B.binary_conv2d(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), packed, F(0.1),
                                         layout="NHWC", **kw_args),
                         np.ascontiguousarray(want.transpose(0, 2, 3, 1)))


def test_api_all_negative_and_all_positive(isa):
    B = api()
    for c in (3, 64, 65, 130):
        x_neg, x_pos = np.full((1, c, 4, 5), -1.0, F), np.full((1, c, 4, 5), 2.0, F)
        w = np.concatenate([np.full((1, c, 3, 3), 0.5, F), np.full((1, c, 3, 3), -0.5, F)])
        packed = B.pack_binary_conv_weights(w)
        for x in (x_neg, x_pos):
            for pad_value in (0.0, 1.0):
                want = R.binary_conv2d(x, w, packed.scale, pads=(1, 1, 1, 1), pad_value=pad_value)
                got = B.binary_conv2d(x, packed, pads=(1, 1, 1, 1), pad_value=pad_value)
                assert_same_bits(got, want)


def test_api_non_contiguous_input(isa):
    B = api()
    rng = np.random.default_rng(11)
    big = random_values(rng, (2, 140, 9, 16))
    x = big[:, 3:133:2, :, ::2]                                           # C = 65, W = 8, strided
    w = random_values(rng, (8, 65, 3, 3), specials=False)
    packed = B.pack_binary_conv_weights(np.asfortranarray(w))
    want = R.binary_conv2d(np.ascontiguousarray(x), w, packed.scale, pads=(1, 1, 1, 1))
    assert_same_bits(B.binary_conv2d(x, packed, pads=(1, 1, 1, 1)), want)
    assert_same_bits(B.binary_conv2d(x.transpose(0, 2, 3, 1), packed, pads=(1, 1, 1, 1), layout="NHWC"),
                     np.ascontiguousarray(want.transpose(0, 2, 3, 1)))


def test_api_threads_give_identical_results():
    B = api()
    rng = np.random.default_rng(12)
    x = random_values(rng, (2, 64, 12, 12))
    w = random_values(rng, (32, 64, 3, 3), specials=False)
    packed = B.pack_binary_conv_weights(w)
    before = eb.cpu_info()["num_threads"]
    try:
        eb.set_num_threads(1)
        one = B.binary_conv2d(x, packed, pads=(1, 1, 1, 1))
        eb.set_num_threads(2)
        two = B.binary_conv2d(x, packed, pads=(1, 1, 1, 1))
    finally:
        eb.set_num_threads(before)
    assert_same_bits(one, two)
    assert_same_bits(one, R.binary_conv2d(x, w, packed.scale, pads=(1, 1, 1, 1)))


def test_api_resnet_3x3_256_at_14x14():
    """One ResNet-18 layer-3 conv (3x3, 256 -> 256, stride 1, pad 1, 14x14) on the active ISA."""
    B = api()
    rng = np.random.default_rng(256)
    x = random_values(rng, (1, 256, 14, 14))
    w = random_values(rng, (256, 256, 3, 3), specials=False)
    thr = (rng.standard_normal(256) * 0.1).astype(F)
    bias = rng.standard_normal(256).astype(F)
    packed = B.pack_binary_conv_weights(w)
    got = B.binary_conv2d(x, packed, thr, bias, strides=(1, 1), pads=(1, 1, 1, 1))
    assert got.shape == (1, 256, 14, 14)
    assert_same_bits(got, R.binary_conv2d(x, w, packed.scale, thr, bias, pads=(1, 1, 1, 1)))


def bad_api_cases():
    """(name, call(B, packed, x), exception, word) -- x [1, 3, 5, 5], packed [2, 3, 3, 3]."""
    return [
        ("x_rank_3", lambda B, P, x: B.binary_conv2d(x[0], P), ValueError, "x"),
        ("x_rank_5", lambda B, P, x: B.binary_conv2d(x[None], P), ValueError, "x"),
        ("channels", lambda B, P, x: B.binary_conv2d(x[:, :2], P), ValueError, "channel"),
        ("channels_nhwc", lambda B, P, x: B.binary_conv2d(x, P, layout="NHWC"), ValueError, "channel"),
        ("nan_x", lambda B, P, x: B.binary_conv2d(nan_at(x, (0, 2, 4, 4)), P), ValueError, "NaN"),
        ("nan_threshold", lambda B, P, x: B.binary_conv2d(x, P, threshold=F(np.nan)), ValueError, "threshold"),
        ("threshold_len", lambda B, P, x: B.binary_conv2d(x, P, threshold=np.zeros(4, F)), ValueError,
         "threshold"),
        ("pad_value_half", lambda B, P, x: B.binary_conv2d(x, P, pad_value=0.5), ValueError, "pad_value"),
        ("pad_value_minus_one", lambda B, P, x: B.binary_conv2d(x, P, pad_value=-1.0), ValueError, "pad_value"),
        ("negative_pads", lambda B, P, x: B.binary_conv2d(x, P, pads=(0, -1, 0, 0)), ValueError, "pads"),
        ("zero_strides", lambda B, P, x: B.binary_conv2d(x, P, strides=(0, 1)), ValueError, "strides"),
        ("zero_dilations", lambda B, P, x: B.binary_conv2d(x, P, dilations=(1, 0)), ValueError, "dilations"),
        ("kernel_too_large", lambda B, P, x: B.binary_conv2d(x[:, :, :2], P), ValueError, ""),
        ("dilated_too_large", lambda B, P, x: B.binary_conv2d(x, P, dilations=(3, 3)), ValueError, ""),
        ("bias_len", lambda B, P, x: B.binary_conv2d(x, P, bias=np.ones(3, F)), ValueError, "bias"),
        ("layout", lambda B, P, x: B.binary_conv2d(x, P, layout="NCWH"), ValueError, "layout"),
        ("string_x", lambda B, P, x: B.binary_conv2d(np.full((1, 3, 5, 5), "a"), P), TypeError, "x"),
        ("scale_len", lambda B, P, x: B.pack_binary_conv_weights(np.ones((2, 3, 3, 3), F), scale=np.ones(3, F)),
         ValueError, "scale"),
        ("scale_zero", lambda B, P, x: B.pack_binary_conv_weights(np.ones((2, 3, 3, 3), F),
                                                                  scale=np.array([1, 0], F)), ValueError, "scale"),
        ("scale_negative", lambda B, P, x: B.pack_binary_conv_weights(np.ones((2, 3, 3, 3), F),
                                                                      scale=np.array([1, -1], F)),
         ValueError, "scale"),
        ("scale_inf", lambda B, P, x: B.pack_binary_conv_weights(np.ones((2, 3, 3, 3), F),
                                                                 scale=np.array([np.inf, 1], F)),
         ValueError, "scale"),
        ("w_nan", lambda B, P, x: B.pack_binary_conv_weights(nan_at(np.ones((2, 3, 3, 3), F), (1, 2, 0, 0))),
         ValueError, "NaN"),
        ("w_rank", lambda B, P, x: B.pack_binary_conv_weights(np.ones((2, 27), F)), ValueError, "w"),
    ]


BAD = bad_api_cases()


@pytest.mark.parametrize("name,call,exc,word", BAD, ids=[b[0] for b in BAD])
def test_api_bad_input_raises(name, call, exc, word):
    B = api()
    packed = B.pack_binary_conv_weights(np.ones((2, 3, 3, 3), F))
    with pytest.raises(exc) as info:
        call(B, packed, np.ones((1, 3, 5, 5), F))
    assert word in str(info.value)
