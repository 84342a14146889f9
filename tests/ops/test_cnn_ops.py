"""eightbit.ops' CNN companion operators (C++) against eightbit.reference, bit for bit, on every
instruction set this CPU has: pools over a grid of shapes and window attributes, QLinearAdd /
QLinearMul on every byte pair and on broadcast shapes, the table-based operators on every byte;
then bad input (a named TypeError / ValueError, never a crash), from eightbit.ops and from the C++
bindings directly.

The reference is computed once per case and compared with the C++ result on each ISA in turn.
"""
import itertools

import numpy as np
import pytest

import eightbit as eb
from eightbit import _core, ops
from eightbit import reference as ref

F = np.float32
ISAS = eb.cpu_info()["available"]
DTYPES = [np.uint8, np.int8]
LAYOUTS = ["NCHW", "NHWC"]
SIZES = [1, 2, 7, 13, 56]
CHANNELS = [1, 3, 4, 17, 64]
KERNELS = [1, 2, 3, 5, 7]


def rand(rng, dtype, shape):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape, dtype=np.int64).astype(dtype)


def on_every_isa(fn):
    """[(isa, fn())] with eightbit.ops forced onto each instruction set, then the default restored."""
    before = eb.cpu_info()["isa"]
    try:
        out = []
        for isa in ISAS:
            eb.set_isa(isa)
            out.append((isa, fn()))
        return out
    finally:
        eb.set_isa(before)


def assert_same_everywhere(fn, want, msg=""):
    want = np.asarray(want)
    for isa, got in on_every_isa(fn):
        got = np.asarray(got)
        assert got.dtype == want.dtype and got.shape == want.shape, f"{isa} {msg}: {got.dtype}{got.shape} vs {want.dtype}{want.shape}"
        np.testing.assert_array_equal(got, want, err_msg=f"{isa} {msg}")


def to_layout(x_nchw, layout):
    return np.ascontiguousarray(np.moveaxis(x_nchw, 1, -1)) if layout == "NHWC" else x_nchw


# ---------------------------------------------------------------------------------------- pools

def window_cases(rng, count, dilations=True):
    """(C, [H, W], attrs) covering every channel count, size, kernel, stride, dilation, ceil_mode,
    auto_pad and asymmetric pads; kernels are shrunk where they cannot fit the padded input."""
    hw = list(itertools.product(SIZES, SIZES))
    for i in range(count):
        c = CHANNELS[i % len(CHANNELS)]
        h, w = hw[(i * 7) % len(hw)]
        k = [KERNELS[(i + j) % len(KERNELS)] for j in (0, 2)]
        attrs = dict(strides=[int(v) for v in rng.integers(1, 3, 2)], ceil_mode=(i // 2) % 2)
        if dilations:
            attrs["dilations"] = [int(v) for v in rng.integers(1, 3, 2)]
        d = attrs.get("dilations", [1, 1])
        auto_pad = ["NOTSET", "NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"][i % 6]
        pads = [int(v) for v in rng.integers(0, 4, 4)]
        for a, n in enumerate((h, w)):
            limit = n + (0 if auto_pad == "VALID" else pads[a] + pads[a + 2]) if auto_pad in ("NOTSET", "VALID") else n
            while (k[a] - 1) * d[a] + 1 > max(limit, 1) and k[a] > 1:
                k[a] -= 1
            if (k[a] - 1) * d[a] + 1 > max(limit, 1):
                d[a] = 1
        attrs["kernel_shape"] = k
        if auto_pad == "NOTSET":
            attrs["pads"] = pads
        else:
            attrs["auto_pad"] = auto_pad
        yield c, [h, w], attrs


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_max_pool_grid(dtype, layout):
    rng = np.random.default_rng(1 + (layout == "NHWC") + 2 * (dtype == np.int8))
    for c, (h, w), attrs in window_cases(rng, 50):
        x = to_layout(rand(rng, dtype, (2 if h < 56 else 1, c, h, w)), layout)
        want = ref.max_pool(x, layout=layout, **attrs)
        assert_same_everywhere(lambda: ops.max_pool(x, layout=layout, **attrs), want, f"C={c} {h}x{w} {attrs}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_qlinear_average_pool_grid(dtype, layout):
    """count_include_pad on every other case; power-of-two scales on some (exact .5 ties)."""
    rng = np.random.default_rng(11 + (layout == "NHWC") + 2 * (dtype == np.int8))
    for i, (c, (h, w), attrs) in enumerate(window_cases(rng, 50, dilations=False)):
        x = to_layout(rand(rng, dtype, (2 if h < 56 else 1, c, h, w)), layout)
        x_s, y_s = (F(2.0**-3), F(2.0 ** -int(rng.integers(0, 5)))) if i % 4 == 0 else (
            F(rng.uniform(0.01, 0.2)), F(rng.uniform(0.01, 0.2)))
        q = (x_s, rand(rng, dtype, ()), y_s, rand(rng, dtype, ()))
        attrs["count_include_pad"] = i % 2
        with np.errstate(invalid="ignore"):                       # 0 / 0: a window inside the padding
            want = ref.qlinear_average_pool(x, *q, layout=layout, **attrs)
        assert_same_everywhere(lambda: ops.qlinear_average_pool(x, *q, layout=layout, **attrs), want,
                               f"C={c} {h}x{w} {attrs}")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_pools_in_one_and_three_dimensions(layout):
    rng = np.random.default_rng(21)
    for spatial, attrs in [((9,), dict(kernel_shape=[3], strides=[2], pads=[1, 2], ceil_mode=1)),
                           ((13,), dict(kernel_shape=[5], auto_pad="SAME_LOWER")),
                           ((4, 5, 6), dict(kernel_shape=[2, 3, 2], strides=[2, 1, 2], pads=[1, 0, 1, 0, 2, 1])),
                           ((3, 7, 2), dict(kernel_shape=[3, 2, 2], ceil_mode=1, strides=[2, 2, 1]))]:
        for dtype in DTYPES:
            x = to_layout(rand(rng, dtype, (2, 5) + spatial), layout)
            want = ref.max_pool(x, layout=layout, **attrs)
            assert_same_everywhere(lambda: ops.max_pool(x, layout=layout, **attrs), want, str(attrs))
            q = (F(0.05), rand(rng, dtype, ()), F(0.03), rand(rng, dtype, ()))
            for cip in (0, 1):
                want = ref.qlinear_average_pool(x, *q, layout=layout, count_include_pad=cip, **attrs)
                assert_same_everywhere(
                    lambda: ops.qlinear_average_pool(x, *q, layout=layout, count_include_pad=cip, **attrs), want,
                    f"{attrs} cip={cip}")


def test_average_pool_over_the_whole_image_takes_the_integer_formula():
    """kernel = image, no pads: ONNX Runtime's global-average formula (differs from the windowed
    float32 one on some inputs; the reference has both)."""
    rng = np.random.default_rng(22)
    for dtype, layout in itertools.product(DTYPES, LAYOUTS):
        x = to_layout(rand(rng, dtype, (2, 17, 7, 7)), layout)
        q = (F(0.1), rand(rng, dtype, ()), F(0.0123), rand(rng, dtype, ()))
        want = ref.qlinear_average_pool(x, *q, kernel_shape=[7, 7], layout=layout)
        assert_same_everywhere(lambda: ops.qlinear_average_pool(x, *q, kernel_shape=[7, 7], layout=layout), want)
        gap = ops.qlinear_global_average_pool(x, *q, layout=layout)
        np.testing.assert_array_equal(gap, want)


def test_max_pool_windows_entirely_in_the_padding_give_the_minimum():
    x = np.full((1, 2, 3, 3), 7, np.int8)
    attrs = dict(kernel_shape=[2, 2], pads=[3, 0, 0, 0])            # first rows see only padding
    want = ref.max_pool(x, **attrs)
    assert (want[:, :, 0] == -128).all()
    assert_same_everywhere(lambda: ops.max_pool(x, **attrs), want)


def test_max_pool_matches_a_direct_loop():
    """Independent of the reference: the maximum over the in-bounds taps, by plain loops."""
    rng = np.random.default_rng(23)
    x = rand(rng, np.int8, (1, 3, 6, 7))
    k, s, d, (pt, pl, pb, pr) = (3, 2), (2, 1), (1, 2), (1, 2, 0, 1)
    got = ops.max_pool(x, kernel_shape=list(k), strides=list(s), dilations=list(d), pads=[pt, pl, pb, pr])
    oh = (6 + pt + pb - (k[0] - 1) * d[0] - 1) // s[0] + 1
    ow = (7 + pl + pr - (k[1] - 1) * d[1] - 1) // s[1] + 1
    assert got.shape == (1, 3, oh, ow)
    for c, i, j in itertools.product(range(3), range(oh), range(ow)):
        taps = [x[0, c, i * s[0] - pt + a * d[0], j * s[1] - pl + b * d[1]]
                for a in range(k[0]) for b in range(k[1])
                if 0 <= i * s[0] - pt + a * d[0] < 6 and 0 <= j * s[1] - pl + b * d[1] < 7]
        assert got[0, c, i, j] == max(taps)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_qlinear_global_average_pool_shapes(layout):
    rng = np.random.default_rng(24)
    for dtype, c, spatial in itertools.product(DTYPES, CHANNELS, [(1, 1), (2, 7), (13, 13), (56, 56), (5,), (2, 3, 4)]):
        x = to_layout(rand(rng, dtype, (2, c) + spatial), layout)
        q = (F(rng.uniform(0.01, 0.2)), rand(rng, dtype, ()), F(rng.uniform(0.0005, 0.2)), rand(rng, dtype, ()))
        want = ref.qlinear_global_average_pool(x, *q, layout=layout)
        assert_same_everywhere(lambda: ops.qlinear_global_average_pool(x, *q, layout=layout), want, f"{c} {spatial}")


def test_global_average_pool_int32_wrap_matches_the_reference():
    """A sum beyond 2^31 (uint8, 2^24 - 1 pixels would be needed for real data; here many pixels of
    255 with zero point 0) wraps as the reference's int32 accumulator does."""
    x = np.full((1, 1, 3000, 3000), 255, np.uint8)                 # 255 * 9e6 > 2^31
    q = (F(1.0), np.uint8(0), F(1.0), np.uint8(0))
    want = ref.qlinear_global_average_pool(x, *q)
    assert_same_everywhere(lambda: ops.qlinear_global_average_pool(x, *q), want)


def test_pools_on_empty_tensors():
    """(The reference's average pool cannot reshape an empty batch; the shape is checked instead.)"""
    for x in (np.zeros((0, 3, 4, 4), np.uint8), np.zeros((2, 0, 4, 4), np.uint8)):
        want = ref.max_pool(x, kernel_shape=[2, 2])
        assert_same_everywhere(lambda: ops.max_pool(x, kernel_shape=[2, 2]), want)
        q = (F(0.1), np.uint8(3), F(0.1), np.uint8(4))
        assert_same_everywhere(lambda: ops.qlinear_average_pool(x, *q, kernel_shape=[2, 2]), want)
        for layout in LAYOUTS:
            gap = ops.qlinear_global_average_pool(to_layout(x, layout), *q, layout=layout)
            assert gap.shape == to_layout(np.zeros(x.shape[:2] + (1, 1)), layout).shape


# ------------------------------------------------------------------------------- QLinearAdd / Mul

def scale_sets(rng, op, trials):
    for t in range(trials):
        if t % 3 == 0:                                             # exact ties with odd zero points
            yield F(0.5), F(0.25), F(2.0 ** -int(rng.integers(0, 4)))
        else:
            a_s, b_s = F(rng.uniform(0.01, 1)), F(rng.uniform(0.01, 1))
            yield a_s, b_s, F(rng.uniform(0.3, 1.5) * max(a_s, b_s) * (1 if op == "add" else 100 * max(a_s, b_s)))


@pytest.mark.parametrize("op", ["add", "mul"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_byte_pair(op, dtype):
    """All 65536 (a, b) pairs as one flat tensor and as (256, 1) + (256, 256) broadcasts (which
    reverse QLinearAdd's fma order), under random and power-of-two scales."""
    fn, ref_fn = (ops.qlinear_add, ref.qlinear_add) if op == "add" else (ops.qlinear_mul, ref.qlinear_mul)
    rng = np.random.default_rng(31 + (op == "mul") + 2 * (dtype == np.int8))
    vals = np.arange(256, dtype=np.uint8).view(dtype)
    shapes = [(np.repeat(vals, 256), np.tile(vals, 256)), (vals.reshape(256, 1), np.tile(vals, (256, 1))),
              (np.tile(vals, (256, 1)), vals.reshape(256, 1))]
    for a_s, b_s, c_s in scale_sets(rng, op, 6):
        zps = [rand(rng, dtype, ()) for _ in range(3)]
        for a, b in shapes:
            args = (a, a_s, zps[0], b, b_s, zps[1], c_s, zps[2])
            assert_same_everywhere(lambda: fn(*args), ref_fn(*args), f"{a.shape}+{b.shape} {a_s} {b_s} {c_s}")


BROADCASTS = [((1, 56, 56, 64), (1, 56, 56, 64)), ((1, 7, 7, 64), (64,)), ((64,), (1, 7, 7, 64)),
              ((2, 17, 13, 13), (1, 17, 1, 1)), ((1, 17, 1, 1), (2, 17, 13, 13)), ((3, 1, 7), (1, 4, 7)),
              ((5, 1), (1, 6)), ((), (5, 3)), ((5, 3), ()), ((4, 1), ()), ((1,), (1,)), ((), ()),
              ((2, 3, 1, 5, 1), (1, 3, 4, 1, 6)), ((0, 3), (3,)), ((6, 1, 3), (1, 0, 3)), ((3, 1), (2, 3, 1))]


@pytest.mark.parametrize("op", ["add", "mul"])
@pytest.mark.parametrize("a_shape,b_shape", BROADCASTS, ids=[f"{a}x{b}" for a, b in BROADCASTS])
def test_broadcasting(op, a_shape, b_shape):
    fn, ref_fn = (ops.qlinear_add, ref.qlinear_add) if op == "add" else (ops.qlinear_mul, ref.qlinear_mul)
    rng = np.random.default_rng(41)
    for dtype in DTYPES:
        for a_s, b_s, c_s in scale_sets(rng, op, 2):
            args = (rand(rng, dtype, a_shape), a_s, rand(rng, dtype, ()), rand(rng, dtype, b_shape), b_s,
                    rand(rng, dtype, ()), c_s, rand(rng, dtype, ()))
            assert_same_everywhere(lambda: fn(*args), ref_fn(*args))


def test_binary_ops_on_non_contiguous_and_python_scalar_arguments():
    rng = np.random.default_rng(42)
    a = rand(rng, np.uint8, (8, 20))[:, ::2]
    b = np.asfortranarray(rand(rng, np.uint8, (8, 10)))
    for args in [(a, F(0.1), np.uint8(3), b, F(0.2), np.uint8(200), F(0.3), np.uint8(128)),
                 (a, 0.1, np.array([3], np.uint8), b, np.array(0.2), np.uint8(200), [0.3], np.array(128, np.uint8))]:
        assert_same_everywhere(lambda: ops.qlinear_add(*args), ref.qlinear_add(*args))
        assert_same_everywhere(lambda: ops.qlinear_mul(*args), ref.qlinear_mul(*args))


def test_huge_scale_ratios_saturate_like_the_reference():
    """Ratios above ~8e6 (|v| >= 2^31) and an infinite ratio (NaN from 0 * inf) follow the
    reference's clamp: qmax for huge positive values, qmin for NaN."""
    vals = np.arange(256, dtype=np.uint8)
    for scales in [(F(1e30), F(1.0), F(1e-8)), (F(3e38), F(1.0), F(1e-38))]:
        for fn, ref_fn in [(ops.qlinear_add, ref.qlinear_add), (ops.qlinear_mul, ref.qlinear_mul)]:
            args = (np.repeat(vals, 256), scales[0], np.uint8(7), np.tile(vals, 256), scales[1], np.uint8(9),
                    scales[2], np.uint8(11))
            with np.errstate(all="ignore"):
                want = ref_fn(*args)
            assert_same_everywhere(lambda: fn(*args), want, str(scales))


# -------------------------------------------------------------------------------- lookup tables

@pytest.mark.parametrize("x_dtype", DTYPES)
@pytest.mark.parametrize("y_dtype", DTYPES)
def test_lookup_table(x_dtype, y_dtype):
    """Every byte, at lengths around the vector widths (tails) and on a strided view."""
    rng = np.random.default_rng(51)
    table = rand(rng, y_dtype, 256)
    for n in [0, 1, 31, 32, 33, 63, 64, 65, 200, 4099]:
        x = rand(rng, x_dtype, n)
        x[: min(n, 256)] = np.arange(256, dtype=np.uint8).view(x_dtype)[: min(n, 256)]
        assert_same_everywhere(lambda: ops.lookup_table(x, table), table[x.view(np.uint8)], str(n))
    x = rand(rng, x_dtype, (3, 70, 5))[:, ::3]
    assert_same_everywhere(lambda: ops.lookup_table(x, table), ref.lookup_table(x, table))
    t = ops.make_lookup_table(np.tanh, F(0.05), x_dtype(3), F(1 / 128), y_dtype(0), x_dtype, y_dtype)
    np.testing.assert_array_equal(t, ref.make_lookup_table(np.tanh, F(0.05), x_dtype(3), F(1 / 128), y_dtype(0),
                                                           x_dtype, y_dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_leaky_relu_and_sigmoid_on_every_byte(dtype):
    rng = np.random.default_rng(52)
    x = np.tile(np.arange(256, dtype=np.uint8).view(dtype), 3).reshape(2, 3, 128)
    for trial in range(12):
        x_s, x_zp, y_zp = F(rng.uniform(0.001, 0.3)), rand(rng, dtype, ()), rand(rng, dtype, ())
        alpha = F(rng.uniform(0.001, 0.5)) if trial % 2 else float(rng.uniform(0.001, 0.5))
        y_s = F(rng.uniform(0.001, 0.1))
        want = ref.qlinear_leaky_relu(x, x_s, x_zp, y_s, y_zp, alpha=alpha)
        assert_same_everywhere(lambda: ops.qlinear_leaky_relu(x, x_s, x_zp, y_s, y_zp, alpha=alpha), want)
        y_s = F(rng.uniform(1 / 300, 1 / 100))
        want = ref.qlinear_sigmoid(x, x_s, x_zp, y_s, y_zp)
        assert_same_everywhere(lambda: ops.qlinear_sigmoid(x, x_s, x_zp, y_s, y_zp), want)
        # the same values through the reference's slow path (1-element arrays, Python floats)
        args = (x, np.array([x_s]), np.array([x_zp]), float(y_s), y_zp)
        np.testing.assert_array_equal(ops.qlinear_sigmoid(*args), want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_qlinear_concat(dtype):
    """Every axis (negative too), inputs with the output's parameters (copied) and others."""
    rng = np.random.default_rng(53)
    for trial in range(24):
        rank = 1 + trial % 4
        axis = int(rng.integers(-rank, rank))
        base = [int(v) for v in rng.integers(1, 5, rank)]
        y_s, y_zp = F(rng.uniform(0.01, 0.2)), rand(rng, dtype, ())
        triples = []
        for i in range(1 + trial % 3):
            shape = list(base)
            shape[axis] = int(rng.integers(0 if i else 1, 5))
            s, zp = (y_s, y_zp) if (trial + i) % 2 else (F(rng.uniform(0.01, 0.3)), rand(rng, dtype, ()))
            triples.append((rand(rng, dtype, shape), s, zp))
        want = ref.qlinear_concat(y_s, y_zp, triples, axis=axis)
        assert_same_everywhere(lambda: ops.qlinear_concat(y_s, y_zp, triples, axis=axis), want, f"axis {axis}")


def test_large_inputs_split_over_threads_give_the_same_bits():
    rng = np.random.default_rng(54)
    a, b = rand(rng, np.uint8, (3, 64, 64, 32)), rand(rng, np.uint8, (64, 1, 32))
    x = rand(rng, np.int8, (2, 57, 61, 24))
    q = (F(0.03), np.uint8(100), F(0.02), np.uint8(140), F(0.04), np.uint8(120))
    before = eb.cpu_info()["num_threads"]
    eb.set_num_threads(2)
    try:
        np.testing.assert_array_equal(ops.qlinear_add(a, *q[:2], b, *q[2:]), ref.qlinear_add(a, *q[:2], b, *q[2:]))
        np.testing.assert_array_equal(ops.qlinear_mul(a, *q[:2], b, *q[2:]), ref.qlinear_mul(a, *q[:2], b, *q[2:]))
        attrs = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], layout="NHWC")
        np.testing.assert_array_equal(ops.max_pool(x, **attrs), ref.max_pool(x, **attrs))
        qx = (F(0.05), np.int8(-3), F(0.04), np.int8(5))
        np.testing.assert_array_equal(ops.qlinear_average_pool(x, *qx, **attrs), ref.qlinear_average_pool(x, *qx, **attrs))
        table = rand(rng, np.uint8, 256)
        np.testing.assert_array_equal(ops.lookup_table(x, table), ref.lookup_table(x, table))
    finally:
        eb.set_num_threads(before)


# ------------------------------------------------------------------------------------ bad input

u8, i8 = np.uint8, np.int8
X4 = np.zeros((1, 2, 5, 5), u8)
Q = (F(0.1), u8(3), F(0.1), u8(4))
BIN = (np.zeros((2, 3), u8), F(0.1), u8(0), np.zeros((2, 3), u8), F(0.1), u8(0), F(0.1), u8(0))


def _with(args, i, value):
    return args[:i] + (value,) + args[i + 1:]


BAD_OPS = [
    (lambda: ops.qlinear_add(*_with(BIN, 0, np.zeros((2, 3), np.int16))), TypeError, "a"),
    (lambda: ops.qlinear_add(*_with(BIN, 3, np.zeros((2, 3), i8))), TypeError, "b"),
    (lambda: ops.qlinear_add(*_with(BIN, 3, np.zeros((4, 3), u8))), ValueError, "broadcast"),
    (lambda: ops.qlinear_add(*_with(BIN, 1, F(0))), ValueError, "a_scale"),
    (lambda: ops.qlinear_mul(*_with(BIN, 4, F(np.nan))), ValueError, "b_scale"),
    (lambda: ops.qlinear_mul(*_with(BIN, 6, np.ones(2, F))), ValueError, "c_scale"),
    (lambda: ops.qlinear_mul(*_with(BIN, 5, i8(0))), TypeError, "b_zero_point"),
    (lambda: ops.qlinear_add(*_with(BIN, 7, np.zeros(2, u8))), ValueError, "c_zero_point"),
    (lambda: ops.max_pool(X4.astype(np.float32), kernel_shape=[2, 2]), TypeError, "x"),
    (lambda: ops.max_pool(np.zeros((2, 5), u8), kernel_shape=[2]), ValueError, "x"),
    (lambda: ops.max_pool(np.zeros((1, 1, 2, 2, 2, 2), u8), kernel_shape=[1, 1, 1, 1]), ValueError, "x"),
    (lambda: ops.max_pool(X4, kernel_shape=None), ValueError, "kernel_shape"),
    (lambda: ops.max_pool(X4, kernel_shape=[2]), ValueError, "kernel_shape"),
    (lambda: ops.max_pool(X4, kernel_shape=[0, 2]), ValueError, "kernel_shape"),
    (lambda: ops.max_pool(X4, kernel_shape=[9, 2]), ValueError, "kernel"),
    (lambda: ops.max_pool(X4, kernel_shape=[2, 2], strides=[0, 1]), ValueError, "strides"),
    (lambda: ops.max_pool(X4, kernel_shape=[2, 2], dilations=[1, -1]), ValueError, "dilations"),
    (lambda: ops.max_pool(X4, kernel_shape=[2, 2], pads=[0, -1, 0, 0]), ValueError, "pads"),
    (lambda: ops.max_pool(X4, kernel_shape=[2, 2], pads=[1, 1, 1, 1], auto_pad="VALID"), ValueError, "pads"),
    (lambda: ops.max_pool(X4, kernel_shape=[2, 2], auto_pad="SAME"), ValueError, "auto_pad"),
    (lambda: ops.max_pool(X4, kernel_shape=[2, 2], ceil_mode=2), ValueError, "ceil_mode"),
    (lambda: ops.max_pool(X4, kernel_shape=[2, 2], layout="NWHC"), ValueError, "layout"),
    (lambda: ops.qlinear_average_pool(X4, F(-1), u8(0), F(1), u8(0), kernel_shape=[2, 2]), ValueError, "x_scale"),
    (lambda: ops.qlinear_average_pool(X4, F(1), i8(0), F(1), u8(0), kernel_shape=[2, 2]), TypeError, "x_zero_point"),
    (lambda: ops.qlinear_average_pool(X4, *Q, kernel_shape=[2, 2], count_include_pad=3), ValueError,
     "count_include_pad"),
    (lambda: ops.qlinear_global_average_pool(X4, F(1), u8(0), F(np.inf), u8(0)), ValueError, "y_scale"),
    (lambda: ops.qlinear_global_average_pool(X4, F(1), u8(0), F(1), np.zeros(3, u8)), ValueError, "y_zero_point"),
    (lambda: ops.qlinear_global_average_pool(np.zeros((1, 2, 0), u8), *Q), ValueError, "x"),
    (lambda: ops.qlinear_global_average_pool(np.zeros((1, 2), u8), *Q), ValueError, "x"),
    (lambda: ops.lookup_table(X4, np.zeros(255, u8)), ValueError, "table"),
    (lambda: ops.lookup_table(X4, np.zeros(256, np.int32)), TypeError, "table"),
    (lambda: ops.lookup_table(X4.astype(np.uint16), np.zeros(256, u8)), TypeError, "x"),
    (lambda: ops.qlinear_leaky_relu(X4, *Q, alpha=np.inf), ValueError, "alpha"),
    (lambda: ops.qlinear_leaky_relu(X4, F(1), u8(0), F(0), u8(0)), ValueError, "y_scale"),
    (lambda: ops.qlinear_sigmoid(X4, F(1), i8(0), F(1), u8(0)), TypeError, "x_zero_point"),
    (lambda: ops.qlinear_concat(F(1), u8(0), [], axis=0), ValueError, "inputs"),
    (lambda: ops.qlinear_concat(F(1), u8(0), [(X4, F(1), u8(0))], axis=4), ValueError, "axis"),
    (lambda: ops.qlinear_concat(F(1), u8(0), [(X4, F(1), u8(0))], axis=1.0), TypeError, "axis"),
    (lambda: ops.qlinear_concat(F(1), u8(0), [(X4, F(1), u8(0)), (X4[0], F(1), u8(0))], axis=1), ValueError,
     "inputs"),
    (lambda: ops.qlinear_concat(F(1), u8(0), [(X4, F(1), u8(0)), (X4[:, :, :2], F(1), u8(0))], axis=1), ValueError,
     "inputs"),
    (lambda: ops.qlinear_concat(F(1), u8(0), [(X4.view(i8), F(1), u8(0))], axis=1), TypeError, "inputs[0]"),
    (lambda: ops.qlinear_concat(F(1), u8(0), [(X4, F(0), u8(0))], axis=1), ValueError, "x_scale"),
    (lambda: ops.qlinear_concat(F(1), u8(0), [(X4, F(1))], axis=1), ValueError, "inputs[0]"),
]


@pytest.mark.parametrize("call,exc,word", BAD_OPS)
def test_bad_input_raises_named_error(call, exc, word):
    with pytest.raises(exc) as info:
        call()
    assert word in str(info.value)


X5 = np.zeros((1, 1, 4, 4, 3), u8)
T3 = [1, 2, 2]
BAD_CORE = [
    (lambda: _core.qlinear_add(np.zeros(3, u8), 1.0, 0, np.zeros(4, u8), 1.0, 0, 1.0, 0, False), ValueError, "broadcast"),
    (lambda: _core.qlinear_add(np.zeros(3, u8), 1.0, 0, np.zeros(3, i8), 1.0, 0, 1.0, 0, False), TypeError, "b"),
    (lambda: _core.qlinear_mul(np.zeros(3, u8), 1.0, 256, np.zeros(3, u8), 1.0, 0, 1.0, 0), ValueError, "a_zero_point"),
    (lambda: _core.qlinear_mul(np.zeros(3, i8), 1.0, 0, np.zeros(3, i8), 1.0, -129, 1.0, 0), ValueError,
     "b_zero_point"),
    (lambda: _core.qlinear_mul(np.zeros(3, u8), 1.0, 0, np.zeros(3, u8), float("nan"), 0, 1.0, 0), ValueError,
     "b_scale"),
    (lambda: _core.max_pool_ndhwc(X5[0], T3, T3, T3, [0] * 6, False), ValueError, "x"),
    (lambda: _core.max_pool_ndhwc(X5, [1, 0, 2], T3, T3, [0] * 6, False), ValueError, "kernel_shape"),
    (lambda: _core.max_pool_ndhwc(X5, T3, [1, 1, 0], T3, [0] * 6, False), ValueError, "strides"),
    (lambda: _core.max_pool_ndhwc(X5, T3, T3, [0, 1, 1], [0] * 6, False), ValueError, "dilations"),
    (lambda: _core.max_pool_ndhwc(X5, T3, T3, T3, [0, 0, 0, 0, -1, 0], False), ValueError, "pads"),
    (lambda: _core.max_pool_ndhwc(X5, [1, 9, 1], T3, T3, [0] * 6, False), ValueError, "kernel"),
    (lambda: _core.max_pool_ndhwc(X5, [1, 1, 1], T3, T3, [0, 2**30, 2**30, 0, 2**30, 2**30], False), ValueError,
     "pads"),
    (lambda: _core.qlinear_average_pool_ndhwc(X5, 0.0, 0, 1.0, 0, T3, T3, [0] * 6, False, False), ValueError,
     "x_scale"),
    (lambda: _core.qlinear_global_average_pool(np.zeros((2, 3), u8), 1.0, 0, 1.0, 0), ValueError, "x"),
    (lambda: _core.qlinear_global_average_pool(np.zeros((2, 0, 3), u8), 1.0, 0, 1.0, 0), ValueError, "x"),
    (lambda: _core.lookup_table(X5, np.zeros((16, 16), u8)), ValueError, "table"),
    (lambda: _core.concat([X5, X5[:, :, :2]], [None, None], 1), ValueError, "inputs[1]"),
    (lambda: _core.concat([X5, X5], [None], 1), ValueError, "tables"),
    (lambda: _core.concat([X5], [None], 5), ValueError, "axis"),
    (lambda: _core.concat([X5], [np.zeros(256, i8)], 1), TypeError, "tables"),
    (lambda: _core.concat([X5, X5[0]], [None, None], 0), ValueError, "inputs[1]"),
    (lambda: _core.concat([], [], 0), ValueError, "inputs"),
]


@pytest.mark.parametrize("call,exc,word", BAD_CORE)
def test_core_bindings_validate_before_touching_memory(call, exc, word):
    with pytest.raises(exc) as info:
        call()
    assert word in str(info.value)
