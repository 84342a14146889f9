"""ONNX's own node test cases, and onnx.reference.ReferenceEvaluator on random inputs.

Both implementations are checked: `eightbit.reference` (NumPy) and `eightbit.ops` (C++). A missing
function in either one makes its tests fail, never skip.

The ONNX cases are generated in-process from `onnx.backend.test.case.node.collect_testcases()` and
filtered to the uint8 / int8 variants eightbit implements; the others (float8, int4, int2, uint16,
int16, float4, float16 scales) are skipped with the reason in their id's skip message, so
`pytest -ra` shows how many run and why the rest do not.
"""
import importlib

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402
from onnx.backend.test.case.node import collect_testcases  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "QLinearMatMul")
INT_TYPES = {np.dtype(np.uint8), np.dtype(np.int8)}


@pytest.fixture(params=["reference", "ops"])
def impl(request):
    """The module under test; an import error of eightbit.ops is a failure, not a skip."""
    return importlib.import_module(f"eightbit.{request.param}")


def _single_node_cases():
    cases = []
    for case in collect_testcases(None):
        nodes = case.model.graph.node
        if case.kind == "node" and len(nodes) == 1 and nodes[0].op_type in OPS:
            cases.append(case)
    return cases


CASES = _single_node_cases()


def _unsupported_reason(case):
    node = case.model.graph.node[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if "output_dtype" in attrs or "precision" in attrs:
        return "output_dtype/precision attributes are not implemented by eightbit"
    for inputs, outputs in case.data_sets:
        for arr in list(inputs) + list(outputs):
            dt = np.asarray(arr).dtype
            if dt.kind in "iu" and dt not in INT_TYPES and not (node.op_type == "MatMulInteger" and dt == np.int32):
                return f"integer type {dt} (eightbit supports uint8/int8)"
            if dt.kind == "f" and dt != np.float32:
                return f"float type {dt} (eightbit takes float32 scales and data)"
            if dt.kind not in "iuf":
                return f"type {dt} (float8 / float4 / int4 / int2 are not implemented)"
    return None


def _call(impl, case, inputs):
    node = case.model.graph.node[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    named = dict(zip([i.name for i in case.model.graph.input], inputs))
    args = [named.get(name) if name else None for name in node.input]
    args += [None] * (8 - len(args))
    op = node.op_type
    if op == "QuantizeLinear":
        return [impl.quantize_linear(args[0], args[1], args[2], axis=attrs.get("axis", 1),
                                     block_size=attrs.get("block_size", 0))]
    if op == "DequantizeLinear":
        return [impl.dequantize_linear(args[0], args[1], args[2], axis=attrs.get("axis", 1),
                                       block_size=attrs.get("block_size", 0))]
    if op == "DynamicQuantizeLinear":
        return list(impl.dynamic_quantize_linear(args[0]))
    if op == "MatMulInteger":
        return [impl.matmul_integer(args[0], args[1], args[2], args[3])]
    return [impl.qlinear_matmul(*args[:8])]


def _params():
    out = []
    for case in CASES:
        reason = _unsupported_reason(case)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        out.append(pytest.param(case, id=case.name, marks=marks))
    return out


def test_supported_cases_were_collected():
    """Guard against the filter silently dropping everything: every op keeps runnable cases."""
    runnable = {op: [] for op in OPS}
    for case in CASES:
        if _unsupported_reason(case) is None:
            runnable[case.model.graph.node[0].op_type].append(case.name)
    print("runnable ONNX node cases:", {op: len(v) for op, v in runnable.items()})
    for op, names in runnable.items():
        assert names, f"no uint8/int8 ONNX backend case found for {op}"
    assert sum(len(v) for v in runnable.values()) >= 12


@pytest.mark.parametrize("case", _params())
def test_onnx_backend_node_case(impl, case):
    for inputs, expected in case.data_sets:
        got = _call(impl, case, list(inputs))
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            g, e = np.asarray(g), np.asarray(e)
            assert g.dtype == e.dtype, f"{case.name}: dtype {g.dtype} != {e.dtype}"
            assert g.shape == e.shape, f"{case.name}: shape {g.shape} != {e.shape}"
            np.testing.assert_array_equal(g, e, err_msg=case.name)


# ---------------------------------------------------------------------------------------------
# ReferenceEvaluator on random inputs

NP2TP = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.uint8): TensorProto.UINT8,
         np.dtype(np.int8): TensorProto.INT8, np.dtype(np.int32): TensorProto.INT32}


def _evaluate(op, inputs, out_dtypes, opset, **attrs):
    names = [f"in{i}" for i in range(len(inputs))]
    outs = [f"out{i}" for i in range(len(out_dtypes))]
    graph = helper.make_graph(
        [helper.make_node(op, names, outs, **attrs)], "g",
        [helper.make_tensor_value_info(n, NP2TP[np.asarray(v).dtype], None) for n, v in zip(names, inputs)],
        [helper.make_tensor_value_info(n, NP2TP[np.dtype(d)], None) for n, d in zip(outs, out_dtypes)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return ReferenceEvaluator(model).run(None, dict(zip(names, inputs)))


def _rand_int(rng, dtype, shape):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape, dtype=np.int64).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("per_axis", [False, True])
def test_quantize_linear_vs_reference_evaluator(impl, dtype, per_axis):
    rng = np.random.default_rng(10 + per_axis)
    for trial in range(20):
        x = rng.normal(0, 50, (4, 6, 5)).astype(np.float32)
        x[0, 0] = np.float32(2.5)
        x[0, 1] = np.float32(-3.5)                            # exact ties at scale 1
        shape = (6,) if per_axis else ()
        scale = (np.ones(shape, np.float32) if trial == 0 else rng.uniform(0.05, 2.0, shape).astype(np.float32))
        zp = _rand_int(rng, dtype, shape)
        (want,) = _evaluate("QuantizeLinear", [x, scale, zp], [dtype], 21, axis=1)
        np.testing.assert_array_equal(impl.quantize_linear(x, scale, zp, axis=1), want)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("per_axis", [False, True])
def test_dequantize_linear_vs_reference_evaluator(impl, dtype, per_axis):
    rng = np.random.default_rng(20 + per_axis)
    x = _rand_int(rng, dtype, (3, 7, 4))
    shape = (7,) if per_axis else ()
    scale = rng.uniform(1e-3, 10.0, shape).astype(np.float32)
    zp = _rand_int(rng, dtype, shape)
    (want,) = _evaluate("DequantizeLinear", [x, scale, zp], [np.float32], 21, axis=1)
    got = impl.dequantize_linear(x, scale, zp, axis=1)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_dynamic_quantize_linear_vs_reference_evaluator(impl):
    # onnx's ReferenceEvaluator uses scale (max-min)/255 = 1/255 for an all-zero input where ONNX
    # Runtime (and eightbit) use 1.0, so all-zero inputs are left to the ORT parity test.
    rng = np.random.default_rng(30)
    for trial in range(30):
        x = (rng.normal(rng.normal(0, 2), rng.uniform(0.1, 10), (5, 13))).astype(np.float32)
        if trial % 3 == 1:
            x = np.abs(x)
        y, s, z = _evaluate("DynamicQuantizeLinear", [x], [np.uint8, np.float32, np.uint8], 11)
        gy, gs, gz = impl.dynamic_quantize_linear(x)
        assert np.float32(gs) == np.float32(s) and int(gz) == int(z)
        np.testing.assert_array_equal(gy, y)


@pytest.mark.parametrize("a_dtype,b_dtype", [(np.uint8, np.uint8), (np.uint8, np.int8),
                                             (np.int8, np.uint8), (np.int8, np.int8)])
def test_matmul_integer_vs_reference_evaluator(impl, a_dtype, b_dtype):
    rng = np.random.default_rng(40)
    for m, n, k in [(1, 1, 1), (3, 5, 7), (17, 16, 65), (2, 64, 255)]:
        a, b = _rand_int(rng, a_dtype, (m, k)), _rand_int(rng, b_dtype, (k, n))
        a_zp, b_zp = _rand_int(rng, a_dtype, ()), _rand_int(rng, b_dtype, (n,))
        (want,) = _evaluate("MatMulInteger", [a, b, a_zp, b_zp], [np.int32], 10)
        np.testing.assert_array_equal(impl.matmul_integer(a, b, a_zp, b_zp), want)


def _qlinear_matmul_against_evaluator(impl, a, a_s, a_zp, b, b_s, b_zp, y_s, y_zp):
    """Compare with the evaluator; return how many outputs differ, after proving each difference
    is the float32-vs-float64 rounding of acc * multiplier and nothing else."""
    y_dtype = y_zp.dtype
    (want,) = _evaluate("QLinearMatMul", [a, np.array(a_s), a_zp, b, np.array(b_s), b_zp, np.array(y_s), y_zp],
                        [y_dtype], 21)
    got = impl.qlinear_matmul(a, a_s, a_zp, b, b_s, b_zp, y_s, y_zp)
    assert got.dtype == y_dtype
    diff = got.astype(np.int32) != want.astype(np.int32)
    if not diff.any():
        return 0
    acc = (a.astype(np.int64) - int(a_zp)) @ (b.astype(np.int64) - int(b_zp))
    mult = np.float32(np.float32(a_s * b_s) / y_s)
    v32 = acc.astype(np.float32) * mult                     # float32 product (ORT, eightbit)
    v64 = acc.astype(np.float64) * np.float64(mult)         # the evaluator's float64 product
    info = np.iinfo(y_dtype)
    sat = lambda v: np.clip(np.rint(v) + int(y_zp), info.min, info.max)  # noqa: E731
    np.testing.assert_array_equal(got[diff], sat(v32[diff]))
    np.testing.assert_array_equal(want[diff], sat(v64[diff]))
    assert np.all(np.abs(got[diff].astype(np.int32) - want[diff].astype(np.int32)) == 1)
    # the exact product lies within one float32 ulp of a rounding tie (k + 0.5)
    ulp = np.spacing(np.abs(v32[diff]).astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(np.abs(v64[diff] - np.floor(v64[diff])) - 0.5) <= ulp)
    return int(diff.sum())


@pytest.mark.parametrize("a_dtype,b_dtype,y_dtype", [(np.uint8, np.uint8, np.uint8), (np.uint8, np.int8, np.uint8),
                                                     (np.int8, np.int8, np.int8)])
def test_qlinear_matmul_vs_reference_evaluator(impl, a_dtype, b_dtype, y_dtype):
    """The ReferenceEvaluator multiplies the int32 accumulator by the float32 multiplier in float64
    (NumPy promotes int32 * float32 to float64); ONNX Runtime and eightbit multiply in float32.
    Random inputs agree everywhere except, rarely, next to a rounding tie (checked in detail)."""
    rng = np.random.default_rng(50)
    differing = total = 0
    for trial in range(40):
        m, n, k = 16, 24, int(rng.integers(1, 80))
        a, b = _rand_int(rng, a_dtype, (m, k)), _rand_int(rng, b_dtype, (k, n))
        a_zp, b_zp, y_zp = _rand_int(rng, a_dtype, ()), _rand_int(rng, b_dtype, ()), _rand_int(rng, y_dtype, ())
        a_s, b_s = np.float32(rng.uniform(0.01, 0.1)), np.float32(rng.uniform(0.01, 0.1))
        y_s = np.float32(rng.uniform(0.5, 3.0)) * np.float32(np.sqrt(k) / 8)
        differing += _qlinear_matmul_against_evaluator(impl, a, a_s, a_zp, b, b_s, b_zp, y_s, y_zp)
        total += m * n
    assert differing <= total // 1000, f"{differing} of {total} outputs differ from the evaluator"


def test_qlinear_matmul_float32_vs_float64_evaluator_near_ties(impl):
    """Every product a*b of uint8 x int8 (an outer product, K = 1) under several multipliers:
    here float32 and float64 rounding do disagree; eightbit must side with float32 (ONNX Runtime)."""
    rng = np.random.default_rng(51)
    a = np.arange(256, dtype=np.uint8).reshape(-1, 1)
    b = np.arange(-128, 128, dtype=np.int8).reshape(1, -1)
    products = np.unique(a.astype(np.int64) * b.astype(np.int64))
    differing = tried = 0
    while differing < 3 and tried < 2000:
        tried += 1
        a_s, b_s = np.float32(rng.uniform(0.01, 0.1)), np.float32(rng.uniform(0.01, 0.1))
        y_s = np.float32(a_s * b_s * np.float32(rng.uniform(200.0, 260.0)))   # |output| < 128: no saturation
        mult = np.float32(np.float32(a_s * b_s) / y_s)
        # pre-scan (cheap, formula only) for multipliers whose float32 and float64 roundings disagree
        if np.array_equal(np.rint(products.astype(np.float32) * mult), np.rint(products * np.float64(mult))):
            continue
        differing += _qlinear_matmul_against_evaluator(impl, a, a_s, np.uint8(0), b, b_s, np.int8(0), y_s,
                                                       np.uint8(128))
    assert differing > 0, "no float32/float64 disagreement found: the test no longer exercises ties"
