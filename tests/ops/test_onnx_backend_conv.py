"""ONNX's own node test cases for ConvInteger and QLinearConv, plus onnx.reference.ReferenceEvaluator
on random convolutions (an oracle independent of ONNX Runtime).

`IMPLS` lists the modules under test; append "ops" once eightbit.ops implements these operators.
"""
import importlib
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

IMPLS = ["reference", "ops"]
OPS = ("ConvInteger", "QLinearConv")
ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


@pytest.fixture(params=IMPLS)
def impl(request):
    return importlib.import_module(f"eightbit.{request.param}")


def _cases():
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = collect_testcases(None)
    return [c for c in found if c.kind == "node" and len(c.model.graph.node) == 1
            and c.model.graph.node[0].op_type in OPS]


CASES = _cases()


def _call(impl, node, inputs):
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name in ATTRS}
    if isinstance(attrs.get("auto_pad"), bytes):
        attrs["auto_pad"] = attrs["auto_pad"].decode()
    args = list(inputs) + [None] * (9 - len(inputs))
    if node.op_type == "ConvInteger":
        return impl.conv_integer(*args[:4], **attrs)
    return impl.qlinear_conv(*args[:9], **attrs)


def test_cases_were_collected():
    names = {op: [c.name for c in CASES if c.model.graph.node[0].op_type == op] for op in OPS}
    for op, found in names.items():
        assert found, f"no ONNX backend node case for {op}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_onnx_backend_node_case(impl, case):
    node = case.model.graph.node[0]
    for inputs, expected in case.data_sets:
        named = dict(zip([i.name for i in case.model.graph.input], inputs))
        got = np.asarray(_call(impl, node, [named.get(n) if n else None for n in node.input]))
        want = np.asarray(expected[0])
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want, err_msg=case.name)


NP2TP = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.uint8): TensorProto.UINT8,
         np.dtype(np.int8): TensorProto.INT8, np.dtype(np.int32): TensorProto.INT32}


def _evaluate(op, inputs, out_dtype, **attrs):
    names = [f"in{i}" for i in range(len(inputs))]
    graph = helper.make_graph(
        [helper.make_node(op, names, ["out"], **attrs)], "g",
        [helper.make_tensor_value_info(n, NP2TP[np.asarray(v).dtype], None) for n, v in zip(names, inputs)],
        [helper.make_tensor_value_info("out", NP2TP[np.dtype(out_dtype)], None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    return ReferenceEvaluator(model).run(None, dict(zip(names, inputs)))[0]


def _rand(rng, dtype, shape):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape, dtype=np.int64).astype(dtype)


@pytest.mark.parametrize("w_dtype", [np.uint8, np.int8])
def test_conv_integer_vs_reference_evaluator(impl, w_dtype):
    """Per-channel weight zero points (which ONNX allows and ONNX Runtime does not take)."""
    rng = np.random.default_rng(3)
    for group, attrs in [(1, dict(pads=[1, 0, 2, 1])), (2, dict(strides=[2, 1], dilations=[1, 2])),
                         (4, dict(pads=[1, 1, 1, 1])), (1, dict(auto_pad="SAME_LOWER", strides=[2, 2]))]:
        x = _rand(rng, np.uint8, (2, 4, 7, 6))
        w = _rand(rng, w_dtype, (4, 4 // group, 3, 3))
        x_zp, w_zp = _rand(rng, np.uint8, ()), _rand(rng, w_dtype, (4,))
        want = _evaluate("ConvInteger", [x, w, x_zp, w_zp], np.int32, group=group, **attrs)
        np.testing.assert_array_equal(impl.conv_integer(x, w, x_zp, w_zp, group=group, **attrs), want)
