"""Bit-exact parity with ONNX Runtime for issue 3's operators: ConvInteger and QLinearConv (default
domain), MaxPool on 8-bit tensors, and the com.microsoft QLinearAdd / QLinearMul /
QLinearAveragePool / QLinearGlobalAveragePool / QLinearConcat / QLinearLeakyRelu / QLinearSigmoid.

Every test runs on eightbit.reference and on eightbit.ops (C++) forced onto each instruction set
this CPU has (`conv_impl`; `impl`, for the companion operators, is the same list).
Inputs are drawn so that rounding ties (power-of-two scales, every byte pair) and saturation occur.
"""
import importlib

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

NP2TP = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.uint8): TensorProto.UINT8,
         np.dtype(np.int8): TensorProto.INT8, np.dtype(np.int32): TensorProto.INT32}
F = np.float32
MS = "com.microsoft"


@pytest.fixture
def impl(conv_impl):
    """The companion operators run on the same implementations as the convolutions."""
    return conv_impl


def _conv_impl_params():
    import eightbit

    return ["reference"] + [f"ops:{isa}" for isa in eightbit.cpu_info()["available"]]


@pytest.fixture(params=_conv_impl_params())
def conv_impl(request):
    """eightbit.reference, then eightbit.ops forced onto each instruction set."""
    import eightbit

    name, _, isa = request.param.partition(":")
    if not isa:
        yield importlib.import_module(f"eightbit.{name}")
        return
    before = eightbit.cpu_info()["isa"]
    eightbit.set_isa(isa)
    try:
        yield eightbit.ops
    finally:
        eightbit.set_isa(before)


def ort_run(op, inputs, out_dtype, domain="", opset=21, **attrs):
    """Run one node (inputs may be None for an omitted optional input) on ORT's CPU provider."""
    names = [f"in{i}" if v is not None else "" for i, v in enumerate(inputs)]
    node = helper.make_node(op, names, ["out"], domain=domain or None, **attrs)
    graph = helper.make_graph(
        [node], op,
        [helper.make_tensor_value_info(n, NP2TP[np.asarray(v).dtype], None) for n, v in zip(names, inputs) if n],
        [helper.make_tensor_value_info("out", NP2TP[np.dtype(out_dtype)], None)])
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(MS, 1)] if domain else [])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(helper.make_model(graph, opset_imports=imports).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {n: np.asarray(v) for n, v in zip(names, inputs) if n})[0]


def rand(rng, dtype, shape):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape, dtype=np.int64).astype(dtype)


def assert_same(got, want, msg=""):
    got = np.asarray(got)
    assert got.dtype == want.dtype and got.shape == want.shape, f"{msg}: {got.dtype}{got.shape} vs {want.dtype}{want.shape}"
    np.testing.assert_array_equal(got, want, err_msg=msg)


def conv_attrs(rng, nd):
    """Random ONNX conv attributes; ORT rejects dilations with SAME_* padding, so those get none."""
    k = [int(v) for v in rng.integers(1, 4, nd)]
    attrs = dict(kernel_shape=k, strides=[int(v) for v in rng.integers(1, 3, nd)])
    auto_pad = str(rng.choice(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        attrs["auto_pad"] = auto_pad
    else:
        attrs["dilations"] = [int(v) for v in rng.integers(1, 3, nd)]
        if auto_pad == "VALID":
            attrs["auto_pad"] = "VALID"
        else:
            attrs["pads"] = [int(v) for v in rng.integers(0, 3, 2 * nd)]
    return attrs


CONV_TYPES = [(np.uint8, np.uint8), (np.uint8, np.int8), (np.int8, np.int8)]


@pytest.mark.parametrize("x_dtype,w_dtype", CONV_TYPES + [(np.int8, np.uint8)])
def test_conv_integer(conv_impl, x_dtype, w_dtype):
    impl = conv_impl
    rng = np.random.default_rng(1)
    for trial in range(25):
        nd = 1 if trial % 5 == 0 else 2
        group = int(rng.choice([1, 2, 3]))
        cg, mg = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        attrs = conv_attrs(rng, nd)
        x = rand(rng, x_dtype, [2, group * cg] + [int(v) for v in rng.integers(5, 9, nd)])
        w = rand(rng, w_dtype, [group * mg, cg] + attrs["kernel_shape"])
        x_zp, w_zp = rand(rng, x_dtype, ()), rand(rng, w_dtype, ())
        want = ort_run("ConvInteger", [x, w, x_zp, w_zp], np.int32, opset=10, group=group, **attrs)
        assert_same(impl.conv_integer(x, w, x_zp, w_zp, group=group, **attrs), want, f"trial {trial} {attrs}")


@pytest.mark.parametrize("x_dtype,w_dtype", CONV_TYPES)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_qlinear_conv(conv_impl, x_dtype, w_dtype, layout):
    """Per-channel weight scales, int32 bias, random geometry; ORT takes NCHW, so NHWC is checked
    against ORT's result transposed."""
    impl = conv_impl
    rng = np.random.default_rng(2 + (layout == "NHWC"))
    saturated = [0, 0]
    for trial in range(25):
        nd = 1 if trial % 6 == 0 else 2
        group = int(rng.choice([1, 2, 4]))
        cg, mg = (1, 1) if trial % 4 == 0 else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        attrs = conv_attrs(rng, nd)
        x = rand(rng, x_dtype, [2, group * cg] + [int(v) for v in rng.integers(5, 10, nd)])
        m = group * mg
        w = rand(rng, w_dtype, [m, cg] + attrs["kernel_shape"])
        x_zp, y_zp = rand(rng, x_dtype, ()), rand(rng, x_dtype, ())
        w_zp = np.full(m, rand(rng, w_dtype, ()), w_dtype)     # ORT: one zero point for all channels
        x_s, w_s = F(rng.uniform(0.01, 0.1)), rng.uniform(0.005, 0.05, m).astype(F)
        bias = rng.integers(-30000, 30000, m).astype(np.int32)
        taps = cg * int(np.prod(attrs["kernel_shape"]))
        y_s = F(x_s * np.mean(w_s) * 60 * np.sqrt(taps) * rng.uniform(0.3, 1.5))
        if trial % 5 == 0:                                       # power-of-two scales: exact ties
            x_s, w_s, y_s = F(2.0**-4), np.full(m, 2.0**-5, F), F(2.0 ** -int(rng.integers(0, 3)))
        want = ort_run("QLinearConv", [x, x_s, x_zp, w, w_s, w_zp, y_s, y_zp, bias], x_dtype, opset=10,
                       group=group, **attrs)
        xin = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if layout == "NHWC" else x
        got = impl.qlinear_conv(xin, x_s, x_zp, w, w_s, w_zp, y_s, y_zp, bias, group=group, layout=layout, **attrs)
        if layout == "NHWC":
            want = np.ascontiguousarray(np.moveaxis(want, 1, -1))
        assert_same(got, want, f"trial {trial} {attrs}")
        info = np.iinfo(x_dtype)
        saturated[0] += int((want == info.min).sum())
        saturated[1] += int((want == info.max).sum())
    assert saturated[0] and saturated[1], "inputs never saturated at both ends"


def test_qlinear_conv_depthwise_resnet_like_shapes(conv_impl):
    impl = conv_impl
    rng = np.random.default_rng(4)
    x = rand(rng, np.uint8, (1, 16, 14, 14))
    for w_shape, group, attrs in [((16, 1, 3, 3), 16, dict(pads=[1, 1, 1, 1], strides=[2, 2])),
                                  ((16, 1, 5, 5), 16, dict(pads=[2, 2, 2, 2])),
                                  ((8, 16, 1, 1), 1, {}), ((4, 16, 7, 7), 1, dict(pads=[3, 3, 3, 3], strides=[2, 2]))]:
        w = rand(rng, np.int8, w_shape)
        args = [x, F(0.02), np.uint8(120), w, rng.uniform(0.002, 0.02, w_shape[0]).astype(F),
                np.zeros(w_shape[0], np.int8), F(0.1), np.uint8(128), rng.integers(-500, 500, w_shape[0]).astype(np.int32)]
        want = ort_run("QLinearConv", args, np.uint8, opset=10, group=group, **attrs)
        assert_same(impl.qlinear_conv(*args, group=group, **attrs), want, str(w_shape))


# ------------------------------------------------------------------------------ QLinearAdd / QLinearMul

BINARY_SHAPES = [((256, 1), (256, 256)), ((256, 256), (256, 1)), ((65536,), (65536,)), ((1,), (1,)),
                 ((), (5,)), ((4, 1), ()), ((5, 1), (1,)), ((2, 256, 1), (256, 3)), ((3, 1, 7), (1, 4, 7))]


def every_byte_pair(dtype, a_shape, b_shape, rng):
    """Operands that together cover every (a, b) byte pair where the shapes allow it."""
    vals = np.arange(256, dtype=np.uint8).view(dtype)
    if a_shape == (65536,):
        return np.repeat(vals, 256), np.tile(vals, 256)
    a, b = rand(rng, dtype, a_shape), rand(rng, dtype, b_shape)
    if a_shape == (256, 1):
        a = vals.reshape(256, 1)
    if b_shape == (256, 1):
        b = vals.reshape(256, 1)
    if b_shape == (256, 256):
        b = np.tile(vals, (256, 1))
    if a_shape == (256, 256):
        a = np.tile(vals, (256, 1))
    return a, b


@pytest.mark.parametrize("op", ["QLinearAdd", "QLinearMul"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("a_shape,b_shape", BINARY_SHAPES, ids=[f"{a}x{b}" for a, b in BINARY_SHAPES])
def test_qlinear_add_mul(impl, op, dtype, a_shape, b_shape):
    """Every byte pair under random scales (float32 rounding near ties: operand order and FMA
    matter for QLinearAdd) and power-of-two scales (exact .5 ties, odd zero points)."""
    fn = impl.qlinear_add if op == "QLinearAdd" else impl.qlinear_mul
    rng = np.random.default_rng(hash((op, a_shape, b_shape, np.dtype(dtype).name)) % 2**32)
    for trial in range(6):
        a, b = every_byte_pair(dtype, a_shape, b_shape, rng)
        a_s, b_s = F(rng.uniform(0.01, 1)), F(rng.uniform(0.01, 1))
        c_s = F(rng.uniform(0.3, 1.5) * max(a_s, b_s) * (1 if op == "QLinearAdd" else 100 * max(a_s, b_s)))
        if trial % 3 == 0:
            a_s, b_s, c_s = F(0.5), F(0.25), F(2.0 ** -int(rng.integers(0, 4)))
        zps = [rand(rng, dtype, ()) for _ in range(3)]
        args = [a, a_s, zps[0], b, b_s, zps[1], c_s, zps[2]]
        want = ort_run(op, args, dtype, domain=MS)
        assert_same(fn(*args), want, f"trial {trial}")


def test_qlinear_add_operand_order_matters(impl):
    """Guard: ORT's result depends on which input is broadcast along the innermost axis (it swaps
    the fma order); check that the swapped and unswapped orders really differ on these inputs."""
    rng = np.random.default_rng(7)
    vals = np.arange(256, dtype=np.uint8)
    differ = 0
    for _ in range(40):
        a_s, b_s = F(rng.uniform(0.01, 1)), F(rng.uniform(0.01, 1))
        c_s = F(rng.uniform(0.3, 1.5) * max(a_s, b_s))
        zps = [np.uint8(v) for v in rng.integers(0, 256, 3)]
        broadcast_a = impl.qlinear_add(vals.reshape(256, 1), a_s, zps[0], np.tile(vals, (256, 1)), b_s, zps[1], c_s, zps[2])
        full = impl.qlinear_add(np.repeat(vals, 256), a_s, zps[0], np.tile(vals, 256), b_s, zps[1], c_s, zps[2])
        differ += int((broadcast_a.reshape(-1) != full).sum())
    assert differ > 0


# ----------------------------------------------------------------------------------------------- pools

def pool_attrs(rng, nd, spatial):
    k = [int(v) for v in rng.integers(1, 4, nd)]
    attrs = dict(kernel_shape=k, strides=[int(v) for v in rng.integers(1, 3, nd)], ceil_mode=int(rng.integers(0, 2)))
    auto_pad = str(rng.choice(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    if auto_pad == "NOTSET":
        attrs["pads"] = [int(min(p, kk - 1)) for p, kk in zip(rng.integers(0, 3, 2 * nd), k + k)]
    else:
        attrs["auto_pad"] = auto_pad
    if rng.random() < 0.1:
        attrs = dict(kernel_shape=list(spatial))              # whole image, no pads: ORT's integer path
    return attrs


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_qlinear_average_pool(impl, dtype, layout):
    rng = np.random.default_rng(20 + (layout == "NHWC"))
    for trial in range(40):
        nd = 1 + trial % 3 if trial % 5 == 0 else 2
        spatial = [int(v) for v in rng.integers(3, 9, nd)]
        x = rand(rng, dtype, [2, 3] + spatial)
        attrs = pool_attrs(rng, nd, spatial)
        cip = int(rng.integers(0, 2))
        x_s, y_s = F(rng.uniform(0.01, 0.2)), F(rng.uniform(0.01, 0.2))
        if trial % 4 == 0:
            x_s, y_s = F(2.0**-3), F(2.0 ** -int(rng.integers(0, 5)))
        x_zp, y_zp = rand(rng, dtype, ()), rand(rng, dtype, ())
        xin = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if layout == "NHWC" else x
        want = ort_run("QLinearAveragePool", [xin, x_s, x_zp, y_s, y_zp], dtype, domain=MS, count_include_pad=cip,
                       channels_last=int(layout == "NHWC"), **attrs)
        got = impl.qlinear_average_pool(xin, x_s, x_zp, y_s, y_zp, count_include_pad=cip, layout=layout, **attrs)
        assert_same(got, want, f"trial {trial} {attrs} cip={cip}")


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_qlinear_global_average_pool(impl, dtype, layout):
    rng = np.random.default_rng(30)
    for trial, spatial in enumerate([(1, 1), (7, 7), (13, 5), (56, 56), (3,), (2, 3, 4)] * 3):
        x = rand(rng, dtype, (2, 5) + spatial)
        x_s, y_s = F(rng.uniform(0.01, 0.2)), F(rng.uniform(0.01, 0.2) * (1 if trial < 6 else 0.02))
        x_zp, y_zp = rand(rng, dtype, ()), rand(rng, dtype, ())
        xin = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if layout == "NHWC" else x
        want = ort_run("QLinearGlobalAveragePool", [xin, x_s, x_zp, y_s, y_zp], dtype, domain=MS,
                       channels_last=int(layout == "NHWC"))
        assert_same(impl.qlinear_global_average_pool(xin, x_s, x_zp, y_s, y_zp, layout=layout), want, str(spatial))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_max_pool(impl, dtype):
    rng = np.random.default_rng(40)
    for trial in range(40):
        nd = 1 + trial % 3 if trial % 5 == 0 else 2
        spatial = [int(v) for v in rng.integers(4, 10, nd)]
        x = rand(rng, dtype, [2, 3] + spatial)
        attrs = pool_attrs(rng, nd, spatial)
        if attrs.get("auto_pad", "NOTSET") in ("NOTSET", "VALID") and trial % 2:
            attrs["dilations"] = [int(v) for v in rng.integers(1, 3, nd)]
            ext = [(k - 1) * d + 1 for k, d in zip(attrs["kernel_shape"], attrs["dilations"])]
            if any(e > n for e, n in zip(ext, spatial)):
                del attrs["dilations"]
        want = ort_run("MaxPool", [x], dtype, opset=12, **attrs)
        assert_same(impl.max_pool(x, **attrs), want, f"trial {trial} {attrs}")
        got_nhwc = impl.max_pool(np.ascontiguousarray(np.moveaxis(x, 1, -1)), layout="NHWC", **attrs)
        assert_same(got_nhwc, np.ascontiguousarray(np.moveaxis(want, 1, -1)), f"NHWC trial {trial}")


# ------------------------------------------------------------------------------ table-based operators

@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_qlinear_leaky_relu_and_sigmoid(impl, dtype):
    """All 256 inputs at once, so every table entry is compared."""
    rng = np.random.default_rng(50)
    x = np.arange(256, dtype=np.uint8).view(dtype)
    for trial in range(40):
        x_s, x_zp, y_zp = F(rng.uniform(0.001, 0.3)), rand(rng, dtype, ()), rand(rng, dtype, ())
        alpha = F(rng.uniform(0.001, 0.5))
        y_s = F(rng.uniform(0.001, 0.1))
        want = ort_run("QLinearLeakyRelu", [x, x_s, x_zp, y_s, y_zp], dtype, domain=MS, alpha=float(alpha))
        assert_same(impl.qlinear_leaky_relu(x, x_s, x_zp, y_s, y_zp, alpha=alpha), want, f"leaky trial {trial}")
        y_s = F(rng.uniform(1 / 300, 1 / 100))
        want = ort_run("QLinearSigmoid", [x, x_s, x_zp, y_s, y_zp], dtype, domain=MS)
        assert_same(impl.qlinear_sigmoid(x, x_s, x_zp, y_s, y_zp), want, f"sigmoid trial {trial}")


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_qlinear_concat(impl, dtype):
    rng = np.random.default_rng(60)
    for trial in range(20):
        axis = int(rng.integers(-3, 3))
        shapes = [[2, 3, 4] for _ in range(3)]
        for s in shapes:
            s[axis] = int(rng.integers(1, 5))
        y_s, y_zp = F(rng.uniform(0.01, 0.2)), rand(rng, dtype, ())
        triples = []
        for i, shape in enumerate(shapes):
            s, zp = (y_s, y_zp) if i == trial % 3 else (F(rng.uniform(0.01, 0.3)), rand(rng, dtype, ()))
            triples.append((rand(rng, dtype, shape), s, zp))
        flat = [v for t in triples for v in t]
        want = ort_run("QLinearConcat", [y_s, y_zp] + flat, dtype, domain=MS, axis=axis)
        assert_same(impl.qlinear_concat(y_s, y_zp, triples, axis=axis), want, f"trial {trial} axis {axis}")
