"""Convolution on every kernel path is bit-exact with a direct int64 loop
(independent of eightbit), over strides, dilations, asymmetric pads, groups
and depthwise, in both layouts, packed and unpacked weights."""

import numpy as np
import pytest

import eightbit as eb


def direct_conv(x, w, xz, wz, strides, dilations, pads, group):
    """Exact NCHW convolution in int64; padding taps hold the zero point."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    top, left, bottom, right = pads
    xp = np.full((n, c, h + top + bottom, wd + left + right), xz, np.int64)
    xp[:, :, top:top + h, left:left + wd] = x
    oh = (h + top + bottom - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (wd + left + right - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    y = np.zeros((n, o, oh, ow), np.int64)
    og = o // group
    for oc in range(o):
        g = oc // og
        for i in range(kh):
            for j in range(kw):
                hs, ws = i * dilations[0], j * dilations[1]
                patch = xp[:, g * cg:(g + 1) * cg, hs:hs + strides[0] * (oh - 1) + 1:strides[0],
                           ws:ws + strides[1] * (ow - 1) + 1:strides[1]] - xz
                y[:, oc] += np.einsum("nchw,c->nhw", patch, w[oc, :, i, j].astype(np.int64) - wz[oc])
    return y.astype(np.int32)


CASES = [
    # n, c, h, w, out_c, k, strides, dilations, pads (top, left, bottom, right), group
    (1, 3, 7, 7, 4, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),
    (2, 4, 9, 8, 6, 3, (2, 1), (1, 2), (0, 1, 2, 0), 2),
    (1, 8, 6, 6, 8, 3, (1, 1), (1, 1), (1, 1, 1, 1), 8),        # depthwise
    (1, 17, 13, 13, 17, 5, (2, 2), (1, 1), (2, 2, 2, 2), 17),   # depthwise 5x5 stride 2
    (1, 72, 9, 9, 72, 3, (1, 1), (1, 1), (1, 1, 1, 1), 72),     # depthwise: 32-channel blocks + a tail
    (2, 100, 7, 6, 100, 3, (2, 2), (2, 1), (0, 2, 1, 1), 100),  # blocks, tail 4, dilation, uneven pads
    (1, 5, 5, 5, 7, 1, (1, 1), (1, 1), (0, 0, 0, 0), 1),         # pointwise: GEMM in place
    (1, 64, 7, 7, 17, 1, (1, 1), (1, 1), (0, 0, 0, 0), 1),
    (1, 3, 13, 13, 16, 7, (2, 2), (1, 1), (3, 3, 3, 3), 1),      # a stem
    (1, 4, 2, 2, 4, 2, (1, 1), (2, 2), (1, 1, 1, 1), 2),
    (1, 1, 1, 1, 3, 1, (1, 1), (1, 1), (0, 0, 0, 0), 1),
]


@pytest.mark.parametrize("x_dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("case", CASES)
def test_conv_integer(isa, rng, case, x_dtype):
    n, c, h, w, o, k, strides, dilations, pads, group = case
    info = np.iinfo(x_dtype)
    x = rng.integers(info.min, info.max + 1, (n, c, h, w), dtype=x_dtype)
    wt = rng.integers(-128, 128, (o, c // group, k, k), dtype=np.int8)
    xz = x_dtype(rng.integers(info.min, info.max + 1))
    wz = rng.integers(-128, 128, o, dtype=np.int8)
    expected = direct_conv(x, wt, int(xz), wz.astype(np.int64), strides, dilations, pads, group)
    kwargs = dict(strides=strides, dilations=dilations, pads=list(pads), group=group)
    np.testing.assert_array_equal(eb.ops.conv_integer(x, wt, xz, wz, **kwargs), expected)
    packed = eb.pack_conv_weights(wt, wz, group=group)
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    got = eb.ops.conv_integer(x_nhwc, packed, xz, layout="NHWC", **kwargs)
    np.testing.assert_array_equal(got, expected.transpose(0, 2, 3, 1))


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_auto_pad(rng, auto_pad):
    x = rng.integers(0, 256, (1, 3, 8, 7), dtype=np.uint8)
    w = rng.integers(-128, 128, (5, 3, 3, 4), dtype=np.int8)
    strides = (2, 2)
    if auto_pad == "VALID":
        pads = (0, 0, 0, 0)
    else:
        begin, end = [], []
        for size, k, s in zip((8, 7), (3, 4), strides):
            total = max(0, (-(-size // s) - 1) * s + k - size)
            lo, hi = total // 2, total - total // 2
            begin.append(lo if auto_pad == "SAME_UPPER" else hi)
            end.append(hi if auto_pad == "SAME_UPPER" else lo)
        pads = (begin[0], begin[1], end[0], end[1])
    expected = direct_conv(x, w, 0, np.zeros(5, np.int64), strides, (1, 1), pads, 1)
    np.testing.assert_array_equal(eb.ops.conv_integer(x, w, auto_pad=auto_pad, strides=strides), expected)


def test_conv1d_matches_2d(rng):
    x = rng.integers(0, 256, (2, 4, 11), dtype=np.uint8)
    w = rng.integers(-128, 128, (3, 4, 3), dtype=np.int8)
    y1 = eb.ops.conv_integer(x, w, np.uint8(9), pads=[1, 2], strides=[2])
    y2 = eb.ops.conv_integer(x[:, :, None, :], w[:, :, None, :], np.uint8(9), pads=[0, 1, 0, 2], strides=[1, 2])
    np.testing.assert_array_equal(y1, y2[:, :, 0, :])


@pytest.mark.parametrize("requant", ["float", "fixed"])
@pytest.mark.parametrize("activation", [None, "relu", "relu6", ("clip", -0.5, 2.0)])
@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[2], CASES[4]])
def test_qlinear_conv_is_conv_then_requantize(isa, rng, case, activation, requant):
    """qlinear_conv == reference requantization of (ConvInteger + B), clamped to the
    quantized activation bounds."""
    from eightbit import reference as ref
    from eightbit.numerics.fixed_point import quantize_multiplier
    from eightbit.numerics.qparams import float_multiplier

    n, c, h, w, o, k, strides, dilations, pads, group = case
    x = rng.integers(0, 256, (n, c, h, w), dtype=np.uint8)
    wt = rng.integers(-127, 128, (o, c // group, k, k), dtype=np.int8)
    x_scale, y_scale = np.float32(0.02), np.float32(rng.uniform(0.05, 0.3))
    w_scale = rng.uniform(0.002, 0.02, o).astype(np.float32)
    xz, yz = np.uint8(rng.integers(0, 256)), np.int8(rng.integers(-20, 20))
    bias = rng.integers(-5000, 5000, o, dtype=np.int32)
    kwargs = dict(strides=strides, dilations=dilations, pads=list(pads), group=group)
    y = eb.ops.qlinear_conv(x, x_scale, xz, wt, w_scale, np.int8(0), y_scale, yz, bias, activation=activation,
                            requant=requant, **kwargs)

    acc = direct_conv(x, wt, int(xz), np.zeros(o, np.int64), strides, dilations, pads, group)
    acc = (acc.astype(np.int64) + bias[None, :, None, None]).astype(np.int32).transpose(0, 2, 3, 1)
    if requant == "float":
        expected = ref.requantize_float(acc, float_multiplier(x_scale, w_scale, y_scale), yz, np.int8)
    else:
        m0, shift = quantize_multiplier(np.float64(x_scale) * w_scale.astype(np.float64) / np.float64(y_scale))
        expected = ref.requantize_fixed(acc, m0, shift, yz, np.int8)
    lo, hi = -128, 127
    if activation is not None:
        bounds = {"relu": (0.0, None), "relu6": (0.0, 6.0)}.get(activation, activation[1:])
        q = lambda v: int(ref.quantize_linear(np.array([v], np.float32), y_scale, yz)[0])  # noqa: E731
        lo = q(bounds[0])
        hi = 127 if bounds[1] is None else q(bounds[1])
    expected = np.clip(expected, lo, hi).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(y, expected)


DEPTHWISE_CASES = [
    # c, h, w, k, strides, dilations, pads
    (1, 5, 6, 3, (1, 1), (1, 1), (1, 1, 1, 1)),
    (17, 7, 7, 3, (2, 2), (1, 1), (0, 1, 2, 1)),
    (64, 9, 8, 3, (1, 1), (2, 1), (2, 1, 2, 1)),
    (65, 6, 6, 5, (2, 1), (1, 1), (2, 2, 2, 2)),
    (130, 4, 5, 5, (1, 2), (1, 2), (3, 0, 1, 4)),
    (8, 9, 9, 7, (1, 1), (1, 1), (3, 3, 3, 3)),   # 7 rows: 2 row groups
    (8, 10, 10, 9, (1, 1), (1, 1), (4, 4, 4, 4)), # 9 rows: 3 row groups of 4
    (3, 2, 2, 1, (1, 1), (1, 1), (0, 0, 0, 0)),
]


@pytest.mark.parametrize("x_dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("weights", ["int8 zp 0", "uint8 zp 128", "wide"])
@pytest.mark.parametrize("case", DEPTHWISE_CASES)
def test_depthwise_paths(isa, rng, case, weights, x_dtype):
    """Depthwise on every ISA, with weights whose w - w_zp fit int8 (the VNNI kernels' path) and
    weights that do not (the int32 path), against direct int64 convolution."""
    c, h, w, k, strides, dilations, pads = case
    info = np.iinfo(x_dtype)
    x = rng.integers(info.min, info.max + 1, (2, c, h, w), dtype=x_dtype)
    xz = x_dtype(rng.integers(info.min, info.max + 1))
    if weights == "int8 zp 0":
        wt, wz = rng.integers(-128, 128, (c, 1, k, k), dtype=np.int8), np.zeros(c, np.int8)
    elif weights == "uint8 zp 128":
        wt, wz = rng.integers(0, 256, (c, 1, k, k), dtype=np.uint8), np.full(c, 128, np.uint8)
    else:
        wt, wz = rng.integers(-128, 128, (c, 1, k, k), dtype=np.int8), np.full(c, 127, np.int8)
        wt.flat[0] = -128  # w - w_zp = -255 for channel 0
    expected = direct_conv(x, wt, int(xz), wz.astype(np.int64), strides, dilations, pads, c)
    packed = eb.pack_conv_weights(wt, wz, group=c)
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    attrs = dict(strides=strides, dilations=dilations, pads=list(pads), group=c)
    got = eb.ops.conv_integer(x_nhwc, packed, xz, layout="NHWC", **attrs)
    np.testing.assert_array_equal(got, expected.transpose(0, 2, 3, 1))

    # Requantized output (the VNNI kernels requantize their accumulators directly).
    from eightbit import reference as ref

    x_scale, y_scale = np.float32(0.03), np.float32(0.7)
    w_scale = rng.uniform(0.002, 0.02, c).astype(np.float32)
    bias = rng.integers(-3000, 3000, c, dtype=np.int32)
    yz = x_dtype(rng.integers(info.min // 2, info.max // 2 + 1))
    want = ref.qlinear_conv(x, x_scale, xz, wt, w_scale, wz, y_scale, yz, bias, **attrs)
    got = eb.ops.qlinear_conv(x_nhwc, x_scale, xz, packed, w_scale, wz, y_scale, yz, bias, layout="NHWC", **attrs)
    np.testing.assert_array_equal(got, want.transpose(0, 2, 3, 1))


DIRECT_CASES = [
    # n, c, h, w, out_c, k, strides, dilations, pads, group: channels per group a multiple of 8, so
    # that (uint8 x, weight zero point 0) the AVX-512 VNNI path reads the taps in place
    (1, 8, 5, 5, 16, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),        # 25 pixels: 4 tiles of 6 + 1; 1 panel
    (3, 8, 3, 3, 16, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),        # tiles across images
    (2, 16, 9, 7, 48, 3, (2, 1), (1, 2), (0, 1, 2, 0), 1),       # 2 + 1 panels, dilation, uneven pads
    (1, 24, 11, 11, 100, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),    # 4 + 2 + 1 panels, the last 4 columns
    (1, 32, 6, 6, 64, 3, (1, 1), (1, 1), (1, 1, 1, 1), 2),       # groups of 16 channels
    (1, 64, 8, 8, 80, 1, (2, 2), (1, 1), (0, 0, 0, 0), 1),       # 1x1 stride 2 (a downsample), no padding
    (1, 16, 9, 9, 32, 5, (2, 2), (1, 1), (2, 1, 0, 3), 1),       # 5x5, asymmetric pads
    (1, 40, 3, 13, 24, 3, (1, 1), (1, 1), (0, 0, 0, 0), 1),      # no pads, 11 pixels: 6 + 5
    # few channels: each kernel row's kw * c bytes one tap, padded to 8 with zero weights
    (2, 3, 15, 13, 64, 7, (2, 2), (1, 1), (3, 3, 3, 3), 1),      # a stem: 21 -> 24 bytes per row
    (1, 4, 6, 7, 20, 3, (1, 2), (2, 1), (1, 0, 2, 1), 1),        # 12 -> 16, dilation in h
    (1, 5, 5, 5, 16, 3, (1, 1), (1, 1), (0, 0, 0, 0), 1),        # 15 -> 16, no pads
    # channels per group a multiple of 64, padded, output rows >= 14 wide: AMX reads 16-pixel
    # row segments in place too
    (1, 256, 4, 14, 40, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),     # K 2304 (K blocks), odd partial panel
    (2, 128, 9, 30, 48, 3, (2, 1), (1, 1), (1, 0, 1, 2), 1),     # segments of 16 + 14 per output row
    (1, 128, 6, 16, 32, 3, (1, 1), (2, 2), (2, 2, 2, 2), 2),     # groups of 64 channels, dilation 2
    (1, 64, 3, 16, 32, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),      # 3 segments: a block with no lower tile
    # padded inputs over 256 KB: copied and computed in bands of output rows
    (2, 64, 48, 48, 16, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),     # a band per image
    (1, 64, 80, 72, 16, 3, (2, 1), (1, 1), (1, 2, 1, 0), 2),     # two bands in the image, groups
    (2, 3, 150, 160, 16, 7, (2, 2), (1, 1), (3, 3, 3, 3), 1),    # kernel rows as taps, a band per image
]


@pytest.mark.parametrize("weights", ["int8 zp 0", "uint8 zp 128"])
@pytest.mark.parametrize("case", DIRECT_CASES)
def test_direct_conv_paths(isa, rng, case, weights):
    """Convolutions the AVX-512 VNNI path computes from the input in place (other paths through im2col),
    int32 and requantized, against direct int64 convolution and eightbit.reference."""
    from eightbit import reference as ref

    n, c, h, w, o, k, strides, dilations, pads, group = case
    x = rng.integers(0, 256, (n, c, h, w), dtype=np.uint8)
    if weights == "int8 zp 0":
        wt, wz = rng.integers(-128, 128, (o, c // group, k, k), dtype=np.int8), np.zeros(o, np.int8)
    else:  # shifted to int8 when packed: zero point 0 again, so the direct path applies
        wt, wz = rng.integers(0, 256, (o, c // group, k, k), dtype=np.uint8), np.full(o, 128, np.uint8)
    xz = np.uint8(rng.integers(0, 256))
    attrs = dict(strides=strides, dilations=dilations, pads=list(pads), group=group)
    packed = eb.pack_conv_weights(wt, wz, group=group)
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    expected = direct_conv(x, wt, int(xz), wz.astype(np.int64), strides, dilations, pads, group)
    got = eb.ops.conv_integer(x_nhwc, packed, xz, layout="NHWC", **attrs)
    np.testing.assert_array_equal(got, expected.transpose(0, 2, 3, 1))

    x_scale, y_scale = np.float32(0.02), np.float32(0.5)
    w_scale = rng.uniform(0.002, 0.02, o).astype(np.float32)
    bias = rng.integers(-5000, 5000, o, dtype=np.int32)
    yz = np.uint8(rng.integers(0, 256))
    want = ref.qlinear_conv(x, x_scale, xz, wt, w_scale, wz, y_scale, yz, bias, **attrs)
    got = eb.ops.qlinear_conv(x_nhwc, x_scale, xz, packed, w_scale, wz, y_scale, yz, bias, layout="NHWC", **attrs)
    np.testing.assert_array_equal(got, want.transpose(0, 2, 3, 1))


@pytest.mark.parametrize("shape", [
    (360, 16, 4, 32),   # im2col written whole, rows shared by 2 threads
    (1, 64, 56, 64),    # im2col produced chunk by chunk inside the GEMM (patches > 1 MB)
])
def test_threaded_conv_paths(isa, rng, shape):
    """Convolutions big enough for every thread, against eightbit.reference (NumPy)."""
    from eightbit import reference as ref

    n, c, hw, o = shape
    x = rng.integers(0, 256, (n, c, hw, hw), dtype=np.uint8)
    w = rng.integers(-127, 128, (o, c, 3, 3), dtype=np.int8)
    args = (np.float32(0.02), np.uint8(7), w, rng.uniform(0.005, 0.02, o).astype(np.float32), np.zeros(o, np.int8),
            np.float32(0.4), np.uint8(3), rng.integers(-999, 999, o, dtype=np.int32))
    before = eb.cpu_info()["num_threads"]
    eb.set_num_threads(2)
    try:
        got = eb.ops.qlinear_conv(x, *args, pads=[1, 1, 1, 1])
    finally:
        eb.set_num_threads(before)
    np.testing.assert_array_equal(got, ref.qlinear_conv(x, *args, pads=[1, 1, 1, 1]))
