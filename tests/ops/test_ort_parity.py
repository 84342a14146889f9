"""Bit-exact parity with ONNX Runtime (CPU execution provider, graph optimizations off) on one-node
models and many random inputs, for eightbit.reference and eightbit.ops alike.

Inputs are drawn so that rounding ties and saturation at both ends actually occur.
"""
import importlib
import platform

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

NP2TP = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.uint8): TensorProto.UINT8,
         np.dtype(np.int8): TensorProto.INT8, np.dtype(np.int32): TensorProto.INT32}
F = np.float32


def _ops_params():
    """eightbit.ops once per instruction set this CPU runs; plain "ops" when eightbit cannot be
    imported, so that the failure shows instead of vanishing."""
    try:
        isas = importlib.import_module("eightbit").cpu_info()["available"]
    except Exception:
        return ["ops"]
    return [f"ops-{isa}" for isa in isas]


@pytest.fixture(params=["reference"] + _ops_params())
def impl(request):
    """The module under test; an import error of eightbit.ops is a failure, not a skip."""
    name, _, isa = request.param.partition("-")
    module = importlib.import_module(f"eightbit.{name}")
    if not isa:
        yield module
        return
    eb = importlib.import_module("eightbit")
    previous = eb.cpu_info()["isa"]
    eb.set_isa(isa)
    try:
        yield module
    finally:
        eb.set_isa(previous)


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# ONNX Runtime's x86 U8S8 GEMM without VNNI multiplies with vpmaddubsw, which saturates the int16
# sum of two adjacent products (255*127*2 > 32767), so ORT itself is inexact there. eightbit's
# contract is the exact sum; compare u8s8 against ORT only where ORT's kernel is exact.
_X86 = platform.machine().lower() in ("x86_64", "amd64")
ORT_U8S8_EXACT = not _X86 or bool({"avx512_vnni", "avx_vnni"} & _cpu_flags())
needs_exact_ort_u8s8 = pytest.mark.skipif(
    not ORT_U8S8_EXACT, reason="ONNX Runtime's non-VNNI x86 U8S8 kernel saturates int16 (vpmaddubsw)")


class OrtNode:
    """One ONNX node as an ORT session with symbolic input shapes, reused for many inputs."""

    def __init__(self, op, in_dtypes, out_dtypes, opset, **attrs):
        self.names = [f"in{i}" for i in range(len(in_dtypes))]
        outs = [f"out{i}" for i in range(len(out_dtypes))]
        graph = helper.make_graph(
            [helper.make_node(op, self.names, outs, **attrs)], op,
            [helper.make_tensor_value_info(n, NP2TP[np.dtype(d)], None) for n, d in zip(self.names, in_dtypes)],
            [helper.make_tensor_value_info(n, NP2TP[np.dtype(d)], None) for n, d in zip(outs, out_dtypes)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        self.session = ort.InferenceSession(model.SerializeToString(), options,
                                            providers=["CPUExecutionProvider"])

    def __call__(self, *inputs):
        return self.session.run(None, {n: np.asarray(v) for n, v in zip(self.names, inputs)})


def rand_int(rng, dtype, shape):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape, dtype=np.int64).astype(dtype)


def rand_extreme_int(rng, dtype, shape):
    """Mostly the two ends of the range, some random values."""
    info = np.iinfo(dtype)
    choice = rng.integers(0, 3, size=shape)
    return np.where(choice == 0, info.min, np.where(choice == 1, info.max, rand_int(rng, dtype, shape))).astype(dtype)


# --------------------------------------------------------------------------------------- MatMulInteger

MMI_TYPES = [(np.uint8, np.uint8), pytest.param(np.uint8, np.int8, marks=needs_exact_ort_u8s8),
             pytest.param(np.int8, np.int8, marks=needs_exact_ort_u8s8), (np.int8, np.uint8)]
MMI_SHAPES = [((1, 1), (1, 1)), ((3, 17), (17, 15)), ((16, 64), (64, 16)), ((17, 65), (65, 63)),
              ((2, 255), (255, 3)), ((64, 3), (3, 65)), ((2, 3, 5, 9), (9, 4)), ((2, 4, 7), (2, 7, 3)),
              ((9,), (9, 4)), ((4, 9), (9,))]


@pytest.mark.parametrize("a_dtype,b_dtype", MMI_TYPES)
@pytest.mark.parametrize("per_column", [False, True], ids=["b_zp_scalar", "b_zp_per_column"])
def test_matmul_integer(impl, a_dtype, b_dtype, per_column):
    node = OrtNode("MatMulInteger", [a_dtype, b_dtype, a_dtype, b_dtype], [np.int32], 10)
    rng = np.random.default_rng(1 + per_column)
    for trial, (a_shape, b_shape) in enumerate(MMI_SHAPES * 2):
        draw = rand_extreme_int if trial >= len(MMI_SHAPES) else rand_int
        a, b = draw(rng, a_dtype, a_shape), draw(rng, b_dtype, b_shape)
        n = b_shape[-1] if len(b_shape) > 1 else 1
        a_zp = draw(rng, a_dtype, ())
        # ORT takes a per-column (N,) zero point for a 2-D b only (batched b wants [batch.., 1, N])
        b_zp = draw(rng, b_dtype, (n,) if per_column and len(b_shape) == 2 else ())
        (want,) = node(a, b, a_zp, b_zp)
        got = impl.matmul_integer(a, b, a_zp, b_zp)
        assert got.dtype == np.int32 and got.shape == want.shape
        np.testing.assert_array_equal(got, want, err_msg=f"{a_shape} x {b_shape}")


# --------------------------------------------------------------------------------------- QLinearMatMul

# ORT implements QLinearMatMul for (a, b, y) = (u8, u8, u8), (u8, s8, u8) and (s8, s8, s8).
QLMM_TYPES = [(np.uint8, np.uint8, np.uint8), pytest.param(np.uint8, np.int8, np.uint8, marks=needs_exact_ort_u8s8),
              pytest.param(np.int8, np.int8, np.int8, marks=needs_exact_ort_u8s8)]


@pytest.mark.parametrize("a_dtype,b_dtype,y_dtype", QLMM_TYPES)
@pytest.mark.parametrize("per_column", [False, True], ids=["b_scale_scalar", "b_scale_per_column"])
def test_qlinear_matmul(impl, a_dtype, b_dtype, y_dtype, per_column):
    node = OrtNode("QLinearMatMul", [a_dtype, F, a_dtype, b_dtype, F, b_dtype, F, y_dtype], [y_dtype], 21)
    rng = np.random.default_rng(10 + per_column)
    saturated = [0, 0]
    for trial in range(60):
        m, n, k = (int(v) for v in rng.choice([1, 2, 3, 15, 16, 17, 63, 64, 65], 3))
        a, b = rand_int(rng, a_dtype, (m, k)), rand_int(rng, b_dtype, (k, n))
        cols = (n,) if per_column else ()
        a_zp, b_zp, y_zp = rand_int(rng, a_dtype, ()), rand_int(rng, b_dtype, cols), rand_int(rng, y_dtype, ())
        a_s = F(rng.uniform(1e-3, 0.2))
        b_s = rng.uniform(1e-3, 0.2, cols).astype(F)
        # output scale near the accumulator spread: most outputs in range, some saturated, and
        # power-of-two scales on some trials so exact .5 ties occur
        y_s = F(a_s * np.max(b_s) * F(rng.uniform(0.3, 2.0)) * F(np.sqrt(k) * 60))
        if trial % 4 == 0:
            a_s, b_s, y_s = F(2.0 ** -6), np.full(cols, 2.0 ** -5, F), F(2.0 ** int(rng.integers(-12, -4)))
        (want,) = node(a, np.array(a_s), a_zp, b, b_s, b_zp, np.array(y_s), y_zp)
        got = impl.qlinear_matmul(a, a_s, a_zp, b, b_s, b_zp, y_s, y_zp)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want, err_msg=f"trial {trial}: m={m} n={n} k={k}")
        info = np.iinfo(y_dtype)
        saturated[0] += int(np.sum(want == info.min))
        saturated[1] += int(np.sum(want == info.max))
    assert saturated[0] > 0 and saturated[1] > 0, "inputs never reached saturation at both ends"


def test_qlinear_matmul_multiplier_rounding_order(impl):
    """ORT computes the multiplier as float32(float32(a_scale * b_scale) / y_scale) and the output
    as float32(acc) * multiplier. Scales are chosen where computing the multiplier in float64
    instead would change some output, so any other order fails here."""
    node = OrtNode("QLinearMatMul", [np.uint8, F, np.uint8, np.int8, F, np.int8, F, np.uint8], [np.uint8], 21)
    rng = np.random.default_rng(12)
    a = np.arange(256, dtype=np.uint8).reshape(-1, 1)                  # outer product, K = 1:
    b = np.arange(-128, 128, dtype=np.int8).reshape(1, -1)            # every u8 x s8 product
    products = np.unique(a.astype(np.int64) * b.astype(np.int64)).astype(np.float32)
    found = 0
    for _ in range(20000):
        a_s, b_s = F(rng.uniform(0.01, 0.1)), F(rng.uniform(0.01, 0.1))
        y_s = F(a_s * b_s * F(rng.uniform(200.0, 260.0)))
        m32 = F(F(a_s * b_s) / y_s)
        m64 = F(np.float64(a_s) * np.float64(b_s) / np.float64(y_s))
        if m32 == m64 or np.array_equal(np.rint(products * m32), np.rint(products * m64)):
            continue
        (want,) = node(a, np.array(a_s), np.uint8(0), b, np.array(b_s), np.int8(0), np.array(y_s), np.uint8(128))
        np.testing.assert_array_equal(impl.qlinear_matmul(a, a_s, np.uint8(0), b, b_s, np.int8(0), y_s, np.uint8(128)),
                                      want)
        found += 1
        if found == 3:
            break
    assert found > 0, "no scales found where the multiplier order matters"


# --------------------------------------------------------------------------------- DynamicQuantizeLinear

def dynamic_inputs(rng):
    yield rng.normal(0, 1, (4, 33))
    yield rng.normal(5, 2, 100)
    yield rng.uniform(0.1, 3, 50)                       # all positive: zp = 0
    yield -rng.uniform(0.1, 3, 50)                      # all negative: zp = 255
    yield np.zeros(7)                                   # scale 1.0, zp 0
    yield np.zeros((0, 4))                              # empty
    yield np.array([2.5])
    yield np.array([-1e-30, 2e-31, 0.0])                # tiny range
    yield np.array([1e-45])                             # subnormal range: scale underflows to 0
    yield np.array([3e38, -3e38])                       # range overflows: scale inf
    for _ in range(60):
        yield rng.normal(rng.normal(0, 3), rng.uniform(1e-3, 100), int(rng.integers(1, 300)))
    for _ in range(20):                                 # grid values: exact .5 ties after division
        yield rng.integers(-255, 256, int(rng.integers(2, 64))) * 0.5


def test_dynamic_quantize_linear(impl):
    node = OrtNode("DynamicQuantizeLinear", [F], [np.uint8, F, np.uint8], 11)
    rng = np.random.default_rng(20)
    for x in dynamic_inputs(rng):
        x = np.asarray(x, F)
        want_y, want_s, want_z = node(x)
        with np.errstate(all="ignore"):
            y, s, z = impl.dynamic_quantize_linear(x)
        assert np.asarray(s).dtype == np.float32 and np.asarray(z).dtype == np.uint8
        assert np.float32(s).tobytes() == np.float32(want_s).tobytes(), f"scale for {x[:4]}"
        assert int(z) == int(want_z), f"zero point for {x[:4]}"
        np.testing.assert_array_equal(y, want_y, err_msg=f"{x[:4]}")


def test_dynamic_quantize_rows_matches_ort_per_row(impl):
    """Each row of dynamic_quantize_rows is ORT's DynamicQuantizeLinear of that row."""
    node = OrtNode("DynamicQuantizeLinear", [F], [np.uint8, F, np.uint8], 11)
    rng = np.random.default_rng(21)
    x = rng.normal(0, 1, (12, 40)).astype(F) * rng.uniform(0.01, 50, (12, 1)).astype(F)
    x[3] = 0
    x[5] = np.abs(x[5])
    x[7] = -np.abs(x[7])
    q, s, z = impl.dynamic_quantize_rows(x)
    for r in range(x.shape[0]):
        want_y, want_s, want_z = node(x[r])
        assert s[r] == want_s and z[r] == want_z
        np.testing.assert_array_equal(q[r], want_y)


# ----------------------------------------------------------------------------------------- QuantizeLinear

def near_ties(rng, scale_b, shape):
    """float32 values within a few ulps of (k + 0.5) * scale: there x / scale and x * (1 / scale)
    (or any other shortcut) round to different integers often enough to be caught."""
    x = ((rng.integers(-200, 200, shape) + F(0.5)) * scale_b).astype(F)
    for _ in range(2):
        step = rng.integers(-1, 2, shape)
        x = np.where(step > 0, np.nextafter(x, F(np.inf)), np.where(step < 0, np.nextafter(x, F(-np.inf)), x))
    return x.astype(F)


def quantize_inputs(rng, shape, scale_b):
    x = rng.normal(0, 60, shape).astype(F)
    ties = near_ties(rng, scale_b, shape)
    x = np.where(rng.random(shape) < 0.6, ties, x).astype(F)
    flat = x.reshape(-1)
    flat[:4] = [np.inf, -np.inf, 3e38, -3e38]
    flat[4] = np.nan
    return x


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("axis", [None, 0, 1, -1], ids=["per_tensor", "axis0", "axis1", "axis-1"])
def test_quantize_linear(impl, dtype, axis):
    attrs = {} if axis is None else {"axis": axis}
    node = OrtNode("QuantizeLinear", [F, F, dtype], [dtype], 21, **attrs)
    rng = np.random.default_rng(30)
    shape3 = (5, 6, 7)
    for trial in range(30):
        shape = () if axis is None else (shape3[axis],)
        if trial % 3 == 0:
            scale = rng.choice([0.5, 1.0, 2.0], shape).astype(F)
        else:
            scale = rng.uniform(0.01, 4.0, shape).astype(F)
        bshape = [1, 1, 1]
        if axis is not None:
            bshape[axis] = shape3[axis]
        x = quantize_inputs(rng, shape3, scale.reshape(bshape))
        zp = rand_extreme_int(rng, dtype, shape)
        (want,) = node(x, scale, zp)
        with np.errstate(all="ignore"):
            got = impl.quantize_linear(x, scale, zp, axis=1 if axis is None else axis)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want, err_msg=f"trial {trial}")


# --------------------------------------------------------------------------------------- DequantizeLinear

@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int32])
@pytest.mark.parametrize("axis", [None, 0, 2], ids=["per_tensor", "axis0", "axis2"])
def test_dequantize_linear(impl, dtype, axis):
    attrs = {} if axis is None else {"axis": axis}
    node = OrtNode("DequantizeLinear", [dtype, F, dtype], [F], 21, **attrs)
    rng = np.random.default_rng(40)
    for _ in range(10):
        x = rand_extreme_int(rng, dtype, (3, 4, 5))
        shape = () if axis is None else (x.shape[axis],)
        scale = rng.uniform(1e-4, 20.0, shape).astype(F)
        zp = np.zeros(shape, dtype) if dtype == np.int32 else rand_int(rng, dtype, shape)
        (want,) = node(x, scale, zp)
        got = impl.dequantize_linear(x, scale, zp, axis=1 if axis is None else axis)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)
